"""Every loss against a naive Python-loop reference, plus the contracts of genview_hf.losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genview_hf.losses import (
    byol_loss,
    clip_loss,
    info_nce_loss,
    leoclr_loss,
    multi_positive_clip_loss,
    multi_positive_loss,
    negative_cosine_loss,
    nt_xent_loss,
    slip_loss,
)
from tolerances import reduction_tolerance

# ----------------------------------------------------------------------------- naive references
# Plain Python over rows, float64 scalars: written for readability, not speed.


def _unit(v: torch.Tensor) -> list[float]:
    values = [float(x) for x in v]
    norm = math.sqrt(sum(x * x for x in values))
    return [x / norm for x in values] if norm > 0 else [0.0 for _ in values]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _neg_log_softmax(logits: list[float], target: int) -> float:
    top = max(logits)
    return -(logits[target] - top - math.log(sum(math.exp(x - top) for x in logits)))


def _weighted_mean(values: list[float], weights) -> float:
    if weights is None:
        return sum(values) / len(values)
    return sum(float(w) * v for w, v in zip(weights, values)) / len(values)


def ref_info_nce(query, keys, queue=None, temperature=0.2, weights=None) -> float:
    q = [_unit(r) for r in query]
    k = [_unit(r) for r in keys]
    losses = []
    for i in range(len(q)):
        if queue is None:
            logits = [_dot(q[i], kj) / temperature for kj in k]
            losses.append(_neg_log_softmax(logits, i))
        else:
            logits = [_dot(q[i], k[i]) / temperature] + [_dot(q[i], _unit(r)) / temperature for r in queue]
            losses.append(_neg_log_softmax(logits, 0))
    return _weighted_mean(losses, weights)


def ref_nt_xent(z1, z2, temperature=0.5, weights=None) -> float:
    n = len(z1)
    z = [_unit(r) for r in z1] + [_unit(r) for r in z2]
    row_losses = []
    for i in range(2 * n):
        partner = i + n if i < n else i - n
        candidates = [j for j in range(2 * n) if j != i]  # the 2N-1 other views
        logits = [_dot(z[i], z[j]) / temperature for j in candidates]
        row_losses.append(_neg_log_softmax(logits, candidates.index(partner)))
    pair_losses = [(row_losses[i] + row_losses[i + n]) / 2 for i in range(n)]
    return _weighted_mean(pair_losses, weights)


def ref_negative_cosine(p, z, weights=None) -> float:
    return _weighted_mean([-_dot(_unit(a), _unit(b)) for a, b in zip(p, z)], weights)


def ref_byol(p, z, weights=None) -> float:
    values = []
    for a, b in zip(p, z):
        ua, ub = _unit(a), _unit(b)
        values.append(sum((x - y) ** 2 for x, y in zip(ua, ub)))  # ||p/|p| - z/|z|||^2
    return _weighted_mean(values, weights)


def ref_clip(image, text, scale, weights=None) -> float:
    im = [_unit(r) for r in image]
    tx = [_unit(r) for r in text]
    n = len(im)
    pair_losses = []
    for i in range(n):
        image_row = [scale * _dot(im[i], tx[j]) for j in range(n)]
        text_row = [scale * _dot(tx[i], im[j]) for j in range(n)]
        pair_losses.append((_neg_log_softmax(image_row, i) + _neg_log_softmax(text_row, i)) / 2)
    return _weighted_mean(pair_losses, weights)


def ref_multi_positive(views, temperature=0.1, weights=None) -> float:
    n, v = views.shape[:2]
    flat = [(i, a, _unit(views[i, a])) for i in range(n) for a in range(v)]
    terms = []
    for i, a, za in flat:
        others = [(j, b, zb) for j, b, zb in flat if (j, b) != (i, a)]
        logits = [_dot(za, zb) / temperature for _, _, zb in others]
        for index, (j, b, _) in enumerate(others):
            if j == i:
                w = 1.0 if weights is None else float(weights[i, a, b])
                terms.append(w * _neg_log_softmax(logits, index))
    return sum(terms) / len(terms)


def ref_multi_positive_clip(image, text, scale, weights=None) -> float:
    n, v = image.shape[:2]
    im = [(i, a, _unit(image[i, a])) for i in range(n) for a in range(v)]
    tx = [_unit(r) for r in text]
    image_terms = []
    for i, a, e in im:
        logits = [scale * _dot(e, u) for u in tx]
        w = 1.0 if weights is None else float(weights[i, a])
        image_terms.append(w * _neg_log_softmax(logits, i))
    text_terms = []
    for i in range(n):
        logits = [scale * _dot(tx[i], e) for _, _, e in im]
        for index, (j, a, _) in enumerate(im):
            if j == i:
                w = 1.0 if weights is None else float(weights[i, a])
                text_terms.append(w * _neg_log_softmax(logits, index))
    return (sum(image_terms) / len(image_terms) + sum(text_terms) / len(text_terms)) / 2


# ----------------------------------------------------------------------------- fixtures


N, D, K = 6, 8, 10


def _inputs(n=N, d=D, dtype=torch.float64, requires_grad=False):
    return torch.randn(n, d, dtype=dtype, requires_grad=requires_grad)


def _weights(n=N):
    w = torch.rand(n, dtype=torch.float64) + 0.5
    return w / w.mean()


def _views(n=4, v=3, d=D):
    return torch.randn(n, v, d, dtype=torch.float64)


# (name, function taking (inputs..., weights=...), reference, builder of inputs)
PAIR_CASES = {
    "info_nce": (
        lambda a, b, weights=None: info_nce_loss(a, b, temperature=0.2, weights=weights),
        lambda a, b, weights=None: ref_info_nce(a, b, None, 0.2, weights),
    ),
    "info_nce_queue": (
        lambda a, b, weights=None: info_nce_loss(a, b, QUEUE, temperature=0.2, weights=weights),
        lambda a, b, weights=None: ref_info_nce(a, b, QUEUE, 0.2, weights),
    ),
    "nt_xent": (
        lambda a, b, weights=None: nt_xent_loss(a, b, temperature=0.5, weights=weights),
        lambda a, b, weights=None: ref_nt_xent(a, b, 0.5, weights),
    ),
    "negative_cosine": (
        lambda a, b, weights=None: negative_cosine_loss(a, b, weights=weights),
        lambda a, b, weights=None: ref_negative_cosine(a, b, weights),
    ),
    "byol": (
        lambda a, b, weights=None: byol_loss(a, b, weights=weights),
        lambda a, b, weights=None: ref_byol(a, b, weights),
    ),
    "clip": (
        lambda a, b, weights=None: clip_loss(a, b, 14.3, weights=weights),
        lambda a, b, weights=None: ref_clip(a, b, 14.3, weights),
    ),
    "leoclr": (
        lambda a, b, weights=None: leoclr_loss(a, b, b.flip(0), QUEUE, temperature=0.2, weights=weights),
        lambda a, b, weights=None: (
            ref_info_nce(a, b, QUEUE, 0.2, weights) + ref_info_nce(a, b.flip(0), QUEUE, 0.2, weights)
        ),
    ),
}

QUEUE = torch.randn(K, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list(PAIR_CASES))
@pytest.mark.parametrize("weighted", [False, True])
def test_pair_losses_match_naive_reference(name, weighted):
    loss_fn, reference = PAIR_CASES[name]
    a, b = _inputs(), _inputs()
    weights = _weights() if weighted else None
    assert loss_fn(a, b, weights=weights).item() == pytest.approx(
        reference(a, b, weights=weights), rel=1e-9, abs=1e-9
    )


@pytest.mark.parametrize("name", list(PAIR_CASES))
def test_weights_none_is_the_unweighted_loss_and_ones_match(name):
    loss_fn, _ = PAIR_CASES[name]
    a, b = _inputs(dtype=torch.float32), _inputs(dtype=torch.float32)
    plain = loss_fn(a, b)
    assert torch.equal(loss_fn(a, b, weights=None), plain)
    assert torch.allclose(loss_fn(a, b, weights=torch.ones(N)), plain, rtol=1e-6, atol=1e-6)


def test_weights_none_is_exactly_the_standard_formula():
    """weights=None runs the textbook computation (no multiplication by ones): bit-identical."""
    q, k, queue = _inputs(dtype=torch.float32), _inputs(dtype=torch.float32), QUEUE.float()
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    labels = torch.arange(N)
    assert torch.equal(info_nce_loss(q, k, temperature=0.2), F.cross_entropy(qn @ kn.T / 0.2, labels))
    moco_v2 = torch.cat([(qn * kn).sum(-1, keepdim=True), qn @ F.normalize(queue, dim=-1).T], 1) / 0.2
    assert torch.equal(
        info_nce_loss(q, k, queue, 0.2), F.cross_entropy(moco_v2, torch.zeros(N, dtype=torch.long))
    )
    logits = torch.tensor(14.3) * (qn @ kn.T)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert torch.equal(clip_loss(q, k, torch.tensor(14.3)), expected)
    assert torch.equal(negative_cosine_loss(q, k), -(qn * kn).sum(-1).mean())
    assert torch.equal(byol_loss(q, k), (2 - 2 * (qn * kn).sum(-1)).mean())


def test_weighting_reweights_pairs():
    a, b = _inputs(), _inputs()
    w = torch.zeros(N, dtype=torch.float64)
    w[0] = N  # all the mass on pair 0
    per_pair_0 = ref_nt_xent(a, b, 0.5, [N] + [0] * (N - 1))
    assert nt_xent_loss(a, b, weights=w).item() == pytest.approx(per_pair_0, rel=1e-9)


# ----------------------------------------------------------------------------- multi-positive


@pytest.mark.parametrize("weighted", [False, True])
def test_multi_positive_loss_matches_naive_reference(weighted):
    views = _views()
    weights = torch.rand(4, 3, 3, dtype=torch.float64) + 0.5 if weighted else None
    got = multi_positive_loss(views, temperature=0.1, weights=weights).item()
    assert got == pytest.approx(ref_multi_positive(views, 0.1, weights), rel=1e-9)


@pytest.mark.parametrize("weighted", [False, True])
def test_multi_positive_clip_loss_matches_naive_reference(weighted):
    image, text = _views(), torch.randn(4, D, dtype=torch.float64)
    weights = torch.rand(4, 3, dtype=torch.float64) + 0.5 if weighted else None
    got = multi_positive_clip_loss(image, text, 10.0, weights=weights).item()
    assert got == pytest.approx(ref_multi_positive_clip(image, text, 10.0, weights), rel=1e-9)


def test_multi_positive_reduces_to_nt_xent_and_clip():
    views = _views(v=2)
    assert multi_positive_loss(views, 0.1).item() == pytest.approx(
        nt_xent_loss(views[:, 0], views[:, 1], 0.1).item()
    )
    image, text = _views(v=1), torch.randn(4, D, dtype=torch.float64)
    assert multi_positive_clip_loss(image, text, 7.0).item() == pytest.approx(
        clip_loss(image[:, 0], text, 7.0).item()
    )


def test_multi_positive_weights_none_and_ones():
    views = _views().float()
    plain = multi_positive_loss(views)
    assert torch.equal(multi_positive_loss(views, weights=None), plain)
    assert torch.allclose(multi_positive_loss(views, weights=torch.ones(4, 3, 3)), plain, rtol=1e-6)
    image, text = _views().float(), torch.randn(4, D)
    plain = multi_positive_clip_loss(image, text, 10.0)
    assert torch.allclose(
        multi_positive_clip_loss(image, text, 10.0, weights=torch.ones(4, 3)), plain, rtol=1e-6
    )


def test_multi_positive_needs_two_views():
    with pytest.raises(ValueError, match="V >= 2"):
        multi_positive_loss(_views(v=1))


def test_slip_is_clip_plus_scaled_simclr():
    image, text, v1, v2 = (_inputs() for _ in range(4))
    w, sw = _weights(), _weights()
    expected = ref_clip(image, text, 10.0, w) + 0.5 * ref_nt_xent(v1, v2, 0.1, sw)
    got = slip_loss(image, text, 10.0, v1, v2, ssl_scale=0.5, weights=w, ssl_weights=sw).item()
    assert got == pytest.approx(expected, rel=1e-9)
    default = slip_loss(image, text, 10.0, v1, v2).item()
    assert default == pytest.approx(ref_clip(image, text, 10.0) + ref_nt_xent(v1, v2, 0.1), rel=1e-9)


# ----------------------------------------------------------------------------- transformers' CLIP


def test_clip_loss_equals_transformers_clip_model_loss():
    from transformers.models.clip.modeling_clip import image_text_contrastive_loss

    from genview_hf.testing import tiny_clip

    model, processor = tiny_clip()
    model.eval()
    inputs = processor(
        text=["a red cube", "two dogs on grass", "a photo", "blue sky over the sea"],
        images=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in range(4)],
        return_tensors="pt",
        padding=True,
    )
    with torch.no_grad():
        model.logit_scale.fill_(math.log(20.0))
        out = model(**inputs, return_loss=True)
        ours = clip_loss(out.image_embeds, out.text_embeds, model.logit_scale.exp())
    # 4 x 4 logits over 32-d embeddings, normalised in another order: ~100-term float32 sums
    torch.testing.assert_close(ours, out.loss, **reduction_tolerance(torch.float32, 100, out.loss))

    # and against its internal loss function on arbitrary (unnormalised) embeddings
    image, text = torch.randn(7, 16), torch.randn(7, 16)
    scale = torch.tensor(33.0)
    logits_per_text = scale * F.normalize(text, dim=-1) @ F.normalize(image, dim=-1).T
    reference = image_text_contrastive_loss(logits_per_text)
    torch.testing.assert_close(
        clip_loss(image, text, scale), reference, **reduction_tolerance(torch.float32, 100, reference)
    )


def test_clip_logit_scale_gets_gradient():
    scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    clip_loss(_inputs(dtype=torch.float32), _inputs(dtype=torch.float32), scale.exp()).backward()
    assert scale.grad is not None and torch.isfinite(scale.grad)


# ----------------------------------------------------------------------------- gradients and bad input


ALL_LOSSES = {
    "info_nce": lambda a, b, w: info_nce_loss(a, b, weights=w),
    "info_nce_queue": lambda a, b, w: info_nce_loss(a, b, QUEUE.float(), weights=w),
    "nt_xent": lambda a, b, w: nt_xent_loss(a, b, weights=w),
    "negative_cosine": lambda a, b, w: negative_cosine_loss(a, b, weights=w),
    "byol": lambda a, b, w: byol_loss(a, b, weights=w),
    "clip": lambda a, b, w: clip_loss(a, b, 10.0, weights=w),
    "slip": lambda a, b, w: slip_loss(a, b, 10.0, a, b, weights=w, ssl_weights=w),
    "leoclr": lambda a, b, w: leoclr_loss(a, b, b.flip(0), QUEUE.float(), weights=w),
}
STOP_GRADIENT_ON_SECOND = {"negative_cosine", "byol"}


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_gradients_reach_inputs_never_weights(name):
    a = _inputs(dtype=torch.float32, requires_grad=True)
    b = _inputs(dtype=torch.float32, requires_grad=True)
    w = torch.rand(N, requires_grad=True)
    ALL_LOSSES[name](a, b, w).backward()
    assert w.grad is None
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    if name in STOP_GRADIENT_ON_SECOND:
        assert b.grad is None  # the target branch is stop-gradient
    else:
        assert b.grad is not None and torch.isfinite(b.grad).all()


def test_multi_positive_gradients_reach_inputs_never_weights():
    views = torch.randn(4, 3, D, requires_grad=True)
    w = torch.rand(4, 3, 3, requires_grad=True)
    multi_positive_loss(views, weights=w).backward()
    assert w.grad is None and torch.isfinite(views.grad).all() and views.grad.abs().sum() > 0
    image, text = torch.randn(4, 3, D, requires_grad=True), torch.randn(4, D, requires_grad=True)
    w2 = torch.rand(4, 3, requires_grad=True)
    multi_positive_clip_loss(image, text, 10.0, weights=w2).backward()
    assert w2.grad is None and torch.isfinite(image.grad).all() and torch.isfinite(text.grad).all()


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_zero_vectors_give_no_nan(name):
    a = torch.zeros(N, D, requires_grad=True)
    b = torch.zeros(N, D, requires_grad=True)
    loss = ALL_LOSSES[name](a, b, None)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(a.grad).all()


def test_multi_positive_zero_vectors_give_no_nan():
    views = torch.zeros(3, 2, D, requires_grad=True)
    loss = multi_positive_loss(views) + multi_positive_clip_loss(views, torch.zeros(3, D), 10.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(views.grad).all()


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_batch_of_one(name):
    a = torch.randn(1, D, requires_grad=True)
    b = torch.randn(1, D, requires_grad=True)
    loss = ALL_LOSSES[name](a, b, torch.ones(1))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all()


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_bf16_inputs_work_on_cpu_with_float32_result(name):
    a32, b32 = _inputs(dtype=torch.float32), _inputs(dtype=torch.float32)
    a = a32.bfloat16().requires_grad_()
    b = b32.bfloat16().requires_grad_()
    w = _weights().float()
    loss = ALL_LOSSES[name](a, b, w)
    assert loss.dtype == torch.float32
    reference = ALL_LOSSES[name](a.detach().float(), b.detach().float(), w)
    # the same bf16 values in float32 arithmetic either way: at most the loss's N x N x D sums reorder
    torch.testing.assert_close(loss, reference, **reduction_tolerance(torch.float32, N * N * D, reference))
    loss.backward()
    assert a.grad.dtype == torch.bfloat16 and torch.isfinite(a.grad.float()).all()


def test_autocast_does_not_lower_loss_precision():
    """Under autocast only the similarity products run in bf16; the loss itself stays float32."""
    a, b = _inputs(dtype=torch.float32), _inputs(dtype=torch.float32)
    for name, fn in ALL_LOSSES.items():
        plain = fn(a, b, None)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = fn(a, b, None)
        assert under_autocast.dtype == torch.float32, name
        # each input rounded once to bf16 (products accumulate in float32): a few bf16 ulps per logit
        torch.testing.assert_close(
            under_autocast, plain, **reduction_tolerance(torch.bfloat16, 1, plain, ulps=4), msg=name
        )


def test_shape_mismatches_name_both_shapes():
    a, b = torch.randn(4, 8), torch.randn(4, 16)
    for fn in (info_nce_loss, nt_xent_loss, negative_cosine_loss, byol_loss):
        with pytest.raises(ValueError, match=r"\(4, 8\).*\(4, 16\)"):
            fn(a, b)
    with pytest.raises(ValueError, match=r"\(4, 8\).*\(4, 16\)"):
        clip_loss(a, b, 10.0)
    with pytest.raises(ValueError, match=r"\(4, 8\).*\(3, 8\)"):
        clip_loss(a, torch.randn(3, 8), 10.0)
    with pytest.raises(ValueError, match=r"queue has shape \(5, 16\).*\(4, 8\)"):
        info_nce_loss(a, a, torch.randn(5, 16))
    with pytest.raises(ValueError, match=r"weights has shape \(3,\).*\(4,\)"):
        info_nce_loss(a, a, weights=torch.ones(3))
    with pytest.raises(ValueError, match=r"weights has shape \(4,\).*\(4, 3, 3\)"):
        multi_positive_loss(torch.randn(4, 3, 8), weights=torch.ones(4))
    with pytest.raises(ValueError, match=r"\(4, 3, 8\).*\(5, 8\)"):
        multi_positive_clip_loss(torch.randn(4, 3, 8), torch.randn(5, 8), 10.0)
    with pytest.raises(ValueError, match=r"\(4, 8, 2\)"):
        info_nce_loss(torch.randn(4, 8, 2), torch.randn(4, 8, 2))
    with pytest.raises(ValueError, match="temperature"):
        info_nce_loss(a, a, temperature=0.0)
    with pytest.raises(ValueError, match="empty"):
        info_nce_loss(torch.randn(0, 8), torch.randn(0, 8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_cuda_matches_cpu_and_bf16_autocast_stays_float32(name):
    a, b = _inputs(dtype=torch.float32), _inputs(dtype=torch.float32)
    w = _weights().float()
    cpu = ALL_LOSSES[name](a, b, w)
    fn = ALL_LOSSES[name]
    global QUEUE
    saved, QUEUE = QUEUE, QUEUE.cuda()
    try:
        cuda = fn(a.cuda(), b.cuda(), w.cuda())
        with torch.autocast("cuda", dtype=torch.bfloat16):
            autocast = fn(a.cuda(), b.cuda(), w.cuda())
    finally:
        QUEUE = saved
    assert torch.allclose(cuda.cpu(), cpu, rtol=1e-4, atol=1e-5)
    assert autocast.dtype == torch.float32
    assert torch.allclose(autocast.cpu(), cpu, rtol=2e-2, atol=2e-2)  # bf16 similarity products


def test_leoclr_weights_one_column_per_original_crop_pair():
    g = torch.Generator().manual_seed(5)
    q, k1, k2 = (torch.randn(6, D, dtype=torch.float64, generator=g) for _ in range(3))
    w = torch.rand(6, 2, dtype=torch.float64, generator=g) + 0.5

    def naive(query, key, weights):  # MoCo v2's InfoNCE against the queue, weighted per row
        query, key, queue = F.normalize(query, dim=1), F.normalize(key, dim=1), F.normalize(QUEUE, dim=1)
        logits = torch.cat([(query * key).sum(1, keepdim=True), query @ queue.T], 1) / 0.2
        return (weights * -torch.log_softmax(logits, 1)[:, 0]).mean()

    ours = leoclr_loss(q, k1, k2, QUEUE, temperature=0.2, weights=w)
    torch.testing.assert_close(ours, naive(q, k1, w[:, 0]) + naive(q, k2, w[:, 1]))
    both = leoclr_loss(q, k1, k2, QUEUE, temperature=0.2, weights=w[:, 0])  # (N,): the same for both terms
    torch.testing.assert_close(both, naive(q, k1, w[:, 0]) + naive(q, k2, w[:, 0]))
    with pytest.raises(ValueError, match=r"\(6, 2\) or \(6,\)"):
        leoclr_loss(q, k1, k2, QUEUE, weights=torch.ones(6, 3, dtype=torch.float64))
