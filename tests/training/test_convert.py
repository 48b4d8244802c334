"""`embedarena convert mindspore`: the .ckpt format read and written from MindSpore's published
schema (dtypes, chunks, scalars), a real BERT's tensors in mindformers naming and layout back to
the same embeddings, optimizer state dropped, unmapped/unset refused unless allowed, a wrongly
oriented square matrix caught by the output check, float16/bfloat16 checkpoints, MindNLP-style
names onto a reranker, the CLI, and (where an interpreter with the real `mindspore` package is
named by EMBEDARENA_TEST_MINDSPORE_PYTHON) a file written by mindspore.save_checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402

from embedarena.errors import ConfigError, DataError  # noqa: E402
from embedarena.training.convert import (  # noqa: E402
    CONVERT_META,
    convert_mindspore,
    read_checkpoint,
    read_texts,
    summarize_names,
    write_checkpoint,
)
from tests.conftest import CliResult, make_tiny_reranker  # noqa: E402
from tests.training.conftest import make_tiny_encoder, write_jsonl  # noqa: E402

TEXTS = ["what is the a", "甲状腺结节", "the of a is", "高血压和糖尿病", "in to and"]
#: mindformers' BERT layer names (mindformers/models/bert) → Hugging Face BertModel names, and
#: whether mindformers stores the weight (in, out) (its transpose_b=False linears).
_LAYER = [
    ("attention.dense1", "attention.self.query", False),
    ("attention.dense2", "attention.self.key", False),
    ("attention.dense3", "attention.self.value", False),
    ("attention.projection", "attention.output.dense", True),
    ("output.mapping", "intermediate.dense", True),
    ("output.projection", "output.dense", True),
]
_TOP = {
    "embeddings.word_embeddings.weight": "bert.word_embedding.embedding_table",
    "embeddings.position_embeddings.weight":
        "bert.embedding_postprocessor.full_position_embedding.embedding_table",
    "embeddings.token_type_embeddings.weight":
        "bert.embedding_postprocessor.token_type_embedding.embedding_table",
    "embeddings.LayerNorm.weight": "bert.embedding_postprocessor.layernorm.gamma",
    "embeddings.LayerNorm.bias": "bert.embedding_postprocessor.layernorm.beta",
    "pooler.dense.weight": "bert.dense.weight",
    "pooler.dense.bias": "bert.dense.bias",
}


def mindformers_names(layers: int) -> dict[str, tuple[str, bool]]:
    """HF name → (mindformers name, stored transposed)."""
    out = {k: (v, False) for k, v in _TOP.items()}
    for i in range(layers):
        ms, hf = f"bert.bert_encoder.encoder.blocks.{i}.", f"encoder.layer.{i}."
        for m, h, t in _LAYER:
            out[hf + h + ".weight"] = (ms + m + ".weight", t)
            out[hf + h + ".bias"] = (ms + m + ".bias", False)
        for m, h in (("layernorm2", "attention.output.LayerNorm"),
                     ("layernorm1", "output.LayerNorm")):
            out[hf + h + ".weight"] = (ms + m + ".gamma", False)
            out[hf + h + ".bias"] = (ms + m + ".beta", False)
    return out


def as_mindformers(state: dict[str, torch.Tensor], *, prefix: str = "network.model.",
                   optimizer: bool = True, wrong: str | None = None,
                   dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """A BertModel state dict as a mindformers training checkpoint holds it: renamed, (in, out)
    layers transposed, Adam moments and loop scalars beside it. `wrong`: an HF weight name
    left in torch's (out, in) layout where mindformers would have transposed it."""
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    names = mindformers_names(layers)
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k not in names:
            continue
        ms, t = names[k]
        v = v.T.contiguous() if t and k != wrong else v
        out[prefix + ms] = v.to(dtype) if dtype is not None else v
        if optimizer:
            out["adam_m." + prefix + ms] = torch.zeros_like(v)
            out["adam_v." + prefix + ms] = torch.ones_like(v)
    if optimizer:
        out["global_step"] = torch.tensor([120], dtype=torch.int32)
        out["learning_rate"] = torch.tensor(3e-5)
        out["beta1_power"] = torch.tensor(0.9)
        out["scale_sense"] = torch.tensor(1024.0)
    return out


def _state(d: Path) -> dict[str, torch.Tensor]:
    return load_file(str(d / "model.safetensors"))


