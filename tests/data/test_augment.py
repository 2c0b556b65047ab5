"""Tests of genview_hf.data.augment: the views' geometry shared by image and mask, the crops (random
resized, centre box as ContrastiveCrop), the photometric operations against torchvision, seeded
determinism, the presets quoted from the papers, bad input named."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genview_hf.data.augment import (
    BYOL_1,
    BYOL_2,
    CENTER_BOX,
    CENTER_BOX_ALPHA,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MOCOV2,
    SIMCLR,
    ViewAugmentation,
    _jitter_op,
    augment_views,
    photometric,
    sample_crop_boxes,
)
from genview_hf.methods import METHODS, get_method


def _augmentations(method):
    return get_method(method).augmentations


ALL_VIEWS = {
    f"{method}.{name}": aug
    for method in METHODS
    for name, aug in vars(_augmentations(method)).items()
    if aug is not None
}


def denormalize(pixels, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    return pixels * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)


def blobs(n=6, height=40, width=56, seed=0):
    """Smooth random masks (N, H, W) in [0, 1] at full resolution."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 5, 7, generator=g)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[:, 0]


@pytest.mark.parametrize("name", sorted(ALL_VIEWS))
def test_geometry_is_shared_by_image_and_mask(name):
    aug = ALL_VIEWS[name].geometry_only()
    masks = blobs()
    images = masks[:, None].expand(-1, 3, -1, -1)  # the image's content is its mask
    pixels, out_masks = augment_views(
        images, aug, 24, masks=masks, generator=torch.Generator().manual_seed(1)
    )
    restored = denormalize(pixels)
    assert out_masks.shape == (6, 24, 24) and out_masks.dtype == torch.float32
    for channel in range(3):
        torch.testing.assert_close(restored[:, channel], out_masks, atol=1e-5, rtol=0)


