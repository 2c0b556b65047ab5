"""The quality modes, one function: ``off`` gives no weights, ``stored`` the stored masks on the
training model's tokens, ``frozen`` a frozen model's tokens and a foreground direction; each
checked against the formulas of ``genview_hf.quality`` computed by hand on the same tensors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from _controlled_fixtures import _pair_rows
from genview_hf import losses, quality
from genview_hf.data.collators import (
    ROW_INDICES,
    GeometricViewsCollator,
    RowIndexCollator,
    build_collator,
)
from genview_hf.modeling import GenViewModel
from genview_hf.modeling.features import masks_to_tokens, principal_direction
from genview_hf.quality import foreground_maps, pair_quality, pair_weights, pool_foreground_background
from genview_hf.testing import tiny_clip, tiny_vit
from genview_hf.training import FrozenQualityModel, QualityWeights, quality_weights
from genview_hf.training.quality_modes import DEGENERATE_MASS, PairWeighting, TokenMaps
from tolerances import reduction_tolerance
from training_helpers import make_args, make_trainer

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


def _leoclr_stored_batch(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = {
        key: torch.randn(n, 3, size, size, generator=g)
        for key in ("pixel_values_1", "pixel_values_2", "pixel_values_orig")
    }
    masks = {key: torch.rand(n, size, size, generator=g) for key in ("masks_1", "masks_2", "masks_orig")}
    return {**views, **masks}


def _stored(masks_1, masks_2, tokens_1, tokens_2, gamma=1.0):
    outputs = SimpleNamespace(tokens_1=tokens_1, tokens_2=tokens_2)
    batch = {"masks_1": masks_1, "masks_2": masks_2}
    return quality_weights("stored", batch, outputs, frozen=None, gamma=gamma, multi_positive=False).pairs


def test_leoclr_weights_score_the_original_crop_pairs_its_loss_contrasts(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "leoclr", quality_mode="stored"))
    batch = _leoclr_stored_batch()
    out = trainer.model(**{k: v for k, v in batch.items() if not k.startswith("masks")}, output_tokens=True)
    weights = trainer.quality_weights(batch, out)
    assert weights.pairs is None and weights.original_pairs.shape == (4, 2)
    t = out.tokens_orig.shape[1]
    from genview_hf.modeling.features import masks_to_tokens

    def by_hand(crop):  # GenView's pair weights of (original, crop j)
        return quality.quality_weights(
            out.tokens_orig, getattr(out, f"tokens_{crop}"), None, gamma=1.0,
            masks1=masks_to_tokens(batch["masks_orig"], t), masks2=masks_to_tokens(batch[f"masks_{crop}"], t),
        )  # fmt: skip

    torch.testing.assert_close(weights.original_pairs, torch.stack([by_hand(1), by_hand(2)], 1))
    loss = trainer.objective(out, weights)
    tau = trainer.args.temperature
    expected = losses.info_nce_loss(
        out.queries_1, out.targets_1, out.queue, tau, by_hand(1)
    ) + losses.info_nce_loss(out.queries_1, out.targets_2, out.queue, tau, by_hand(2))
    torch.testing.assert_close(loss, expected)
    assert torch.equal(
        trainer.objective(out, None),
        losses.leoclr_loss(out.queries_1, out.targets_1, out.targets_2, out.queue, tau),
    )


def test_leoclr_frozen_weights_read_the_original_too(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "leoclr", quality_mode="frozen"))
    batch = _leoclr_stored_batch()
    out = trainer.model(**{k: v for k, v in batch.items() if not k.startswith("masks")})
    weights = trainer.quality_weights(batch, out)
    assert weights.original_pairs.shape == (4, 2)
    assert torch.allclose(weights.original_pairs.mean(0), torch.ones(2))
    changed = dict(batch, pixel_values_orig=batch["pixel_values_orig"].flip(0))
    assert not torch.allclose(trainer.quality_weights(changed, out).original_pairs, weights.original_pairs)


def test_a_crop_with_no_background_or_no_foreground_gets_a_neutral_weight():
    g = torch.Generator().manual_seed(0)
    n, side, c = 5, 4, 6
    tokens_1, tokens_2 = (
        torch.randn(n, side * side, c, generator=g),
        torch.randn(n, side * side, c, generator=g),
    )
    masks_1 = (torch.rand(n, side, side, generator=g) > 0.5).float()
    masks_2 = (torch.rand(n, side, side, generator=g) > 0.5).float()
    masks_1[0] = 1.0  # all foreground: no background term
    masks_2[3] = 0.0  # all background: no foreground term
    weights = _stored(masks_1, masks_2, tokens_1, tokens_2, gamma=2.0)
    assert weights[0] == 1.0 and weights[3] == 1.0
    valid = [1, 2, 4]
    q = quality.pair_quality(
        tokens_1[valid], tokens_2[valid], masks1=masks_1[valid].flatten(1), masks2=masks_2[valid].flatten(1)
    )
    torch.testing.assert_close(
        weights[valid], len(valid) * torch.softmax(2.0 * q, 0)
    )  # the others: their own softmax
    assert weights.mean().item() == pytest.approx(1.0)
    # a single token of background is still a background: only less than DEGENERATE_MASS tokens is degenerate
    masks_1[0, 0, 0] = 0.0
    assert DEGENERATE_MASS <= 1.0 and _stored(masks_1, masks_2, tokens_1, tokens_2)[0] != 1.0


def test_without_degenerate_crops_the_stored_weights_are_genview_s():
    g = torch.Generator().manual_seed(1)
    tokens_1, tokens_2 = torch.randn(4, 16, 6, generator=g), torch.randn(4, 16, 6, generator=g)
    masks_1 = torch.rand(4, 4, 4, generator=g)
    masks_2 = torch.rand(4, 4, 4, generator=g)
    expected = quality.quality_weights(
        tokens_1, tokens_2, None, masks1=masks_1.flatten(1), masks2=masks_2.flatten(1)
    )
    torch.testing.assert_close(_stored(masks_1, masks_2, tokens_1, tokens_2), expected)


def test_frozen_mode_with_stored_masks_and_geometric_views_against_a_hand_computation():
    from genview_hf.testing import tiny_resnet

    resnet, processor = tiny_resnet()
    rows = _pair_rows()
    batch = GeometricViewsCollator(build_collator("mocov3", image_size=32, masks=True, seed=0))(rows)
    frozen = FrozenQualityModel(resnet, processor=processor)  # the pixels already use its statistics
    weights = quality_weights(
        "frozen", batch, None, frozen=frozen, gamma=2.0, multi_positive=False, center=True, foreground="masks"
    )
    with torch.no_grad():  # the frozen ResNet's feature map of the geometric views, as tokens
        maps = [resnet(pixel_values=batch[f"quality_pixel_values_{side}"]).last_hidden_state for side in "12"]
    tokens = [fmap.flatten(2).transpose(1, 2) for fmap in maps]
    masks = [masks_to_tokens(batch[f"masks_{side}"], tokens[0].shape[1]) for side in "12"]
    q = pair_quality(*tokens, masks1=masks[0], masks2=masks[1], center=True)
    torch.testing.assert_close(weights.pairs, len(q) * torch.softmax(2.0 * q, 0))
    assert frozen.direction is None  # the masks need no direction


def test_the_pair_figure_shows_every_kind_of_weighted_batch():
    n, v = 3, 4
    pixels = {
        key: torch.randn(n, 3, 8, 8) for key in ("pixel_values_1", "pixel_values_2", "pixel_values_orig")
    }
    first, second, weights = QualityWeights(pairs=torch.arange(3.0)).figure_pairs(pixels)
    assert first is pixels["pixel_values_1"] and second is pixels["pixel_values_2"]
    leoclr = QualityWeights(original_pairs=torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    first, second, weights = leoclr.figure_pairs(pixels)
    assert weights.tolist() == [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]  # (original, crop 1) pairs, then crop 2
    torch.testing.assert_close(second[n:], pixels["pixel_values_2"])
    torch.testing.assert_close(first[:n], pixels["pixel_values_orig"])
    plus = {"pixel_values": torch.randn(n, v, 3, 8, 8), "pixel_values_real": torch.randn(n, 3, 8, 8)}
    image_text = torch.rand(n, v)
    first, second, weights = QualityWeights(image_text=image_text).figure_pairs(plus)
    assert first.shape == second.shape == (n * v, 3, 8, 8)
    torch.testing.assert_close(first[v + 1], plus["pixel_values_real"][1])  # the real image beside ...
    torch.testing.assert_close(second[v + 1], plus["pixel_values"][1, 1])  # ... each of its views
    assert weights[v + 1] == image_text[1, 1]
    assert QualityWeights(pairs=torch.ones(3)).figure_pairs({}) is None


def test_the_frozen_modes_weighting_option_weights_the_hand_computed_qualities():
    from genview_hf.testing import tiny_resnet

    resnet, processor = tiny_resnet()
    rows = _pair_rows()
    batch = RowIndexCollator(
        GeometricViewsCollator(build_collator("mocov3", image_size=32, masks=True, seed=0))
    )(rows)
    assert batch[ROW_INDICES].tolist() == list(range(len(rows)))  # each row's dataset index
    frozen = FrozenQualityModel(resnet, processor=processor)
    with torch.no_grad():
        maps = [resnet(pixel_values=batch[f"quality_pixel_values_{side}"]).last_hidden_state for side in "12"]
    tokens = [fmap.flatten(2).transpose(1, 2) for fmap in maps]
    masks = [masks_to_tokens(batch[f"masks_{side}"], tokens[0].shape[1]) for side in "12"]
    q = pair_quality(*tokens, masks1=masks[0], masks2=masks[1], center=True)

    def weights(weighting, **kwargs):
        return quality_weights(
            "frozen", batch, None, frozen=frozen, gamma=1.0, multi_positive=False, center=True,
            foreground="masks", weighting=weighting, **kwargs,
        ).pairs  # fmt: skip

    torch.testing.assert_close(weights(PairWeighting("threshold")), pair_weights(q, "threshold"))
    torch.testing.assert_close(weights(None), pair_weights(q))  # None: the papers' softmax
    torch.testing.assert_close(
        weights(PairWeighting("annealed"), progress=0.5), pair_weights(q, "annealed", 1.0, progress=0.5)
    )
    memory = PairWeighting("row_memory")
    weights(memory)
    second = weights(memory)  # the same rows again: their smoothed q is the mean of the two visits
    torch.testing.assert_close(second, pair_weights(q, "threshold"))
    assert memory.memory.count.tolist() == [2] * len(rows)
    batch.pop(ROW_INDICES)
    with pytest.raises(ValueError, match="needs each row's dataset index"):
        weights(PairWeighting("row_memory"))
    with pytest.raises(ValueError, match="unknown quality_weighting 'hard'"):
        PairWeighting("hard")
    with pytest.raises(ValueError, match="the rows need it"):
        RowIndexCollator(build_collator("mocov3", image_size=32, seed=0))(
            [{k: v for k, v in rows[0].items() if k != "__index__"}]
        )
