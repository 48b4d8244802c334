"""Converting a MindSpore checkpoint (`.ckpt`) into a Hugging Face model dir, without MindSpore.

```python
from embedarena.training.convert import convert_mindspore
res = convert_mindspore("bge_ft.ckpt", base="models/bge-small-zh-v1.5", out_dir="models/bge-ft",
                        allow_missing=["bert.mlmloss.*"])
```

* **The file.** A `.ckpt` is a sequence of protobuf `Checkpoint` messages (MindSpore's
  `mindspore/ccsrc/utils/checkpoint.proto`: repeated `Value {tag, oneof {TensorProto tensor,
  MapTensorProto maptensor}}`, `TensorProto {repeated int64 dims, string tensor_type, bytes
  tensor_content}`); MindSpore writes one message per tensor and splits large tensors into
  consecutive values with the same tag, so the file parses as one message whose values are
  joined by tag. The message classes are built here from a descriptor written in code (no
  generated `_pb2` file, no protoc), in a private descriptor pool. `read_checkpoint` and
  `write_checkpoint` read and write that format; dtypes are MindSpore's names (`Float32`,
  `Float16`, `BFloat16`, `Float64`, `Int8`..`UInt64`, `Bool`). A scalar is `dims` empty (or
  `[0]`, older files).
* **What is dropped.** Optimizer and loss-scale state: names with a component `adam_m`,
  `adam_v`, `moment1`, `moment2`, `moments`, `accu_grads`, ... and the step / learning-rate
  scalars (`global_step`, `learning_rate`, `beta1_power`, `scale_sense`, ...), plus the
  non-tensor entries MindSpore may append (`random_op`, strings from `append_dict`).
* **Names.** Leading wrapper components (`model.`, `network.`, `backbone.`, `_backbone.`) are
  stripped, then each name goes through the first matching rule of `RULES`: the mindformers
  BERT table (`bert.bert_encoder.encoder.blocks.N.attention.dense1` → `encoder.layer.N.
  attention.self.query`, ...), MindSpore's model-zoo BERT table (`bert.bert.bert_encoder.
  layers.N.attention.attention.query_layer`, ...), else the generic renames (`gamma`/`beta`
  → `weight`/`bias`, `embedding_table` → `weight`: MindNLP and hand-written MindSpore ports
  keep Hugging Face's module names). The result is matched to the base model's parameter
  names, with or without the base's own prefix (`bert.` in a
  `BertForSequenceClassification`).
* **Orientation.** A rule says which dense weights the checkpoint stores as (in, out):
  mindformers' attention output projection and both feed-forward layers (`transpose_b=False`
  layers; mindformers' own BERT converter transposes exactly these), while its q/k/v denses
  and MindSpore's `nn.Dense` store (out, in) like `torch.nn.Linear`. A square matrix fits the
  base either way, so the orientation is also checked **by output**: each square dense
  weight of the converted model is applied to the base model's own inputs of that layer (a
  few probe texts), both ways round, against the base layer's outputs. A fine-tune stays
  close to its base, so the right orientation gives a small relative error and the wrong one
  about 1.4; when the table's orientation is clearly the worse one it is flipped
  (`orientation="output"`, the default) or refused (`orientation="table"`). Where neither
  is close (a checkpoint not fine-tuned from this base) the table decides and the check says
  so. Non-square weights are decided by shape, the same way.
* **Nothing silently skipped.** Every checkpoint key that maps to no base parameter and every
  floating-point base parameter the checkpoint does not set is listed, and the conversion
  fails unless `allow_missing` patterns (fnmatch, against the checkpoint name, the stripped
  name or the base name) name them. Unset parameters keep the base's values.
* **Output.** A copy of the base dir with `model.safetensors` (every tensor of the base file,
  in the base's dtypes: a Float16/BFloat16 checkpoint is cast up, and the cast is reported)
  and `embedarena_convert.json` saying how it was made; it loads like any `hf:` /
  `reranker:` dir.
* **Verification** (`verify_texts`): the texts are encoded with the converted model and with
  the base (how far the fine-tune moved), and, where MindSpore can be imported (here, or by
  the interpreter `mindspore_python` names), with the original checkpoint as MindSpore's own
  `load_checkpoint` reads it, run through a reference BERT that applies every dense weight in
  the checkpoint's layout; the largest cosine difference is reported.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from embedarena.embedders.hf import IGNORED_FILES, load_pretrained, resolve_model_dir
from embedarena.embedders.reranker import is_cross_encoder
from embedarena.embedders.st_format import load_tensors, read_json, read_layout, weight_files
from embedarena.errors import ConfigError, DataError, EmbedderError
from embedarena.training.trainer import TRAINING_META

if TYPE_CHECKING:
    import torch

Orientation = Literal["output", "table"]

#: What a converted dir says about how it was made.
CONVERT_META = "embedarena_convert.json"
#: MindSpore's chunk size for large tensors (SLICE_SIZE, 512 MiB).
MINDSPORE_CHUNK_BYTES = 512 * 1024 * 1024

# MindSpore dtype name → numpy dtype (BFloat16 is kept as its raw 16-bit pattern).
_NP_DTYPES: dict[str, str] = {
    "Float16": "float16", "Float32": "float32", "Float64": "float64", "BFloat16": "uint16",
    "Int8": "int8", "UInt8": "uint8", "Int16": "int16", "UInt16": "uint16", "Int32": "int32",
    "UInt32": "uint32", "Int64": "int64", "UInt64": "uint64", "Bool": "bool",
}
_MS_DTYPES = {v: k for k, v in _NP_DTYPES.items() if k != "BFloat16"}

#: Leading components that wrap the network (TrainOneStepCell, WithLossCell, mindformers).
WRAPPERS = ("model", "network", "backbone", "_backbone", "_network", "net_with_loss")
#: A name with one of these components is optimizer / gradient state.
OPTIMIZER_COMPONENTS = frozenset({
    "adam_m", "adam_v", "moment1", "moment2", "moments", "accu_grads", "accumulated_grads",
    "accum", "lamb_m", "lamb_v", "exp_avg", "exp_avg_sq", "mean_grad", "mean_square",
    "velocity", "vhat", "max_v", "grad_accumulation",
})
#: Scalars of the training loop (the last component of the name).
TRAINING_SCALARS = frozenset({
    "global_step", "learning_rate", "lr", "beta1_power", "beta2_power", "scale_sense",
    "loss_scale", "current_iterator_step", "last_overflow_iterator_step", "epoch_num",
    "step_num", "cur_step_num", "cur_epoch_num", "overflow_status", "loss_scale_value",
})

_B = r"(?:bert\.){0,2}"
_BLOCK = _B + r"bert_encoder\.encoder\.blocks\.(\d+)\."
_ZOO = _B + r"bert_encoder\.layers\.(\d+)\."
_ZOO_EMB = _B + r"bert_embedding_postprocessor\."
_LN = {"gamma": "weight", "beta": "bias", "weight": "weight", "bias": "bias"}
#: A rule both BERT schemes share (the pooler): reported as the checkpoint's main scheme.
_SHARED = "shared"


@dataclass(frozen=True)
class Rule:
    """`pattern` (a full match of the stripped checkpoint name) → `target` (`{1}`, `{2}`: the
    groups; a gamma/beta group becomes weight/bias). `in_out`: the checkpoint stores this
    dense weight as (in, out), the transpose of `torch.nn.Linear`'s (out, in)."""

    pattern: str
    target: str
    in_out: bool = False
    scheme: str = "mindformers-bert"

    def apply(self, name: str) -> str | None:
        m = re.fullmatch(self.pattern, name)
        if m is None:
            return None
        groups = [_LN.get(g, g) for g in m.groups()]
        return self.target.format(None, *groups)


