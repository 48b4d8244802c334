"""Model merging, LM-Cocktail style: a weighted average of the parameters of N checkpoints of
one architecture (an `hf` encoder dir such as `minilm` and its fine-tunes, or cross-encoder
rerankers), so a fine-tune keeps more of its base's general ability.

```python
from embedarena.training.merge import FromData, merge_models
merge_models(["minilm", "models/minilm-ft"], "models/mix", weights=[0.5, 0.5])
merge_models(["minilm", "models/minilm-ft"], "models/mix",
             from_data=FromData("examples.jsonl", temperature=5.0))
```

* **What is refused.** Models must agree on the architecture (config `model_type` and
  `architectures`), the vocabulary (tokenizer tokens and ids, config `vocab_size`), every other
  config key that shapes the computation (dropout, init range, label names and provenance keys
  aside), the folders that hold weights, and the name and shape of every floating-point tensor;
  the message names the first key or tensor that differs. Integer buffers (older BERT files
  store `position_ids`) are not parameters: they are copied, and must agree where present.
  Weights are non-negative and sum to 1 within 1e-6 (checked both ways).
* **Vocabulary extension.** `train --extend-vocab` adds tokens, so a fine-tune and its base
  differ in vocabulary and are refused. With `align_vocab` (`--align-vocab`) a model whose
  tokenizer is a prefix of the largest one is first extended like the fine-tune was
  (`extend_like`: the same tokens in the same order, `training.vocab.extend_vocab` with the
  fine-tune's seed), which gives back exactly the fine-tune's starting point; the merge then
  mixes each new token's learned row with its initial one.
* **Output.** `model.safetensors` per weight folder (the transformer, and sentence-
  transformers `Dense` modules), tokenizer, config and sentence-transformers files copied from
  the template (the first model; with alignment, the first with the largest vocabulary), and
  `embedarena_merge.json` saying how it was made. It loads like any `hf:` / `reranker:` dir.
* **Weights from data** (`FromData`): each model's mean contrastive loss on a few
  `{query, pos, neg}` rows, as it would be served (the `hf` embedder's vectors, InfoNCE of the
  query against its positive and `neg_number` negatives at `loss_temperature`; or the
  reranker's logits, group cross-entropy), then softmax(-loss / temperature). Negatives are
  drawn by the training data sampler with a fixed seed, so the weights are reproducible.

Averaging is done in float64 and cast back to the template's dtype, so weights 1/0 give a
parent back bit for bit and 0.5/0.5 is the correctly rounded element-wise mean.

In experiment files a `merge:` entry (`MergeSpec`) becomes the `hf` (or `reranker`) spec of the
merged model, built into `<out>/merge/<name>-<hash>/model` and reused while its parents,
weights and settings are unchanged:

```yaml
models:
  - minilm
  - {name: minilm-ft, finetune: {base: minilm, train: data/train.jsonl, extend_vocab: true}}
  - {name: mix, merge: {models: [minilm, minilm-ft], weights: [0.5, 0.5], align_vocab: true}}
  - {name: mix-data, merge: {models: [minilm, minilm-ft], from_data: data/few.jsonl,
                             temperature: 5, align_vocab: true}}
```

`models` name other entries (materialized first: a fine-tune is trained, and each parent is
a row of its own, so the table shows base, fine-tune and merge side by side) or are specs
(`hf:DIR`, a mapping; embedder specs are added as entries). Keys beside `merge:` are
settings of the merged model, as beside `finetune:`. Rerankers are merged inside a two-stage
row, from reranker specs (a reranker is no entry of its own):

```yaml
  - {name: bm25+rr-mix, retriever: bm25:jieba,
     reranker: {name: rr-mix, merge: {models: ["reranker:models/rr", "reranker:models/rr-ft"],
                                      weights: [0.5, 0.5]}}}
```
"""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationInfo,
    field_validator,
    model_validator,
)

from embedarena import progress
from embedarena.embedders.hf import (
    IGNORED_FILES,
    WEIGHT_SUFFIXES,
    HFSpec,
    resolve_model_dir,
)
from embedarena.embedders.reranker import RerankerSpec, is_cross_encoder, looks_like_cross_encoder
from embedarena.embedders.st_format import (
    ModelLayout,
    load_bin,
    load_tensors,
    read_json,
    read_layout,
    weight_files,
)
from embedarena.errors import ConfigError, EmbedderError
from embedarena.names import slug
from embedarena.specs import ModelSpec, parse_spec, register_spec
from embedarena.training.finetune import COMPLETE, FinetuneSpec
from embedarena.training.trainer import TRAINING_META

if TYPE_CHECKING:
    import torch

Kind = Literal["embedder", "reranker"]
Source = str | os.PathLike[str] | HFSpec | RerankerSpec

