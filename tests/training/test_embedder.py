"""Fine-tuning: loss goes down, the saved dir reloads identically, resume, vocab extension."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from embedarena.training.data import GroupCollator, GroupDataset  # noqa: E402
from embedarena.training.embedder import TrainConfig, encode, train_embedder  # noqa: E402
from embedarena.training.losses import InfoNCELoss  # noqa: E402
from tests.training.conftest import toy_rows, write_jsonl  # noqa: E402


def _cfg(model: Path, train: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(model=str(model), train=[str(train)], output_dir=str(out),
                                   batch_size=4, train_group_size=3, learning_rate=1e-3,
                                   logging_steps=1, report_to=["none"], progress=False,
                                   device="cpu", warmup_ratio=0.0)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _toy_model_and_batch(tiny_encoder: Path) -> tuple[Any, dict[str, Any]]:
    """The tiny encoder and one collated batch of 8 toy queries, 3 passages each."""
    from transformers import AutoModel, AutoTokenizer

    from embedarena.data.readers import TrainExample

    rows = [TrainExample(r["query"], r["pos"], r["neg"])  # type: ignore[arg-type]
            for r in toy_rows(8)]
    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    model = AutoModel.from_pretrained(tiny_encoder)
    ds = GroupDataset(rows, train_group_size=3)
    return model, GroupCollator(tok, 32, 32)([ds[i] for i in range(len(ds))])


def test_loss_decreases_on_a_fixed_batch(tiny_encoder: Path) -> None:
    torch.manual_seed(0)
    model, batch = _toy_model_and_batch(tiny_encoder)
    loss_fn = InfoNCELoss(temperature=0.05)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        q = encode(model, batch["query"], "mean", True)
        p = encode(model, batch["passage"], "mean", True)
        loss = loss_fn(q, p, 3, batch["passage_keys"], batch["query_gold"],
                       batch["query_gold_mask"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_group_sampling_is_seeded_per_epoch_and_never_uses_gold() -> None:
    from embedarena.data.readers import TrainExample

    rows = [TrainExample("q", ["A"], ["B", "C", "D", "E"]),
            TrainExample("q", ["B"], ["C", "D"]),  # B is gold for q (row 1) → not a negative
            TrainExample("r", ["Z"], [])]  # no negatives: filled from the pool, never gold
    ds = GroupDataset(rows, train_group_size=3, seed=1)
    assert ds.stats.negatives_removed_as_gold == 1
    assert ds.stats.rows_without_negatives == 1
    first = [ds[i]["passages"] for i in range(3)]
    assert first == [ds[i]["passages"] for i in range(3)]
    for epoch in range(5):
        ds.set_epoch(epoch)
        for i in range(2):
            negs = ds[i]["passages"][1:]
            assert not set(negs) & {"A", "B"}
        assert "Z" not in ds[2]["passages"][1:]


def test_train_save_and_reload_give_the_same_embeddings(tiny_encoder: Path,
                                                        tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    out = tmp_path / "out"
    res = train_embedder(_cfg(tiny_encoder, train, out, max_steps=8, report_to=["tensorboard"]))
    assert res.global_step == 8
    assert res.losses and res.losses[-1][1] < res.losses[0][1]
    assert list((out / "runs").rglob("events.out.tfevents.*")), "TensorBoard log written"
    for f in ("config.json", "model.safetensors", "modules.json", "1_Pooling/config.json",
              "sentence_bert_config.json", "embedarena_training.json"):
        assert (out / f).is_file(), f
    texts = ["what is 3 the", "3 the is 3", "the and of"]

    from embedarena.embedders.hf import HFEmbedder

    ours = HFEmbedder(out, device="cpu", progress=False).embed_documents(texts)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(out), device="cpu").encode(texts, convert_to_numpy=True)
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModel.from_pretrained(out).eval()
    with torch.no_grad():
        ref = encode(model, dict(tok(texts, padding=True, return_tensors="pt")), "cls",
                     True).numpy()
    import numpy as np

    assert np.allclose(ours, ref, atol=1e-5)
    assert np.allclose(st, ref, atol=1e-5)
    # And the weights really changed.
    base = HFEmbedder(tiny_encoder, device="cpu", progress=False).embed_documents(texts)
    assert not np.allclose(base, ours, atol=1e-3)


def test_resume_continues_from_the_saved_step(tiny_encoder: Path, tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    full = tmp_path / "full"
    uninterrupted = train_embedder(_cfg(tiny_encoder, train, full, max_steps=6))
    part = tmp_path / "part"
    train_embedder(_cfg(tiny_encoder, train, part, max_steps=6, save_steps=3))
    ckpt = part / "checkpoint-3"
    assert (ckpt / "trainer_state.json").is_file() and (ckpt / "modules.json").is_file()
    resumed = tmp_path / "resumed"
    res = train_embedder(_cfg(tiny_encoder, train, resumed, max_steps=6,
                              resume_from_checkpoint=str(ckpt)))
    assert res.global_step == 6
    # Steps 1-3 come from the checkpoint's history, 4-6 were run now: no step twice, and
    # each step's loss is the uninterrupted run's (same data order, same weights).
    assert [s for s, _ in res.losses] == [1, 2, 3, 4, 5, 6]
    for (_, la), (_, lb) in zip(res.losses, uninterrupted.losses):
        assert la == pytest.approx(lb, rel=1e-4)
    a, b = load_file(str(full / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(np.allclose(a[k], b[k], atol=1e-5) for k in a), "resume == uninterrupted run"


def test_progress_and_notes_go_through_the_shared_progress(tiny_encoder: Path,
                                                            tmp_path: Path) -> None:
    from embedarena import progress

    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    rec = progress.RecordingProgress()
    with progress.using(rec):
        res = train_embedder(_cfg(tiny_encoder, train, tmp_path / "out", max_steps=3,
                                  progress=True))
    [task] = rec.tasks
    assert (task.total, task.completed, task.closed) == (3, 3, True)
    assert task.description == f"train (epoch {3 / 6:.2f}, loss {res.losses[-1][1]:.4f})"
    assert any(msg.startswith("vocabulary: ") for _, msg in rec.notes), rec.notes
    meta = json.loads((tmp_path / "out" / "embedarena_training.json").read_text())
    assert meta["config"]["max_steps"] == 3 and meta["config"]["progress"] is True


def test_training_imports_no_cli_pipeline_or_rich() -> None:
    """Library code reports through `embedarena.progress`; the CLI owns the screen."""
    import ast

    import embedarena.training.embedder as mod

    tree = ast.parse(Path(mod.__file__).read_text(encoding="utf-8"))
    names = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    bad = {m for m in names if m.split(".")[0] == "rich"
           or m.startswith(("embedarena.cli", "embedarena.pipeline"))}
    assert not bad


def test_vocabulary_check_and_extension(tiny_encoder: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from embedarena.training.vocab import vocab_report

    # Hangul is not in the tiny vocabulary: the model is blind to these texts.
    rows = [{"query": f"질문 {i}", "pos": [f"답변 {i}"], "neg": [f"다른 {i + 1}"]}
            for i in range(8)]
    train = write_jsonl(tmp_path / "ko.jsonl", rows)
    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    rep = vocab_report(tok, [r["query"] for r in rows])
    assert rep.blind and rep.share == pytest.approx(0.5)
    notes: list[str] = []
    out = tmp_path / "ext"
    res = train_embedder(_cfg(tiny_encoder, train, out, max_steps=2, extend_vocab=True),
                         log=notes.append)
    assert res.vocab_added > 0
    assert any("extended the vocabulary" in n and "unknown now 0.0%" in n for n in notes), notes
    tok2 = AutoTokenizer.from_pretrained(out)
    assert vocab_report(tok2, [r["query"] for r in rows]).unknown == 0
    from embedarena.embedders.hf import HFEmbedder

    vecs = HFEmbedder(out, device="cpu", progress=False).embed_documents(["질문", "답변"])
    assert vecs.shape == (2, 32)
    from transformers import AutoModel

    emb = AutoModel.from_pretrained(out).get_input_embeddings().weight.detach()
    new_ids = tok2.convert_tokens_to_ids(["질", "문", "답", "변"])
    assert len(set(new_ids)) == 4 and tok2.unk_token_id not in new_ids
    rows = emb[new_ids]
    assert torch.cdist(rows, rows).fill_diagonal_(1.0).min() > 0.1  # distinct, not one [UNK]
    assert (rows.norm(dim=1) / emb[:len(tok)].norm(dim=1).mean()).max() < 3  # in distribution
    meta = json.loads((out / "embedarena_training.json").read_text())
    assert meta["vocab_before"]["unknown"] > 0


def test_cached_loss_gives_the_same_gradient(tiny_encoder: Path) -> None:
    """GradCache (chunks of 3) must produce the gradient of the plain loss on the full batch."""
    from types import SimpleNamespace

    from embedarena.training.embedder import _make_trainer_class

    model, batch = _toy_model_and_batch(tiny_encoder)
    extra = (batch["passage_keys"], batch["query_gold"], batch["query_gold_mask"])
    loss_fn = InfoNCELoss(temperature=0.05)

    loss = loss_fn(encode(model, batch["query"], "mean", True),
                   encode(model, batch["passage"], "mean", True), 3, *extra)
    loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    fake_trainer = SimpleNamespace(cache_chunk_size=3, loss_fn=loss_fn, pooling="mean",
                                   normalize=True)
    cached_loss = _make_trainer_class()._cached_loss(fake_trainer, model, batch["query"],
                                                     batch["passage"], 3, extra)
    (cached_loss * 0.5).backward()  # as under gradient accumulation over 2 steps
    assert cached_loss.item() == pytest.approx(loss.item(), rel=1e-6)
    for n, p in model.named_parameters():
        if n in plain:
            assert torch.allclose(p.grad, 0.5 * plain[n], atol=1e-6, rtol=1e-4), n