def _embed(d: Path) -> np.ndarray:
    from embedarena.embedders.hf import HFEmbedder

    return HFEmbedder(d, device="cpu", progress=False).embed_documents(TEXTS)


@pytest.fixture
def bert(tmp_path: Path) -> Path:
    return make_tiny_encoder(tmp_path / "base")


# -- the file format ----------------------------------------------------------------------------
def test_checkpoint_format_round_trip_dtypes_chunks_scalars(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "f32": rng.standard_normal((3, 5)).astype(np.float32),
        "f16": rng.standard_normal((4,)).astype(np.float16),
        "f64": rng.standard_normal((2, 2, 2)),
        "i32": np.arange(7, dtype=np.int32),
        "i64": np.array([2**40, -3], dtype=np.int64),
        "u8": np.arange(5, dtype=np.uint8),
        "flag": np.array([True, False]),
        "scalar": np.float32(0.25),
        "bf16": torch.tensor([[1.5, -2.0], [3.25, 0.0078125]], dtype=torch.bfloat16),
    }
    # 16-byte chunks: every tensor above is split into several values with the same tag
    path = write_checkpoint(tmp_path / "x.ckpt", tensors, chunk_bytes=16)
    ckpt = read_checkpoint(path)
    assert list(ckpt.tensors) == list(tensors) and ckpt.other == {}
    for name, want in tensors.items():
        got = ckpt.tensors[name]
        if name == "bf16":
            assert got.dtype == "BFloat16" and got.shape == (2, 2)
            assert torch.equal(got.to_torch(), want)
            continue
        assert got.shape == np.shape(want) and got.data.dtype == np.asarray(want).dtype
        assert np.array_equal(got.data, want)
    assert ckpt.tensors["scalar"].shape == () and ckpt.tensors["i32"].dtype == "Int32"
    assert {ckpt.tensors[n].dtype for n in ("f32", "f16", "f64", "i64", "u8", "flag")} == {
        "Float32", "Float16", "Float64", "Int64", "UInt8", "Bool"}


