"""Training details that follow the official code: CLIP's logit-scale clamp after the step,
SimSiam's fixed predictor learning rate, momentum defaults per method, MoCo v3's frozen patch
projection, LeOCLR's quality pairs, the stored mode's degenerate masks, the crop settings."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerCallback

from genview_hf import losses, quality
from genview_hf.data.augment import CENTER_BOX, CENTER_BOX_ALPHA, ViewAugmentation, sample_crop_boxes
from genview_hf.methods import METHODS
from genview_hf.training import QualityWeights, builders
from genview_hf.training.quality_modes import DEGENERATE_MASS, quality_weights
from training_helpers import build_model, make_args, make_trainer

# ----------------------------------------------------------------------------- CLIP's logit scale


@pytest.mark.parametrize("start, inside", [(math.log(100.0) + 0.3, math.log(100.0)), (-0.5, 0.0)])
def test_logit_scale_is_clamped_in_place_after_the_optimizer_step(tmp_path, start, inside):
    # open_clip train.py / SLIP main.py: logit_scale.clamp_(0, ln 100) after optimizer.step()
    trainer = make_trainer(make_args(tmp_path, "clip", max_steps=1, learning_rate=1e-6))
    with torch.no_grad():
        trainer.model.clip.logit_scale.fill_(start)
    trainer.train()
    assert trainer.model.clip.logit_scale.item() == pytest.approx(inside, abs=1e-6)


def test_a_scale_above_the_bound_is_trained_back_down(tmp_path):
    """With the clamp in the forward the gradient above ln 100 is 0 and the scale is stuck; unclamped,
    a loss that prefers a lower scale lowers it (and the step's clamp keeps it in range)."""
    trainer = make_trainer(make_args(tmp_path, "clip", max_steps=1, learning_rate=1.0))
    model = trainer.model.train()
    with torch.no_grad():
        model.clip.logit_scale.fill_(math.log(100.0) + 1.0)
    batch = {
        key: torch.stack([trainer.train_dataset[i][key] for i in range(4)])
        for key in ("input_ids", "pixel_values")
    }
    out = model(**batch)
    # random embeddings: the loss falls as the scale falls, so the gradient on the log-scale is > 0
    losses.clip_loss(out.image_embeds, out.text_embeds, out.logit_scale).backward()
    assert model.clip.logit_scale.grad.item() > 0


# ----------------------------------------------------------------------------- SimSiam's predictor lr


class _LearningRates(TrainerCallback):
    def __init__(self):
        self.seen = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.seen.append([(group.get("fixed_lr", False), group["lr"]) for group in optimizer.param_groups])


def test_simsiam_predictor_keeps_the_base_learning_rate(tmp_path):
    # main_simsiam.py adjust_learning_rate: fix_lr groups at init_lr, the others on the cosine
    args = make_args(tmp_path, "simsiam", max_steps=4, lr_scheduler_type="cosine", learning_rate=0.05)
    assert args.fixed_predictor_lr is True  # the method's default
    recorder = _LearningRates()
    trainer = make_trainer(args, callbacks=[recorder])
    trainer.train()
    predictor = {id(p) for p in trainer.model.predictor.parameters()}
    fixed = [g for g in trainer.optimizer.param_groups if g.get("fixed_lr")]
    assert {id(p) for g in fixed for p in g["params"]} == predictor
    for step in recorder.seen:
        assert all(lr == 0.05 for is_fixed, lr in step if is_fixed)
    last = [lr for is_fixed, lr in recorder.seen[-1] if not is_fixed]
    assert last and all(lr < 0.05 for lr in last)  # the encoder follows the schedule
    off = make_args(tmp_path / "off", "simsiam", fixed_predictor_lr=False)
    assert off.fixed_predictor_lr is False
    with pytest.raises(ValueError, match="no predictor"):
        make_args(tmp_path, "mocov2", fixed_predictor_lr=True)


# ----------------------------------------------------------------------------- momentum


@pytest.mark.parametrize(
    "method, momentum, schedule",
    [
        ("mocov2", 0.999, "constant"),
        ("leoclr", 0.999, "constant"),
        ("mocov3", 0.99, "cosine"),
        ("byol", 0.996, "cosine"),
    ],
)  # MoCo v2 main_moco.py --moco-m 0.999; moco-v3 main_moco.py 0.99 --moco-m-cos; BYOL tau_base 0.996
def test_momentum_defaults_are_the_methods(tmp_path, method, momentum, schedule):
    args = make_args(tmp_path, method, momentum=None, momentum_schedule=None)
    assert (args.momentum, args.momentum_schedule) == (momentum, schedule)
    assert (METHODS[method].momentum, METHODS[method].momentum_schedule) == (momentum, schedule)
    kept = make_args(tmp_path, method, momentum=0.9, momentum_schedule="cosine")
    assert (kept.momentum, kept.momentum_schedule) == (0.9, "cosine")


def test_methods_without_a_momentum_encoder_have_no_momentum(tmp_path):
    assert make_args(tmp_path, "simsiam", momentum=None, momentum_schedule=None).momentum is None


# ----------------------------------------------------------------------------- MoCo v3 stop_grad_conv1


def test_frozen_patch_projection_does_not_move_in_training(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "mocov3", max_steps=2))
    projection = trainer.model.backbone.embeddings.patch_embeddings.projection
    before = projection.weight.detach().clone()
    trainer.train()
    assert torch.equal(projection.weight, before)
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert id(projection.weight) not in optimized


