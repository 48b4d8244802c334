"""`embed_batch` / `embed_in_batches`: checked output, and errors that name the batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from embedarena.embedders.base import EmbedderBase, embed_batch, embed_in_batches
from embedarena.errors import AuthError, EmbedderError


class Scripted(EmbedderBase):
    """Returns unit vectors, except where told: NaN in a text, one vector short, or raising."""

    def __init__(self, nan_in: str | None = None, short: bool = False,
                 raise_: Exception | None = None) -> None:
        self.name = "scripted"
        self.nan_in, self.short, self.raise_ = nan_in, short, raise_
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return 4

    @property
    def fingerprint(self) -> str:
        return "scripted:1"

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents(texts)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if self.raise_ is not None and len(self.calls) == 2:
            raise self.raise_
        out = np.eye(4, dtype=np.float32)[[len(t) % 4 for t in texts]]
        if self.nan_in in texts:
            out[list(texts).index(self.nan_in), 0] = np.nan
        return out[:-1] if self.short and len(self.calls) == 2 else out


TEXTS = [f"t{i}" for i in range(10)]
IDS = [f"id-{i}" for i in range(10)]


def test_batches_in_order() -> None:
    emb = Scripted()
    out = embed_in_batches(emb, "document", TEXTS, IDS, batch_size=4)
    assert [len(c) for c in emb.calls] == [4, 4, 2] and out.shape == (10, 4)
    assert embed_in_batches(emb, "query", [], []).shape == (0, 4)


def test_nan_names_batch_range_first_id_and_position() -> None:
    with pytest.raises(EmbedderError) as ei:
        embed_in_batches(Scripted(nan_in="t6"), "query", TEXTS, IDS, batch_size=4)
    assert str(ei.value) == (
        "model 'scripted', query batch 2/3, texts 5–8 (first id 'id-4'): embedder 'scripted' "
        "returned NaN or infinite values in 1 of 4 vectors (first: text 3 of the call)")


def test_short_answer_names_the_batch() -> None:
    with pytest.raises(EmbedderError, match=r"^model 'm', document batch 2/3, texts 5–8 "
                                            r"\(first id 'id-4'\): embedder 'm' returned 3 "
                                            r"vectors for 4 texts$"):
        embed_in_batches(Scripted(short=True), "document", TEXTS, IDS, batch_size=4, name="m")


def test_adapter_errors_are_prefixed_other_errors_pass_unchanged() -> None:
    with pytest.raises(EmbedderError, match=r"^model 'scripted', document batch 2/3, texts 5–8 "
                                            r"\(first id 'id-4'\): HTTP 500 on all 6 attempts$"):
        embed_in_batches(Scripted(raise_=EmbedderError("HTTP 500 on all 6 attempts")),
                         "document", TEXTS, IDS, batch_size=4)
    refused = AuthError("refused the key")
    with pytest.raises(AuthError) as ei:
        embed_in_batches(Scripted(raise_=refused), "document", TEXTS, IDS, batch_size=4)
    assert ei.value is refused


def test_one_batch_without_ids() -> None:
    with pytest.raises(EmbedderError, match=r"document batch 7/9, texts 101–103: "):
        embed_batch(Scripted(nan_in="b"), "document", ["a", "b", "c"], start=100, number=7,
                    total=9)
