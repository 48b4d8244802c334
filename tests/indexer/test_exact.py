"""The one exact dense search: every backend ranks like a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from embedarena.errors import ConfigError
from embedarena.indexer.exact import exact_search, faiss_available

BACKENDS = ["numpy", "torch", *(["faiss"] if faiss_available() else [])]


def _reference(q: np.ndarray, d: np.ndarray, similarity: str) -> np.ndarray:
    """Scores written out the slow way, one pair at a time."""
    out = np.empty((len(q), len(d)))
    for i, a in enumerate(q):
        for j, b in enumerate(d):
            if similarity == "cosine":
                out[i, j] = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            elif similarity == "l2_norm":
                out[i, j] = -float(((a - b) ** 2).sum())
            else:
                out[i, j] = a @ b
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("similarity", ["cosine", "dot_product", "l2_norm"])
def test_every_backend_matches_the_reference(backend: str, similarity: str) -> None:
    if backend == "torch":
        pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    d, q = rng.normal(size=(60, 8)), rng.normal(size=(5, 8))
    ref = _reference(q, d, similarity)
    res = exact_search(q, d, 7, similarity, backend=backend, use_gpu=False)  # type: ignore[arg-type]
    assert res.indices.shape == (5, 7)
    assert (res.indices == np.argsort(-ref, axis=1)[:, :7]).all()
    np.testing.assert_allclose(res.scores, np.take_along_axis(ref, res.indices, axis=1),
                               rtol=1e-4, atol=1e-4)
    assert res.backend.startswith(backend)


def test_ties_keep_document_order_and_k_is_capped() -> None:
    d = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    res = exact_search(np.array([[1.0, 0.0]]), d, 10, "dot_product", backend="numpy")
    assert res.indices.tolist() == [[0, 1, 3, 2]]  # equal scores: earlier document first


def test_bad_arguments_are_clear() -> None:
    d = np.zeros((3, 2))
    with pytest.raises(ValueError, match="similarity"):
        exact_search(d, d, 1, "manhattan")
    with pytest.raises(ConfigError, match="backend"):
        exact_search(d, d, 1, backend="annoy")  # type: ignore[arg-type]
