"""Cross-encoder fine-tuning: each loss learns, the label map, the output dir loads in
transformers and sentence-transformers alike, resume, progress, the base-model rules."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from embedarena.errors import ConfigError, DataError  # noqa: E402
from embedarena.training.data import (  # noqa: E402
    GroupDataset,
    PairCollator,
    PairDataset,
    load_graded_pairs,
    pairs_from_examples,
)
from embedarena.training.losses import (  # noqa: E402
    GroupCELoss,
    PointwiseBCELoss,
    PointwiseMSELoss,
)
from embedarena.training.reranker import (  # noqa: E402
    DEFAULT_LABEL_MAP,
    SIGMOID,
    RerankerConfig,
    pair_logits,
    train_reranker,
)
from tests.training.conftest import graded_tsv, toy_rows, write_jsonl  # noqa: E402


def _cfg(model: Path, train: Path, out: Path, **kw: object) -> RerankerConfig:
    base: dict[str, object] = dict(model=str(model), train=[str(train)], output_dir=str(out),
                                   batch_size=4, train_group_size=4, learning_rate=1e-3,
                                   logging_steps=2, report_to=["none"], progress=False,
                                   device="cpu", max_len=64)
    base.update(kw)
    return RerankerConfig(**base)  # type: ignore[arg-type]


def _examples(n: int = 8) -> list[Any]:
    from embedarena.data.readers import TrainExample

    return [TrainExample(r["query"], r["pos"], r["neg"])  # type: ignore[arg-type]
            for r in toy_rows(n)]


# -- the losses ---------------------------------------------------------------------------------
def test_cross_encoder_losses_match_hand_computation() -> None:
    logits = torch.tensor([2.0, 0.0, -1.0, 0.5, 0.5, 1.0])  # 2 groups of 3, positive first
    ce = GroupCELoss(3)(logits)
    s = logits.view(2, 3)
    expect = -(torch.log_softmax(s[0], 0)[0] + torch.log_softmax(s[1], 0)[0]) / 2
    assert ce.item() == pytest.approx(expect.item(), rel=1e-6)
    assert GroupCELoss(16).constant_loss() == pytest.approx(math.log(16))
    assert GroupCELoss(3)(torch.zeros(6)).item() == pytest.approx(math.log(3))

    targets = torch.tensor([1.0, 0.0, 0.75, 0.25, 0.5, 0.0])
    bce = PointwiseBCELoss()(logits, targets)
    p = torch.sigmoid(logits)
    assert bce.item() == pytest.approx(
        -(targets * p.log() + (1 - targets) * (1 - p).log()).mean().item(), rel=1e-6)
    mse = PointwiseMSELoss()(logits, targets)  # on sigmoid(logit), not the raw logit
    assert mse.item() == pytest.approx(((p - targets) ** 2).mean().item(), rel=1e-6)
    t = [1.0, 0.0, 0.0, 0.0]
    assert PointwiseBCELoss().constant_loss(t) == pytest.approx(
        -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert PointwiseMSELoss().constant_loss(t) == pytest.approx(0.1875)
    with pytest.raises(ValueError, match="groups of 4"):
        GroupCELoss(4)(logits)


@pytest.mark.parametrize("loss", ["group", "bce", "mse"])
def test_each_loss_decreases_on_a_fixed_batch(cross_encoder_base: Path, loss: str) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(cross_encoder_base)
    model = AutoModelForSequenceClassification.from_pretrained(cross_encoder_base, num_labels=1)
    collate = PairCollator(tok, 64)
    if loss == "group":
        ds: Any = GroupDataset(_examples(), train_group_size=4)
        loss_fn: Any = GroupCELoss(4)
    else:
        ds = PairDataset(pairs_from_examples(_examples())[0])
        loss_fn = PointwiseBCELoss() if loss == "bce" else PointwiseMSELoss()
    batch = collate([ds[i] for i in range(len(ds))])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        value = loss_fn(pair_logits(model, batch["pairs"]), batch.get("targets"))
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    assert losses[-1] < 0.5 * losses[0], losses


# -- data -------------------------------------------------------------------------------------
def test_pairs_from_rows_are_binary_and_never_use_gold_as_negative() -> None:
    from embedarena.data.readers import TrainExample

    rows = [TrainExample("q", ["A"], ["B", "C"]), TrainExample("q", ["B"], ["C"])]
    pairs, stats = pairs_from_examples(rows)
    assert {(x.passage, x.target) for x in pairs} == {("A", 1.0), ("B", 1.0), ("C", 0.0)}
    assert (stats.negatives_removed_as_gold, stats.duplicates_removed) == (1, 1)
    assert stats.lines()[0] == "3 training pairs (2 positive, 1 negative)"


def test_label_map_is_applied_and_an_unknown_label_names_file_and_line(tmp_path: Path) -> None:
    src = graded_tsv(tmp_path / "graded.tsv", toy_rows(2))
    pairs, report = load_graded_pairs(src, DEFAULT_LABEL_MAP)
    assert report.notes["header line skipped"] == 1 and report.loaded == len(pairs) == 12
    assert [x.target for x in pairs[:6]] == [1.0, 0.75, 0.5, 0.25, 0.25, 0.25]
    custom, _ = load_graded_pairs(src, {"3": 1, "2": 0.6, "1": 0.3, "0": 0})
    assert [x.target for x in custom[:4]] == [1.0, 0.6, 0.3, 0.0]
    lines = src.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].rsplit("\t", 1)[0] + "\t4"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"graded\.tsv:line 5: label '4' is not in the label "
                                        r"map \(3→1, 2→0\.75, 1→0\.5, 0→0\.25\)"):
        load_graded_pairs(src, DEFAULT_LABEL_MAP)
    src.write_text("q\td\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1: expected 3 tab-separated fields"):
        load_graded_pairs(src, DEFAULT_LABEL_MAP)


def test_mse_trains_on_graded_tsv_and_refuses_it_for_the_group_loss(
        cross_encoder_base: Path, tmp_path: Path) -> None:
    src = graded_tsv(tmp_path / "graded.tsv", toy_rows(8))
    res = train_reranker(_cfg(cross_encoder_base, src, tmp_path / "mse", loss="mse",
                              max_steps=6, label_map="3=1,2=0.75,1=0.5,0=0.25"))
    assert res.global_step == 6 and not res.health
    assert res.group_stats == [f"48 graded pairs from {src} (labels: 0×24, 1×8, 2×8, 3×8)"]
    meta = json.loads((tmp_path / "mse" / "embedarena_training.json").read_text())
    assert meta["loss"] == "mse" and meta["label_map"] == DEFAULT_LABEL_MAP
    with pytest.raises(ConfigError, match="--loss group trains on .*JSONL.*--loss mse"):
        train_reranker(_cfg(cross_encoder_base, src, tmp_path / "g", loss="group"))


# -- the output dir -----------------------------------------------------------------------------
def test_output_loads_in_transformers_and_cross_encoder_with_the_same_scores(
        cross_encoder_base: Path, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    out = tmp_path / "out"
    res = train_reranker(_cfg(cross_encoder_base, train, out, max_steps=8,
                              report_to=["tensorboard"]))
    assert res.global_step == 8 and res.losses[-1][1] < res.losses[0][1]
    assert list((out / "runs").rglob("events.out.tfevents.*")), "TensorBoard log written"
    config = json.loads((out / "config.json").read_text())
    # transformers 5 writes the label count as id2label (num_labels is derived from it)
    assert config["id2label"] == {"0": "LABEL_0"}
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["sentence_transformers"] == {"activation_fn": SIGMOID}
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_config["model_max_length"] == 64  # consumers truncate as training did
    meta = json.loads((out / "embedarena_training.json").read_text())
    assert meta["head"].startswith("added: a fresh 1-logit head on BertModel")
    assert meta["loss"] == "group" and meta["health"] == []

    pairs = [("what is 3 the", "3 the is 3"), ("what is 3 the", "4 and of"),
             ("what is 5 and", "5 and is 5"), ("the", "of the and a")]
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.num_labels == 1
    with torch.no_grad():
        enc = tok([q for q, _ in pairs], [p for _, p in pairs], padding=True, truncation=True,
                  return_tensors="pt")
        logits = model(**enc).logits.view(-1)
    ce = CrossEncoder(str(out), device="cpu")
    scores = ce.predict(pairs, convert_to_tensor=True)
    assert torch.allclose(scores, torch.sigmoid(logits), atol=1e-5)  # sigmoid, as configured
    raw = ce.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_tensor=True)
    assert torch.allclose(raw, logits, atol=1e-5)
    base = AutoModelForSequenceClassification.from_pretrained(out.parent / "ce-base",
                                                              num_labels=1)
    assert not torch.allclose(base.bert.embeddings.word_embeddings.weight,
                              model.bert.embeddings.word_embeddings.weight)


def test_a_reranker_base_keeps_its_head_and_a_classifier_is_refused(
        cross_encoder_base: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reranker = tmp_path / "reranker"
    AutoModelForSequenceClassification.from_pretrained(cross_encoder_base, num_labels=1
                                                       ).save_pretrained(reranker)
    AutoTokenizer.from_pretrained(cross_encoder_base).save_pretrained(reranker)
    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    notes: list[str] = []
    train_reranker(_cfg(reranker, train, tmp_path / "out", max_steps=2), log=notes.append)
    assert "classification head kept (BertForSequenceClassification, one logit)" in notes
    three = tmp_path / "three"
    AutoModelForSequenceClassification.from_pretrained(cross_encoder_base, num_labels=3
                                                       ).save_pretrained(three)
    with pytest.raises(ConfigError, match="classifier with 3 labels; a reranker has one logit"):
        train_reranker(_cfg(three, train, tmp_path / "o3", max_steps=2))


def test_resume_continues_from_the_saved_step(cross_encoder_base: Path, tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    full = train_reranker(_cfg(cross_encoder_base, train, tmp_path / "full", max_steps=6,
                               logging_steps=1, loss="bce"))
    train_reranker(_cfg(cross_encoder_base, train, tmp_path / "part", max_steps=6,
                        logging_steps=1, loss="bce", save_steps=3))
    ckpt = tmp_path / "part" / "checkpoint-3"
    assert (ckpt / "trainer_state.json").is_file() and (ckpt / "embedarena_training.json").is_file()
    res = train_reranker(_cfg(cross_encoder_base, train, tmp_path / "resumed", max_steps=6,
                              logging_steps=1, loss="bce", resume_from_checkpoint=str(ckpt)))
    assert res.global_step == 6 and res.resumed_from == str(ckpt)
    assert [s for s, _ in res.losses] == [1, 2, 3, 4, 5, 6]  # 1-3 from the checkpoint
    for (_, a), (_, b) in zip(res.losses, full.losses):
        assert a == pytest.approx(b, rel=1e-4)
    x = load_file(str(tmp_path / "full" / "model.safetensors"))
    y = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert x.keys() == y.keys() and all(np.allclose(x[k], y[k], atol=1e-5) for k in x)


def test_progress_and_notes_go_through_the_shared_progress(cross_encoder_base: Path,
                                                            tmp_path: Path) -> None:
    from embedarena import progress

    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    rec = progress.RecordingProgress()
    with progress.using(rec):
        res = train_reranker(_cfg(cross_encoder_base, train, tmp_path / "out", max_steps=3,
                                  progress=True, loss="bce"))
    [task] = rec.tasks
    assert (task.total, task.completed, task.closed) == (3, 3, True)
    assert task.description.endswith(f"loss {res.losses[-1][1]:.4f})")
    messages = [m for _, m in rec.notes]
    assert "144 training pairs (24 positive, 120 negative)" in messages
    assert any(m.startswith("vocabulary: ") for m in messages)
    warnings = [m for level, m in rec.notes if level == "warning"]
    assert warnings and all("unknown to this model's tokenizer" in m for m in warnings)


def test_extend_vocab_reaches_the_cross_encoder(cross_encoder_base: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from embedarena.training.vocab import vocab_report

    rows = [{"query": f"질문 {i}", "pos": [f"답변 {i}"], "neg": [f"다른 {i + 1}", f"기타 {i}"]}
            for i in range(8)]
    train = write_jsonl(tmp_path / "ko.jsonl", rows)
    res = train_reranker(_cfg(cross_encoder_base, train, tmp_path / "ext", max_steps=2,
                              extend_vocab=True, train_group_size=3))
    assert res.vocab_added > 0
    tok = AutoTokenizer.from_pretrained(tmp_path / "ext")
    assert vocab_report(tok, [r["query"] for r in rows]).unknown == 0


@pytest.mark.slow
def test_minilm_by_name_gets_a_head_and_loads_in_cross_encoder(minilm_dir: Path,
                                                               tmp_path: Path) -> None:
    """`minilm` resolves to the bundled all-MiniLM-L6-v2 (a sentence-transformers dir): its
    BERT gets a fresh 1-logit head and the result is an ordinary CrossEncoder."""
    from sentence_transformers import CrossEncoder

    train = write_jsonl(tmp_path / "train.jsonl", toy_rows(8))
    out = tmp_path / "minilm-rr"
    res = train_reranker(_cfg(Path("minilm"), train, out, max_steps=2, learning_rate=2e-5,
                              loss="bce", batch_size=8))
    assert res.global_step == 2
    meta = json.loads((out / "embedarena_training.json").read_text())
    assert meta["base_model"] == str(minilm_dir.resolve())
    assert meta["head"].startswith("added: a fresh 1-logit head on BertModel")
    scores = CrossEncoder(str(out), device="cpu").predict([("what is 3 the", "3 the is 3")])
    assert 0.0 < float(scores[0]) < 1.0


@pytest.mark.slow
def test_torchrun_two_processes_train_a_reranker(cross_encoder_base: Path,
                                                 tmp_path: Path) -> None:
    """The shared machinery under DDP (gloo, CPU), the health probe included."""
    import os
    import shutil
    import socket
    import subprocess

    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    train = write_jsonl(tmp_path / "train.jsonl", toy_rows(16))
    out = tmp_path / "out"
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(port), "-m", "embedarena",
           "train", "reranker", "-m", str(cross_encoder_base), "-t", str(train), "-o", str(out),
           "--max-steps", "4", "--batch-size", "2", "--train-group-size", "4", "--max-len",
           "64", "--report-to", "none", "--cpu", "--lr", "1e-3", "--logging-steps", "2",
           "--warmup-ratio", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[:4000] + "\n...\n" + proc.stdout[-2000:]
    assert proc.stdout.count("trained 4 steps") == 1  # one report, from the main process
    assert '"world_size": 2' in (out / "embedarena_training.json").read_text()
    assert '"global_step": 4' in (out / "trainer_state.json").read_text()
