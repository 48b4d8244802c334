"""The real MiniLM: blind to Chinese labels until --extend-vocab; a short fine-tune on the
FlagEmbedding toy data reloads identically in sentence-transformers (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌", "慢性阻塞性肺疾病", "类风湿关节炎"]


@pytest.mark.slow
def test_minilm_cannot_read_chinese_labels(minilm_dir: Path) -> None:
    from transformers import AutoTokenizer

    from embedarena.training.vocab import new_tokens_for, vocab_report

    rep = vocab_report(AutoTokenizer.from_pretrained(minilm_dir), LABELS)
    assert rep.blind and rep.share > 0.5, rep.summary()
    assert "癌" in new_tokens_for(rep)


@pytest.mark.slow
def test_minilm_finetune_reloads_in_sentence_transformers(minilm_dir: Path, shared_data: Path,
                                                          tmp_path: Path) -> None:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from embedarena.embedders.hf import HFEmbedder
    from embedarena.training.embedder import TrainConfig, train_embedder

    train = shared_data / "flagembedding-toy/old-examples/finetune/toy_finetune_data.jsonl"
    out = tmp_path / "minilm-ft"
    res = train_embedder(TrainConfig(model=str(minilm_dir), train=[str(train)],
                                     output_dir=str(out), max_steps=3, batch_size=4,
                                     train_group_size=3, passage_max_len=64, query_max_len=32,
                                     report_to=["none"], progress=False, device="cpu",
                                     temperature=0.05))
    assert res.global_step == 3
    texts = ["A woman is standing on a cliff.", "There was a reform in 1996."]
    ours = HFEmbedder(out, device="cpu", progress=False).embed_documents(texts)
    st = SentenceTransformer(str(out), device="cpu").encode(texts)
    assert np.allclose(ours, st, atol=1e-5)
    base = HFEmbedder(minilm_dir, device="cpu", progress=False).embed_documents(texts)
    assert not np.allclose(base, ours, atol=1e-4)