#: mindformers BERT (`mindformers.models.bert`) and MindSpore's model-zoo BERT: their names →
#: Hugging Face `BertModel` names. In mindformers the attention output projection and both
#: feed-forward layers are `transpose_b=False` linears, stored (in, out); its q/k/v
#: (`dense1..3`), the pooler and the MLM head are (out, in), as is every model-zoo dense.
RULES: tuple[Rule, ...] = (
    Rule(_B + r"word_embedding\.embedding_table", "embeddings.word_embeddings.weight"),
    Rule(_B + r"embedding_postprocessor\.full_position_embedding\.embedding_table",
         "embeddings.position_embeddings.weight"),
    Rule(_B + r"embedding_postprocessor\.token_type_embedding\.embedding_table",
         "embeddings.token_type_embeddings.weight"),
    Rule(_B + r"embedding_postprocessor\.layernorm\.(gamma|beta)", "embeddings.LayerNorm.{1}"),
    Rule(_BLOCK + r"attention\.dense1\.(weight|bias)",
         "encoder.layer.{1}.attention.self.query.{2}"),
    Rule(_BLOCK + r"attention\.dense2\.(weight|bias)", "encoder.layer.{1}.attention.self.key.{2}"),
    Rule(_BLOCK + r"attention\.dense3\.(weight|bias)",
         "encoder.layer.{1}.attention.self.value.{2}"),
    Rule(_BLOCK + r"attention\.projection\.(weight)",
         "encoder.layer.{1}.attention.output.dense.{2}", in_out=True),
    Rule(_BLOCK + r"attention\.projection\.(bias)", "encoder.layer.{1}.attention.output.dense.{2}"),
    Rule(_BLOCK + r"layernorm2\.(gamma|beta)", "encoder.layer.{1}.attention.output.LayerNorm.{2}"),
    Rule(_BLOCK + r"output\.mapping\.(weight)", "encoder.layer.{1}.intermediate.dense.{2}",
         in_out=True),
    Rule(_BLOCK + r"output\.mapping\.(bias)", "encoder.layer.{1}.intermediate.dense.{2}"),
    Rule(_BLOCK + r"output\.projection\.(weight)", "encoder.layer.{1}.output.dense.{2}",
         in_out=True),
    Rule(_BLOCK + r"output\.projection\.(bias)", "encoder.layer.{1}.output.dense.{2}"),
    Rule(_BLOCK + r"layernorm1\.(gamma|beta)", "encoder.layer.{1}.output.LayerNorm.{2}"),
    Rule(_B + r"dense\.(weight|bias)", "pooler.dense.{1}", scheme=_SHARED),
    Rule(_B + r"mlmloss\.dense\.(weight|bias)", "cls.predictions.transform.dense.{1}"),
    Rule(_B + r"mlmloss\.layernorm\.(gamma|beta)", "cls.predictions.transform.LayerNorm.{1}"),
    Rule(_B + r"mlmloss\.vocab_dense\.weight", "cls.predictions.decoder.weight"),
    # MindSpore's model-zoo BERT (models/official/nlp/Bert): every dense is (out, in)
    *(Rule(pattern, target, scheme="mindspore-bert") for pattern, target in (
        (_B + r"bert_embedding_lookup\.(?:embedding_table|weight)",
         "embeddings.word_embeddings.weight"),
        (_ZOO_EMB + r"token_type_embedding\.(?:embedding_table|weight)",
         "embeddings.token_type_embeddings.weight"),
        (_ZOO_EMB + r"full_position_embedding\.(?:embedding_table|weight)",
         "embeddings.position_embeddings.weight"),
        (_ZOO_EMB + r"layernorm\.(gamma|beta|weight|bias)", "embeddings.LayerNorm.{1}"),
        (_ZOO + r"attention\.attention\.query_layer\.(weight|bias)",
         "encoder.layer.{1}.attention.self.query.{2}"),
        (_ZOO + r"attention\.attention\.key_layer\.(weight|bias)",
         "encoder.layer.{1}.attention.self.key.{2}"),
        (_ZOO + r"attention\.attention\.value_layer\.(weight|bias)",
         "encoder.layer.{1}.attention.self.value.{2}"),
        (_ZOO + r"attention\.output\.dense\.(weight|bias)",
         "encoder.layer.{1}.attention.output.dense.{2}"),
        (_ZOO + r"attention\.output\.layernorm\.(gamma|beta|weight|bias)",
         "encoder.layer.{1}.attention.output.LayerNorm.{2}"),
        (_ZOO + r"intermediate\.(weight|bias)", "encoder.layer.{1}.intermediate.dense.{2}"),
        (_ZOO + r"output\.dense\.(weight|bias)", "encoder.layer.{1}.output.dense.{2}"),
        (_ZOO + r"output\.layernorm\.(gamma|beta|weight|bias)",
         "encoder.layer.{1}.output.LayerNorm.{2}"),
        (_B + r"dense_1\.(weight|bias)", "classifier.{1}"),
    )),
)
#: Generic renames (MindNLP / MindSpore ports that keep Hugging Face's module names).
GENERIC_RENAMES = {"gamma": "weight", "beta": "bias", "embedding_table": "weight",
                   "moving_mean": "running_mean", "moving_variance": "running_var"}
