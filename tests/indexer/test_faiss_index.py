"""faiss indexes of the faiss backend, and the one tie rule of the exact search on every
backend (faiss Flat returns the last of equal documents first; we never do)."""

from __future__ import annotations

import numpy as np
import pytest

from embedarena.indexer.exact import ExactIndex, exact_search, faiss_available, stable_top_k

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")


def _tied_docs() -> np.ndarray:
    """Six groups of four identical vectors: every query meets ties, some across the cutoff."""
    rng = np.random.default_rng(3)
    return np.repeat(rng.normal(size=(6, 8)), 4, axis=0)


@needs_faiss
def test_raw_faiss_flat_breaks_ties_the_other_way() -> None:
    """Why the tie rule exists: plain faiss puts the later of equal documents first."""
    import faiss

    d = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    index = faiss.IndexFlatIP(2)
    index.add(d)
    _, i = index.search(np.array([[1, 0]], dtype=np.float32), 2)
    assert i.tolist() != [[0, 1]]  # if faiss ever turns stable, this test can go


@pytest.mark.parametrize("backend", ["numpy", "torch", *(["faiss"] if faiss_available() else [])])
@pytest.mark.parametrize("k", [1, 3, 5, 10, 24])
def test_every_backend_keeps_the_earliest_of_tied_documents(backend: str, k: int) -> None:
    if backend == "torch":
        pytest.importorskip("torch")
    docs = _tied_docs()
    q = np.random.default_rng(4).normal(size=(7, 8))
    ref = exact_search(q, docs, k, "dot_product", backend="numpy")
    res = exact_search(q, docs, k, "dot_product", backend=backend, use_gpu=False)  # type: ignore[arg-type]
    assert res.indices.tolist() == ref.indices.tolist()
    again = ExactIndex(docs, "dot_product", backend, use_gpu=False)  # type: ignore[arg-type]
    assert again.search(q, k).indices.tolist() == again.search(q, k).indices.tolist()


def test_stable_top_k_widens_until_the_tie_ends() -> None:
    """A tie of 30 equal scores across k = 2: the engine's first answer is widened until the
    group is complete, then the earliest two are kept."""
    scores = np.zeros(40)
    scores[35:] = -1.0
    calls: list[int] = []

    def top(j: int) -> tuple[np.ndarray, np.ndarray]:
        calls.append(j)
        order = np.array(sorted(range(40), key=lambda x: (-scores[x], -x))[:j])  # latest first
        return scores[order][None, :], order[None, :]

    s, i = stable_top_k(top, 2, 40)
    assert i.tolist() == [[0, 1]] and s.tolist() == [[0.0, 0.0]]
    assert calls[0] < 40 and calls[-1] >= 35


@needs_faiss
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
@pytest.mark.parametrize("similarity", ["cosine", "dot_product", "l2_norm", "max_inner_product"])
def test_faiss_index_types_find_the_exact_neighbours_on_an_easy_set(kind: str,
                                                                   similarity: str) -> None:
    from embedarena.indexer.faiss_index import FaissIndex, FaissOptions

    rng = np.random.default_rng(0)
    docs = rng.normal(size=(400, 16)).astype(np.float32)
    q = docs[:20] + 0.01 * rng.normal(size=(20, 16)).astype(np.float32)
    opts = FaissOptions(type=kind, m=16, ef_construction=64, ef_search=64,  # type: ignore[arg-type]
                        nprobe=10 if kind == "ivf" else None, use_gpu=False)
    index = FaissIndex(docs, similarity, opts)
    res = index.search(q, 5)
    exact = exact_search(q, docs, 5, similarity, backend="numpy").indices
    assert res.indices.shape == (20, 5)
    if kind == "flat":
        assert index.exact and res.indices.tolist() == exact.tolist()
        np.testing.assert_allclose(res.scores, exact_search(q, docs, 5, similarity,
                                                            backend="numpy").scores,
                                   rtol=1e-4, atol=1e-4)
    else:
        assert not index.exact
        overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(res.indices, exact)])
        assert overlap > 0.9
        assert index.exact_search(q, 5).indices.tolist() == exact.tolist()
    assert index.description.startswith({"flat": "Flat", "hnsw": "HNSW16",
                                         "ivf": "IVF"}[kind])
    settings = index.settings()
    assert settings["where"] == "faiss-cpu" and settings["type"] == kind  # (no GPU here)
    assert set(settings) - {"description", "where", "type", "use_gpu"} == {
        "flat": set(), "hnsw": {"m", "ef_construction", "ef_search"},
        "ivf": {"nlist", "nprobe"}}[kind]  # only the knobs the type has


def test_ivf_sizes_default_from_the_corpus() -> None:
    from embedarena.indexer.faiss_index import FaissOptions

    o = FaissOptions(type="ivf")
    assert o.lists(1400) == 35 and o.probes(1400) == 10  # n/39 caps 4·√n = 149
    assert o.lists(1_000_000) == 4000 and o.lists(10) == 1 and o.probes(10) == 1
    assert FaissOptions(type="ivf", nlist=7, nprobe=50).probes(1400) == 7
    assert o.describe(1400) == "IVF35,Flat (nprobe 10)"


def test_scores_are_on_elasticsearchs_scale() -> None:
    from embedarena.indexer.faiss_index import es_scores

    s = np.array([[0.5, -0.5, 0.0]])
    assert es_scores(s, "cosine").tolist() == [[0.75, 0.25, 0.5]]
    assert es_scores(s, "dot_product").tolist() == [[0.75, 0.25, 0.5]]
    assert es_scores(s, "max_inner_product").tolist() == [[1.5, 1 / 1.5, 1.0]]
    assert es_scores(np.array([[-4.0, 0.0]]), "l2_norm").tolist() == [[0.2, 1.0]]  # -d²
    with pytest.raises(ValueError, match="similarity"):
        es_scores(s, "manhattan")
