"""InfoNCE: false-negative masking, in-batch on/off, against a hand-computed softmax."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from embedarena.training.losses import InfoNCELoss  # noqa: E402


def _unit(*rows: list[float]) -> torch.Tensor:
    t = torch.tensor(rows, dtype=torch.float32)
    return torch.nn.functional.normalize(t, dim=-1)


def test_in_batch_loss_matches_hand_computation() -> None:
    q = _unit([1, 0], [0, 1])
    p = _unit([1, 0.1], [0.3, 1], [0, 1], [1, 1])  # group 2: q0 → p0,p1; q1 → p2,p3
    loss = InfoNCELoss(temperature=0.5, mask_false_negatives=False)(q, p, 2)
    s = (q @ p.T) / 0.5
    expect = (-torch.log_softmax(s[0], 0)[0] - torch.log_softmax(s[1], 0)[2]) / 2
    assert loss.item() == pytest.approx(expect.item(), rel=1e-6)


def test_shared_gold_label_is_masked_not_pushed_away() -> None:
    # q0 and q1 are both about label A; q1's positive is A, so for q0 it is a false negative.
    q = _unit([1, 0], [1, 0.2])
    p = _unit([1, 0], [0, 1], [1, 0], [0.5, -1])
    keys = torch.tensor([10, 20, 10, 30])
    gold = torch.tensor([[10, 0], [10, 0]])
    gmask = torch.tensor([[True, False], [True, False]])
    fn = InfoNCELoss(temperature=0.1)
    loss = fn(q, p, 2, keys, gold, gmask)
    # q0: column 2 (same text as its positive) is masked; q1: column 0 is masked.
    assert fn.last_masked == 2
    s = (q @ p.T) / 0.1
    l0 = -torch.log_softmax(s[0, [0, 1, 3]], 0)[0]
    l1 = -torch.log_softmax(s[1, [1, 2, 3]], 0)[1]
    assert loss.item() == pytest.approx(((l0 + l1) / 2).item(), rel=1e-5)
    unmasked = InfoNCELoss(temperature=0.1, mask_false_negatives=False)(q, p, 2, keys, gold,
                                                                         gmask)
    assert unmasked.item() > loss.item() + 0.5  # the duplicate label took half the mass


def test_without_in_batch_negatives_only_the_group_counts() -> None:
    q = _unit([1, 0], [0, 1])
    p = _unit([1, 0], [0, 1], [0, 1], [1, 0])
    loss = InfoNCELoss(temperature=1.0, in_batch_negatives=False)(q, p, 2)
    expect = -math.log(math.exp(1) / (math.exp(1) + math.exp(0)))
    assert loss.item() == pytest.approx(expect, rel=1e-6)


def test_gradient_flows_and_shapes_are_checked() -> None:
    q = _unit([1, 0], [0, 1]).requires_grad_()
    p = _unit([1, 0], [0, 1], [0, 1]).requires_grad_()
    with pytest.raises(ValueError, match="passages"):
        InfoNCELoss()(q, p, 2)
    p4 = _unit([1, 0], [0, 1], [0, 1], [1, 0]).requires_grad_()
    InfoNCELoss()(q, p4, 2).backward()
    assert q.grad is not None and p4.grad is not None and p4.grad.abs().sum() > 0