#: First components of a base model's parameter names that are its own prefix.
BASE_PREFIXES = frozenset({"bert", "roberta", "xlm_roberta", "electra", "ernie", "model",
                           "encoder_model", "base_model"})
#: Relative output error under which an orientation counts as "close to the base".
CLOSE = 0.5
#: Probe texts for the output check (English and Chinese; the base tokenizer decides).
PROBE_TEXTS = (
    "what is the capital of france", "the cat sat on the mat and looked at the door",
    "甲状腺结节是什么", "高血压和糖尿病的治疗方法", "how to reset a password in the app",
    "保险理赔需要哪些材料", "a is the of in to and what", "肝硬化 胆管炎 胰腺 囊肿",
)


# -- the .ckpt format ---------------------------------------------------------------------------
@functools.cache
def _messages() -> tuple[Any, Any]:
    """The `Checkpoint` and `TensorProto` classes, built from a descriptor written here after
    MindSpore's published checkpoint.proto (proto2; the oneof is the newer schema's, which
    reads older files unchanged)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="embedarena/mindspore_checkpoint.proto",
                                             syntax="proto2")
    f = descriptor_pb2.FieldDescriptorProto
    tensor = fdp.message_type.add(name="TensorProto")
    tensor.field.add(name="dims", number=1, label=f.LABEL_REPEATED, type=f.TYPE_INT64)
    tensor.field.add(name="tensor_type", number=2, label=f.LABEL_REQUIRED, type=f.TYPE_STRING)
    tensor.field.add(name="tensor_content", number=3, label=f.LABEL_REQUIRED,
                     type=f.TYPE_BYTES)
    maptensor = fdp.message_type.add(name="MapTensorProto")
    maptensor.field.add(name="tensor", number=1, label=f.LABEL_REPEATED, type=f.TYPE_MESSAGE,
                        type_name=".TensorProto")
    ckpt = fdp.message_type.add(name="Checkpoint")
    value = ckpt.nested_type.add(name="Value")
    value.oneof_decl.add(name="value")
    value.field.add(name="tag", number=1, label=f.LABEL_REQUIRED, type=f.TYPE_STRING)
    value.field.add(name="tensor", number=2, label=f.LABEL_OPTIONAL, type=f.TYPE_MESSAGE,
                    type_name=".TensorProto", oneof_index=0)
    value.field.add(name="maptensor", number=3, label=f.LABEL_OPTIONAL, type=f.TYPE_MESSAGE,
                    type_name=".MapTensorProto", oneof_index=0)
    ckpt.field.add(name="value", number=1, label=f.LABEL_REPEATED, type=f.TYPE_MESSAGE,
                   type_name=".Checkpoint.Value")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("Checkpoint")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("TensorProto")))


@dataclass
class CkptTensor:
    """One tensor of a checkpoint: MindSpore dtype name, shape, data (numpy; a BFloat16 tensor
    holds its raw uint16 bit patterns)."""

    dtype: str
    shape: tuple[int, ...]
    data: np.ndarray

    def to_torch(self) -> torch.Tensor:
        import torch

        if self.dtype == "BFloat16":
            return torch.from_numpy(self.data.view(np.int16).copy()).view(torch.bfloat16)
        return torch.from_numpy(self.data.copy())


@dataclass
class Checkpoint:
    """What a `.ckpt` holds: tensors by name (file order) and the entries that are not
    tensors (name → what they are: `random_op`, `string`, `map tensor`)."""

    path: Path
    tensors: dict[str, CkptTensor]
    other: dict[str, str] = field(default_factory=dict)


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a MindSpore `.ckpt` (unencrypted) without MindSpore."""
    from google.protobuf.message import DecodeError

    p = Path(path)
    if not p.is_file():
        raise DataError(p, "no such checkpoint file")
    if p.suffix == ".safetensors":
        raise DataError(p, "this is a safetensors file (MindSpore's format='safetensors'), not "
                        "a protobuf .ckpt: its names still need mapping; give the .ckpt")
    raw = p.read_bytes()
    ckpt_cls, _ = _messages()
    msg = ckpt_cls()
    try:
        msg.ParseFromString(raw)
    except DecodeError as e:
        raise DataError(p, f"not a MindSpore checkpoint (protobuf Checkpoint message): {e}; "
                        "an encrypted checkpoint (saved with enc_key) must be decrypted with "
                        "MindSpore first") from None
    if not msg.value:
        raise DataError(p, "not a MindSpore checkpoint: no tensors in it")
    out = Checkpoint(p, {})
    values = list(msg.value)
    i = 0
    while i < len(values):
        v = values[i]
        j = i + 1
        while j < len(values) and values[j].tag == v.tag and values[j].HasField("tensor"):
            j += 1
        if v.HasField("maptensor"):
            out.other[v.tag] = "map tensor"
        elif v.tensor.tensor_type == "random_op" or v.tag == "random_op":
            out.other[v.tag] = "random_op"
        elif v.tensor.tensor_type == "str":
            out.other[v.tag] = "string"
        else:
            if v.tag in out.tensors:
                raise DataError(p, f"tensor {v.tag!r} appears twice (not as consecutive chunks)")
            content = b"".join(values[k].tensor.tensor_content for k in range(i, j))
            out.tensors[v.tag] = _decode(p, v.tag, v.tensor.tensor_type, list(v.tensor.dims),
                                         content)
        i = j
    return out