# ----------------------------------------------------------------------------- LeOCLR's quality pairs


def _leoclr_stored_batch(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = {
        key: torch.randn(n, 3, size, size, generator=g)
        for key in ("pixel_values_1", "pixel_values_2", "pixel_values_orig")
    }
    masks = {key: torch.rand(n, size, size, generator=g) for key in ("masks_1", "masks_2", "masks_orig")}
    return {**views, **masks}


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


# ----------------------------------------------------------------------------- stored mode: degenerate crops


def _stored(masks_1, masks_2, tokens_1, tokens_2, gamma=1.0):
    outputs = SimpleNamespace(tokens_1=tokens_1, tokens_2=tokens_2)
    batch = {"masks_1": masks_1, "masks_2": masks_2}
    return quality_weights("stored", batch, outputs, frozen=None, gamma=gamma, multi_positive=False).pairs


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


def test_unweighted_objective_is_unchanged_by_the_weight_machinery(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "mocov3"))
    batch = {
        key: torch.stack([trainer.train_dataset[i][key] for i in range(4)])
        for key in ("pixel_values_1", "pixel_values_2")
    }
    out = trainer.model(**batch)
    ones = trainer.objective(out, QualityWeights(pairs=torch.ones(4)))
    torch.testing.assert_close(trainer.objective(out, None), ones)


# ----------------------------------------------------------------------------- crops


def test_crop_settings_reach_the_collator(tmp_path):
    args = make_args(tmp_path, "mocov3", crop_scale=[0.2, 1.0])
    collator = builders.collator(args, build_model(args)[1], _Columns())
    views = collator.augmentations
    assert (
        views.view_1.scale == views.view_2.scale == (0.2, 1.0)
    )  # GenView's R50 MoCo v3; moco-v3 --crop-min=.2
    assert views.view_1.crop == views.view_2.crop == "random_resized"
    hallucinator = make_args(tmp_path, "mocov2")  # query_center_box None: on with the Hallucinator
    processor = build_model(hallucinator, use_hallucinator=True)[1]
    views = builders.collator(hallucinator, processor, _Columns(), use_hallucinator=True).augmentations
    assert views.view_1.crop == "center_box" and views.view_2.crop == "random_resized"
    assert views.view_1.box == (0.2, 0.2, 0.8, 0.8) and views.view_1.box_alpha == 0.6
    assert (
        views.view_1.scale == views.view_2.scale == (0.2, 1.0)
    )  # MoCo v2's preset, as ContrastiveCrop's scale
    with pytest.raises(ValueError, match="crop_scale"):
        make_args(tmp_path, "mocov3", crop_scale=[0.5, 0.2])


class _Columns:
    column_names = ["image"]


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