#: What a merged dir says about how it was made.
MERGE_META = "embedarena_merge.json"
#: How far the weights may be from summing to 1.
WEIGHT_TOLERANCE = 1e-6
#: LM-Cocktail's default temperature for softmax(-loss / T).
DEFAULT_TEMPERATURE = 5.0
#: InfoNCE temperature of the from-data loss (BGE's, `train embedder`'s default).
DEFAULT_LOSS_TEMPERATURE = 0.02
DEFAULT_NEG_NUMBER = 7
DEFAULT_SEED = 42
#: `TrainSettings.seed`'s default: what `--extend-vocab` used when the fine-tune says nothing.
TRAIN_DEFAULT_SEED = 42
#: Config keys that do not change what a trained model computes (regularisation, init,
#: label names, provenance, runtime switches); vocab_size has a check of its own.
_IGNORED_CONFIG = frozenset({
    "_name_or_path", "transformers_version", "torch_dtype", "dtype", "architectures",
    "model_type", "vocab_size", "hidden_dropout_prob", "attention_probs_dropout_prob",
    "classifier_dropout", "initializer_range", "gradient_checkpointing", "use_cache",
    "id2label", "label2id", "problem_type", "output_hidden_states", "output_attentions",
    "return_dict", "_attn_implementation_autoset", "sentence_transformers",
})
#: Files of the template that are not copied: weights (written anew), training state, cards,
#: and what a parent's own training/merge said about it.
_NOT_COPIED = frozenset({TRAINING_META, MERGE_META, "README.md", ".gitattributes",
                         "model.safetensors.index.json", "pytorch_model.bin.index.json"})
_SAFETENSORS_FLOAT = frozenset({"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"})


# -- weights ------------------------------------------------------------------------------------
def check_weights(weights: Sequence[float], n: int) -> list[float]:
    """`n` finite, non-negative weights that sum to 1 within 1e-6, above and below (a sum of
    1.3 is as wrong as 0.7: the merged weights would be scaled)."""
    w = [float(x) for x in weights]
    if len(w) != n:
        raise ConfigError(f"{len(w)} weights for {n} models; give one weight per model")
    bad = [x for x in w if not math.isfinite(x) or x < 0]
    if bad:
        raise ConfigError(f"weights must be non-negative numbers, got {bad[0]:g} in "
                          f"{_fmt(w)}")
    total = math.fsum(w)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ConfigError(f"weights must sum to 1 (within {WEIGHT_TOLERANCE:g}), but "
                          f"{_fmt(w)} sums to {total:.9g}")
    return w


def _fmt(w: Sequence[float]) -> str:
    return "[" + ", ".join(f"{x:g}" for x in w) + "]"


def softmax_weights(losses: Sequence[float], temperature: float) -> list[float]:
    """LM-Cocktail's weights: softmax(-loss / temperature), computed stably."""
    if temperature <= 0:
        raise ConfigError("temperature must be positive")
    z = [-x / temperature for x in losses]
    top = max(z)
    e = [math.exp(x - top) for x in z]
    s = math.fsum(e)
    return [x / s for x in e]


# -- reading model dirs ---------------------------------------------------------------------
def as_spec(source: Source) -> HFSpec | RerankerSpec:
    """A model to merge: an `hf`/`reranker` spec, an inline form (`minilm`, `hf:DIR`,
    `reranker:DIR`), or a bare dir (a cross-encoder config makes it a reranker)."""
    if isinstance(source, HFSpec | RerankerSpec):
        return source
    s = os.fspath(source)
    if s == "minilm" or s.startswith(("hf:", "reranker:")):
        spec = parse_spec(s, allowed=(HFSpec, RerankerSpec))
        if not isinstance(spec, HFSpec | RerankerSpec):  # for typing; parse_spec checked
            raise ConfigError(f"model '{s}' cannot be merged")
        return spec
    cls: type[HFSpec | RerankerSpec] = RerankerSpec if looks_like_cross_encoder(s) else HFSpec
    return cls.model_validate({"path": s})


@dataclass
class ModelDir:
    """One model to merge, read (configs, layout, weight files) without loading weights."""

    spec: HFSpec | RerankerSpec
    label: str
    path: Path
    layout: ModelLayout
    config: dict[str, Any]
    kind: Kind
    #: Weight files per folder holding weights, relative to `path` ("" is the root).
    groups: dict[str, list[Path]]
    #: Set when this dir is a temporary vocabulary-extended copy of `original`.
    original: Path | None = None

    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.layout.transformer_dir,
                                                 local_files_only=True)
        except (OSError, ValueError) as e:
            raise EmbedderError(f"cannot load the tokenizer of {self.label}: {e}") from None


def read_model_dir(source: Source, label: str | None = None) -> ModelDir:
    spec = as_spec(source)
    path = resolve_model_dir(spec.path)
    layout = read_layout(path)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(layout.transformer_dir, local_files_only=True,
                                            trust_remote_code=spec.trust_remote_code).to_dict()
    except (OSError, ValueError, KeyError) as e:
        raise EmbedderError(f"cannot read the config of {path}: {e}") from None
    kind: Kind = "reranker" if is_cross_encoder(config) else "embedder"
    groups: dict[str, list[Path]] = {}
    for d in dict.fromkeys([layout.transformer_dir, *(x.path for x in layout.dense)]):
        files = weight_files(d)
        if files:
            groups[d.relative_to(path).as_posix() if d != path else ""] = files
    if not groups:
        raise EmbedderError(f"{path}: no weights (model.safetensors or pytorch_model.bin)")
    return ModelDir(spec, label or spec.name, path, layout, config, kind, groups)


def _tensor_info(files: Sequence[Path]) -> dict[str, tuple[tuple[int, ...], bool]]:
    """name → (shape, is floating point), in file order, without reading tensor data where
    the format allows (safetensors)."""
    out: dict[str, tuple[tuple[int, ...], bool]] = {}
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(f), framework="pt") as st:
                for k in st.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                    sl = st.get_slice(k)
                    out[k] = (tuple(sl.get_shape()), sl.get_dtype() in _SAFETENSORS_FLOAT)
        else:
            for k, t in load_bin(f).items():
                out[k] = (tuple(t.shape), t.is_floating_point())
    return out


