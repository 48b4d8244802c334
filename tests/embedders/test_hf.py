"""The `hf` adapter on tiny random BERTs: shapes, pooling, normalisation, instruction,
length-sorted batching, sentence-transformers layouts, and the fingerprint."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from embedarena.embedders import hf as hf_mod  # noqa: E402
from embedarena.embedders.base import Embedder  # noqa: E402
from embedarena.embedders.hf import HFEmbedder, weights_digest  # noqa: E402
from embedarena.embedders.registry import create_embedder  # noqa: E402
from embedarena.errors import EmbedderError, MissingExtraError  # noqa: E402

TEXTS = [
    "the thyroid nodule",
    "a",
    "what is the name of the disease in the report and is it covered by the policy",
    "甲状腺结节",
    "of the",
    "保险 is what the 子宫肌瘤 and 乳头 of 高血压",
    "in",
]


def reference(model_dir: Path, texts: list[str], pooling: str, normalize: bool,
              max_length: int = 128) -> np.ndarray:
    """Independent computation with plain transformers, one text at a time (no padding)."""
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    rows = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt", truncation=True, max_length=max_length)
            h = model(**enc).last_hidden_state[0]
            v = h[0] if pooling == "cls" else h.mean(dim=0)
            if normalize:
                v = v / v.norm()
            rows.append(v.numpy())
    return np.stack(rows)


def test_defaults_shapes_and_normalisation(tiny_bert_dir: Path) -> None:
    emb = HFEmbedder(tiny_bert_dir, batch_size=3)
    assert isinstance(emb, Embedder)
    assert emb.name == tiny_bert_dir.name
    assert (emb.dim, emb.pooling, emb.normalized, emb.similarity) == (32, "cls", True,
                                                                       "dot_product")
    assert emb.max_length == 128  # tokenizer has no limit; the position limit is 128
    docs = emb.embed_documents(TEXTS)
    assert docs.shape == (len(TEXTS), 32) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(docs, reference(tiny_bert_dir, TEXTS, "cls", True), atol=1e-5)
    assert emb.embed_queries([]).shape == (0, 32)


def test_length_sorted_batches_restore_input_order(tiny_bert_dir: Path) -> None:
    batched = HFEmbedder(tiny_bert_dir, batch_size=2)
    one = HFEmbedder(tiny_bert_dir, batch_size=1)
    together = batched.embed_documents(TEXTS)
    assert batched.batches_run == 4
    singles = np.stack([one.embed_documents([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, singles, atol=1e-5)
    # the rows really are different, so a permutation could not pass unnoticed
    assert np.abs(together[0] - together[1]).max() > 1e-3


def test_mean_and_cls_pooling_differ_and_match_reference(tiny_bert_dir: Path) -> None:
    mean = HFEmbedder(tiny_bert_dir, pooling="mean", normalize=False, batch_size=4)
    cls = HFEmbedder(tiny_bert_dir, pooling="cls", normalize=False, batch_size=4)
    vm, vc = mean.embed_documents(TEXTS), cls.embed_documents(TEXTS)
    assert np.abs(vm - vc).max() > 1e-2
    np.testing.assert_allclose(vm, reference(tiny_bert_dir, TEXTS, "mean", False), atol=1e-5)
    np.testing.assert_allclose(vc, reference(tiny_bert_dir, TEXTS, "cls", False), atol=1e-5)
    assert not mean.normalized and mean.similarity == "cosine"
    assert np.abs(np.linalg.norm(vm, axis=1) - 1).max() > 1e-2


def test_query_instruction_applies_to_queries_only(tiny_bert_dir: Path) -> None:
    instr = "为这个句子生成表示以用于检索相关文章："
    plain = HFEmbedder(tiny_bert_dir)
    inst = HFEmbedder(tiny_bert_dir, query_instruction_for_retrieval=instr)
    q = ["甲状腺结节", "what is the policy"]
    np.testing.assert_allclose(inst.embed_documents(q), plain.embed_documents(q), atol=1e-6)
    assert np.abs(inst.embed_queries(q) - plain.embed_queries(q)).max() > 1e-3
    # it is prepended, exactly as FlagEmbedding does
    np.testing.assert_allclose(inst.embed_queries(q),
                               plain.embed_documents([instr + t for t in q]), atol=1e-5)
    np.testing.assert_allclose(plain.embed_queries(q), plain.embed_documents(q), atol=1e-6)


def test_max_length_truncates(tiny_bert_dir: Path) -> None:
    emb = HFEmbedder(tiny_bert_dir, max_length=4)  # [CLS] + 2 tokens + [SEP]
    assert emb.max_length == 4
    long, prefix = emb.embed_documents(["the of a is what and", "the of"])
    np.testing.assert_allclose(long, prefix, atol=1e-6)
    assert HFEmbedder(tiny_bert_dir, max_length=4000).max_length == 128  # position limit


def test_fingerprint_tracks_weights_and_settings(tiny_bert_dir: Path, tiny_bert_dir_b: Path,
                                                 tmp_path: Path) -> None:
    fp = HFEmbedder(tiny_bert_dir).fingerprint
    assert fp.startswith("hf:") and len(fp) == 3 + 64
    assert HFEmbedder(tiny_bert_dir).fingerprint == fp  # deterministic
    assert HFEmbedder(tiny_bert_dir_b).fingerprint != fp  # other weights
    for kwargs in ({"pooling": "mean"}, {"normalize": False}, {"max_length": 64},
                   {"query_instruction_for_retrieval": "q: "}):
        assert HFEmbedder(tiny_bert_dir, **kwargs).fingerprint != fp, kwargs
    for kwargs in ({"batch_size": 7}, {"device": "cpu"}, {"progress": False},
                   {"name": "renamed"}, {"fp16": True}, {"pooling": "cls"}):
        assert HFEmbedder(tiny_bert_dir, **kwargs).fingerprint == fp, kwargs

    # Content-based: a copy elsewhere is the same model; README / optimizer state do not count.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert_dir, copy)
    (copy / "README.md").write_text("model card")
    (copy / "optimizer.pt").write_bytes(b"\0" * 100)
    assert HFEmbedder(copy).fingerprint == fp
    # A fine-tuned checkpoint copied over the weights (same size, same file name) is caught.
    weights = next(p.name for p in copy.iterdir() if p.suffix in (".safetensors", ".bin"))
    assert (copy / weights).stat().st_size == (tiny_bert_dir_b / weights).stat().st_size
    shutil.copy2(tiny_bert_dir_b / weights, copy / weights)
    assert HFEmbedder(copy).fingerprint not in (fp, None)
    # Tokenizer changes count too.
    (copy / "vocab.txt").write_text((copy / "vocab.txt").read_text() + "newtoken\n")
    assert HFEmbedder(copy).fingerprint != HFEmbedder(tiny_bert_dir_b).fingerprint


def test_large_weights_are_sampled_but_changes_are_caught(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(hf_mod, "FULL_HASH_LIMIT", 1000)
    monkeypatch.setattr(hf_mod, "SAMPLE_BLOCK_SIZE", 256)
    monkeypatch.setattr(hf_mod, "SAMPLE_BLOCKS", 8)
    rng = np.random.default_rng(0)
    data = bytearray(rng.integers(0, 256, 64_000, dtype=np.uint8).tobytes())
    f = tmp_path / "model.safetensors"
    f.write_bytes(bytes(data))
    d0 = weights_digest(f)
    hf_mod._DIGEST_MEMO.clear()
    assert weights_digest(f) == d0
    step = (len(data) - 256) / 7
    # A change inside any sampled block (first, middle, last) is caught ...
    for pos in (0, int(3 * step) + 100, len(data) - 1):
        changed = bytearray(data)
        changed[pos] ^= 0xFF
        f.write_bytes(bytes(changed))
        hf_mod._DIGEST_MEMO.clear()
        assert weights_digest(f) != d0, pos
    # ... a change between blocks is not: proof that big files are sampled, not read whole.
    changed = bytearray(data)
    changed[int(3 * step) + 1000] ^= 0xFF
    f.write_bytes(bytes(changed))
    hf_mod._DIGEST_MEMO.clear()
    assert weights_digest(f) == d0
    # and the size is always part of it
    f.write_bytes(bytes(data) + b"\0")
    hf_mod._DIGEST_MEMO.clear()
    assert weights_digest(f) != d0


def _sentence_transformers_dir(src: Path, dst: Path, *, pooling: str, normalize: bool,
                               dense_out: int | None) -> Path:
    shutil.copytree(src, dst)
    modules = [{"idx": 0, "name": "0", "path": "",
                "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"}]
    (dst / "1_Pooling").mkdir()
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False}))
    if dense_out:
        from safetensors.torch import save_file

        g = torch.Generator().manual_seed(3)
        (dst / "2_Dense").mkdir()
        (dst / "2_Dense" / "config.json").write_text(json.dumps({
            "in_features": 32, "out_features": dense_out, "bias": True,
            "activation_function": "torch.nn.modules.activation.Tanh"}))
        save_file({"linear.weight": torch.randn(dense_out, 32, generator=g),
                   "linear.bias": torch.randn(dense_out, generator=g)},
                  str(dst / "2_Dense" / "model.safetensors"))
        modules.append({"idx": 2, "name": "2", "path": "2_Dense",
                        "type": "sentence_transformers.models.Dense"})
    if normalize:
        modules.append({"idx": 3, "name": "3", "path": "3_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (dst / "modules.json").write_text(json.dumps(modules))
    (dst / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16,
                                                               "do_lower_case": False}))
    return dst


def test_sentence_transformers_layout_is_followed(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    st = _sentence_transformers_dir(tiny_bert_dir, tmp_path / "st", pooling="mean",
                                    normalize=True, dense_out=7)
    emb = HFEmbedder(st)
    assert (emb.pooling, emb.normalized, emb.dim, emb.max_length) == ("mean", True, 7, 16)
    got = emb.embed_documents(TEXTS)
    w = load_file(str(st / "2_Dense" / "model.safetensors"))
    pooled = torch.from_numpy(reference(tiny_bert_dir, TEXTS, "mean", False, max_length=16))
    expected = torch.tanh(pooled @ w["linear.weight"].T + w["linear.bias"])
    expected = expected / expected.norm(dim=1, keepdim=True)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    # the Dense weights are part of the fingerprint
    before = emb.fingerprint
    from safetensors.torch import save_file

    save_file({k: v * 2 for k, v in w.items()}, str(st / "2_Dense" / "model.safetensors"))
    assert HFEmbedder(st).fingerprint != before


def test_st_without_normalize_module_is_not_normalised(tiny_bert_dir: Path,
                                                       tmp_path: Path) -> None:
    st = _sentence_transformers_dir(tiny_bert_dir, tmp_path / "st", pooling="cls",
                                    normalize=False, dense_out=None)
    emb = HFEmbedder(st)
    assert (emb.pooling, emb.normalized, emb.similarity) == ("cls", False, "cosine")
    assert HFEmbedder(st, normalize=True).normalized


def test_unsupported_st_pooling_and_modules(tiny_bert_dir: Path, tmp_path: Path) -> None:
    st = _sentence_transformers_dir(tiny_bert_dir, tmp_path / "st", pooling="max",
                                    normalize=False, dense_out=None)
    with pytest.raises(EmbedderError, match=r"pooling \(max\) is not supported"):
        HFEmbedder(st)
    assert HFEmbedder(st, pooling="mean").pooling == "mean"  # explicit choice overrides
    modules = json.loads((st / "modules.json").read_text())
    modules.append({"idx": 5, "name": "5", "path": "",
                    "type": "sentence_transformers.models.LayerNorm"})
    (st / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(EmbedderError, match="'LayerNorm' is not supported"):
        HFEmbedder(st, pooling="mean")


def test_bad_directories(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="does not exist"):
        HFEmbedder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbedderError, match="not a Hugging Face model directory"):
        HFEmbedder(tmp_path / "empty")


def test_missing_torch_names_the_extra(tiny_bert_dir: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'embedarena\[hf\]'"):
        HFEmbedder(tiny_bert_dir)


def test_model_loads_lazily(tiny_bert_dir: Path) -> None:
    emb = create_embedder({"type": "hf", "path": str(tiny_bert_dir), "name": "tiny"})
    assert isinstance(emb, HFEmbedder)
    _ = emb.dim, emb.fingerprint
    assert emb._loaded is None
    emb.embed_queries(["x"])
    assert emb._loaded is not None and emb._loaded[3] in ("cpu", "cuda", "mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda(tiny_bert_dir: Path) -> None:
    emb = HFEmbedder(tiny_bert_dir, device="cuda")
    with pytest.raises(EmbedderError, match="CUDA is not available"):
        emb.embed_documents(["x"])


def test_progress_goes_to_the_current_progress_not_stdout(
        tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from embedarena.progress import RecordingProgress, using

    monkeypatch.setattr(hf_mod, "PROGRESS_MIN_TEXTS", 1)
    rec = RecordingProgress()
    with using(rec):
        with_bar = HFEmbedder(tiny_bert_dir, batch_size=2).embed_documents(TEXTS)
        without = HFEmbedder(tiny_bert_dir, batch_size=2, progress=False).embed_documents(TEXTS)
    assert capsys.readouterr().out == ""
    np.testing.assert_allclose(with_bar, without, atol=1e-6)
    (task,) = rec.tasks  # one task, from the embedder with progress on
    assert task.completed == task.total == len(TEXTS) and task.closed
    assert "documents" in task.description