def _decode(path: Path, tag: str, dtype: str, dims: list[int], content: bytes) -> CkptTensor:
    np_dtype = _NP_DTYPES.get(dtype)
    if np_dtype is None:
        raise DataError(path, f"tensor {tag!r} has dtype {dtype!r}, which this reader does not "
                        f"know (known: {', '.join(_NP_DTYPES)})")
    item = np.dtype(np_dtype).itemsize
    if dims == [0] and len(content) == item:
        dims = []  # older MindSpore writes a scalar as dims [0]
    n = math.prod(dims)
    if n * item != len(content):
        raise DataError(path, f"tensor {tag!r}: shape {tuple(dims)} of {dtype} needs "
                        f"{n * item} bytes, the file has {len(content)} (truncated file?)")
    data = np.frombuffer(content, dtype=np_dtype).reshape(dims)
    return CkptTensor(dtype, tuple(dims), data)


def write_checkpoint(path: str | os.PathLike[str], tensors: Mapping[str, Any], *,
                     chunk_bytes: int = MINDSPORE_CHUNK_BYTES) -> Path:
    """Write `tensors` (numpy arrays or torch tensors, bfloat16 included) as a MindSpore
    `.ckpt`: one `Checkpoint` message per tensor, tensors above `chunk_bytes` split into
    consecutive values with the same tag, as MindSpore's `save_checkpoint` writes them."""
    ckpt_cls, _ = _messages()
    p = Path(path)
    with p.open("wb") as f:
        for name, value in tensors.items():
            dtype, arr = _to_numpy(name, value)
            content = arr.tobytes()
            for start in range(0, max(len(content), 1), chunk_bytes):
                msg = ckpt_cls()
                v = msg.value.add()
                v.tag = name
                v.tensor.dims.extend(arr.shape)
                v.tensor.tensor_type = dtype
                v.tensor.tensor_content = content[start:start + chunk_bytes]
                f.write(msg.SerializeToString())
    return p


def _to_numpy(name: str, value: Any) -> tuple[str, np.ndarray]:
    if hasattr(value, "detach"):  # torch
        import torch

        t = value.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            return "BFloat16", t.view(torch.int16).numpy().view(np.uint16)
        value = t.numpy()
    arr = np.asarray(value)
    if not arr.flags.c_contiguous:  # (np.ascontiguousarray would make a scalar 1-d)
        arr = arr.copy(order="C")
    dtype = _MS_DTYPES.get(arr.dtype.name)
    if dtype is None:
        raise ConfigError(f"tensor {name!r}: dtype {arr.dtype} has no MindSpore checkpoint type")
    return dtype, arr


# -- names --------------------------------------------------------------------------------------
def strip_wrappers(name: str) -> str:
    """`network.model.bert.x` → `bert.x`: leading wrapper components removed."""
    parts = name.split(".")
    while len(parts) > 1 and parts[0] in WRAPPERS:
        parts = parts[1:]
    return ".".join(parts)


def training_state(name: str) -> str | None:
    """Why `name` is optimizer / training-loop state, or None for a model tensor."""
    parts = name.split(".")
    hit = next((c for c in parts if c in OPTIMIZER_COMPONENTS), None)
    if hit is not None:
        return f"optimizer state ({hit})"
    if parts[-1] in TRAINING_SCALARS:
        return f"training state ({parts[-1]})"
    return None


def translate(name: str) -> tuple[str, bool, str]:
    """A stripped checkpoint name → (Hugging Face-style name, stored (in, out)?, scheme)."""
    for rule in RULES:
        target = rule.apply(name)
        if target is not None:
            return target, rule.in_out, rule.scheme
    head, _, last = name.rpartition(".")
    last = GENERIC_RENAMES.get(last, last)
    return (f"{head}.{last}" if head else last), False, "generic"


def _lookup_keys(name: str) -> list[str]:
    first, _, rest = name.partition(".")
    return [name, rest] if rest and first in BASE_PREFIXES else [name]