# -- compatibility ------------------------------------------------------------------------------
@dataclass
class Vocab:
    tokens: dict[str, int]
    size: int


def _vocab(m: ModelDir) -> Vocab:
    tok = m.tokenizer()
    return Vocab(dict(tok.get_vocab()), len(tok))


def _extends(small: Vocab, big: Vocab) -> bool:
    """`big` is `small` plus tokens appended after its last id (what extend_vocab makes)."""
    return big.size > small.size and all(big.tokens.get(t) == i for t, i in small.tokens.items())


def _check_architecture(a: ModelDir, b: ModelDir) -> None:
    if a.kind != b.kind:
        what = {"embedder": "an encoder (embedder)", "reranker": "a cross-encoder (reranker)"}
        raise ConfigError(f"cannot merge {a.label} and {b.label}: {a.label} is {what[a.kind]}, "
                          f"{b.label} is {what[b.kind]}; a merge averages checkpoints of one "
                          "architecture")
    for key in ("model_type", "architectures"):
        if a.config.get(key) != b.config.get(key):
            raise ConfigError(f"cannot merge {a.label} and {b.label}: different architectures "
                              f"(config {key}: {a.config.get(key)} vs {b.config.get(key)}); a "
                              "merge averages checkpoints of one architecture")


def _check_vocab(a: ModelDir, va: Vocab, b: ModelDir, vb: Vocab) -> None:
    if va.tokens != vb.tokens or va.size != vb.size:
        hint = ""
        for small, vs, big, vbig in ((a, va, b, vb), (b, vb, a, va)):
            if _extends(vs, vbig):
                hint = (f"; {big.label}'s vocabulary is {small.label}'s plus "
                        f"{vbig.size - vs.size} added tokens (a fine-tune with --extend-vocab): "
                        f"pass --align-vocab (align_vocab: true) to merge with {small.label} "
                        "extended the same way")
        if not hint:
            inv_a = {i: t for t, i in va.tokens.items()}
            inv_b = {i: t for t, i in vb.tokens.items()}
            first = next((i for i in sorted(set(inv_a) | set(inv_b))
                          if inv_a.get(i) != inv_b.get(i)), None)
            if first is not None:
                hint = (f"; first difference at token id {first}: {inv_a.get(first)!r} vs "
                        f"{inv_b.get(first)!r}")
        raise ConfigError(f"cannot merge {a.label} and {b.label}: different vocabularies "
                          f"(tokenizer {va.size} vs {vb.size} tokens, config vocab_size "
                          f"{a.config.get('vocab_size')} vs {b.config.get('vocab_size')})"
                          f"{hint}")
    if a.config.get("vocab_size") != b.config.get("vocab_size"):
        raise ConfigError(f"cannot merge {a.label} and {b.label}: config vocab_size "
                          f"{a.config.get('vocab_size')} vs {b.config.get('vocab_size')} (the "
                          "embedding matrices differ)")


def _check_config(a: ModelDir, b: ModelDir) -> None:
    ca, cb = a.config, b.config
    if a.kind == "reranker":
        ca = {**ca, "num_labels": len(ca.get("id2label") or {})}
        cb = {**cb, "num_labels": len(cb.get("id2label") or {})}
    for key in sorted((set(ca) | set(cb)) - _IGNORED_CONFIG):
        if ca.get(key) != cb.get(key):
            raise ConfigError(f"cannot merge {a.label} and {b.label}: config key '{key}' "
                              f"differs ({ca.get(key)!r} vs {cb.get(key)!r})")


def _check_tensors(a: ModelDir, b: ModelDir) -> None:
    if list(a.groups) != list(b.groups):
        raise ConfigError(f"cannot merge {a.label} and {b.label}: weights in different folders "
                          f"({[g or '.' for g in a.groups]} vs {[g or '.' for g in b.groups]})")
    for g in a.groups:
        ta, tb = _tensor_info(a.groups[g]), _tensor_info(b.groups[g])
        fa = [k for k, (_, is_float) in ta.items() if is_float]
        fb = [k for k, (_, is_float) in tb.items() if is_float]
        where = f" (in {g})" if g else ""
        missing = next((k for k in fa if k not in tb or not tb[k][1]), None)
        if missing is not None:
            raise ConfigError(f"cannot merge {a.label} and {b.label}: parameter '{missing}'"
                              f"{where} of {a.label} is not in {b.label}")
        extra = next((k for k in fb if k not in ta or not ta[k][1]), None)
        if extra is not None:
            raise ConfigError(f"cannot merge {a.label} and {b.label}: parameter '{extra}'"
                              f"{where} of {b.label} is not in {a.label}")
        for k in fa:
            if ta[k][0] != tb[k][0]:
                raise ConfigError(f"cannot merge {a.label} and {b.label}: parameter '{k}'"
                                  f"{where} has shape {list(ta[k][0])} in {a.label} but "
                                  f"{list(tb[k][0])} in {b.label}")