def test_token_resolution_mask_is_resized_to_the_image_then_shares_its_geometry():
    tokens = torch.rand(4, 4, 5)  # a 4x5 token map for 32x40 images
    full = F.interpolate(tokens[:, None], size=(32, 40), mode="bilinear", align_corners=False)[:, 0]
    images = (full[:, None].expand(-1, 3, -1, -1) * 255).round().to(torch.uint8)
    pixels, masks = augment_views(
        images, MOCOV2.geometry_only(), 16, masks=tokens, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(denormalize(pixels)[:, 0], masks, atol=1 / 255 + 1e-4, rtol=0)


def test_photometric_ops_leave_masks_alone_and_change_images():
    masks = blobs()
    images = torch.rand(6, 3, 40, 56)
    full_pixels, full_masks = augment_views(
        images, BYOL_2, 24, masks=masks, generator=torch.Generator().manual_seed(3)
    )
    geo_pixels, geo_masks = augment_views(
        images, BYOL_2.geometry_only(), 24, masks=masks, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(full_masks, geo_masks)  # same geometry, masks untouched by colour
    assert not torch.allclose(full_pixels, geo_pixels)


def test_flip_mirrors_image_and_mask():
    mask = torch.zeros(1, 16, 16)
    mask[:, :, :8] = 1  # left half
    image = mask[:, None].expand(-1, 3, -1, -1).clone()
    aug = ViewAugmentation(crop="resize", flip_prob=1.0)
    pixels, out = augment_views(image, aug, 16, masks=mask)
    assert out[0, :, 8:].eq(1).all() and out[0, :, :8].eq(0).all()
    torch.testing.assert_close(denormalize(pixels)[0, 0], out[0], atol=1e-5, rtol=0)


def test_seeded_determinism_and_seed_sensitivity():
    images = (torch.rand(5, 3, 30, 44) * 255).to(torch.uint8)
    masks = blobs(5, 30, 44)

    def run(seed):
        return augment_views(images, SIMCLR, 20, masks=masks, generator=torch.Generator().manual_seed(seed))

    a, b, c = run(7), run(7), run(8)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)
    assert not torch.allclose(a[0], c[0])
    torch.manual_seed(11)
    d = augment_views(images, SIMCLR, 20, masks=masks)
    torch.manual_seed(11)
    e = augment_views(images, SIMCLR, 20, masks=masks)
    torch.testing.assert_close(d[0], e[0], rtol=0, atol=0)


def test_random_resized_crop_boxes_follow_scale_and_ratio():
    n = 2000
    heights, widths = torch.full((n,), 300), torch.full((n,), 400)
    aug = ViewAugmentation(scale=(0.2, 0.6), ratio=(3 / 4, 4 / 3))
    boxes = sample_crop_boxes(heights, widths, aug, (32, 32), torch.Generator().manual_seed(0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 300).all() and (left + w <= 400).all()
    area = (h * w).double() / (300 * 400)
    assert area.min() > 0.19 and area.max() < 0.61
    aspect = w.double() / h
    assert aspect.min() > 0.74 and aspect.max() < 1.35
    # the crops spread over the image
    assert left.min() < 20 and (left + w).max() > 380


def test_center_and_resize_boxes():
    heights, widths = torch.tensor([300, 100]), torch.tensor([400, 100])
    center = sample_crop_boxes(heights, widths, ViewAugmentation(crop="center"), (32, 32))
    assert center.tolist() == [[0, 50, 300, 300], [0, 0, 100, 100]]
    whole = sample_crop_boxes(heights, widths, ViewAugmentation(crop="resize"), (32, 32))
    assert whole.tolist() == [[0, 0, 300, 400], [0, 0, 100, 100]]


def test_fallback_crop_for_extreme_aspect_ratio():
    # A 10x1000 strip: no random box of the aspect range fits, torchvision falls back to a centred crop.
    boxes = sample_crop_boxes(
        torch.tensor([10]),
        torch.tensor([1000]),
        ViewAugmentation(scale=(0.9, 1.0)),
        (8, 8),
        torch.Generator(),
    )
    top, left, h, w = boxes[0].tolist()
    assert (top, h, w) == (0, 10, 13) and left == round((1000 - 13) / 2)


def test_identity_pipeline_only_resizes_and_normalises():
    images = torch.rand(3, 3, 16, 16)
    pixels, masks = augment_views(
        images, ViewAugmentation(crop="resize", flip_prob=0.0), 16, mean=(0.5,) * 3, std=(0.25,) * 3
    )
    assert masks is None
    torch.testing.assert_close(pixels, (images - 0.5) / 0.25)


def test_photometric_ops_individually():
    x = torch.rand(4, 3, 12, 12)
    solar = photometric(x.clone(), ViewAugmentation(solarize_prob=1.0))
    torch.testing.assert_close(solar, torch.where(x >= 0.5, 1 - x, x))
    gray = photometric(x.clone(), ViewAugmentation(grayscale_prob=1.0))
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    torch.testing.assert_close(gray[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    constant = torch.full((2, 3, 12, 12), 0.3)
    blurred = photometric(constant.clone(), ViewAugmentation(blur_prob=1.0))
    torch.testing.assert_close(blurred, constant)
    sharp = torch.zeros(1, 3, 31, 31)
    sharp[..., 15, 15] = 1
    spread = photometric(sharp.clone(), ViewAugmentation(blur_prob=1.0, blur_sigma=(2.0, 2.0)))
    assert spread[0, 0, 15, 15] < 0.2 and math.isclose(spread.sum().item(), 3.0, rel_tol=1e-4)
    untouched = photometric(x.clone(), ViewAugmentation(jitter_prob=1.0))  # zero strengths: identity
    torch.testing.assert_close(untouched, x)
    jittered = photometric(
        x.clone(), ViewAugmentation(jitter_prob=1.0, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    )
    assert not torch.allclose(jittered, x) and jittered.min() >= 0 and jittered.max() <= 1


def test_hue_shift_follows_torchvision():
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1
    cyan = _jitter_op(3, red.clone(), torch.tensor([0.5]))
    torch.testing.assert_close(cyan, 1 - red, atol=1e-5, rtol=0)
    green = _jitter_op(3, red.clone(), torch.tensor([1 / 3]))
    torch.testing.assert_close(green, red.roll(1, dims=1), atol=1e-5, rtol=0)


def test_mixed_sizes_uint8_and_float_inputs():
    images = [(torch.rand(3, 20 + 7 * i, 50 - 5 * i) * 255).to(torch.uint8) for i in range(4)]
    masks = [torch.rand(4, 5) for _ in range(4)]
    pixels, out = augment_views(images, MOCOV2, (24, 32), masks=masks, generator=torch.Generator())
    assert pixels.shape == (4, 3, 24, 32) and pixels.dtype == torch.float32
    assert out.shape == (4, 24, 32) and out.min() >= 0 and out.max() <= 1


def test_presets_quote_the_papers():
    assert (BYOL_1.blur_prob, BYOL_1.solarize_prob, BYOL_2.blur_prob, BYOL_2.solarize_prob) == (
        1.0,
        0.0,
        0.1,
        0.2,
    )
    assert _augmentations("mocov3") == _augmentations("byol")
    assert _augmentations("simsiam") == _augmentations("mocov2")
    assert MOCOV2.scale == (0.2, 1.0) and SIMCLR.scale == (0.08, 1.0) and SIMCLR.brightness == 0.8
    leoclr = _augmentations("leoclr")
    assert leoclr.original.crop == "resize" and leoclr.view_1 == MOCOV2
    clip = _augmentations("clip")
    assert clip.image.scale == (0.5, 1.0) and clip.view_1 is None
    slip = _augmentations("slip")
    assert slip.image == clip.image and slip.view_1.scale == (0.08, 1.0) and slip.view_1.brightness == 0.4


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=", ".join(METHODS)):
        get_method("moco")
    with pytest.raises(ValueError, match="crop mode"):
        ViewAugmentation(crop="zoom")
    with pytest.raises(ValueError, match="blur_prob"):
        ViewAugmentation(blur_prob=1.5)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        augment_views([torch.rand(1, 8, 8)], MOCOV2, 8)
    with pytest.raises(ValueError, match="empty"):
        augment_views([], MOCOV2, 8)
    with pytest.raises(ValueError, match="2 masks for 1 images"):
        augment_views([torch.rand(3, 8, 8)], MOCOV2, 8, masks=[torch.rand(8, 8)] * 2)


@pytest.mark.gpu
def test_gpu_matches_cpu():
    images = torch.rand(8, 3, 40, 48)
    masks = blobs(8, 40, 48)
    cpu = augment_views(images, BYOL_2, 24, masks=masks, generator=torch.Generator().manual_seed(0))
    gpu = augment_views(
        images.cuda(), BYOL_2, 24, masks=masks.cuda(), generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(gpu[1].cpu(), cpu[1], atol=1e-5, rtol=0)


def test_a_methods_views_adjust_their_crop_range_and_query_crop_and_drop_photometry_together():
    presets = get_method("mocov3").augmentations
    assert presets.adjusted() == presets
    adjusted = presets.adjusted((0.2, 1.0), query_center_box=True)
    assert adjusted.view_1.scale == adjusted.view_2.scale == (0.2, 1.0)
    assert adjusted.view_1.crop == "center_box" and adjusted.view_2.crop == presets.view_2.crop
    assert adjusted.view_2.solarize_prob == presets.view_2.solarize_prob  # the rest is the preset's
    geometric = get_method("leoclr").augmentations.geometry_only()
    assert geometric.original == get_method("leoclr").augmentations.original.geometry_only()
    assert geometric.view_1.jitter_prob == geometric.view_2.blur_prob == 0.0 and geometric.image is None


def _official_box_starts(size, crop, low, high):
    """ContrastiveCrop.get_params: the range of the crop's first row (or column) for a box edge pair."""
    first = min(max(int(size * low) - crop // 2, 0), size - crop)
    last = min(max(int(size * high) - crop // 2, 0), size - crop)
    return first, last


def test_center_box_crop_places_crops_as_contrastive_crop():
    assert (
        CENTER_BOX == (0.2, 0.2, 0.8, 0.8) and CENTER_BOX_ALPHA == 0.6
    )  # configs/IN1K/mocov2_center_hallucinate.py
    aug = ViewAugmentation(crop="center_box", scale=(0.2, 1.0))
    n = 4000
    heights, widths = torch.full((n,), 120), torch.full((n,), 200)
    boxes = sample_crop_boxes(heights, widths, aug, (32, 32), torch.Generator().manual_seed(0))
    fractions = []
    for top, left, h, w in boxes.tolist():
        for start, size, crop, (low, high) in ((top, 120, h, (0.2, 0.8)), (left, 200, w, (0.2, 0.8))):
            first, last = _official_box_starts(size, crop, low, high)
            assert first <= start <= last
            if last - first >= 40:  # wide enough ranges: the floor's bias (about 1 / (2 range)) is small
                fractions.append((start - first) / (last - first))
    fractions = torch.tensor(fractions)
    # Beta(0.6, 0.6): mean 1/2, variance 0.6^2 / (1.2^2 * 2.2) = 0.114 (a uniform's is 0.083)
    assert abs(fractions.mean().item() - 0.5) < 0.02
    assert abs(fractions.var().item() - 0.36 / (1.44 * 2.2)) < 0.01
    # a degenerate box puts every crop's centre at the box: top = int(H / 2) - h // 2 (clamped)
    point = ViewAugmentation(crop="center_box", box=(0.5, 0.5, 0.5, 0.5))
    for top, left, h, w in sample_crop_boxes(
        heights[:50], widths[:50], point, (32, 32), torch.Generator()
    ).tolist():
        assert (top, left) == (
            _official_box_starts(120, h, 0.5, 0.5)[0],
            _official_box_starts(200, w, 0.5, 0.5)[0],
        )