def summarize_names(names: Iterable[str]) -> str:
    """Names listed compactly: layer numbers folded (`encoder.layer.{0-11}.x` ×12)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for n in names:
        groups[re.sub(r"(?<=\.)\d+(?=\.)", "#", n)].append(n)
    out = []
    for pat, members in groups.items():
        if len(members) == 1:
            out.append(members[0])
            continue
        nums = sorted({int(x) for m in members for x in re.findall(r"(?<=\.)\d+(?=\.)", m)})
        span = f"{nums[0]}-{nums[-1]}" if nums == list(range(nums[0], nums[-1] + 1)) else \
            ",".join(map(str, nums))
        out.append(pat.replace("#", "{" + span + "}", 1).replace("#", "*") + f" (x{len(members)})")
    return ", ".join(out)


# -- conversion ---------------------------------------------------------------------------------
@dataclass
class Mapped:
    ckpt: str
    base: str
    scheme: str
    in_out: bool
    #: Set when the output check (or the shape) overrode the table.
    flipped_by: str | None = None


@dataclass
class OrientationCheck:
    ckpt: str
    base: str
    table_error: float
    flipped_error: float
    verdict: Literal["confirmed", "flipped", "inconclusive"]


@dataclass
class ConvertResult:
    output_dir: Path
    checkpoint: Path
    base: Path
    kind: str
    mapped: list[Mapped]
    dropped: dict[str, str]
    unmapped: list[str]
    unset: list[str]
    casts: dict[str, int]
    orientation: list[OrientationCheck]
    unused_patterns: list[str]
    tensors: int = 0
    parameters: int = 0
    verify: VerifyResult | None = None

    @property
    def flipped(self) -> list[Mapped]:
        return [m for m in self.mapped if m.flipped_by]


@dataclass
class VerifyResult:
    texts: int
    #: max over texts of 1 - cos(converted, reference); None where not computed.
    vs_base: float
    vs_mindspore: float | None
    mindspore_note: str
    loads_as: str


def _base_files(folder: Path) -> list[Path]:
    files = weight_files(folder)
    if not files:
        raise EmbedderError(f"{folder}: no weights (model.safetensors or pytorch_model.bin)")
    return files


def _matches(patterns: Sequence[str], *names: str) -> str | None:
    return next((p for p in patterns for n in names if fnmatch.fnmatchcase(n, p)), None)


def convert_mindspore(ckpt: str | os.PathLike[str], base: str | os.PathLike[str],
                      out_dir: str | os.PathLike[str], *,
                      allow_missing: Sequence[str] = (), orientation: Orientation = "output",
                      verify_texts: Sequence[str] | None = None,
                      mindspore_python: str | None = None,
                      overwrite: bool = False) -> ConvertResult:
    """Convert `ckpt` onto the parameters of the Hugging Face model dir `base`; write the
    result to `out_dir` (see the module docstring)."""
    if orientation not in ("output", "table"):
        raise ConfigError(f"orientation must be 'output' or 'table', not {orientation!r}")
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; pass --overwrite to replace it")
    base_dir = resolve_model_dir(base)
    ckpt_path = Path(ckpt).expanduser().resolve()
    for what, inside in (("the base model", base_dir), ("the checkpoint", ckpt_path)):
        if inside == out or out in inside.parents or (what == "the base model"
                                                       and base_dir in out.parents):
            raise ConfigError(f"--out {out} would overwrite {what} ({inside}); choose another "
                              "output dir")
    layout = read_layout(base_dir)
    config = read_json(layout.transformer_dir / "config.json")
    kind = "reranker" if is_cross_encoder(config) else "embedder"
    base_files = _base_files(layout.transformer_dir)
    base_state = load_tensors(base_files)
    checkpoint = read_checkpoint(ckpt)

    lookup: dict[str, str] = {}
    for k in base_state:
        for alias in _lookup_keys(k):
            lookup.setdefault(alias, k)
    dropped = {k: what for k, what in checkpoint.other.items() if what != "map tensor"}
    unmapped = [k for k, what in checkpoint.other.items() if what == "map tensor"]
    mapped: dict[str, Mapped] = {}
    for name in checkpoint.tensors:
        why = training_state(name)
        if why is not None:
            dropped[name] = why
            continue
        stripped = strip_wrappers(name)
        target, in_out, scheme = translate(stripped)
        key = next((lookup[a] for a in _lookup_keys(target) if a in lookup), None)
        if key is None:
            unmapped.append(name)
            continue
        if key in mapped:
            raise DataError(checkpoint.path, f"{mapped[key].ckpt!r} and {name!r} both map to "
                            f"the base parameter {key!r}")
        mapped[key] = Mapped(name, key, scheme, in_out)

    schemes = [m.scheme for m in mapped.values() if m.scheme not in (_SHARED, "generic")]
    main = max(set(schemes), key=schemes.count) if schemes else "mindspore-bert"
    for m in mapped.values():
        if m.scheme == _SHARED:
            m.scheme = main
    unset = [k for k, t in base_state.items() if k not in mapped and t.is_floating_point()]
    patterns = list(allow_missing)
    used: set[str] = set()
    refused_unmapped, refused_unset = [], []
    for name in unmapped:
        hit = _matches(patterns, name, strip_wrappers(name), translate(strip_wrappers(name))[0])
        if hit:
            used.add(hit)
        else:
            refused_unmapped.append(name)
    for key in unset:
        hit = _matches(patterns, key)
        if hit:
            used.add(hit)
        else:
            refused_unset.append(key)
    if refused_unmapped or refused_unset:
        parts = []
        if refused_unmapped:
            parts.append(f"{len(refused_unmapped)} checkpoint tensors map to no parameter of "
                         f"the base: {summarize_names(refused_unmapped)}")
        if refused_unset:
            parts.append(f"{len(refused_unset)} base parameters are not in the checkpoint "
                         f"(they would keep the base's values): {summarize_names(refused_unset)}")
        raise ConfigError(f"{checkpoint.path} onto {base_dir}: " + "; ".join(parts) +
                          ". Name them with --allow-missing PATTERN (fnmatch patterns, e.g. "
                          "'bert.mlmloss.*') if that is intended")

    # tensors in the base's shapes and dtypes
    converted: dict[str, torch.Tensor] = {}
    casts: dict[str, int] = defaultdict(int)
    for key, m in mapped.items():
        src = checkpoint.tensors[m.ckpt]
        t = src.to_torch()
        want = base_state[key]
        if m.in_out and t.ndim == 2:
            t = t.T
        if tuple(t.shape) != tuple(want.shape):
            if t.ndim == 2 and tuple(t.T.shape) == tuple(want.shape):
                if orientation == "table":
                    raise ConfigError(f"{checkpoint.path}: {m.ckpt!r} has shape "
                                      f"{tuple(src.shape)}; the table stores it "
                                      f"{'(in, out)' if m.in_out else '(out, in)'}, but only "
                                      f"the transpose fits {key!r} {tuple(want.shape)}")
                t = t.T
                m.flipped_by = "shape"
            else:
                raise DataError(checkpoint.path, f"{m.ckpt!r} has shape {tuple(src.shape)}, the "
                                f"base parameter {key!r} has {tuple(want.shape)}: is {base_dir} "
                                "the model this checkpoint was trained from?")
        if t.dtype != want.dtype:
            casts[f"{src.dtype} -> {str(want.dtype).removeprefix('torch.')}"] += 1
        converted[key] = t.to(want.dtype).contiguous()

    checks = _orientation_check(layout.transformer_dir, config, base_state, converted, mapped,
                                list(verify_texts or ()) + list(PROBE_TEXTS))
    contradicted = [c for c in checks if c.verdict == "flipped"]
    if contradicted and orientation == "table":
        raise ConfigError(f"{checkpoint.path}: the output check contradicts the table for "
                          f"{len(contradicted)} square weights: " + ", ".join(
                              f"{c.ckpt} (relative error {c.table_error:.3f} as the table "
                              f"stores it, {c.flipped_error:.3f} transposed)"
                              for c in contradicted) +
                          "; use --orientation output to let the output decide")
    for c in contradicted:
        converted[c.base] = converted[c.base].T.contiguous()
        mapped[c.base].flipped_by = "output"

    state = {k: converted.get(k, v).contiguous().clone()
             for k, v in base_state.items()}
    res = ConvertResult(out, checkpoint.path, base_dir, kind, list(mapped.values()), dropped,
                        unmapped, unset, dict(casts), checks,
                        [p for p in patterns if p not in used],
                        tensors=len(state),
                        parameters=sum(t.numel() for t in state.values()
                                       if t.is_floating_point()))
    _write_output(base_dir, layout.transformer_dir, out, state, res, overwrite)
    if verify_texts:
        res.verify = verify(res, verify_texts, mindspore_python=mindspore_python)
        _write_meta(out, res)
    return res


# -- the output check ---------------------------------------------------------------------------
def _load(folder: Path, config: dict[str, Any], texts: Sequence[str],
          max_length: int = 128) -> tuple[Any, Any]:
    """(model on the CPU in float32, eval mode; the texts tokenized)."""
    auto = ("AutoModelForSequenceClassification" if is_cross_encoder(config) else "AutoModel")
    tok, model, _ = load_pretrained(auto, folder, str(folder), "cpu", False, False)
    batch = tok(list(texts), padding=True, truncation=True, max_length=max_length,
                return_tensors="pt")
    return model.float(), batch


def _module(modules: Mapping[str, Any], prefix: str, key: str) -> Any:
    name = key.removesuffix(".weight")
    for n in (name, _lookup_keys(name)[-1], f"{prefix}.{name}"):
        if n in modules:
            return n
    return None


def _orientation_check(folder: Path, config: dict[str, Any], base_state: Mapping[str, Any],
                       converted: Mapping[str, torch.Tensor], mapped: Mapping[str, Mapped],
                       texts: Sequence[str]) -> list[OrientationCheck]:
    """Each square dense weight, applied both ways round to the base layer's own inputs,
    against the base layer's outputs (relative Frobenius error)."""
    import torch

    square = [k for k, t in converted.items() if k.endswith(".weight") and t.ndim == 2
              and t.shape[0] == t.shape[1] and not mapped[k].flipped_by]
    if not square:
        return []
    model, batch = _load(folder, config, texts)
    modules = dict(model.named_modules())
    found = {k: _module(modules, getattr(model, "base_model_prefix", ""), k) for k in square}
    names = {k: n for k, n in found.items()
             if n is not None and isinstance(modules[n], torch.nn.Linear)}
    out = [OrientationCheck(mapped[k].ckpt, k, math.nan, math.nan, "inconclusive")
           for k in square if k not in names]
    if not names:
        return out
    keep = batch["attention_mask"].reshape(-1).bool()
    seen: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Any:
        def run(_mod: Any, args: tuple[torch.Tensor, ...], _out: Any) -> None:
            x = args[0].detach()
            seen[name] = x.reshape(-1, x.shape[-1])[keep] if x.shape[:-1].numel() == \
                keep.numel() else x.reshape(-1, x.shape[-1])
        return run

    handles = [modules[n].register_forward_hook(hook(n)) for n in names.values()]
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        return out + _compare(names, seen, modules, base_state, converted, mapped)


