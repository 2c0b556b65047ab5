"""Hallucinator: extrapolation, MLP shape, extended batch, off in evaluation mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genview_hf.losses import info_nce_loss
from genview_hf.modeling.hallucinator import Hallucinator
from tolerances import reduction_tolerance


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


# ----------------------------------------------------------------------------- against the official code

LAM = 0.07


def _trainer_with_fixed_lambda(tmp_path, method):
    from training_helpers import make_args, make_trainer

    trainer = make_trainer(make_args(tmp_path, method), use_hallucinator=True)
    model = trainer.model.train()
    # lam fixed for both the model and the reference (the official draws random.uniform(0, 0.1))
    model.hallucinator.extrapolate = lambda q, k, lam=None: q + LAM * (q - k)
    return trainer, model


def _official_generator(model, x, k):
    """models/generator.py ``Generator.forward``: out = [x; MLP([x, (1 + r) x - r k])]."""
    generated = (1 + LAM) * x - LAM * k
    return torch.cat([x, model.hallucinator.mlp(torch.cat([x, generated], 1))], 0)


def _batch(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {f"pixel_values_{v}": torch.randn(n, 3, size, size, generator=g) for v in (1, 2)}


def _same_loss_and_gradients(model, ours, official):
    # the same model and MLP, the batch concatenated in another place: float32 sums of ~1,000 terms
    torch.testing.assert_close(ours, official, **reduction_tolerance(torch.float32, 1_000, official.abs()))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(ours, params, retain_graph=True, allow_unused=True)
    reference = torch.autograd.grad(official, params, allow_unused=True)
    assert any(g is not None for g in grads)
    # a gradient near zero keeps the rounding of its terms: the scale is the largest gradient
    scale = max(g.abs().max() for g in reference if g is not None)
    for got, expected in zip(grads, reference):
        assert (got is None) == (expected is None)
        if got is not None:
            torch.testing.assert_close(got, expected, **reduction_tolerance(torch.float32, 1_000, scale))


def test_mocov2_with_hallucinator_equals_the_official_loss(tmp_path):
    """models/moco.py ``MoCo.forward`` (generator on): q from the projector, the key normalised, then
    ``generator(q, k_original)``, [q; h] normalised against [k; k], queue negatives, one
    cross-entropy over the 2N rows (DDP_moco.py)."""
    trainer, model = _trainer_with_fixed_lambda(tmp_path, "mocov2")
    out = model(**_batch())
    ours = trainer.objective(out, None)
    q = out.queries_1  # mlp_q(v_q), not normalised
    k = F.normalize(out.targets_2, dim=1)
    queries = F.normalize(_official_generator(model, q, k), dim=1)
    keys = torch.cat([k, k], 0)
    l_pos = torch.einsum("nc,nc->n", queries, keys).unsqueeze(-1)
    l_neg = torch.einsum("nc,ck->nk", queries, out.queue.clone().detach().T)
    logits = torch.cat([l_pos, l_neg], 1) / trainer.args.temperature
    official = F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long))
    _same_loss_and_gradients(model, ours, official)


def test_simsiam_with_hallucinator_equals_the_official_loss(tmp_path):
    """models/simsiam.py ``SimSiam.forward``: p1 extended from the other view's predictor output p2,
    p2 from the original p1, targets doubled; DDP_simsiam.py: -0.5 (cos(p1, z2).mean() + cos(p2, z1).mean())."""
    trainer, model = _trainer_with_fixed_lambda(tmp_path, "simsiam")
    out = model(**_batch())
    ours = trainer.objective(out, None)
    p1, p2 = out.queries_1, out.queries_2
    z1, z2 = out.targets_1, out.targets_2  # detached projections
    p1_extended = _official_generator(model, p1, p2)
    p2_extended = _official_generator(model, p2, p1)
    z1, z2 = torch.cat([z1, z1], 0).detach(), torch.cat([z2, z2], 0).detach()
    official = -0.5 * (
        F.cosine_similarity(p1_extended, z2).mean() + F.cosine_similarity(p2_extended, z1).mean()
    )
    _same_loss_and_gradients(model, ours, official)