def check_compatible(models: Sequence[ModelDir], vocabs: Sequence[Vocab] | None = None) -> None:
    """Raise `ConfigError` naming the first difference (architecture, vocabulary, config key,
    weight folder, parameter name, shape) between the first model and each other one."""
    if len(models) < 2:
        raise ConfigError("a merge needs at least two models")
    vs = list(vocabs) if vocabs is not None else [_vocab(m) for m in models]
    ref = models[0]
    for m, v in zip(models[1:], vs[1:]):
        _check_architecture(ref, m)
        _check_vocab(ref, vs[0], m, v)
        _check_config(ref, m)
        _check_tensors(ref, m)


# -- vocabulary alignment -------------------------------------------------------------------
@dataclass(frozen=True)
class Extended:
    """What `extend_like` did."""

    path: Path
    added: int
    seed: int
    #: False when `like` has no embedarena_training.json: the seed is a default.
    seed_from_training: bool


def extend_like(model: Source, like: Source, out_dir: str | os.PathLike[str], *,
                seed: int | None = None) -> Extended:
    """Write `model` with the vocabulary of `like` to `out_dir`: "the base with the same
    extended vocabulary".

    `like`'s tokenizer must be `model`'s plus added tokens (a `train --extend-vocab` fine-tune
    of `model`). The added tokens are added in id order and initialised by
    `training.vocab.extend_vocab` with the seed `like`'s `embedarena_training.json` records
    (else `seed`, else the trainer's default), exactly as training did, so the result is
    `like`'s starting point before any step. Sentence-transformers files (and Dense weights)
    are copied from `model`.
    """
    m, big = read_model_dir(model), read_model_dir(like)
    _check_architecture(big, m)
    vm, vb = _vocab(m), _vocab(big)
    if not _extends(vm, vb):
        raise ConfigError(f"{big.label}'s vocabulary is not {m.label}'s plus added tokens, so "
                          f"{m.label} cannot be extended like it")
    added = [t for t, _ in sorted(vb.tokens.items(), key=lambda kv: kv[1])
             if t not in vm.tokens]
    meta = big.path / TRAINING_META
    recorded = read_json(meta).get("config", {}).get("seed") if meta.is_file() else None
    use_seed = (int(recorded) if isinstance(recorded, int)
                else seed if seed is not None else TRAIN_DEFAULT_SEED)
    import transformers

    from embedarena.training.vocab import extend_vocab

    auto = ("AutoModelForSequenceClassification" if m.kind == "reranker" else "AutoModel")
    tok = m.tokenizer()
    try:
        net = getattr(transformers, auto).from_pretrained(
            m.layout.transformer_dir, local_files_only=True,
            trust_remote_code=m.spec.trust_remote_code)
    except (OSError, ValueError) as e:
        raise EmbedderError(f"cannot load {m.label}: {e}") from None
    extend_vocab(net, tok, added, seed=use_seed)
    if dict(tok.get_vocab()) != vb.tokens:
        raise ConfigError(f"extending {m.label} by {big.label}'s {len(added)} added tokens "
                          f"does not give {big.label}'s vocabulary")
    out = Path(out_dir)
    _copy_files(m, out, dense_weights=True)
    rel = out / m.layout.transformer_dir.relative_to(m.path)
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-file "Writing model shards" bar is noise here
    try:
        net.save_pretrained(rel)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    tok.save_pretrained(rel)
    return Extended(out, len(added), use_seed, isinstance(recorded, int))


# -- the merge ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FromData:
    """LM-Cocktail's weights from examples: softmax(-mean loss / temperature)."""

    path: str | os.PathLike[str]
    temperature: float = DEFAULT_TEMPERATURE
    loss_temperature: float = DEFAULT_LOSS_TEMPERATURE
    neg_number: int = DEFAULT_NEG_NUMBER
    seed: int = DEFAULT_SEED
    device: str = "auto"

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and self.loss_temperature > 0):
            raise ConfigError("the temperatures of a merge from data must be positive")
        if self.neg_number < 1:
            raise ConfigError("neg_number is at least 1: the loss compares the positive "
                              "with negatives")

    def settings(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "loss_temperature": self.loss_temperature,
                "neg_number": self.neg_number, "seed": self.seed}


@dataclass
class MergeResult:
    """What `merge_models` wrote and why."""

    output_dir: Path
    kind: Kind
    models: list[str]
    weights: list[float]
    #: Each model's mean loss on the examples (weights from data only).
    losses: list[float] | None = None
    #: Models whose vocabulary was extended first (align_vocab), with the tokens added.
    aligned: dict[str, int] = field(default_factory=dict)
    template: str = ""
    tensors: int = 0
    parameters: int = 0
    notes: list[str] = field(default_factory=list)


def _say(log: Callable[[str], None] | None) -> Callable[[str], None]:
    return log if log is not None else (lambda msg: progress.current().note(msg))


def data_losses(models: Sequence[ModelDir], data: FromData,
                log: Callable[[str], None] | None = None) -> list[float]:
    """Each model's mean loss on the examples, computed on the vectors (or scores) the model
    gives when served: the same groups for every model, drawn with `data.seed`."""
    say = _say(log)
    from embedarena.training.data import GroupDataset, load_train_files

    examples, notes = load_train_files([str(data.path)])
    for n in notes:
        say(n)
    ds = GroupDataset(examples, data.neg_number + 1, data.seed)
    for line in ds.stats.lines()[1:]:
        say(line)
    items = [ds[i] for i in range(len(ds))]
    return [(_reranker_loss if m.kind == "reranker" else _embedder_loss)(m, items, data)
            for m in models]


