"""The quality modes, one function: ``off`` gives no weights, ``stored`` the stored masks on the
training model's tokens, ``frozen`` a frozen model's tokens and a foreground direction; each
checked against the formulas of ``genview_hf.quality`` computed by hand on the same tensors."""

import pytest
import torch

from genview_hf.modeling import GenViewModel
from genview_hf.modeling.features import masks_to_tokens, principal_direction
from genview_hf.quality import foreground_maps, pool_foreground_background
from genview_hf.testing import tiny_clip, tiny_vit
from genview_hf.training import FrozenQualityModel, quality_weights
from genview_hf.training.quality_modes import TokenMaps
from tolerances import reduction_tolerance

N = 4


def _pair_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(N, 32, 32, generator=g)
    return dict(
        pixel_values_1=torch.randn(N, 3, 32, 32, generator=g),
        pixel_values_2=torch.randn(N, 3, 32, 32, generator=g),
        masks_1=masks,
        masks_2=masks.flip(-1),
    )


def _naive_pair_weights(tokens_1, tokens_2, fg_1, fg_2, gamma):
    """w = N softmax(gamma q), q = cos(z1_fg, z2_fg) - cos(z1_bg, z2_bg), pooled with sum-1 maps."""
    q = []
    for i in range(tokens_1.shape[0]):
        pooled = []
        for tokens, fg in ((tokens_1[i], fg_1[i]), (tokens_2[i], fg_2[i])):
            fg_w, bg_w = fg / fg.sum(), (1 - fg) / (1 - fg).sum()
            pooled.append((fg_w @ tokens, bg_w @ tokens))
        (a_fg, a_bg), (b_fg, b_bg) = pooled
        cos = torch.nn.functional.cosine_similarity
        q.append(cos(a_fg, b_fg, dim=0) - cos(a_bg, b_bg, dim=0))
    q = torch.stack(q)
    return len(q) * torch.softmax(gamma * q, 0)


def test_off_gives_no_weights():
    assert quality_weights("off", _pair_batch(), None, frozen=None, gamma=1.0, multi_positive=False) is None


def test_stored_mode_is_the_stored_masks_on_the_training_models_own_tokens():
    model = GenViewModel.from_backbone(tiny_vit()[0], method="mocov3", proj_hidden_dim=16, proj_dim=8)
    batch = _pair_batch()
    outputs = model(batch["pixel_values_1"], batch["pixel_values_2"], output_tokens=True)
    weights = quality_weights("stored", batch, outputs, frozen=None, gamma=1.5, multi_positive=False)
    expected = _naive_pair_weights(
        outputs.tokens_1, outputs.tokens_2, masks_to_tokens(batch["masks_1"], 16), masks_to_tokens(batch["masks_2"], 16), 1.5
    )  # fmt: skip
    # batched against the naive loop: sums over 16 tokens x 32 channels, weights of mean 1
    torch.testing.assert_close(weights.pairs, expected, **reduction_tolerance(torch.float32, 16 * 32))
    assert not weights.pairs.requires_grad and torch.isclose(weights.pairs.mean(), torch.tensor(1.0))
    no_masks = {key: value for key, value in batch.items() if not key.startswith("masks")}
    with pytest.raises(ValueError, match="needs masks_1 in the batch"):
        quality_weights("stored", no_masks, outputs, frozen=None, gamma=1.0, multi_positive=False)


@pytest.mark.parametrize("fixed", [False, True])
def test_frozen_mode_is_the_frozen_models_tokens_and_a_foreground_direction(fixed):
    vision = tiny_clip()[0].vision_model
    batch = _pair_batch(1)
    direction = torch.nn.functional.normalize(torch.randn(32), dim=0) if fixed else None
    frozen = FrozenQualityModel(vision, direction)
    weights = quality_weights("frozen", batch, None, frozen=frozen, gamma=1.0, multi_positive=False)
    with torch.no_grad():
        pixels = torch.cat([batch["pixel_values_1"], batch["pixel_values_2"]])
        # CLIP tokens after post_layernorm, CLS dropped: the space the generation scorer reads
        tokens = vision.post_layernorm(vision(pixel_values=pixels).last_hidden_state[:, 1:])
    used = direction if fixed else principal_direction(tokens)
    fg = foreground_maps(tokens, used)  # min-max normalised projection per image
    expected = _naive_pair_weights(tokens[:N], tokens[N:], fg[:N], fg[N:], 1.0)
    torch.testing.assert_close(weights.pairs, expected, **reduction_tolerance(torch.float32, 16 * 32))


def test_genview_pp_maps_give_image_text_and_image_image_weights():
    g = torch.Generator().manual_seed(2)
    views = torch.randn(N, 3, 16, 8, generator=g)
    maps = TokenMaps(
        views=views,
        view_masks=torch.rand(N, 3, 16, generator=g),
        real=torch.randn(N, 16, 8, generator=g),
        real_masks=torch.rand(N, 16, generator=g),
        image_embeds=torch.randn(N, 3, 5, generator=g),
        text_embeds=torch.randn(N, 5, generator=g),
    )
    weights = maps.weights(gamma=2.0, multi_positive=True)
    assert (
        weights.pairs is None
        and weights.image_text.shape == (N, 3)
        and weights.image_image.shape == (N, 3, 3)
    )
    # image-text by hand for one (sample, view): exp(gamma [cos(e, u) - cos(z_view_bg, z_real_bg)]) / mean
    _, view_bg = pool_foreground_background(maps.views, maps.view_masks)
    _, real_bg = pool_foreground_background(maps.real, maps.real_masks)
    cos = torch.nn.functional.cosine_similarity
    scores = torch.exp(
        2.0
        * (cos(maps.image_embeds, maps.text_embeds[:, None], dim=-1) - cos(view_bg, real_bg[:, None], dim=-1))
    )
    within = reduction_tolerance(torch.float32, 16 * 8)  # 16 tokens x 8 channels, weights of mean 1
    torch.testing.assert_close(weights.image_text, scores / scores.mean(), **within)
    assert torch.all(weights.image_image.diagonal(dim1=1, dim2=2) == 0)
