"""Quality-driven weights against naive Python-loop references, and their bad-input behaviour."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genview_hf.quality import (
    ANNEALED_FINAL_GAMMA,
    RANK_CUT_KEEP,
    SIGMOID_SHARPNESS,
    WEIGHTINGS,
    RowQualityMemory,
    annealed_gamma,
    foreground_maps,
    image_text_quality_weights,
    multi_view_quality_weights,
    pair_quality,
    pair_weights,
    pool_foreground_background,
    quality_weights,
    rank_cut_weights,
    sigmoid_weights,
    threshold_weights,
)
from host_syncs import syncs_are_errors
from tolerances import reduction_tolerance

# ----------------------------------------------------------------------------- naive references


def _cos(a: list[float], b: list[float]) -> float:
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    if na == 0 or nb == 0:
        return 0.0
    return sum(x * y for x, y in zip(a, b)) / (na * nb)


def ref_map(tokens_i: torch.Tensor, direction: torch.Tensor) -> list[float]:
    """Soft foreground map of one image: projection, then min-max within the image."""
    projection = [sum(float(t[c]) * float(direction[c]) for c in range(len(direction))) for t in tokens_i]
    low, high = min(projection), max(projection)
    if high - low <= 1e-6 * (abs(high) + abs(low)):
        return [0.5] * len(projection)
    return [(p - low) / (high - low) for p in projection]


def ref_pool(tokens_i: torch.Tensor, fg: list[float]) -> tuple[list[float], list[float]]:
    bg = [1.0 - f for f in fg]
    sf, sb = sum(fg), sum(bg)
    channels = tokens_i.shape[1]
    z_fg = [
        sum(fg[t] / sf * float(tokens_i[t, c]) for t in range(len(fg))) if sf > 0 else 0.0
        for c in range(channels)
    ]
    z_bg = [
        sum(bg[t] / sb * float(tokens_i[t, c]) for t in range(len(bg))) if sb > 0 else 0.0
        for c in range(channels)
    ]
    return z_fg, z_bg


def ref_quality(tokens1, tokens2, direction, masks1=None, masks2=None) -> list[float]:
    q = []
    for i in range(tokens1.shape[0]):
        fg1 = [float(x) for x in masks1[i]] if masks1 is not None else ref_map(tokens1[i], direction)
        fg2 = [float(x) for x in masks2[i]] if masks2 is not None else ref_map(tokens2[i], direction)
        f1, b1 = ref_pool(tokens1[i], fg1)
        f2, b2 = ref_pool(tokens2[i], fg2)
        q.append(_cos(f1, f2) - _cos(b1, b2))
    return q


def ref_quality_weights(tokens1, tokens2, direction, gamma=1.0, masks1=None, masks2=None) -> list[float]:
    q = ref_quality(tokens1, tokens2, direction, masks1, masks2)
    e = [math.exp(gamma * x) for x in q]
    return [len(q) * x / sum(e) for x in e]


def _tokens(n=5, t=9, c=6, dtype=torch.float64):
    return torch.randn(n, t, c, dtype=dtype)


# ----------------------------------------------------------------------------- GenView weights


@pytest.mark.parametrize("gamma", [1.0, 3.0])
def test_quality_weights_match_naive_reference(gamma):
    t1, t2, direction = _tokens(), _tokens(), torch.randn(6, dtype=torch.float64)
    got = quality_weights(t1, t2, direction, gamma=gamma)
    assert got.tolist() == pytest.approx(ref_quality_weights(t1, t2, direction, gamma), rel=1e-9)
    assert got.mean().item() == pytest.approx(1.0)


def test_quality_weights_from_given_masks_match_reference():
    t1, t2 = _tokens(), _tokens(t=4)  # the views may have different token counts
    m1, m2 = torch.rand(5, 9, dtype=torch.float64), torch.rand(5, 4, dtype=torch.float64)
    got = quality_weights(t1, t2, None, masks1=m1, masks2=m2)
    assert got.tolist() == pytest.approx(ref_quality_weights(t1, t2, None, 1.0, m1, m2), rel=1e-9)


def test_weights_are_detached_float32_and_mean_one():
    t1 = torch.randn(8, 9, 6, requires_grad=True)
    t2 = torch.randn(8, 9, 6, requires_grad=True)
    w = quality_weights(t1, t2, torch.randn(6))
    assert w.shape == (8,) and w.dtype == torch.float32
    assert not w.requires_grad and w.grad_fn is None
    assert w.mean().item() == pytest.approx(1.0, rel=1e-6)


def test_better_pairs_get_larger_weights():
    """Pair 0 shares its foreground and differs in background; pair 1 is the opposite."""
    c, direction = 4, torch.tensor([1.0, 0.0, 0.0, 0.0])
    fg_a, fg_b = torch.tensor([5.0, 1.0, 0.0, 0.0]), torch.tensor([5.0, -1.0, 0.0, 0.0])
    bg_a, bg_b = torch.tensor([0.0, 0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 0.0, 1.0])
    good1 = torch.stack([fg_a, bg_a, bg_a])
    good2 = torch.stack([fg_a, bg_b, bg_b])
    bad1 = torch.stack([fg_a, bg_a, bg_a])
    bad2 = torch.stack([fg_b, bg_a, bg_a])
    w = quality_weights(torch.stack([good1, bad1]), torch.stack([good2, bad2]), direction, gamma=1.0)
    assert w[0] > 1.0 > w[1]
    assert w.shape == (2,) and c == direction.shape[0]


def test_batch_of_one_gets_weight_one():
    w = quality_weights(_tokens(n=1), _tokens(n=1), torch.randn(6, dtype=torch.float64))
    assert w.tolist() == [1.0]


def test_constant_token_maps_give_uniform_maps_not_nan():
    tokens = torch.ones(3, 9, 6)  # min == max in every image
    fg = foreground_maps(tokens, torch.randn(6))
    assert torch.equal(fg, torch.full((3, 9), 0.5))
    z_fg, z_bg = pool_foreground_background(tokens, fg)
    assert torch.allclose(z_fg, z_bg) and torch.isfinite(z_fg).all()
    w = quality_weights(tokens, torch.randn(3, 9, 6), torch.randn(6))
    assert torch.isfinite(w).all() and w.mean().item() == pytest.approx(1.0)


def test_zero_tokens_and_zero_direction_give_no_nan():
    zeros = torch.zeros(4, 9, 6)
    for t1, t2, direction in [
        (zeros, zeros, torch.randn(6)),
        (torch.randn(4, 9, 6), torch.randn(4, 9, 6), torch.zeros(6)),
    ]:
        w = quality_weights(t1, t2, direction)
        assert torch.isfinite(w).all() and w.mean().item() == pytest.approx(1.0)
    # a mask that is foreground everywhere has no background: that feature is zero, not NaN
    w = quality_weights(
        torch.randn(2, 9, 6), torch.randn(2, 9, 6), None, masks1=torch.ones(2, 9), masks2=torch.ones(2, 9)
    )
    assert torch.isfinite(w).all()


def test_foreground_maps_are_min_max_normalised_per_image():
    fg = foreground_maps(torch.randn(4, 16, 8), torch.randn(8))
    assert fg.shape == (4, 16)
    assert torch.allclose(fg.amin(1), torch.zeros(4)) and torch.allclose(fg.amax(1), torch.ones(4))


def test_bf16_tokens_work_on_cpu():
    t1, t2, direction = torch.randn(4, 9, 6), torch.randn(4, 9, 6), torch.randn(6)
    w = quality_weights(t1.bfloat16(), t2.bfloat16(), direction.bfloat16())
    assert w.dtype == torch.float32 and torch.isfinite(w).all()
    reference = quality_weights(t1.bfloat16().float(), t2.bfloat16().float(), direction.bfloat16().float())
    # the same bf16 values in float32 either way: 9 tokens x 6 channels may sum in another order
    torch.testing.assert_close(w, reference, **reduction_tolerance(torch.float32, 9 * 6))


def test_weights_stay_float32_under_autocast():
    t1, t2, direction = torch.randn(4, 9, 6), torch.randn(4, 9, 6), torch.randn(6)
    plain = quality_weights(t1, t2, direction)
    views = torch.randn(3, 2, 9, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = quality_weights(t1, t2, direction)
        wv = multi_view_quality_weights(views, direction)
    assert w.dtype == torch.float32 and wv.dtype == torch.float32
    assert torch.equal(w, plain)


def test_pair_quality_is_in_range():
    q = pair_quality(_tokens(), _tokens(), torch.randn(6, dtype=torch.float64))
    assert q.shape == (5,) and (q.abs() <= 2 + 1e-9).all()


def test_bad_inputs_name_the_shapes():
    t = torch.randn(4, 9, 6)
    with pytest.raises(ValueError, match=r"direction has shape \(5,\).*\(4, 9, 6\)"):
        quality_weights(t, t, torch.randn(5))
    with pytest.raises(ValueError, match=r"tokens1 has shape \(4, 9, 6\) but tokens2 has shape \(3, 9, 6\)"):
        quality_weights(t, torch.randn(3, 9, 6), torch.randn(6))
    with pytest.raises(ValueError, match=r"masks1 has shape \(4, 8\).*\(4, 9, 6\)"):
        quality_weights(t, t, None, masks1=torch.rand(4, 8), masks2=torch.rand(4, 9))
    with pytest.raises(TypeError, match="255"):
        quality_weights(t, t, None, masks1=torch.zeros(4, 9, dtype=torch.uint8), masks2=torch.rand(4, 9))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        quality_weights(t, t, None, masks1=torch.rand(4, 9) * 255, masks2=torch.rand(4, 9))
    with pytest.raises(ValueError, match="direction is None"):
        quality_weights(t, t, None)
    with pytest.raises(ValueError, match=r"\(N, T, C\)"):
        quality_weights(torch.randn(4, 6), torch.randn(4, 6), torch.randn(6))


# ----------------------------------------------------------------------------- GenView++ weights


def test_multi_view_weights_match_naive_reference():
    n, v, t, c, gamma = 3, 3, 9, 6, 2.0
    tokens = torch.randn(n, v, t, c, dtype=torch.float64)
    direction = torch.randn(c, dtype=torch.float64)
    got = multi_view_quality_weights(tokens, direction, gamma=gamma)
    scores = {}
    for i in range(n):
        pooled = [ref_pool(tokens[i, a], ref_map(tokens[i, a], direction)) for a in range(v)]
        for a in range(v):
            for b in range(v):
                if a != b:
                    q = _cos(pooled[a][0], pooled[b][0]) - _cos(pooled[a][1], pooled[b][1])
                    scores[i, a, b] = math.exp(gamma * q)
    mean = sum(scores.values()) / len(scores)
    for (i, a, b), s in scores.items():
        assert got[i, a, b].item() == pytest.approx(s / mean, rel=1e-9)
    assert torch.equal(got.diagonal(dim1=1, dim2=2), torch.zeros(n, v, dtype=torch.float64))
    assert torch.allclose(got, got.transpose(1, 2))


def test_image_text_weights_match_naive_reference():
    n, v, t, c, e, gamma = 3, 2, 9, 6, 5, 2.0
    image, text = torch.randn(n, v, e, dtype=torch.float64), torch.randn(n, e, dtype=torch.float64)
    view_tokens, real_tokens = (
        torch.randn(n, v, t, c, dtype=torch.float64),
        torch.randn(n, t, c, dtype=torch.float64),
    )
    direction = torch.randn(c, dtype=torch.float64)
    got = image_text_quality_weights(image, text, view_tokens, real_tokens, direction, gamma=gamma)
    scores = []
    for i in range(n):
        _, real_bg = ref_pool(real_tokens[i], ref_map(real_tokens[i], direction))
        for a in range(v):
            _, view_bg = ref_pool(view_tokens[i, a], ref_map(view_tokens[i, a], direction))
            align = _cos(image[i, a].tolist(), text[i].tolist())
            scores.append(math.exp(gamma * (align - _cos(view_bg, real_bg))))
    mean = sum(scores) / len(scores)
    assert got.reshape(-1).tolist() == pytest.approx([s / mean for s in scores], rel=1e-9)
    assert got.mean().item() == pytest.approx(1.0)


def test_genview_plus_weights_batch_of_one_and_masks():
    w = multi_view_quality_weights(torch.randn(1, 2, 9, 6), torch.randn(6))
    assert torch.allclose(w, torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]))
    w = image_text_quality_weights(
        torch.randn(1, 1, 5),
        torch.randn(1, 5),
        torch.randn(1, 1, 9, 6),
        torch.randn(1, 9, 6),
        None,
        view_masks=torch.rand(1, 1, 9),
        real_masks=torch.rand(1, 9),
    )
    assert w.tolist() == [[1.0]]


def test_genview_plus_weights_are_stable_for_large_gamma():
    w = multi_view_quality_weights(torch.randn(4, 3, 9, 6), torch.randn(6), gamma=500.0)
    assert torch.isfinite(w).all()
    off = ~torch.eye(3, dtype=torch.bool).expand(4, 3, 3)
    assert w[off].mean().item() == pytest.approx(1.0, rel=1e-5)


def test_genview_plus_bad_shapes():
    with pytest.raises(ValueError, match=r"V >= 2"):
        multi_view_quality_weights(torch.randn(4, 1, 9, 6), torch.randn(6))
    with pytest.raises(ValueError, match=r"text_embeds has shape \(3, 5\).*\(4, 2, 5\)"):
        image_text_quality_weights(
            torch.randn(4, 2, 5),
            torch.randn(3, 5),
            torch.randn(4, 2, 9, 6),
            torch.randn(4, 9, 6),
            torch.randn(6),
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quality_weights_on_cuda_match_cpu():
    t1, t2, direction = torch.randn(8, 49, 64), torch.randn(8, 49, 64), torch.randn(64)
    cpu = quality_weights(t1, t2, direction)
    cuda = quality_weights(t1.cuda(), t2.cuda(), direction.cuda())
    assert cuda.device.type == "cuda"
    assert torch.allclose(cuda.cpu(), cpu, rtol=1e-4, atol=1e-5)
    bf16 = quality_weights(t1.cuda().bfloat16(), t2.cuda().bfloat16(), direction.cuda())
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()


# ----------------------------------------------------------------------------- weightings that reach zero
# float64: each weighting's value is exact arithmetic on q, so the references agree to float64 rounding.


def ref_threshold(q: list[float]) -> list[float]:
    kept = [x > 0 for x in q]
    if not any(kept):
        return [1.0] * len(q)
    return [len(q) / sum(kept) if k else 0.0 for k in kept]


def ref_rank_cut(q: list[float], keep: float) -> list[float]:
    count = max(1, math.ceil(keep * len(q)))
    order = sorted(range(len(q)), key=lambda i: (-q[i], i))  # highest first, ties by position
    chosen = set(order[:count])
    return [len(q) / count if i in chosen else 0.0 for i in range(len(q))]


def ref_sigmoid(q: list[float], sharpness: float) -> list[float]:
    mean = sum(q) / len(q)
    std = math.sqrt(sum((x - mean) ** 2 for x in q) / (len(q) - 1))
    scores = [1 / (1 + math.exp(-sharpness * (x - mean) / std)) for x in q]
    return [len(q) * s / sum(scores) for s in scores]


def ref_softmax(q: list[float], gamma: float) -> list[float]:
    exps = [math.exp(gamma * x) for x in q]
    return [len(q) * e / sum(exps) for e in exps]


QUALITIES = torch.tensor([0.31, -0.42, 0.05, 0.31, -0.07, 0.9, -1.2], dtype=torch.float64)


@pytest.mark.parametrize("keep", [RANK_CUT_KEEP, 0.25, 1.0])
def test_reaching_zero_weightings_match_naive_references(keep):
    q = QUALITIES.tolist()
    torch.testing.assert_close(
        threshold_weights(QUALITIES), torch.tensor(ref_threshold(q), dtype=torch.float64)
    )
    torch.testing.assert_close(
        rank_cut_weights(QUALITIES, keep), torch.tensor(ref_rank_cut(q, keep), dtype=torch.float64)
    )
    torch.testing.assert_close(
        sigmoid_weights(QUALITIES), torch.tensor(ref_sigmoid(q, SIGMOID_SHARPNESS), dtype=torch.float64)
    )
    assert threshold_weights(QUALITIES)[1] == 0 and rank_cut_weights(QUALITIES)[6] == 0  # they reach zero


def test_rank_cut_breaks_ties_by_position():
    weights = rank_cut_weights(torch.tensor([0.2, 0.5, 0.5, 0.1], dtype=torch.float64), keep=0.25)
    assert weights.tolist() == [0.0, 4.0, 0.0, 0.0]


def test_every_weighting_has_mean_one_and_no_nan_on_degenerate_batches():
    for name in WEIGHTINGS:
        for q in (
            QUALITIES,
            torch.full((5,), -0.3, dtype=torch.float64),
            torch.tensor([0.4], dtype=torch.float64),
        ):
            weights = pair_weights(q, name, gamma=1.0, progress=0.5, smoothed=q)
            assert torch.isfinite(weights).all(), name
            torch.testing.assert_close(weights.mean(), torch.tensor(1.0, dtype=torch.float64))
    assert threshold_weights(torch.full((4,), -0.1)).tolist() == [1.0] * 4  # none kept: none silenced
    assert sigmoid_weights(torch.full((4,), 0.3)).tolist() == [1.0] * 4  # equal qualities: equal weights


def test_the_softmax_stays_the_papers_weights():
    q = QUALITIES.tolist()
    torch.testing.assert_close(
        pair_weights(QUALITIES), torch.tensor(ref_softmax(q, 1.0), dtype=torch.float64)
    )
    progress = 0.25
    gamma = 1.0 + (ANNEALED_FINAL_GAMMA - 1.0) * progress
    assert annealed_gamma(1.0, progress) == pytest.approx(gamma)
    torch.testing.assert_close(
        pair_weights(QUALITIES, "annealed", 1.0, progress),
        torch.tensor(ref_softmax(q, gamma), dtype=torch.float64),
    )
    assert annealed_gamma(2.0, 0.0) == 2.0 and annealed_gamma(2.0, 1.5) == ANNEALED_FINAL_GAMMA
    with pytest.raises(ValueError, match="unknown quality weighting 'hard'"):
        pair_weights(QUALITIES, "hard")
    with pytest.raises(ValueError, match="smoothed quality"):
        pair_weights(QUALITIES, "row_memory")


def test_row_memory_averages_each_rows_visits_then_follows_the_newest():
    memory = RowQualityMemory(visits=3)
    visits = {4: [0.3, -0.1, 0.5, 0.9, 0.0], 1: [-0.6, -0.2, 0.1, 0.4, -0.5]}
    expected = {row: [] for row in visits}
    for row, values in visits.items():  # naive: the mean of the first 3 visits, then m += (x - m) / 3
        mean = 0.0
        for count, value in enumerate(values, 1):
            mean += (value - mean) / min(count, 3)
            expected[row].append(mean)
    for step in range(5):
        rows = torch.tensor([4, 1])
        q = torch.tensor([visits[4][step], visits[1][step]], dtype=torch.float64)
        smoothed = memory.update(rows, q)
        torch.testing.assert_close(
            smoothed, torch.tensor([expected[4][step], expected[1][step]], dtype=torch.float64)
        )
    assert memory.count.tolist() == [0, 5, 0, 0, 5]  # grown to the largest row index seen
    with pytest.raises(ValueError, match="2 row indices for 3 qualities"):
        memory.update(torch.tensor([0, 1]), torch.zeros(3))
    with pytest.raises(ValueError, match=">= 0"):
        memory.update(torch.tensor([-1]), torch.zeros(1))


# ---------------------------------------------------------------------------------- our options
def test_centred_cosines_against_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    tokens_1, tokens_2 = torch.rand(3, 4, 5, generator=g), torch.rand(3, 6, 5, generator=g)  # non-negative
    masks_1, masks_2 = torch.rand(3, 4, generator=g), torch.rand(3, 6, generator=g)
    mean = torch.cat([tokens_1, tokens_2], 1).reshape(-1, 5).mean(0)  # every token of both views
    expected = []
    for i in range(3):
        pooled = []
        for tokens, fg in ((tokens_1[i] - mean, masks_1[i]), (tokens_2[i] - mean, masks_2[i])):
            pooled.append((fg / fg.sum() @ tokens, (1 - fg) / (1 - fg).sum() @ tokens))
        (a_fg, a_bg), (b_fg, b_bg) = pooled
        expected.append(F.cosine_similarity(a_fg, b_fg, 0) - F.cosine_similarity(a_bg, b_bg, 0))
    centred = pair_quality(tokens_1, tokens_2, masks1=masks_1, masks2=masks_2, center=True)
    torch.testing.assert_close(centred, torch.stack(expected))
    plain = pair_quality(tokens_1, tokens_2, masks1=masks_1, masks2=masks_2)
    assert centred.std() > 3 * plain.std()  # non-negative features: the plain cosines bunch together


@pytest.mark.gpu
def test_masks_on_the_device_are_not_read_back_and_bad_ones_make_nan_weights():
    tokens = torch.randn(4, 9, 6, device="cuda")
    good, bad = torch.rand(4, 9, device="cuda"), torch.rand(4, 9, device="cuda") * 255
    with syncs_are_errors():
        weights = quality_weights(tokens, tokens.flip(0), None, masks1=good, masks2=good)
        nan_weights = quality_weights(tokens, tokens.flip(0), None, masks1=bad, masks2=good)
    assert torch.isfinite(weights).all() and torch.isnan(nan_weights).all()
