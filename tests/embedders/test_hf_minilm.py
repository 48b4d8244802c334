"""The real all-MiniLM-L6-v2 through the `hf` adapter (and the `minilm` shortcut)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from embedarena.embedders.hf import HFEmbedder  # noqa: E402
from embedarena.embedders.registry import create_embedder  # noqa: E402

pytestmark = pytest.mark.slow

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "Thyroid nodules are lumps that form within the thyroid gland; most are benign.",
    "保险",
]


def test_matches_independent_mean_pooled_normalised_reference(minilm_dir: Path) -> None:
    emb = HFEmbedder(minilm_dir, batch_size=2)
    # the model dir's sentence-transformers config says: mean pooling, Normalize, 256 tokens
    assert (emb.dim, emb.pooling, emb.normalized, emb.max_length) == (384, "mean", True, 256)
    got = emb.embed_documents(SENTENCES)

    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    model = transformers.AutoModel.from_pretrained(minilm_dir).eval()
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    ref = (hidden * mask).sum(1) / mask.sum(1)
    ref = torch.nn.functional.normalize(ref, p=2, dim=1).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_semantic_sanity_via_minilm_shortcut(minilm_dir: Path) -> None:
    emb = create_embedder("minilm")
    assert isinstance(emb, HFEmbedder) and emb.model_dir == minilm_dir.resolve()
    q = emb.embed_queries([SENTENCES[0]])[0]
    bread, horse = emb.embed_documents(SENTENCES[1:3])
    assert float(q @ bread) > float(q @ horse) + 0.2
