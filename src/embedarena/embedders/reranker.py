"""`type: reranker`: a cross-encoder that scores (query, document) pairs, FlagReranker-style.

Any local `AutoModelForSequenceClassification` dir with one logit: bge-reranker-base/v2-m3,
bce-reranker-base_v1, or a model `embedarena train reranker` wrote. Pairs are tokenized once,
batched by length (less padding), scored under `torch.inference_mode`, fp16 on CUDA. The
fingerprint covers the weights and every setting that changes a score (max_length,
normalisation), so cached scores (`embedarena.embedders.cache.CachedReranker`, keyed by the pair)
and two-stage runs are never mixed across models.

    from embedarena.embedders.reranker import create_reranker
    rr = create_reranker("reranker:/models/bge-reranker-base")
    rr.compute_score(["什么是熊猫？", "大熊猫是一种熊科动物"])            # a float (a logit)
    rr.compute_score([["q", "a"], ["q", "b"]], normalize=True)          # sigmoid scores, 0..1
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import AliasChoices, Field, field_validator

from embedarena.embedders.base import settings_fingerprint
from embedarena.embedders.hf import (
    DEFAULT_MAX_LENGTH_CAP,
    PROGRESS_MIN_TEXTS,
    length_sorted_batches,
    load_pretrained,
    need,
    position_limit,
    resolve_model_dir,
    weights_digest,
)
from embedarena.embedders.st_format import read_json
from embedarena.errors import ConfigError, EmbedderError
from embedarena.progress import TaskBase, current
from embedarena.specs import ModelSpec, parse_spec, register_spec

if TYPE_CHECKING:
    import numpy as np

Normalize = Literal["sigmoid"]
#: Small files that change what a cross-encoder computes (hashed with the weights).
_CONFIG_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json",
                 "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
_WEIGHTS = (".safetensors", ".bin")


@register_spec(prefixes=("reranker",), forms=("reranker:<dir>",))
class RerankerSpec(ModelSpec):
    """`type: reranker`: settings of a cross-encoder (FlagReranker's names are accepted:
    `use_fp16`, `max_len`)."""

    type: Literal["reranker"] = "reranker"
    path: str
    max_length: int | None = Field(default=None, ge=1, le=32768,
                                   validation_alias=AliasChoices("max_length", "max_len"))
    batch_size: int = Field(default=32, ge=1, le=65536)
    device: str = "auto"
    fp16: bool | None = Field(default=None, validation_alias=AliasChoices("fp16", "use_fp16"))
    normalize: Normalize | None = Field(
        default=None, description="sigmoid: report scores as probabilities (0..1), as for "
        "bce/mse-trained rerankers and for calibrate thresholds")
    progress: bool = True
    trust_remote_code: bool = False

    @field_validator("device")
    @classmethod
    def _device_ok(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            raise ValueError("device is one of auto, cpu, cuda, cuda:N, mps")
        return v

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        path = data.get("path")
        if not isinstance(path, str) or not path.strip():
            return None
        return Path(path.strip().rstrip("/\\")).name or None

    @classmethod
    def from_inline(cls, rest: str) -> dict[str, Any]:
        return {"path": rest}


@runtime_checkable
class Reranker(Protocol):
    """What two-stage rows and `eval-rerank` need: raw scores for (query, document) pairs."""

    name: str

    @property
    def fingerprint(self) -> str: ...

    @property
    def normalize(self) -> Normalize | None:
        """How scores are reported (`sigmoid`), applied by `normalized_scores`."""

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One raw score (the logit) per pair, float32, in input order."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    import numpy as np

    return (1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))).astype(np.float32)


def normalized_scores(reranker: Reranker, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """The reranker's scores as its spec asks to report them (raw logits or sigmoid)."""
    raw = reranker.score_pairs(pairs)
    return sigmoid(raw) if reranker.normalize == "sigmoid" else raw


class ComputeScore:
    """FlagReranker's call: one pair → a float, a list of pairs → a list."""

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        raise NotImplementedError

    def compute_score(self, sentence_pairs: Sequence[str] | Sequence[Sequence[str]],
                      normalize: bool = False) -> float | list[float]:
        single = (len(sentence_pairs) == 2 and all(isinstance(x, str) for x in sentence_pairs))
        pairs = ([(str(sentence_pairs[0]), str(sentence_pairs[1]))] if single
                 else [_pair(p) for p in sentence_pairs])
        scores = self.score_pairs(pairs)
        if normalize:
            scores = sigmoid(scores)
        out = [float(s) for s in scores]
        return out[0] if single else out


def _pair(p: Any) -> tuple[str, str]:
    if isinstance(p, str) or len(p) != 2:
        raise ConfigError(f"a pair is [query, passage], not {p!r:.60}")
    return str(p[0]), str(p[1])


def is_cross_encoder(config: dict[str, Any]) -> bool:
    """A model config with one logit over a sequence-classification head."""
    labels = config.get("num_labels") or len(config.get("id2label") or {}) or 2
    archs = [str(a) for a in config.get("architectures") or []]
    return labels == 1 and any(a.endswith("ForSequenceClassification") for a in archs)