def _compare(names: Mapping[str, str], seen: Mapping[str, torch.Tensor],
             modules: Mapping[str, Any], base_state: Mapping[str, Any],
             converted: Mapping[str, torch.Tensor],
             mapped: Mapping[str, Mapped]) -> list[OrientationCheck]:
    import torch

    out = []
    for key, n in names.items():
        if n not in seen:
            out.append(OrientationCheck(mapped[key].ckpt, key, math.nan, math.nan,
                                        "inconclusive"))
            continue
        x = seen[n].double()
        lin = modules[n]
        y_base = torch.nn.functional.linear(x, lin.weight.double(),
                                            None if lin.bias is None else lin.bias.double())
        bias_key = key.removesuffix(".weight") + ".bias"
        b = converted.get(bias_key, base_state.get(bias_key))
        b = None if b is None else b.double()
        w = converted[key].double()
        scale = float(torch.linalg.norm(y_base)) or 1.0
        e_table = float(torch.linalg.norm(torch.nn.functional.linear(x, w, b) - y_base)) / scale
        e_flip = float(torch.linalg.norm(torch.nn.functional.linear(x, w.T, b) - y_base)) / scale
        if e_flip < CLOSE and e_flip < 0.5 * e_table:
            verdict: Literal["confirmed", "flipped", "inconclusive"] = "flipped"
        elif e_table < CLOSE:
            verdict = "confirmed"
        else:
            verdict = "inconclusive"
        out.append(OrientationCheck(mapped[key].ckpt, key, e_table, e_flip, verdict))
    return out


