"""Losses: InfoNCE for bi-encoders; listwise and pointwise losses for cross-encoders.

InfoNCE comes with in-batch false-negative masking and cross-device negatives.

Scores are `q · p / temperature` over the group's passages (or over every passage in the batch
with in-batch negatives, and over every device's passages with cross-device negatives). A
passage whose key is among the query's gold keys, other than its own positive, is masked out
of the softmax: when many queries share a label, the label must not be pushed away from a
query it is correct for.

Cross-device negatives gather passages from every process *with gradient*: the backward of the
gather sums each process's gradient for a passage and hands it back to the process that
encoded it. Each process's loss is the mean over its own queries and DDP averages gradients
over processes, so the update equals the one-process update on the concatenated batch.

Cross-encoder losses take one logit per (query, passage) pair and say what a *constant*
score would cost (`constant_loss`): the training-health check compares the running loss with
it, since a model that scores every candidate alike has learned nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _gather_sizes(n: int, device: torch.device) -> list[int]:
    size = torch.tensor([n], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def gather_nograd(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate `t` (first dim may differ per process) from every process; also return
    this process's offset into the result."""
    sizes = _gather_sizes(t.shape[0], t.device)
    top = max(sizes)
    padded = t.new_zeros((top, *t.shape[1:]))
    padded[:t.shape[0]] = t
    parts = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    rank = dist.get_rank()
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]), sum(sizes[:rank])


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward all-reduces (sums) the gradient and keeps this process's slice.

    Written with all_reduce instead of reduce_scatter so it runs on gloo (CPU) as on NCCL.
    """

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        out, offset = gather_nograd(t)
        ctx.offset, ctx.n = offset, t.shape[0]
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.offset:ctx.offset + ctx.n]


def gather_with_grad(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate `t` from every process, differentiably; returns (all, this offset)."""
    if not _distributed():
        return t, 0
    sizes = _gather_sizes(t.shape[0], t.device)
    return _GatherWithGrad.apply(t), sum(sizes[:dist.get_rank()])


class InfoNCELoss(nn.Module):
    """Contrastive loss over groups of `group_size` passages (positive first) per query.

    `forward` returns the mean loss over this process's queries; `last_masked` counts the
    scores masked as false negatives in the last call (logged by the trainer).
    """

    def __init__(self, temperature: float = 0.02, in_batch_negatives: bool = True,
                 cross_device: bool = True, mask_false_negatives: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = temperature
        self.in_batch_negatives = in_batch_negatives
        self.cross_device = cross_device
        self.mask_false_negatives = mask_false_negatives
        self.last_masked = 0

    def forward(self, q: torch.Tensor, p: torch.Tensor, group_size: int,
                passage_keys: torch.Tensor | None = None,
                query_gold: torch.Tensor | None = None,
                query_gold_mask: torch.Tensor | None = None) -> torch.Tensor:
        n_q = q.shape[0]
        if p.shape[0] != n_q * group_size:
            raise ValueError(f"{p.shape[0]} passages for {n_q} queries × group {group_size}")
        q, p = q.float(), p.float()
        if not self.in_batch_negatives:
            scores = torch.einsum("qd,qgd->qg", q, p.view(n_q, group_size, -1))
            target = torch.zeros(n_q, dtype=torch.long, device=q.device)
            cand_keys = passage_keys.view(n_q, group_size) if passage_keys is not None else None
            own = torch.zeros_like(scores, dtype=torch.bool)
            own[:, 0] = True
            if self.mask_false_negatives and cand_keys is not None and query_gold is not None:
                hit = (cand_keys[:, :, None] == query_gold[:, None, :])
                if query_gold_mask is not None:
                    hit &= query_gold_mask[:, None, :]
                false_neg = hit.any(-1) & ~own
            else:
                false_neg = torch.zeros_like(own)
        else:
            offset = 0
            keys = passage_keys
            if self.cross_device and _distributed():
                p, offset = gather_with_grad(p)
                if keys is not None:
                    keys, _ = gather_nograd(keys)
            scores = q @ p.T
            target = offset + torch.arange(n_q, device=q.device) * group_size
            if self.mask_false_negatives and keys is not None and query_gold is not None:
                hit = keys[None, :, None] == query_gold[:, None, :]
                if query_gold_mask is not None:
                    hit &= query_gold_mask[:, None, :]
                false_neg = hit.any(-1)
                false_neg[torch.arange(n_q, device=q.device), target] = False
            else:
                false_neg = torch.zeros_like(scores, dtype=torch.bool)
        self.last_masked = int(false_neg.sum().item())
        scores = (scores / self.temperature).masked_fill(false_neg, torch.finfo(scores.dtype).min)
        return nn.functional.cross_entropy(scores, target)


# -- cross-encoders ----------------------------------------------------------------------------
class GroupCELoss(nn.Module):
    """FlagEmbedding's reranker loss: softmax cross-entropy over each query's group of
    `group_size` pair logits, the positive first (listwise; scores are raw logits)."""

    def __init__(self, group_size: int) -> None:
        super().__init__()
        if group_size < 2:
            raise ValueError("group cross-entropy needs a negative (group size >= 2)")
        self.group_size = group_size

    def forward(self, logits: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        if logits.shape[0] % self.group_size:
            raise ValueError(f"{logits.shape[0]} scores are not groups of {self.group_size}")
        scores = logits.float().view(-1, self.group_size)
        target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
        return nn.functional.cross_entropy(scores, target)

    def constant_loss(self, targets: Sequence[float] | None = None) -> float:
        """Equal scores make the softmax uniform: ln(G)."""
        return math.log(self.group_size)


class PointwiseBCELoss(nn.Module):
    """RAG-Retrieval's "classification": binary cross-entropy on the logit of each pair
    against its target (1 positive, 0 negative, or a mapped grade); predictions are
    sigmoid(logit) in 0..1."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        if targets is None:
            raise ValueError("the pointwise loss needs a target per pair")
        return nn.functional.binary_cross_entropy_with_logits(logits.float().view(-1),
                                                              targets.float().view(-1))

    def constant_loss(self, targets: Sequence[float] | None = None) -> float:
        """The best constant score predicts the mean target m: loss = the entropy of m."""
        m = sum(targets) / len(targets) if targets else 0.0
        if m <= 0.0 or m >= 1.0:
            return 0.0
        return -(m * math.log(m) + (1 - m) * math.log(1 - m))


class PointwiseMSELoss(nn.Module):
    """RAG-Retrieval's "regression": mean squared error between sigmoid(logit) and the
    mapped grade. On the sigmoid, not the raw logit, because the targets live in 0..1 (3 → 1,
    0 → 0.25): the prediction is then directly a score on the label scale, its gradient
    vanishes for confidently right pairs instead of pushing logits without bound, and
    inference stays what the seed's users do, sigmoid(logit)."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        if targets is None:
            raise ValueError("the pointwise loss needs a target per pair")
        return nn.functional.mse_loss(torch.sigmoid(logits.float().view(-1)),
                                      targets.float().view(-1))

    def constant_loss(self, targets: Sequence[float] | None = None) -> float:
        """The best constant predicts the mean target: loss = the targets' variance."""
        if not targets:
            return 0.0
        m = sum(targets) / len(targets)
        return sum((t - m) ** 2 for t in targets) / len(targets)