def test_the_wire_format_follows_mindspores_schema(tmp_path: Path) -> None:
    """Field numbers and types as in checkpoint.proto: Checkpoint.value=1 {tag=1, tensor=2
    {dims=1 (unpacked varints), tensor_type=2, tensor_content=3}}, bytes checked by hand."""
    path = write_checkpoint(tmp_path / "w.ckpt", {"ab": np.array([[1.0, 2.0]], np.float32)})
    raw = path.read_bytes()
    tensor = (b"\x08\x01\x08\x02" + b"\x12\x07Float32" + b"\x1a\x08" +
              np.array([1.0, 2.0], np.float32).tobytes())
    value = b"\x0a\x02ab" + b"\x12" + bytes([len(tensor)]) + tensor
    assert raw == b"\x0a" + bytes([len(value)]) + value


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\xff\xfe not a protobuf \x00\x01")
    with pytest.raises(DataError, match=r"junk\.ckpt.*not a MindSpore checkpoint"):
        read_checkpoint(junk)
    good = write_checkpoint(tmp_path / "t.ckpt", {"w": np.zeros((4, 4), np.float32)})
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:-9])
    with pytest.raises(DataError, match=r"cut\.ckpt"):
        read_checkpoint(cut)
    with pytest.raises(DataError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing.ckpt")


# -- conversion ---------------------------------------------------------------------------------
def test_round_trip_mindformers_bert_gives_the_same_embeddings(bert: Path,
                                                               tmp_path: Path) -> None:
    state = _state(bert)
    ckpt = write_checkpoint(tmp_path / "ft.ckpt", as_mindformers(state))
    res = convert_mindspore(ckpt, bert, tmp_path / "out")
    assert {m.scheme for m in res.mapped} == {"mindformers-bert"}
    got = _state(tmp_path / "out")
    assert list(got) == list(state)
    assert all(torch.equal(got[k], state[k]) for k in state)
    assert np.abs(_embed(tmp_path / "out") - _embed(bert)).max() <= 1e-6
    # every Adam moment and loop scalar dropped, nothing else
    assert len(res.dropped) == 2 * len(res.mapped) + 4
    assert res.dropped["global_step"].startswith("training state")
    assert all(k.startswith(("adam_m.", "adam_v.")) for k in res.dropped
               if k not in ("global_step", "learning_rate", "beta1_power", "scale_sense"))
    assert res.unmapped == [] and res.unset == [] and res.casts == {}
    # 3 (in, out) linears per layer, each transposed by the table; all square ones confirmed
    assert sum(m.in_out for m in res.mapped) == 3 * 2 and not res.flipped
    assert {c.verdict for c in res.orientation} == {"confirmed"}
    assert len(res.orientation) == 2 * 4 + 1  # q, k, v, attention output per layer; pooler
    meta = json.loads((tmp_path / "out" / CONVERT_META).read_text())
    assert meta["checkpoint"]["path"] == str(ckpt.resolve()) and len(meta["mapped"]) == 39
    assert {"config.json", "vocab.txt", "tokenizer_config.json"} <= {
        p.name for p in (tmp_path / "out").iterdir()}


def test_square_matrix_in_the_wrong_layout_is_caught_by_output(bert: Path,
                                                               tmp_path: Path) -> None:
    """Layer 1's attention output projection is square (32x32): it fits either way round.
    Stored untransposed, the table's transpose makes it wrong; the output check sees it."""
    state = _state(bert)
    wrong = "encoder.layer.1.attention.output.dense.weight"
    # a "fine-tune": every tensor moved by ~5% of its spread, so nothing matches exactly
    gen = torch.Generator().manual_seed(3)
    moved = {k: (v + 0.05 * v.std() * torch.randn(v.shape, generator=gen)
                 if v.is_floating_point() and v.numel() > 1 else v) for k, v in state.items()}
    ckpt = write_checkpoint(tmp_path / "bad.ckpt", as_mindformers(moved, wrong=wrong))
    with pytest.raises(ConfigError) as e:
        convert_mindspore(ckpt, bert, tmp_path / "strict", orientation="table")
    assert "bert_encoder.encoder.blocks.1.attention.projection.weight" in str(e.value)
    assert not (tmp_path / "strict").exists()
    res = convert_mindspore(ckpt, bert, tmp_path / "out")
    assert [m.base for m in res.flipped] == [wrong] and res.flipped[0].flipped_by == "output"
    check = next(c for c in res.orientation if c.base == wrong)
    assert check.verdict == "flipped" and check.flipped_error < 0.2 < 1.0 < check.table_error
    assert all(c.verdict == "confirmed" for c in res.orientation if c.base != wrong)
    got = _state(tmp_path / "out")
    assert all(torch.equal(got[k], moved[k]) for k in moved)


def test_non_square_weight_in_the_other_layout_is_decided_by_shape(bert: Path,
                                                                   tmp_path: Path) -> None:
    state = _state(bert)
    odd = "encoder.layer.0.intermediate.dense.weight"  # 64x32: only one way round fits
    ckpt = write_checkpoint(tmp_path / "s.ckpt", as_mindformers(state, wrong=odd))
    with pytest.raises(ConfigError, match=r"s\.ckpt.*blocks\.0\.output\.mapping\.weight.*"
                       r"only the transpose fits"):
        convert_mindspore(ckpt, bert, tmp_path / "strict", orientation="table")
    res = convert_mindspore(ckpt, bert, tmp_path / "out")
    assert [(m.base, m.flipped_by) for m in res.flipped] == [(odd, "shape")]
    got = _state(tmp_path / "out")
    assert all(torch.equal(got[k], state[k]) for k in state)


def test_unrelated_checkpoint_is_inconclusive_and_the_table_decides(bert: Path,
                                                                    tmp_path: Path) -> None:
    other = make_tiny_encoder(tmp_path / "other", seed=7)
    ckpt = write_checkpoint(tmp_path / "o.ckpt", as_mindformers(_state(other)))
    res = convert_mindspore(ckpt, bert, tmp_path / "out")
    assert {c.verdict for c in res.orientation} == {"inconclusive"} and not res.flipped
    assert np.abs(_embed(tmp_path / "out") - _embed(other)).max() <= 1e-6


def test_unmapped_and_unset_are_refused_unless_allowed(bert: Path, tmp_path: Path) -> None:
    state = _state(bert)
    tensors = as_mindformers(state)
    for k in [k for k in tensors if "bert.dense." in k]:  # no pooler in the checkpoint
        del tensors[k]
    tensors["network.model.bert.mlmloss.vocab_dense.weight"] = torch.zeros(5, 32)
    tensors["network.model.bert.mlmloss.layernorm.gamma"] = torch.ones(32)
    ckpt = write_checkpoint(tmp_path / "p.ckpt", tensors)
    with pytest.raises(ConfigError) as e:
        convert_mindspore(ckpt, bert, tmp_path / "out")
    msg = str(e.value)
    assert "p.ckpt" in msg and "--allow-missing" in msg
    assert "network.model.bert.mlmloss.vocab_dense.weight" in msg
    assert "network.model.bert.mlmloss.layernorm.gamma" in msg
    assert "pooler.dense.weight" in msg and "pooler.dense.bias" in msg
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="pooler"):  # one side allowed is not enough
        convert_mindspore(ckpt, bert, tmp_path / "out", allow_missing=["bert.mlmloss.*"])
    res = convert_mindspore(ckpt, bert, tmp_path / "out",
                            allow_missing=["bert.mlmloss.*", "pooler.*", "nothing.*"])
    assert sorted(res.unmapped) == ["network.model.bert.mlmloss.layernorm.gamma",
                                    "network.model.bert.mlmloss.vocab_dense.weight"]
    assert sorted(res.unset) == ["pooler.dense.bias", "pooler.dense.weight"]
    assert res.unused_patterns == ["nothing.*"]
    got = _state(tmp_path / "out")
    assert torch.equal(got["pooler.dense.weight"], state["pooler.dense.weight"])  # base kept