def _embedder_loss(m: ModelDir, items: list[dict[str, Any]], data: FromData) -> float:
    import torch

    from embedarena.embedders.hf import HFEmbedder
    from embedarena.training.losses import InfoNCELoss

    spec = (m.spec if isinstance(m.spec, HFSpec)
            else HFSpec.model_validate({"path": str(m.path)}))
    emb = HFEmbedder.from_spec(spec.model_copy(update={
        "path": str(m.path), "device": data.device, "fp16": False}))
    group = data.neg_number + 1
    q = torch.empty((len(items), emb.dim), dtype=torch.float32)
    plain = [i for i, it in enumerate(items) if it.get("prompt") is None]
    prompted = [i for i, it in enumerate(items) if it.get("prompt") is not None]
    if plain:  # the embedder's own query instruction, as when it serves queries
        q[plain] = torch.from_numpy(emb.embed_queries([items[i]["query"] for i in plain]))
    if prompted:  # a row's own prompt wins, as in training
        q[prompted] = torch.from_numpy(emb.embed_documents(
            [items[i]["prompt"] + items[i]["query"] for i in prompted]))
    texts = list(dict.fromkeys(p for it in items for p in it["passages"]))
    vecs = emb.embed_documents(texts)
    row = {t: i for i, t in enumerate(texts)}
    p = torch.from_numpy(vecs[[row[t] for it in items for t in it["passages"]]])
    loss = InfoNCELoss(data.loss_temperature, in_batch_negatives=False, cross_device=False)
    return float(loss(q, p, group))


def _reranker_loss(m: ModelDir, items: list[dict[str, Any]], data: FromData) -> float:
    import torch

    from embedarena.embedders.reranker import HFReranker
    from embedarena.training.losses import GroupCELoss

    spec = (m.spec if isinstance(m.spec, RerankerSpec)
            else RerankerSpec.model_validate({"path": str(m.path)}))
    rr = HFReranker.from_spec(spec.model_copy(update={
        "path": str(m.path), "device": data.device, "fp16": False}))
    logits = rr.score_pairs([(it["query"], p) for it in items for p in it["passages"]])
    return float(GroupCELoss(data.neg_number + 1)(torch.from_numpy(logits)))


def merge_models(models: Sequence[Source], out_dir: str | os.PathLike[str], *,
                 weights: Sequence[float] | None = None, from_data: FromData | None = None,
                 align_vocab: bool = False, overwrite: bool = False,
                 log: Callable[[str], None] | None = None) -> MergeResult:
    """Average the parameters of `models` (see the module docstring) into `out_dir`.

    Give `weights` (one per model) or `from_data`. Nothing is written before every check has
    passed; the output is assembled beside `out_dir` and moved there at the end, so a failed
    merge leaves no half-written model. An existing non-empty `out_dir` is refused unless
    `overwrite`.
    """
    if (weights is None) == (from_data is None):
        raise ConfigError("give either weights (one per model) or from_data (examples to "
                          "compute them from)")
    if len(models) < 2:
        raise ConfigError("a merge needs at least two models")
    if weights is not None:
        weights = check_weights(weights, len(models))
    say = _say(log)
    specs = [as_spec(s) for s in models]
    dirs = [read_model_dir(s) for s in specs]
    if len({d.label for d in dirs}) < len(dirs):  # the same model twice, or two "model" dirs
        for i, d in enumerate(dirs):
            d.label = f"{d.label} (#{i + 1})"
    out = Path(out_dir).expanduser().resolve()
    for d in dirs:
        if out == d.path or d.path.is_relative_to(out):
            raise ConfigError(f"the output {out} would overwrite the model {d.label}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; pass --overwrite to replace it")
    for d in dirs[1:]:
        _check_architecture(dirs[0], d)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.merge-") as tmp:
        vocabs = [_vocab(d) for d in dirs]
        template = 0
        aligned: dict[str, int] = {}
        if align_vocab:
            template = max(range(len(dirs)), key=lambda i: (vocabs[i].size, -i))
            big = dirs[template]
            for i, d in enumerate(dirs):
                if vocabs[i].tokens == vocabs[template].tokens:
                    continue
                if not _extends(vocabs[i], vocabs[template]):
                    _check_vocab(d, vocabs[i], big, vocabs[template])  # names the difference
                ext = extend_like(d.spec.model_copy(update={"path": str(d.path)}),
                                  big.spec.model_copy(update={"path": str(big.path)}),
                                  Path(tmp) / f"aligned-{i}")
                why = ("its training seed" if ext.seed_from_training
                       else f"a default: {big.label} records no training seed")
                say(f"{d.label}: vocabulary extended by {ext.added} tokens like {big.label} "
                    f"(seed {ext.seed}, {why})")
                aligned[d.label] = ext.added
                new = read_model_dir(d.spec.model_copy(update={"path": str(ext.path)}),
                                     label=d.label)
                new.original = d.path
                dirs[i], vocabs[i] = new, _vocab(new)
        order = [template, *(i for i in range(len(dirs)) if i != template)]
        check_compatible([dirs[i] for i in order], [vocabs[i] for i in order])
        losses: list[float] | None = None
        if from_data is not None:
            say(f"computing merge weights from {from_data.path} …")
            losses = data_losses(dirs, from_data, log=say)
            weights = softmax_weights(losses, from_data.temperature)
            say("losses " + ", ".join(f"{d.label} {x:.4f}" for d, x in zip(dirs, losses))
                + " → weights " + ", ".join(f"{w:.4f}" for w in weights))
        assert weights is not None  # one of the two was given (checked above)
        staging = Path(tmp) / "out"
        counts = _write_merged(dirs, weights, dirs[template], staging)
        result = MergeResult(out, dirs[0].kind, [d.label for d in dirs], list(weights),
                             losses, aligned, dirs[template].label, *counts)
        _write_meta(staging, result, dirs, from_data)
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        staging.rename(out)
    say(f"merged {len(dirs)} models into {out}")
    return result


