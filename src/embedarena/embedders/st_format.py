"""The sentence-transformers directory format: `modules.json`, `1_Pooling/config.json`,
`sentence_bert_config.json` and `config_sentence_transformers.json`.

The reader (the `hf` embedder, which encodes any ST dir) and the writer (training, which makes
its output loadable by `SentenceTransformer`) live here together, so what we write is exactly
what we read back; a round-trip test keeps them in step. Plain JSON, no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedarena.errors import EmbedderError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

#: ST `Dense` activations we can apply, by their torch class name.
_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.Tanh": "tanh",
    "torch.nn.modules.activation.ReLU": "relu",
    "torch.nn.modules.activation.GELU": "gelu",
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
}
_MODULE = "sentence_transformers.models."


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict (a top-level list comes back under `_list`); errors name it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise EmbedderError(f"cannot read {path}: {e}") from None
    return data if isinstance(data, dict) else {"_list": data}


@dataclass(frozen=True)
class DenseLayer:
    """A sentence-transformers `Dense` module: linear projection plus activation."""

    path: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str


@dataclass
class ModelLayout:
    """What a model dir says about how to turn token states into a sentence vector."""

    transformer_dir: Path
    is_sentence_transformers: bool = False
    pooling: str | None = None  # cls | mean | unsupported:<what> | None (no ST pooling)
    normalize: bool | None = None
    dense: list[DenseLayer] = field(default_factory=list)
    max_seq_length: int | None = None
    do_lower_case: bool = False
    module_dirs: list[Path] = field(default_factory=list)


def read_layout(model_dir: Path) -> ModelLayout:
    """Parse `modules.json` and friends; unknown module types are refused, not skipped,
    because skipping one would silently produce different vectors than the model's own."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return ModelLayout(transformer_dir=model_dir)
    raw = read_json(modules_file).get("_list")
    if not isinstance(raw, list):
        raise EmbedderError(f"{modules_file}: expected a list of modules")
    layout = ModelLayout(transformer_dir=model_dir, is_sentence_transformers=True,
                         normalize=False)
    for mod in sorted(raw, key=lambda m: int(m.get("idx", 0))):
        kind = str(mod.get("type", "")).rsplit(".", 1)[-1]
        mdir = model_dir / str(mod.get("path", ""))
        if kind == "Transformer":
            layout.transformer_dir = mdir
            cfg_file = model_dir / "sentence_bert_config.json"
            if not cfg_file.is_file():
                cfg_file = mdir / "sentence_bert_config.json"
            if cfg_file.is_file():
                st_cfg = read_json(cfg_file)
                msl = st_cfg.get("max_seq_length")
                layout.max_seq_length = int(msl) if isinstance(msl, int) else None
                layout.do_lower_case = bool(st_cfg.get("do_lower_case", False))
        elif kind == "Pooling":
            layout.pooling = _st_pooling(read_json(mdir / "config.json"))
            layout.module_dirs.append(mdir)
        elif kind == "Dense":
            cfg = read_json(mdir / "config.json")
            act = str(cfg.get("activation_function", "torch.nn.modules.linear.Identity"))
            if act not in _ACTIVATIONS:
                raise EmbedderError(f"{mdir}: Dense activation {act} is not supported "
                                    f"(supported: {', '.join(sorted(_ACTIVATIONS))})")
            layout.dense.append(DenseLayer(mdir, int(cfg["in_features"]),
                                           int(cfg["out_features"]), bool(cfg.get("bias", True)),
                                           _ACTIVATIONS[act]))
            layout.module_dirs.append(mdir)
        elif kind == "Normalize":
            layout.normalize = True
        else:
            raise EmbedderError(f"{model_dir}: sentence-transformers module '{kind}' is not "
                                "supported (supported: Transformer, Pooling, Dense, Normalize)")
    return layout


def _st_pooling(cfg: dict[str, Any]) -> str:
    mode = cfg.get("pooling_mode")
    if isinstance(mode, str):
        modes = {mode}
    else:
        modes = {k.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens")
                 for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True}
    if modes == {"cls"}:
        return "cls"
    if modes == {"mean"}:
        return "mean"
    return f"unsupported:{'+'.join(sorted(modes)) or 'none'}"


def write_st_files(out: Path, hidden: int, pooling: str, normalize: bool, max_seq_length: int,
                   query_instruction: str = "") -> None:
    """Make a plain HF model dir a sentence-transformers dir too (Transformer at the root),
    so `SentenceTransformer(out)` and `read_layout(out)` see the same pooling and length."""
    if pooling not in ("cls", "mean"):
        raise ValueError(f"pooling is cls or mean, not {pooling!r}")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": _MODULE + "Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": _MODULE + "Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": _MODULE + "Normalize"})
    (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
    _write_json(out / "modules.json", modules)
    _write_json(out / "sentence_bert_config.json",
                {"max_seq_length": max_seq_length, "do_lower_case": False})
    _write_json(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    st_cfg: dict[str, Any] = {"similarity_fn_name": "cosine"}
    if query_instruction:
        st_cfg["prompts"] = {"query": query_instruction, "document": ""}
    _write_json(out / "config_sentence_transformers.json", st_cfg)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def weight_files(folder: Path) -> list[Path]:
    """The weight files of one folder: safetensors (single or sharded), else PyTorch .bin;
    [] when the folder holds none (merge and convert both read model dirs this way)."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            shards = read_json(folder / index).get("weight_map") or {}
            return [folder / f for f in dict.fromkeys(sorted(shards.values()))]
    return []


def load_bin(f: Path) -> dict[str, torch.Tensor]:
    """A PyTorch .bin state dict (tensors only: weights_only), errors naming the file."""
    import torch

    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as e:
        raise EmbedderError(f"cannot read {f}: {e}") from None
    return dict(state)


def load_tensors(files: Sequence[Path]) -> dict[str, torch.Tensor]:
    """Every tensor of the given weight files, on the CPU, in file order."""
    out: dict[str, torch.Tensor] = {}
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            out.update(load_file(str(f)))
        else:
            out.update(load_bin(f))
    return out
