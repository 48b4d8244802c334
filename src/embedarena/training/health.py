"""Training health: notice a collapsed run, one that scores every candidate alike.

The most common failure of group cross-entropy reranker training is a loss stuck at ln(G)
with identical scores for every candidate: the softmax is uniform, the ranking random, and
the run burns GPU hours to write a useless model. Two signals, checked at every logging step
after the warm-up (while the learning rate still ramps up, a slow start is no evidence):

(a) loss: the interval's mean loss is within 1% of what a constant score costs: ln(G) for
    group cross-entropy (the pointwise losses say theirs: the entropy of the mean target for
    BCE, the targets' variance for MSE);
(b) scores: on a fixed probe batch (a few groups of the training data, scored without
    gradient) the candidates of a group get the same score: the mean within-group standard
    deviation is below `FLAT_SPREAD` of the scores' mean magnitude (floored at
    `SCALE_FLOOR`). Relative, because identical means identical at any scale: a saturated
    model scoring every pair 7.31 is as flat as a zeroed head scoring 0, while a fresh head
    on a small encoder spreads its near-zero logits by 1e-4 and is not flat at all.

(b) at `PATIENCE` consecutive checks is a collapse (the run stops under
`--stop-on-collapse`). (a) alone is only a warning: a fresh 1-logit head on an encoder starts
at exactly ln(G) and, at a usual learning rate, can sit within 1% of it for tens of steps
while its scores already differ (measured: MiniLM + a fresh head on Cranfield at lr 3e-5,
batch 8 × group 8, was at 2.0771 vs ln 8 = 2.0794 after 20 steps and learned afterwards), so
stopping on the loss alone would kill healthy slow starts. A probe whose candidates tokenize
to identical inputs (max_len too small for any text, or a tokenizer that reads the data as
[UNK]) can never score them apart: that is a collapse before the first step.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from embedarena.errors import EmbedderError

#: (a): the loss counts as "at the constant-score loss" within this relative distance.
LOSS_TOLERANCE = 0.01
#: (b): probe scores whose within-group std is below this share of their mean magnitude
#: are flat; the magnitude is floored so that float noise around 0 counts as flat too.
FLAT_SPREAD = 1e-3
SCALE_FLOOR = 1e-3
#: Consecutive checks with a signal before the run counts as collapsed.
PATIENCE = 2


class CollapsedTrainingError(EmbedderError):
    """Training stopped because the model scores every candidate alike (see `health`)."""


@dataclass
class CollapseDetector:
    """The rule above as plain arithmetic over logged losses and probe scores (no torch),
    so it is tested on its own; `collapse_callback` feeds it during training."""

    constant_loss: float | None
    warmup_steps: int = 0
    tolerance: float = LOSS_TOLERANCE
    flat_spread: float = FLAT_SPREAD
    patience: int = PATIENCE
    strikes: int = 0
    loss_strikes: int = 0
    #: Set once the run counts as collapsed: the step and the evidence.
    verdict: tuple[int, str] | None = None
    #: Set once the loss alone sat at the constant-score loss (a warning, not a collapse).
    stuck: tuple[int, str] | None = None
    history: list[tuple[int, float | None, float | None]] = field(default_factory=list)

    @staticmethod
    def spread(groups: Sequence[Sequence[float]]) -> float | None:
        """Mean within-group standard deviation of the scores over their mean magnitude
        (floored at `SCALE_FLOOR`); None without a group of 2+."""
        stds = [statistics.pstdev(g) for g in groups if len(g) > 1]
        if not stds:
            return None
        flat = [abs(x) for g in groups for x in g]
        scale = max(sum(flat) / len(flat), SCALE_FLOOR)
        return sum(stds) / len(stds) / scale

    def due(self, step: int) -> bool:
        """Checks start once the warm-up is over."""
        return step > 0 and step >= self.warmup_steps

    def check(self, step: int, loss: float | None,
              groups: Sequence[Sequence[float]] | None = None) -> tuple[int, str] | None:
        """Record one check; returns the verdict when this check completes a collapse (flat
        probe scores, or the loss rule where there is no probe), else None; a loss alone at
        the constant-score loss sets `stuck` once (see the module docstring)."""
        if self.verdict is not None or not self.due(step):
            return None
        spread = self.spread(groups) if groups else None
        self.history.append((step, loss, spread))
        base = self.constant_loss
        at_base = (loss is not None and base is not None and base != 0
                   and abs(loss - base) <= self.tolerance * base)
        flat = spread is not None and spread < self.flat_spread
        loss_sign = (f"the loss {loss:.4f} is within {self.tolerance:.0%} of {base:.4f}, "
                     "what scoring every candidate alike costs") if at_base else ""
        self.loss_strikes = self.loss_strikes + 1 if at_base else 0
        # without a probe (sharded training) the loss is the only evidence there is
        fatal = flat or (at_base and groups is None)
        self.strikes = self.strikes + 1 if fatal else 0
        if self.strikes >= self.patience:
            signs = [x for x in (loss_sign, f"the probe's candidates score alike (within-group "
                                 f"std {spread:.1e} of the scores' magnitude)" if flat else "")
                     if x]
            self.verdict = (step, "; ".join(signs))
            return self.verdict
        if self.loss_strikes >= self.patience and self.stuck is None:
            self.stuck = (step, loss_sign + f", while the probe's scores still differ "
                          f"(spread {spread:.1e})" if spread is not None else loss_sign)
        return None

    def identical_inputs(self, step: int, evidence: str) -> tuple[int, str]:
        """A collapse known before training: the candidates cannot be told apart at all."""
        self.verdict = (step, evidence)
        return self.verdict


@dataclass
class Probe:
    """A fixed batch of training groups, scored at each check: `features` are the collated
    pairs of all groups in order, `sizes` the group sizes, `score(model, features)` the
    logits (the same forward the loss uses)."""

    features: dict[str, Any]
    sizes: list[int]
    score: Callable[[Any, dict[str, Any]], Any]

    def scores(self, model: Any) -> list[list[float]]:
        import torch

        device = next(model.parameters()).device
        feats = {k: v.to(device) for k, v in self.features.items()}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                flat = self.score(model, feats).float().view(-1).tolist()
        finally:
            model.train(was_training)
        out, start = [], 0
        for n in self.sizes:
            out.append(flat[start:start + n])
            start += n
        return out

    def identical(self) -> bool:
        """Every group's candidates tokenize to the same input (ids and mask alike)."""
        ids, mask = self.features["input_ids"], self.features["attention_mask"]
        start, any_group = 0, False
        for n in self.sizes:
            if n > 1:
                any_group = True
                g_ids, g_mask = ids[start:start + n], mask[start:start + n]
                if not ((g_ids == g_ids[0]).all() and (g_mask == g_mask[0]).all()):
                    return False
            start += n
        return any_group


