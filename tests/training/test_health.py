"""The training-health check: it fires on collapsed runs (identical inputs, a zeroed head that
cannot move) with the likely causes, stops them, and stays silent on a healthy run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from embedarena.training.health import (  # noqa: E402
    CollapseDetector,
    CollapsedTrainingError,
    Probe,
)
from embedarena.training.reranker import RerankerConfig, pair_logits, train_reranker  # noqa: E402
from tests.training.conftest import toy_rows, write_jsonl  # noqa: E402

LN4 = math.log(4)


def _cfg(model: Path, train: Path, out: Path, **kw: object) -> RerankerConfig:
    base: dict[str, object] = dict(model=str(model), train=[str(train)], output_dir=str(out),
                                   batch_size=8, train_group_size=4, learning_rate=1e-3,
                                   logging_steps=2, max_steps=20, report_to=["none"],
                                   progress=False, device="cpu", max_len=64)
    base.update(kw)
    return RerankerConfig(**base)  # type: ignore[arg-type]


def test_loss_rule_fires_after_the_warmup_on_consecutive_checks_only() -> None:
    d = CollapseDetector(constant_loss=LN4, warmup_steps=4)
    assert d.check(2, LN4) is None and not d.history  # in the warm-up: not checked
    assert d.check(4, LN4 * 1.005) is None  # first strike
    assert d.check(6, LN4 * 0.95) is None  # moved away: strikes reset
    assert d.check(8, LN4 * 0.995) is None
    step, evidence = d.check(10, LN4) or (0, "")
    assert step == 10 and "within 1% of 1.3863" in evidence
    assert d.check(12, LN4) is None  # says it once

    healthy = CollapseDetector(constant_loss=LN4)
    assert all(healthy.check(s, LN4 * (1 - 0.02 * s)) is None for s in range(1, 30))


def test_loss_at_ln_g_with_differing_scores_is_a_slow_start_not_a_collapse() -> None:
    """A fresh head starts at exactly ln(G); while the probe's scores differ the run goes on
    (one warning), and only flat scores make it a collapse."""
    d = CollapseDetector(constant_loss=LN4, warmup_steps=2)
    apart = [[0.1, -0.2, 0.3, 0.05]]
    assert d.check(2, LN4, apart) is None and d.stuck is None
    assert d.check(4, LN4 * 1.002, apart) is None  # second strike: a warning, not a verdict
    assert d.stuck is not None and d.stuck[0] == 4 and "still differ" in d.stuck[1]
    assert d.verdict is None
    assert d.check(6, LN4, [[0.2, 0.2, 0.2, 0.2]]) is None  # flat once: one strike
    found = d.check(8, LN4, [[0.2, 0.2, 0.2, 0.2]])
    assert found is not None and "score alike" in found[1] and "within 1%" in found[1]


def test_score_rule_is_relative_to_the_scores_size() -> None:
    d = CollapseDetector(constant_loss=None)
    assert d.spread([[7.31, 7.31, 7.31], [7.3, 7.3]]) == 0.0  # saturated: flat
    assert d.spread([[0.0, 0.0, 0.0]]) == 0.0  # zeroed head: flat
    small = d.spread([[1e-4, 3e-4, -2e-4]])  # a fresh head on a small encoder: not flat
    assert small is not None and small > 0.1
    assert d.spread([[1.0]]) is None  # no group of 2+
    assert d.check(1, None, [[0.5, 0.5]]) is None
    found = d.check(2, None, [[0.5, 0.5 + 1e-7]])
    assert found is not None and "score alike" in found[1]


def test_probe_on_a_zeroed_head_is_flat_and_on_a_fresh_head_is_not(
        cross_encoder_base: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from embedarena.training.data import PairCollator

    tok = AutoTokenizer.from_pretrained(cross_encoder_base)
    model = AutoModelForSequenceClassification.from_pretrained(cross_encoder_base, num_labels=1)
    items = [{"query": r["query"], "passages": [r["pos"][0], *r["neg"][:3]]}  # type: ignore[index]
             for r in toy_rows(4)]
    probe = Probe(PairCollator(tok, 64)(items)["pairs"], [4] * 4, pair_logits)
    assert not probe.identical()
    model.train()
    fresh = CollapseDetector.spread(probe.scores(model))
    assert model.training  # the probe puts the mode back
    with torch.no_grad():
        model.classifier.weight.zero_()
    flat = CollapseDetector.spread(probe.scores(model))
    assert fresh is not None and fresh > 0.05 and flat == 0.0
    short = Probe(PairCollator(tok, 3)(items)["pairs"], [4] * 4, pair_logits)
    assert short.identical()  # [CLS] [SEP] [SEP]: every text truncated away


def test_identical_inputs_stop_training_before_it_starts(cross_encoder_base: Path,
                                                         tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    out = tmp_path / "out"
    notes: list[str] = []
    with pytest.raises(CollapsedTrainingError) as e:
        train_reranker(_cfg(cross_encoder_base, train, out, max_len=3), log=notes.append)
    msg = str(e.value)
    assert "collapsed at step 0: every candidate of the probe groups tokenizes to the same " \
           "input" in msg
    assert "max_len 3 leaves 0.0 text tokens per (query, passage) pair" in msg
    assert "--extend-vocab" in msg and "learning rate 0.001" in msg
    assert f"warning: {msg}" in notes  # said through the notes, then raised
    assert not (out / "model.safetensors").exists()  # no final model from a collapsed run


def test_a_head_that_cannot_move_is_caught_after_the_warmup(cross_encoder_base: Path,
                                                            tmp_path: Path) -> None:
    """A reranker dir whose head is zeroed, trained at a learning rate too low to move it:
    the loss sits at ln(4), the probe is flat. Warned (and trained on) without stopping;
    stopped with it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    dead = tmp_path / "dead"
    model = AutoModelForSequenceClassification.from_pretrained(cross_encoder_base, num_labels=1)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
    model.save_pretrained(dead)
    AutoTokenizer.from_pretrained(cross_encoder_base).save_pretrained(dead)
    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    res = train_reranker(_cfg(dead, train, tmp_path / "warned", learning_rate=1e-9,
                              warmup_ratio=0.2, stop_on_collapse=False))
    assert res.global_step == 20  # trained on
    [warning] = res.health
    assert warning.startswith("training collapsed at step 6: the loss 1.3863 is within 1% "
                              "of 1.3863") and "score alike" in warning
    assert "training goes on (--stop-on-collapse to stop)" in warning
    with pytest.raises(CollapsedTrainingError, match="collapsed at step 6"):
        train_reranker(_cfg(dead, train, tmp_path / "stopped", learning_rate=1e-9,
                            warmup_ratio=0.2))
    state = (tmp_path / "stopped" / "trainer_state.json")
    assert not state.exists() and not (tmp_path / "stopped" / "model.safetensors").exists()


@pytest.mark.parametrize("loss", ["group", "bce"])
def test_a_healthy_run_stays_silent(cross_encoder_base: Path, tmp_path: Path,
                                    loss: str) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    notes: list[str] = []
    res = train_reranker(_cfg(cross_encoder_base, train, tmp_path / "out", loss=loss),
                         log=notes.append)
    assert res.global_step == 20 and res.health == []
    assert not [n for n in notes if "collapsed" in n]
    assert res.losses[-1][1] < 0.8 * res.losses[0][1]