def test_float16_and_bfloat16_checkpoints_are_cast_to_the_base_dtype(bert: Path,
                                                                     tmp_path: Path) -> None:
    state = _state(bert)
    want = _embed(bert)
    for dtype, name, tol in ((torch.float16, "Float16", 2e-3), (torch.bfloat16, "BFloat16", 2e-2)):
        ckpt = write_checkpoint(tmp_path / f"{name}.ckpt", as_mindformers(state, dtype=dtype))
        assert {t.dtype for t in read_checkpoint(ckpt).tensors.values()} >= {name}
        out = tmp_path / name
        res = convert_mindspore(ckpt, bert, out)
        assert res.casts == {f"{name} -> float32": len(res.mapped)}
        got = _state(out)
        assert {t.dtype for t in got.values() if t.is_floating_point()} == {torch.float32}
        k = "encoder.layer.0.attention.output.dense.weight"
        assert torch.equal(got[k], state[k].to(dtype).float())
        assert {c.verdict for c in res.orientation} == {"confirmed"}
        cos = (_embed(out) * want).sum(-1)
        assert cos.min() > 1 - tol


def test_mindnlp_style_names_onto_a_reranker(tmp_path: Path) -> None:
    """Hugging Face module names with MindSpore's LayerNorm gamma/beta, under `model.`."""
    rr = make_tiny_reranker(tmp_path / "rr")
    state = _state(rr)
    tensors = {}
    for k, v in state.items():
        if not v.is_floating_point():
            continue
        name = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta")
        tensors["model." + name] = v
        tensors["moments.model." + name] = torch.zeros_like(v)
    ckpt = write_checkpoint(tmp_path / "rr.ckpt", tensors)
    res = convert_mindspore(ckpt, rr, tmp_path / "out")
    assert res.kind == "reranker" and {m.scheme for m in res.mapped} == {"generic"}
    assert len(res.dropped) == len(res.mapped)
    got = _state(tmp_path / "out")
    assert all(torch.equal(got[k], state[k]) for k in state)

    from embedarena.embedders.reranker import create_reranker

    pairs = [(TEXTS[0], TEXTS[2]), (TEXTS[1], TEXTS[3])]
    a = create_reranker({"type": "reranker", "path": str(rr), "device": "cpu"})
    b = create_reranker({"type": "reranker", "path": str(tmp_path / "out"), "device": "cpu"})
    assert np.array_equal(a.score_pairs(pairs), b.score_pairs(pairs))