def looks_like_cross_encoder(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a model dir whose config says cross-encoder (no error otherwise)."""
    cfg = Path(path).expanduser() / "config.json"
    try:
        return cfg.is_file() and is_cross_encoder(read_json(cfg))
    except EmbedderError:
        return False


class HFReranker(ComputeScore):
    """A local cross-encoder dir; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None,
                 max_length: int | None = None, batch_size: int = 32, device: str = "auto",
                 fp16: bool | None = None, normalize: Normalize | None = None,
                 progress: bool = True, trust_remote_code: bool = False) -> None:
        need("torch", "hf")
        need("transformers", "hf")
        self.model_dir = resolve_model_dir(path)
        self.name = name or self.model_dir.name
        self._config = read_json(self.model_dir / "config.json")
        if not is_cross_encoder(self._config):
            labels = (self._config.get("num_labels")
                      or len(self._config.get("id2label") or {}) or 2)
            archs = [str(a) for a in self._config.get("architectures") or []]
            raise EmbedderError(
                f"{self.model_dir} is not a cross-encoder with one logit (architectures "
                f"{archs or 'none'}, {labels} labels); train one from it with `embedarena "
                "train reranker`, or use it as an `hf` embedder")
        limit = position_limit(self._config)
        wanted = max_length or DEFAULT_MAX_LENGTH_CAP
        self.max_length = min(wanted, limit) if limit else wanted
        self.batch_size = batch_size
        self.device_setting = device
        self.fp16 = fp16
        self._normalize: Normalize | None = normalize
        self.progress = progress
        self.trust_remote_code = trust_remote_code
        self._fingerprint: str | None = None
        self._loaded: tuple[Any, Any, str] | None = None
        #: Model forward passes so far (tests and stats read it).
        self.batches_run = 0

    @classmethod
    def from_spec(cls, spec: RerankerSpec) -> HFReranker:
        return cls(spec.path, name=spec.name, max_length=spec.max_length,
                   batch_size=spec.batch_size, device=spec.device, fp16=spec.fp16,
                   normalize=spec.normalize, progress=spec.progress,
                   trust_remote_code=spec.trust_remote_code)

    @property
    def normalize(self) -> Normalize | None:
        return self._normalize

    @property
    def fingerprint(self) -> str:
        """`reranker:<sha256>` over the weights, tokenizer/config files, max_length and the
        normalisation; not batch size, device or fp16 (float noise only)."""
        if self._fingerprint is None:
            files: dict[str, str] = {}
            for p in sorted(self.model_dir.iterdir()):
                if p.is_file() and (p.name in _CONFIG_FILES or p.suffix in _WEIGHTS):
                    files[p.name] = weights_digest(p)
            self._fingerprint = settings_fingerprint("reranker", {
                "files": files, "max_length": self.max_length, "normalize": self._normalize})
        return self._fingerprint

    def _load(self) -> tuple[Any, Any, str]:
        if self._loaded is None:
            self._loaded = load_pretrained("AutoModelForSequenceClassification",
                                           self.model_dir, self.name, self.device_setting,
                                           self.fp16, self.trust_remote_code)
        return self._loaded

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        import numpy as np

        if not pairs:
            return np.zeros(0, dtype=np.float32)
        tok, model, device = self._load()
        import torch

        enc = tok([q for q, _ in pairs], [d for _, d in pairs], truncation=True,
                  max_length=self.max_length, padding=False)
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
        out = np.empty(len(pairs), dtype=np.float32)
        batches = length_sorted_batches([len(x) for x in enc["input_ids"]], self.batch_size)
        task = (current().task(f"rerank {len(pairs)} pairs ({self.name})", total=len(pairs))
                if self.progress and len(pairs) >= PROGRESS_MIN_TEXTS else TaskBase())
        with task, torch.inference_mode():
            for batch in batches:
                feats = tok.pad([{k: enc[k][i] for k in keys} for i in batch],
                                return_tensors="pt")
                logits = model(**{k: v.to(device) for k, v in feats.items()}).logits
                out[batch] = logits.view(-1).float().cpu().numpy()
                self.batches_run += 1
                task.advance(len(batch))
        if not np.isfinite(out).all():
            raise EmbedderError(f"reranker '{self.name}' returned NaN or infinite scores")
        return out

    def __repr__(self) -> str:
        return f"HFReranker(name={self.name!r})"


def parse_reranker_spec(obj: Any) -> RerankerSpec:
    spec = parse_spec(obj, allowed=(RerankerSpec,))
    if not isinstance(spec, RerankerSpec):  # parse_spec checked the kind; this is for typing
        raise ConfigError(f"model '{spec.name}' is not a reranker")
    return spec


def create_reranker(spec: RerankerSpec | str | dict[str, Any]) -> HFReranker:
    """The reranker a spec describes (inline `reranker:DIR`, a mapping or a spec); wrap it in
    `embedarena.embedders.cache.CachedReranker` to cache its scores."""
    if not isinstance(spec, RerankerSpec):
        spec = parse_reranker_spec(spec)
    return HFReranker.from_spec(spec)
