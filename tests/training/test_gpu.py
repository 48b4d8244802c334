"""Training on CUDA: fp16 and bf16 steps keep the loss finite and falling; GPU mining."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from embedarena.training.embedder import TrainConfig, train_embedder  # noqa: E402
from embedarena.training.mining import dense_search  # noqa: E402
from embedarena.training.reranker import RerankerConfig, train_reranker  # noqa: E402
from tests.training.conftest import make_cross_encoder_base, toy_rows, write_jsonl  # noqa: E402

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_steps(tiny_encoder: Path, tmp_path: Path, precision: str) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    res = train_embedder(TrainConfig(
        model=str(tiny_encoder), train=[str(train)], output_dir=str(tmp_path / "out"),
        max_steps=10, batch_size=8, train_group_size=3, learning_rate=1e-3, logging_steps=1,
        report_to=["none"], progress=False, warmup_ratio=0.0, **{precision: True}))
    losses = [loss for _, loss in res.losses]
    assert res.global_step == 10 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reranker_mixed_precision_steps(tmp_path: Path, precision: str) -> None:
    """The cross-encoder under AMP: finite, falling loss, no false collapse alarm (the
    health probe runs outside autocast on the fp32 weights)."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    base = make_cross_encoder_base(tmp_path / "base")
    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    res = train_reranker(RerankerConfig(
        model=str(base), train=[str(train)], output_dir=str(tmp_path / "out"), max_steps=20,
        batch_size=8, train_group_size=4, max_len=64, learning_rate=1e-3, logging_steps=2,
        report_to=["none"], progress=False, **{precision: True}))
    losses = [loss for _, loss in res.losses]
    assert res.global_step == 20 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] and res.health == []


def test_gpu_search_matches_cpu() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    docs = rng.normal(size=(500, 16)).astype("float32")
    qs = rng.normal(size=(20, 16)).astype("float32")
    s_gpu, i_gpu, where = dense_search(qs, docs, 10, "torch", use_gpu=True)
    s_cpu, i_cpu, _ = dense_search(qs, docs, 10, "torch", use_gpu=False)
    assert where == "torch-cuda"
    assert (i_gpu == i_cpu).mean() > 0.99 and np.allclose(s_gpu, s_cpu, atol=1e-3)