# -- output -------------------------------------------------------------------------------------
#: Not copied from the base: trainer state, the base's own provenance and card.
_NOT_COPIED = IGNORED_FILES | {CONVERT_META, TRAINING_META, "README.md", ".gitattributes"}
_WEIGHT_FILES = re.compile(r"(model|pytorch_model|tf_model|flax_model)([-.].*)?\."
                           r"(safetensors|bin|h5|msgpack)(\.index\.json)?$")


def _write_output(base_dir: Path, transformer_dir: Path, out: Path,
                  state: Mapping[str, torch.Tensor], res: ConvertResult, overwrite: bool) -> None:
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        def ignore(folder: str, names: list[str]) -> set[str]:
            here = Path(folder).resolve() == transformer_dir.resolve()
            root = Path(folder).resolve() == base_dir.resolve()
            return {n for n in names if n in _NOT_COPIED or (here and _WEIGHT_FILES.match(n))
                    or (root and (n == "runs" or n.startswith("checkpoint-")))}

        shutil.copytree(base_dir, tmp / "m", ignore=ignore, symlinks=False)
        target = tmp / "m" / transformer_dir.relative_to(base_dir) / "model.safetensors"
        save_file(dict(state), str(target), metadata={"format": "pt"})
        os.chmod(target, 0o644)
        _write_meta(tmp / "m", res)
        if out.exists():
            if not overwrite:
                raise ConfigError(f"{out} exists; pass --overwrite to replace it")
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp / "m", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_meta(out: Path, r: ConvertResult) -> None:
    from embedarena import __version__

    meta = {
        "method": "MindSpore checkpoint conversion",
        "checkpoint": {"path": str(r.checkpoint), "sha256": _sha256(r.checkpoint)},
        "base": str(r.base), "kind": r.kind, "tensors": r.tensors, "parameters": r.parameters,
        "mapped": [{"checkpoint": m.ckpt, "parameter": m.base, "scheme": m.scheme,
                    "stored_in_out": m.in_out, "flipped_by": m.flipped_by} for m in r.mapped],
        "dropped": r.dropped, "unmapped_allowed": r.unmapped, "unset_allowed": r.unset,
        "casts": r.casts,
        "orientation_check": [{"checkpoint": c.ckpt, "table_error": c.table_error,
                               "flipped_error": c.flipped_error, "verdict": c.verdict}
                              for c in r.orientation],
        "verify": None if r.verify is None else {
            "texts": r.verify.texts, "max_cosine_diff_vs_base": r.verify.vs_base,
            "max_cosine_diff_vs_mindspore": r.verify.vs_mindspore,
            "mindspore": r.verify.mindspore_note},
        "embedarena": __version__,
    }
    (out / CONVERT_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False),
                                    encoding="utf-8")


# -- verification -------------------------------------------------------------------------------
def read_texts(path: str | os.PathLike[str], limit: int = 16) -> list[str]:
    """Texts to verify with: a query file in any format `load_queries` reads (JSON/JSONL
    records, graded-pair TSV), else one text per line."""
    from embedarena.data.readers import load_queries

    p = Path(path)
    if not p.is_file():
        raise DataError(p, "no such file")
    texts: list[str]
    first = p.read_text(encoding="utf-8", errors="replace").lstrip()[:1]
    tabbed = "\t" in p.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
    if first in ("{", "[") or tabbed:
        texts = [q.text for q in load_queries(p, skip_bad=True).queries]
    else:
        texts = [t.strip() for t in p.read_text(encoding="utf-8").splitlines() if t.strip()]
    if not texts:
        raise DataError(p, "no texts to verify with")
    return texts[:limit]


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    import torch

    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        v = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    else:
        v = hidden[:, 0]
    return torch.nn.functional.normalize(v.double(), dim=-1)


def _last_hidden(model: Any, batch: Any) -> torch.Tensor:
    import torch

    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return out.hidden_states[-1]


def verify(res: ConvertResult, texts: Sequence[str], *,
           mindspore_python: str | None = None) -> VerifyResult:
    """Encode `texts` with the converted model, the base, and (where MindSpore is importable)
    the original checkpoint; the largest cosine difference to each."""
    import torch

    layout = read_layout(res.output_dir)
    config = read_json(layout.transformer_dir / "config.json")
    pooling = "mean" if layout.pooling == "mean" else "cls"
    model, batch = _load(layout.transformer_dir, config, texts)
    conv = _pool(_last_hidden(model, batch), batch["attention_mask"], pooling)
    base_model, _ = _load(read_layout(res.base).transformer_dir, config, texts)
    ref = _pool(_last_hidden(base_model, batch), batch["attention_mask"], pooling)
    vs_base = float((1 - (conv * ref).sum(-1)).max())
    loads_as = _load_check(res, texts)
    vs_ms: float | None = None
    python = mindspore_python or (sys.executable if _has_mindspore() else None)
    if python is None:
        note = ("MindSpore is not importable here: the original checkpoint was not run (pass "
                "--mindspore-python PY naming an interpreter that has it)")
    elif config.get("model_type") != "bert":
        note = f"the MindSpore reference covers BERT only, not {config.get('model_type')!r}"
    else:
        native = _mindspore_arrays(res.checkpoint, python, [m.ckpt for m in res.mapped])
        params = {}
        for m in res.mapped:
            if m.ckpt in native:
                params[_lookup_keys(m.base)[-1]] = (torch.from_numpy(native[m.ckpt]).double(),
                                                    m.in_out)
        hidden = reference_bert(params, config, batch)
        ms = _pool(hidden, batch["attention_mask"], pooling)
        vs_ms = float((1 - (conv * ms).sum(-1)).max())
        note = (f"original checkpoint read by MindSpore ({python}), run through a reference "
                "BERT in the checkpoint's own layout")
        if res.flipped:
            note += (f"; {len(res.flipped)} weights were flipped against the table, so the "
                     "reference (which follows the table) differs there")
    return VerifyResult(len(texts), vs_base, vs_ms, note, loads_as)


