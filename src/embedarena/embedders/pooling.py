"""Sentence vectors from token states: the one pooling function, used by the `hf` embedder
at inference and by training (a model trained with one pooling and served with another is
silently worse, so both sides must run the same code)."""

from __future__ import annotations

from typing import Any, Literal

Pooling = Literal["cls", "mean"]
POOLINGS: tuple[str, ...] = ("cls", "mean")


def pool(hidden: Any, mask: Any, pooling: str) -> Any:
    """`cls`: the first token's state; `mean`: the mean over unmasked tokens (torch tensors,
    hidden (batch, seq, dim), mask (batch, seq))."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling != "mean":
        raise ValueError(f"pooling is one of {', '.join(POOLINGS)}, not {pooling!r}")
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