def _write_merged(dirs: Sequence[ModelDir], weights: Sequence[float], template: ModelDir,
                  out: Path) -> tuple[int, int]:
    """Weighted float64 sums of every floating-point tensor, one model in memory at a time,
    cast to the template's dtypes; integer buffers copied. Returns (tensors, parameters)."""
    import torch
    from safetensors.torch import save_file

    _copy_files(template, out, dense_weights=False)
    n_tensors = n_params = 0
    task = progress.current().task(f"merge {len(dirs)} models", total=len(dirs) * len(
        template.groups))
    with task:
        for g in template.groups:
            acc: dict[str, torch.Tensor] = {}
            dtypes: dict[str, torch.dtype] = {}
            buffers: dict[str, tuple[str, torch.Tensor]] = {}
            for d, w in zip(dirs, weights):
                tensors = load_tensors(d.groups[g])
                for k, t in tensors.items():
                    if not t.is_floating_point():
                        seen = buffers.get(k)
                        if seen is not None and not torch.equal(seen[1], t):
                            raise ConfigError(f"cannot merge {seen[0]} and {d.label}: buffer "
                                              f"'{k}' differs")
                        buffers.setdefault(k, (d.label, t.clone()))
                        continue
                    if d is template:
                        dtypes[k] = t.dtype
                    if w > 0:  # weights sum to 1, so some model adds every tensor
                        part = t.to(torch.float64) * w
                        acc[k] = acc[k] + part if k in acc else part
                del tensors
                task.advance()
            merged = {k: v.to(dtypes[k]).contiguous() for k, v in acc.items()}
            merged.update({k: t.contiguous() for k, (_, t) in buffers.items()})
            folder = out / g if g else out
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / "model.safetensors"
            save_file(merged, str(target), metadata={"format": "pt"})
            _readable(target)
            n_tensors += len(merged)
            n_params += sum(v.numel() for k, v in merged.items() if k in acc)
    return n_tensors, n_params


def _readable(f: Path) -> None:
    """safetensors writes 0600; a model file is read by whoever reads the copied configs."""
    f.chmod(0o644)


def _copyable(f: Path) -> bool:
    return (f.is_file() and f.name not in IGNORED_FILES and f.name not in _NOT_COPIED
            and not f.name.startswith("rng_state") and f.suffix not in WEIGHT_SUFFIXES
            and f.suffix != ".onnx")


def _copy_files(m: ModelDir, out: Path, *, dense_weights: bool) -> None:
    """The template's tokenizer, config and sentence-transformers files (and, for an aligned
    copy, its Dense weights); other folders (checkpoints, runs, onnx) are left out."""
    out.mkdir(parents=True, exist_ok=True)
    folders = [m.path, m.layout.transformer_dir, *m.layout.module_dirs]
    dense = {x.path.resolve() for x in m.layout.dense}
    for d in dict.fromkeys(f.resolve() for f in folders):
        if not d.is_dir():
            continue
        target = out / d.relative_to(m.path.resolve())
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(d.iterdir()):
            if _copyable(f) or (dense_weights and d in dense and f.is_file()):
                shutil.copy2(f, target / f.name)


def _write_meta(out: Path, r: MergeResult, dirs: Sequence[ModelDir],
                data: FromData | None) -> None:
    import torch
    import transformers

    from embedarena import __version__

    models = []
    for i, d in enumerate(dirs):
        entry: dict[str, Any] = {"model": d.label, "path": str(d.original or d.path),
                                 "weight": r.weights[i]}
        if r.losses is not None:
            entry["loss"] = r.losses[i]
        if d.label in r.aligned:
            entry["vocab_extended_by"] = r.aligned[d.label]
        models.append(entry)
    meta = {
        "method": "weighted parameter average (LM-Cocktail)", "kind": r.kind, "models": models,
        "from_data": None if data is None else {
            "path": str(Path(data.path).resolve()), "sha256": _file_sha256(Path(data.path)),
            **data.settings()},
        "template": r.template, "tensors": r.tensors, "parameters": r.parameters,
        "embedarena": __version__, "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    (out / MERGE_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False),
                                  encoding="utf-8")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    return h.hexdigest()


# -- experiment entries ---------------------------------------------------------------------
def _entry_path(spec: ModelSpec, base: Path | None) -> ModelSpec:
    """A parent spec's relative `path`, made relative to the experiment file (as top-level
    entries are)."""
    path = getattr(spec, "path", None)
    if base is None or not isinstance(path, str) or path == "minilm":
        return spec
    p = Path(path).expanduser()
    if not p.is_absolute() and (path.startswith(".") or (base / p).exists()):
        return spec.model_copy(update={"path": str((base / p).resolve())})
    return spec


