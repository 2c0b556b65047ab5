"""Hallucinator: extrapolation, MLP shape, extended batch, off in evaluation mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genview_hf.losses import info_nce_loss
from genview_hf.modeling.hallucinator import Hallucinator


def test_mlp_is_2d_2d_2d_d_with_relu():
    module = Hallucinator(16)
    linears = [m for m in module.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 32), (32, 32), (32, 16)]
    assert sum(isinstance(m, nn.ReLU) for m in module.mlp) == 2
    assert isinstance(module.mlp[-1], nn.Linear)  # no activation on the output


def test_forward_is_mlp_of_query_and_extrapolation():
    module = Hallucinator(8)
    q, k = torch.randn(5, 8), torch.randn(5, 8)
    h = module(q, k, lam=0.07)
    e = q + 0.07 * (q - k)
    assert torch.allclose(h, module.mlp(torch.cat([q, e], dim=-1)))


def test_lambda_is_drawn_per_forward_in_range():
    module = Hallucinator(4, lam_max=0.1)
    q, k = torch.randn(3, 4), torch.randn(3, 4)
    lams = []
    for _ in range(200):
        e = module.extrapolate(q, k)
        lam = ((e - q) / (q - k)).flatten()
        assert torch.allclose(lam, lam[0].expand_as(lam), atol=1e-5)  # one lam for the whole batch
        lams.append(lam[0].item())
    assert min(lams) >= 0.0 and max(lams) < 0.1 + 1e-6
    assert max(lams) - min(lams) > 0.05  # it does vary from step to step


def test_extend_gives_q_h_against_k_k():
    module = Hallucinator(8)
    q, k = torch.randn(5, 8), torch.randn(5, 8)
    torch.manual_seed(3)
    queries, keys = module.extend(q, k)
    torch.manual_seed(3)
    h = module(q, k)
    assert queries.shape == (10, 8) and keys.shape == (10, 8)
    assert torch.equal(queries[:5], q) and torch.allclose(queries[5:], h)
    assert torch.equal(keys[:5], k) and torch.equal(keys[5:], k)


def test_off_in_evaluation_mode():
    module = Hallucinator(8).eval()
    q, k = torch.randn(5, 8), torch.randn(5, 8)
    assert module(q, k).shape == (0, 8)
    queries, keys = module.extend(q, k)
    assert queries is q and keys is k


def test_trained_only_through_the_loss():
    module = Hallucinator(8)
    q = torch.randn(6, 8, requires_grad=True)
    k = torch.randn(6, 8)  # momentum keys: no gradient
    queries, keys = module.extend(q, k)
    info_nce_loss(queries, keys, torch.randn(20, 8)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_state_dict_round_trip():
    a, b = Hallucinator(8), Hallucinator(8)
    b.load_state_dict(a.state_dict())
    q, k = torch.randn(2, 8), torch.randn(2, 8)
    assert torch.equal(a(q, k, lam=0.05), b(q, k, lam=0.05))


def test_bad_shapes():
    module = Hallucinator(8)
    with pytest.raises(ValueError, match=r"\(N, 8\).*\(5, 7\)"):
        module(torch.randn(5, 7), torch.randn(5, 7))
    with pytest.raises(ValueError, match=r"\(5, 8\).*\(4, 8\)"):
        module(torch.randn(5, 8), torch.randn(4, 8))
    with pytest.raises(ValueError):
        Hallucinator(0)