def test_mindspore_model_zoo_bert_names_onto_a_reranker(tmp_path: Path) -> None:
    """models/official/nlp/Bert's BertCLS: bert.bert.<BertModel>, head bert.dense_1; every
    dense (out, in); LayerNorm gamma/beta; embeddings as embedding_table."""
    rr = make_tiny_reranker(tmp_path / "rr")
    state = _state(rr)
    zoo = {"embeddings.word_embeddings.weight": "bert_embedding_lookup.embedding_table",
           "embeddings.token_type_embeddings.weight":
               "bert_embedding_postprocessor.token_type_embedding.embedding_table",
           "embeddings.position_embeddings.weight":
               "bert_embedding_postprocessor.full_position_embedding.embedding_table",
           "embeddings.LayerNorm.weight": "bert_embedding_postprocessor.layernorm.gamma",
           "embeddings.LayerNorm.bias": "bert_embedding_postprocessor.layernorm.beta",
           "pooler.dense.weight": "dense.weight", "pooler.dense.bias": "dense.bias"}
    for i in range(2):
        hf, ms = f"encoder.layer.{i}.", f"bert_encoder.layers.{i}."
        for h, m in (("attention.self.query", "attention.attention.query_layer"),
                     ("attention.self.key", "attention.attention.key_layer"),
                     ("attention.self.value", "attention.attention.value_layer"),
                     ("attention.output.dense", "attention.output.dense"),
                     ("intermediate.dense", "intermediate"), ("output.dense", "output.dense")):
            zoo[hf + h + ".weight"], zoo[hf + h + ".bias"] = ms + m + ".weight", ms + m + ".bias"
        for h, m in (("attention.output.LayerNorm", "attention.output.layernorm"),
                     ("output.LayerNorm", "output.layernorm")):
            zoo[hf + h + ".weight"], zoo[hf + h + ".bias"] = ms + m + ".gamma", ms + m + ".beta"
    tensors = {f"bert.bert.{zoo[k.removeprefix('bert.')]}": v for k, v in state.items()
               if k.removeprefix("bert.") in zoo}
    tensors.update({"bert.dense_1.weight": state["classifier.weight"],
                    "bert.dense_1.bias": state["classifier.bias"]})
    ckpt = write_checkpoint(tmp_path / "zoo.ckpt", tensors)
    res = convert_mindspore(ckpt, rr, tmp_path / "out")
    assert {m.scheme for m in res.mapped} == {"mindspore-bert"} and not res.flipped
    assert not any(m.in_out for m in res.mapped)
    got = _state(tmp_path / "out")
    assert all(torch.equal(got[k], state[k]) for k in state)