def _inline_parent(s: str, context: dict[str, Any] | None, base: Any) -> str | ModelSpec:
    """A `prefix:rest` string (`hf:DIR`, `reranker:DIR`) is a spec, read here so that it
    works where no experiment resolves names (a reranker merge inside a two-stage row, the
    Python API); a bare word (`minilm-ft`) names another entry and stays a name, as does a
    string that reads as no spec (an entry may have a colon in its name)."""
    if ":" not in s:
        return s
    try:
        spec = parse_spec(s, context=context)
    except ConfigError:
        return s
    return _entry_path(spec, Path(base) if base else None)


class MergeSettings(BaseModel):
    """The `merge:` mapping: parents and how to weigh them (`weights`, or `from_data`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str | SerializeAsAny[ModelSpec]] = Field(min_length=2)
    weights: list[float] | None = None
    from_data: Path | None = None
    temperature: float = Field(default=DEFAULT_TEMPERATURE, gt=0)
    loss_temperature: float = Field(default=DEFAULT_LOSS_TEMPERATURE, gt=0)
    neg_number: int = Field(default=DEFAULT_NEG_NUMBER, ge=1)
    seed: int = DEFAULT_SEED
    align_vocab: bool = False

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, v: Any, info: ValidationInfo) -> Any:
        if not isinstance(v, list):
            raise ValueError("merge.models is a list of model entries' names or model specs")
        base = (info.context or {}).get("base_dir")
        out: list[Any] = []
        for m in v:
            if isinstance(m, str) and m.strip():
                out.append(_inline_parent(m.strip(), info.context, base))
            elif isinstance(m, dict | ModelSpec):
                spec = m if isinstance(m, ModelSpec) else parse_spec(m, context=info.context)
                out.append(_entry_path(spec, Path(base) if base else None))
            else:
                raise ValueError(f"merge.models: {m!r} is neither a model name nor a spec")
        return out

    @field_validator("from_data", mode="before")
    @classmethod
    def _from_data(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None:
            return None
        p = Path(v).expanduser()
        base = (info.context or {}).get("base_dir")
        if not p.is_absolute():
            p = ((Path(base) if base else Path.cwd()) / p).resolve()
        if not p.is_file():
            raise ValueError(f"from_data file {p} does not exist")
        return p

    @model_validator(mode="after")
    def _one_way(self) -> MergeSettings:
        if (self.weights is None) == (self.from_data is None):
            raise ValueError("give merge.weights (one per model) or merge.from_data (a JSONL "
                             "of {query, pos, neg} examples to compute them from)")
        if self.weights is not None:
            try:
                check_weights(self.weights, len(self.models))
            except ConfigError as e:
                raise ValueError(str(e)) from None
            data_only = sorted(self.model_fields_set & {
                "temperature", "loss_temperature", "neg_number", "seed"})
            if data_only:
                raise ValueError(f"{', '.join(data_only)} only apply with from_data")
        return self


_TARGET_KEYS = (set(HFSpec.allowed_keys()) | set(RerankerSpec.allowed_keys())) - {
    "name", "type", "path"}


@register_spec(key="merge")
class MergeSpec(ModelSpec):
    """A model that is the weighted average of `merge.models` (other entries by name, or model
    specs). Other keys of the entry (`batch_size`, `device`, ...) go to the merged model."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    type: Literal["merge"] = "merge"
    merge: MergeSettings

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        m = data.get("merge")
        parents = m.get("models") if isinstance(m, dict) else None
        if not isinstance(parents, list) or not parents:
            return None
        names = [p if isinstance(p, str) else getattr(p, "name", None) or (
            p.get("name") or p.get("path") if isinstance(p, dict) else None) for p in parents]
        if not all(isinstance(n, str) for n in names):
            return None
        return "+".join(str(n).rstrip("/").rsplit("/", 1)[-1] for n in names) + "-merged"

    @model_validator(mode="after")
    def _extras(self) -> MergeSpec:
        bad = set(self.model_settings) - _TARGET_KEYS
        if bad:
            raise ValueError(f"unknown settings {sorted(bad)} beside merge (they go to the "
                             f"merged model); allowed: {', '.join(sorted(_TARGET_KEYS))}")
        return self

    @property
    def model_settings(self) -> dict[str, Any]:
        """The entry's other keys: settings of the merged model."""
        return dict(self.__pydantic_extra__ or {})

    def depends_on(self) -> list[str]:
        """Parents named by entry: materialized (trained, merged) first, and rows of their
        own, so the table shows them beside the merge."""
        return [m for m in self.merge.models if isinstance(m, str)]

    def check_dependency(self, dep: ModelSpec) -> None:
        if not isinstance(dep, HFSpec | RerankerSpec | FinetuneSpec | MergeSpec):
            raise ValueError(f"model '{self.name}' merges '{dep.name}', a {dep.type} entry; "
                             "only hf models, rerankers, finetune and merge entries can be "
                             "merged")

    def implied(self, names: set[str]) -> tuple[list[tuple[ModelSpec, str]], ModelSpec]:
        """A name that is no entry is read as an inline spec (`minilm`, `hf:DIR`); an
        embedder parent given as a spec becomes an entry of its own (with what it brings,
        e.g. a fine-tune's base), so the table compares the merge with its parents. Reranker
        parents stay inline: a cross-encoder is not a row."""
        known = set(names)
        brought: list[tuple[ModelSpec, str]] = []
        parents: list[str | ModelSpec] = []
        for m in self.merge.models:
            if isinstance(m, str) and m in known:
                parents.append(m)
                continue
            try:
                spec = parse_spec(m) if isinstance(m, str) else m
            except ConfigError as e:
                raise ConfigError(f"model '{self.name}': merge.models: '{m}' is no model of "
                                  f"this experiment and no model spec ({e})") from None
            if isinstance(spec, RerankerSpec) or getattr(
                    getattr(spec, "finetune", None), "kind", None) == "reranker":
                parents.append(spec)
                continue
            if spec.name not in known:
                more, spec = spec.implied(known)
                for s, role in more:
                    if s.name not in known:
                        brought.append((s, role))
                        known.add(s.name)
                brought.append((spec, "merge parent"))
                known.add(spec.name)
            parents.append(spec.name)
        if not brought and parents == list(self.merge.models):
            return [], self
        settings = self.merge.model_copy(update={"models": parents})
        return brought, self.model_copy(update={"merge": settings})

    def materialize(self, out_root: Path | None, *, train: bool = True,
                    log: Callable[[str], None] = lambda _: None,
                    resolve: Callable[[str], ModelSpec] | None = None,
                    **_: Any) -> HFSpec | RerankerSpec:
        """The spec of the merged model (`hf`, or `reranker` when the parents are
        rerankers), merging first when `train` and this exact merge is not there yet (with
        `train=False` the path may not exist). `resolve(name)` gives another entry's
        materialized spec (the arena passes its own)."""
        if out_root is None:
            raise ConfigError(f"model '{self.name}' is merged into a folder: give the "
                              "experiment an output folder (out)")
        parents = [self._parent(m, out_root, train, log, resolve) for m in self.merge.models]
        target: builtins.type[HFSpec] | builtins.type[RerankerSpec]
        if all(isinstance(p, RerankerSpec) for p in parents):
            target = RerankerSpec
        elif all(isinstance(p, HFSpec) for p in parents):
            target = HFSpec
        else:
            raise ConfigError(f"model '{self.name}' merges embedders with rerankers: "
                              f"{', '.join(f'{p.name} ({p.type})' for p in parents)}")
        plan = self._plan_dir(out_root, parents, train)
        model_dir = plan / "model"
        if train:
            if (plan / COMPLETE).is_file():
                log(f"{self.name}: reusing the merged model in {model_dir}")
            else:
                self._run(plan, parents, log)
        return target.model_validate({**self.model_settings, "name": self.name,
                                      "path": str(model_dir)})

    def _parent(self, m: str | ModelSpec, out_root: Path, train: bool,
                log: Callable[[str], None],
                resolve: Callable[[str], ModelSpec] | None) -> HFSpec | RerankerSpec:
        if isinstance(m, str):
            if resolve is None:
                try:  # outside an experiment a bare word can only be an inline name (minilm)
                    spec = parse_spec(m)
                except ConfigError:
                    raise ConfigError(f"model '{self.name}' merges the entry '{m}', which "
                                      "only an experiment run can resolve; give the parent "
                                      "as a spec (hf:DIR, reranker:DIR)") from None
            else:
                spec = resolve(m)
        else:
            make = getattr(m, "materialize", None)
            spec = (make(out_root, train=train, log=log, resolve=resolve) if make is not None
                    else m)
        if not isinstance(spec, HFSpec | RerankerSpec):
            raise ConfigError(f"model '{self.name}' merges '{spec.name}', a {spec.type} "
                              "model; only hf models and rerankers can be merged")
        return spec

    def _plan_dir(self, out_root: Path, parents: Sequence[HFSpec | RerankerSpec],
                  train: bool) -> Path:
        """`<out>/merge/<name>-<hash of the parents' fingerprints, weights, data, settings>`."""
        try:
            prints: list[Any] = [_fingerprint(p) for p in parents]
        except EmbedderError:
            if train:
                raise
            prints = [p.public_dict() for p in parents]  # not run: the path may not exist
        m = self.merge
        payload = {"parents": prints, "weights": m.weights, "align_vocab": m.align_vocab,
                   "from_data": None if m.from_data is None else {
                       "sha256": _file_sha256(m.from_data), "temperature": m.temperature,
                       "loss_temperature": m.loss_temperature, "neg_number": m.neg_number,
                       "seed": m.seed}}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()
                             ).hexdigest()[:12]
        return out_root / "merge" / f"{slug(self.name, 'model')}-{key}"

    def _run(self, plan: Path, parents: Sequence[HFSpec | RerankerSpec],
             log: Callable[[str], None]) -> None:
        m = self.merge
        data = None if m.from_data is None else FromData(
            m.from_data, m.temperature, m.loss_temperature, m.neg_number, m.seed,
            device=str(self.model_settings.get("device", "auto")))
        log(f"{self.name}: merging {', '.join(p.name for p in parents)} …")
        plan.mkdir(parents=True, exist_ok=True)
        res = merge_models(parents, plan / "model", weights=m.weights, from_data=data,
                           align_vocab=m.align_vocab, overwrite=True, log=log)
        (plan / "plan.json").write_text(json.dumps({
            "name": self.name, "parents": [p.public_dict() for p in parents],
            "weights": res.weights, "losses": res.losses, "merge": m.model_dump(mode="json"),
        }, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        (plan / COMPLETE).write_text("")


def _fingerprint(spec: HFSpec | RerankerSpec) -> str:
    if isinstance(spec, RerankerSpec):
        from embedarena.embedders.reranker import create_reranker

        return create_reranker(spec).fingerprint
    from embedarena.embedders.hf import HFEmbedder

    return HFEmbedder.from_spec(spec).fingerprint