def _load_check(res: ConvertResult, texts: Sequence[str]) -> str:
    """Load the output the way experiments do (`hf:` or `reranker:`) and run it once."""
    if res.kind == "reranker":
        from embedarena.embedders.reranker import create_reranker

        rr = create_reranker({"type": "reranker", "path": str(res.output_dir),
                              "device": "cpu"})
        scores = rr.score_pairs([(t, t) for t in texts[:4]])
        if not np.isfinite(scores).all():
            raise EmbedderError(f"{res.output_dir}: the converted reranker gives non-finite "
                                "scores")
        return f"reranker:{res.output_dir}"
    from embedarena.embedders.hf import HFEmbedder

    vecs = HFEmbedder(res.output_dir, device="cpu", progress=False).embed_documents(
        list(texts[:4]))
    if not np.isfinite(vecs).all():
        raise EmbedderError(f"{res.output_dir}: the converted model gives non-finite vectors")
    return f"hf:{res.output_dir} ({vecs.shape[1]}-d)"


def _has_mindspore() -> bool:
    import importlib.util

    return importlib.util.find_spec("mindspore") is not None


_MS_DUMP = """
import json, sys, numpy as np, mindspore as ms
wanted = set(json.load(open(sys.argv[3])))
d = ms.load_checkpoint(sys.argv[1], choice_func=lambda name: name in wanted)
out = {}
for k, v in d.items():
    if isinstance(v, ms.Parameter) or isinstance(v, ms.Tensor):
        if v.dtype in (ms.bfloat16, ms.float16):
            v = v.astype(ms.float32)
        out[k] = v.asnumpy()
np.savez(sys.argv[2], **out)
"""


def _mindspore_arrays(ckpt: Path, python: str, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The tensors `names` of the checkpoint as MindSpore's own `load_checkpoint` reads them
    (in a subprocess, so MindSpore may live in another environment)."""
    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "ckpt.npz"
        (Path(d) / "names.json").write_text(json.dumps(list(names)), encoding="utf-8")
        try:
            proc = subprocess.run([python, "-c", _MS_DUMP, str(ckpt), str(target),
                                   str(Path(d) / "names.json")],
                                  capture_output=True, text=True, timeout=1800, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ConfigError(f"cannot run MindSpore with {python}: {e}") from None
        if proc.returncode != 0 or not target.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ConfigError(f"MindSpore ({python}) could not read {ckpt}: " + " / ".join(tail))
        with np.load(target) as z:
            return {k: z[k] for k in z.files}


def reference_bert(params: Mapping[str, tuple[torch.Tensor, bool]], config: Mapping[str, Any],
                   batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """A post-LN BERT encoder (float64) that applies each dense weight in the layout it is
    stored in (`(W, in_out)`: `x @ W` for (in, out), `x @ W.T` for (out, in)). Names are
    `BertModel`'s; returns the last hidden states."""
    import torch

    def p(name: str) -> torch.Tensor:
        if name not in params:
            raise ConfigError(f"the MindSpore reference needs {name!r}, which the checkpoint "
                              "does not set")
        return params[name][0]

    def dense(x: torch.Tensor, name: str) -> torch.Tensor:
        w = p(name + ".weight")
        y = x @ w if params[name + ".weight"][1] else x @ w.T
        return y + p(name + ".bias")

    eps = float(config.get("layer_norm_eps", 1e-12))

    def norm(x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, x.shape[-1:], p(name + ".weight"),
                                              p(name + ".bias"), eps)

    act = str(config.get("hidden_act", "gelu"))

    def activation(x: torch.Tensor) -> torch.Tensor:
        if act == "relu":
            return torch.relu(x)
        if act in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
            return torch.nn.functional.gelu(x, approximate="tanh")
        return torch.nn.functional.gelu(x)

    ids = batch["input_ids"]
    mask = batch["attention_mask"].double()
    types = batch.get("token_type_ids")
    if types is None:
        types = torch.zeros_like(ids)
    n = ids.shape[1]
    h = (p("embeddings.word_embeddings.weight")[ids]
         + p("embeddings.position_embeddings.weight")[torch.arange(n)][None]
         + p("embeddings.token_type_embeddings.weight")[types])
    h = norm(h, "embeddings.LayerNorm")
    heads = int(config["num_attention_heads"])
    size = h.shape[-1] // heads
    bias = (1.0 - mask)[:, None, None, :] * -1e9
    for i in range(int(config["num_hidden_layers"])):
        pre = f"encoder.layer.{i}."

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], n, heads, size).transpose(1, 2)

        q, k, v = (split(dense(h, pre + f"attention.self.{w}")) for w in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(size) + bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(h.shape)
        h1 = norm(dense(ctx, pre + "attention.output.dense") + h,
                  pre + "attention.output.LayerNorm")
        ff = dense(activation(dense(h1, pre + "intermediate.dense")), pre + "output.dense")
        h = norm(ff + h1, pre + "output.LayerNorm")
    return h