def test_shape_mismatch_and_existing_output(bert: Path, tmp_path: Path) -> None:
    tensors = as_mindformers(_state(bert), optimizer=False)
    tensors["network.model.bert.dense.bias"] = torch.zeros(31)
    ckpt = write_checkpoint(tmp_path / "s.ckpt", tensors)
    with pytest.raises(DataError, match=r"s\.ckpt.*bert\.dense\.bias.*\(31,\).*\(32,\)"):
        convert_mindspore(ckpt, bert, tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    good = write_checkpoint(tmp_path / "g.ckpt", as_mindformers(_state(bert)))
    with pytest.raises(ConfigError, match="--overwrite"):
        convert_mindspore(good, bert, tmp_path / "full")
    convert_mindspore(good, bert, tmp_path / "full", overwrite=True)
    assert not (tmp_path / "full" / "x").exists()
    for out in (bert, tmp_path):  # the base itself; a dir holding the checkpoint
        with pytest.raises(ConfigError, match="would overwrite"):
            convert_mindspore(good, bert, out, overwrite=True)
    assert (bert / "model.safetensors").is_file() and good.is_file()


def test_summarize_names_folds_layers() -> None:
    names = [f"encoder.layer.{i}.output.dense.weight" for i in range(12)] + ["pooler.x"]
    assert summarize_names(names) == "encoder.layer.{0-11}.output.dense.weight (x12), pooler.x"


def test_verify_texts_from_query_files_and_plain_lines(tmp_path: Path) -> None:
    q = write_jsonl(tmp_path / "q.jsonl", [{"query": t, "pos": ["d1"]} for t in TEXTS])
    assert read_texts(q) == TEXTS
    lines = tmp_path / "t.txt"
    lines.write_text("one text\n\nanother text\n", encoding="utf-8")
    assert read_texts(lines) == ["one text", "another text"]
    assert read_texts(q, limit=2) == TEXTS[:2]


def test_cli_convert_and_verify(cli: Callable[..., CliResult], bert: Path,
                                tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "c.ckpt", as_mindformers(_state(bert)))
    q = write_jsonl(tmp_path / "q.jsonl", [{"query": t, "pos": ["d1"]} for t in TEXTS])
    env = {"EMBEDARENA_HOME": str(tmp_path / "home"), "EMBEDARENA_MINDSPORE_PYTHON": None}
    res = cli("convert", "mindspore", ckpt, "--base", bert, "--out", tmp_path / "out",
              "--verify", q, env=env)
    assert res.code == 0, res.stderr
    assert "39 checkpoint tensors mapped" in res.stdout and "dropped 82" in res.stdout
    assert "9 square weights: 9 confirmed, 0 flipped" in res.stdout
    assert "not compared with the original checkpoint (no MindSpore)" in res.stdout
    assert "MindSpore is not importable" in res.stderr.replace("\n", " ")
    assert f"hf:{(tmp_path / 'out').resolve()}" in res.stdout
    meta = json.loads((tmp_path / "out" / CONVERT_META).read_text())
    assert meta["verify"]["texts"] == len(TEXTS)
    assert meta["verify"]["max_cosine_diff_vs_base"] < 1e-9
    partial = as_mindformers(_state(bert), optimizer=False)
    del partial["network.model.bert.dense.bias"]
    partial["network.model.bert.mlmloss.vocab_dense.weight"] = torch.zeros(5, 32)
    pc = write_checkpoint(tmp_path / "partial.ckpt", partial)
    res = cli("convert", "mindspore", pc, "--base", bert, "--out", tmp_path / "p", env=env)
    assert res.code == 2 and "--allow-missing" in res.stderr and "Traceback" not in res.stderr
    assert "pooler.dense.bias" in res.stderr and "mlmloss.vocab_dense.weight" in res.stderr
    res = cli("convert", "mindspore", pc, "--base", bert, "--out", tmp_path / "p",
              "--allow-missing", "*mlmloss*,pooler.dense.bias", env=env)
    assert res.code == 0, res.stderr
    assert "allowed: 1 unmapped checkpoint tensors, 1 base parameters" in res.stdout
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x07\x07\x07")
    res = cli("convert", "mindspore", bad, "--base", bert, "--out", tmp_path / "o2", env=env)
    assert res.code == 4 and "bad.ckpt" in res.stderr and "Traceback" not in res.stderr


# -- the real mindspore package (optional) ------------------------------------------------------
MINDSPORE_PYTHON = os.environ.get("EMBEDARENA_TEST_MINDSPORE_PYTHON")

_SAVE = """
import sys, numpy as np, mindspore as ms
arrays = np.load(sys.argv[1])
params = [{"name": k, "data": ms.Tensor(arrays[k])} for k in arrays.files]
params.append({"name": "global_step", "data": ms.Tensor(np.array([7], np.int32))})
ms.save_checkpoint(params, sys.argv[2], append_dict={"epoch_num": 3, "note": "x"})
"""


@pytest.mark.skipif(not MINDSPORE_PYTHON, reason="set EMBEDARENA_TEST_MINDSPORE_PYTHON to a "
                    "Python with the mindspore package (python -m venv V && V/bin/pip install "
                    "mindspore) to round-trip a file written by mindspore.save_checkpoint; CI "
                    "does not install it")
def test_round_trip_through_mindspore_save_checkpoint(bert: Path, tmp_path: Path) -> None:
    assert MINDSPORE_PYTHON
    state = _state(bert)
    tensors = as_mindformers(state, optimizer=False)
    arrays = tmp_path / "a.npz"
    np.savez(arrays, **{k: v.numpy() for k, v in tensors.items()})
    ckpt = tmp_path / "ms.ckpt"
    proc = subprocess.run([MINDSPORE_PYTHON, "-c", _SAVE, str(arrays), str(ckpt)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    read = read_checkpoint(ckpt)
    assert set(tensors) <= set(read.tensors)
    assert all(np.array_equal(read.tensors[k].data, v.numpy()) for k, v in tensors.items())
    res = convert_mindspore(ckpt, bert, tmp_path / "out", verify_texts=TEXTS,
                            mindspore_python=MINDSPORE_PYTHON)
    assert "global_step" in res.dropped and "epoch_num" in res.dropped
    assert res.unmapped == [] and res.unset == []
    assert np.abs(_embed(tmp_path / "out") - _embed(bert)).max() <= 1e-6
    assert res.verify is not None and res.verify.vs_mindspore is not None
    assert res.verify.vs_mindspore < 1e-6, res.verify
