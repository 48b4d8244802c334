"""The `hf` adapter on CUDA: auto device choice and fp16 stay faithful to the CPU vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from embedarena.embedders.hf import HFEmbedder  # noqa: E402

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

TEXTS = ["A man is eating food.", "A man is riding a horse.", "甲状腺结节",
         "Thyroid nodules are lumps that form within the thyroid gland; most are benign."] * 8


@pytest.fixture(params=["tiny", "minilm"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    if request.param == "tiny":
        return Path(request.getfixturevalue("tiny_bert_dir"))
    return Path(request.getfixturevalue("minilm_dir"))


def test_cuda_fp16_and_fp32_match_cpu(model_dir: Path) -> None:
    cpu = HFEmbedder(model_dir, device="cpu").embed_documents(TEXTS)
    auto = HFEmbedder(model_dir, batch_size=5)  # auto: cuda, fp16 by default there
    half = auto.embed_documents(TEXTS)
    assert auto._loaded is not None and auto._loaded[3] == "cuda"
    assert next(auto._loaded[1].parameters()).dtype == torch.float16
    assert half.dtype == np.float32
    assert float(np.min(np.sum(half * cpu, axis=1))) > 0.999  # cosine (unit vectors)
    full = HFEmbedder(model_dir, device="cuda", fp16=False).embed_documents(TEXTS)
    np.testing.assert_allclose(full, cpu, atol=1e-4)
    assert HFEmbedder(model_dir, fp16=False).fingerprint == HFEmbedder(model_dir).fingerprint
