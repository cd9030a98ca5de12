from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from deepseek_rag_finetune.losses import ContrastiveMarginLoss, InfoNCELoss


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_infonce_matches_cross_entropy_over_batch_and_negatives():
    q, p, n = _unit(4, 8), _unit(4, 8, seed=1), _unit(4, 2, 8, seed=2)
    loss = InfoNCELoss(temperature=0.1)(q, p, n)
    docs = torch.cat([p, n.reshape(-1, 8)])
    expected = F.cross_entropy(q @ docs.T / 0.1, torch.arange(4))
    assert torch.allclose(loss, expected)


def test_infonce_is_low_when_aligned_and_hard_negatives_raise_it():
    q = _unit(6, 16)
    aligned = InfoNCELoss(0.05)(q, q.clone())
    shuffled = InfoNCELoss(0.05)(q, q.roll(1, dims=0))
    assert aligned < 0.1 < shuffled
    near = F.normalize(q + 0.05 * _unit(6, 16, seed=3), dim=-1).unsqueeze(1)
    assert InfoNCELoss(0.05)(q, q.clone(), near) > aligned


def test_symmetric_averages_both_directions():
    q, p = _unit(5, 8), _unit(5, 8, seed=1)
    forward = F.cross_entropy(q @ p.T / 0.05, torch.arange(5))
    backward = F.cross_entropy(p @ q.T / 0.05, torch.arange(5))
    assert torch.allclose(InfoNCELoss(0.05, symmetric=True)(q, p), (forward + backward) / 2)


def test_infonce_gradients_flow_to_both_sides():
    q, p = _unit(4, 8).requires_grad_(), _unit(4, 8, seed=1).requires_grad_()
    InfoNCELoss()(q, p).backward()
    assert q.grad.abs().sum() > 0 and p.grad.abs().sum() > 0


def test_margin_loss_pulls_positives_to_one_and_ignores_negatives_below_margin():
    e = torch.eye(4)
    assert ContrastiveMarginLoss(margin=0.5)(e, e.clone()).item() == pytest.approx(0.0)
    # every negative at cosine 0.8 > margin 0.5 costs (0.3)^2
    q = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    neg = torch.tensor([[[0.8, math.sqrt(1 - 0.64)]], [[math.sqrt(1 - 0.64), 0.8]]])
    loss = ContrastiveMarginLoss(margin=0.5)(q, q.clone(), neg)
    # query 0 sees 3 negatives: the other positive (cos 0: free), its own mined one (cos 0.8: 0.3^2) and pair 1's
    # mined one (cos 0.6: 0.1^2) → (0.09 + 0.01) / 3; the same for query 1 by symmetry
    assert loss.item() == pytest.approx(0.1 / 3, abs=1e-5)


def test_bad_loss_settings_raise():
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(0)
    with pytest.raises(ValueError, match="margin"):
        ContrastiveMarginLoss(2.0)