def collapse_callback(detector: CollapseDetector, probe: Probe | None, *,
                      warn: Callable[[tuple[int, str]], None], stop: bool,
                      note_stuck: Callable[[tuple[int, str]], None] | None = None) -> Any:
    """The `TrainerCallback` that runs the checks: the identical-input check when training
    begins, (a) and (b) at every logged loss after the warm-up. On a collapse it warns once
    and, with `stop`, ends training (every process decides alike: the logged loss is
    already averaged over processes and the probe is the same data on the same weights)."""
    from transformers import TrainerCallback

    class CollapseCheck(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            detector.warmup_steps = args.get_warmup_steps(state.max_steps)
            if probe is not None and probe.identical():
                found = detector.identical_inputs(
                    state.global_step, "every candidate of the probe groups tokenizes to the "
                    "same input, so no model can score them apart")
                self._act(found, control)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   model: Any = None, **kw: Any) -> None:
            if not logs or "loss" not in logs or detector.verdict is not None:
                return
            step = state.global_step
            groups = probe.scores(model) if probe is not None and model is not None \
                and detector.due(step) else None
            was_stuck = detector.stuck
            found = detector.check(step, float(logs["loss"]), groups)
            if found is not None:
                self._act(found, control)
            elif detector.stuck is not None and was_stuck is None and note_stuck is not None:
                note_stuck(detector.stuck)

        def _act(self, found: tuple[int, str], control: Any) -> None:
            warn(found)
            if stop:
                control.should_training_stop = True

    return CollapseCheck()
