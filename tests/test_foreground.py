"""Tests of genview_hf.foreground (``ForegroundScorer``): fitted on shapes with an encoder whose tokens
separate foreground from background, its masks follow the truth; its artifacts save whole and a
truncated file is named."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genview_hf.foreground import border_ring
from genview_hf.generation import ForegroundScorer, generate_views
from genview_hf.modeling.features import principal_direction
from genview_hf.testing.samples import shapes
from recipe_runs import gen_config, source

GRID = 8
SIZE = 64


class ChromaEncoder:
    """Test encoder: one token per 8x8 patch, [1, mean chroma, 0.5] scaled; shapes' objects are chromatic.

    The scorer is not told which component matters: it must find the direction (mean-centred
    PCA), its sign (centre vs border) and the threshold (percentile) by itself.
    """

    grid = (GRID, GRID)

    def __call__(self, images):
        arrays = np.stack(
            [np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), np.float32) for im in images]
        )
        chroma = (arrays.max(-1) - arrays.min(-1)) / 255.0  # (B, H, W)
        patch = SIZE // GRID
        pooled = chroma.reshape(len(images), GRID, patch, GRID, patch).mean((2, 4)).reshape(len(images), -1)
        pooled = torch.from_numpy(pooled)
        tokens = torch.stack([torch.ones_like(pooled), 3 * pooled, 0.5 * torch.ones_like(pooled)], dim=-1)
        return tokens, None


def truth_tokens(masks):
    """Ground-truth token masks: a token is foreground when most of its pixels are."""
    out = []
    for mask in masks:
        m = np.asarray(mask.resize((SIZE, SIZE), Image.NEAREST), np.float32) / 255.0
        patch = SIZE // GRID
        out.append(m.reshape(GRID, patch, GRID, patch).mean((1, 3)).reshape(-1) > 0.5)
    return np.stack(out)


@pytest.fixture(scope="module")
def fitted():
    data = shapes(num_rows=48, image_size=SIZE)
    images, truth = list(data["image"]), truth_tokens(data["mask"])
    encoder = ChromaEncoder()
    share = float(truth.mean())  # the percentile is configurable: set it to the set's true share
    batches = lambda: (images[i : i + 16] for i in range(0, len(images), 16))  # noqa: E731
    scorer = ForegroundScorer.fit(lambda b: encoder(b)[0], batches, encoder.grid, fg_share=share)
    return scorer, encoder, images, truth


def test_masks_match_ground_truth(fitted):
    scorer, encoder, images, truth = fitted
    masks = scorer.token_masks(encoder(images)[0]).numpy()
    iou = (masks & truth).sum() / (masks | truth).sum()
    assert iou > 0.8, iou
    per_image = [(m & t).sum() / max((m | t).sum(), 1) for m, t in zip(masks, truth)]
    assert np.median(per_image) > 0.8


def test_fg_ratio_follows_truth(fitted):
    scorer, encoder, images, truth = fitted
    ratios = np.array(scorer.fg_ratio(scorer.token_masks(encoder(images)[0])))
    true_ratio = truth.mean(1)
    assert np.corrcoef(ratios, true_ratio)[0, 1] > 0.9
    assert np.abs(ratios - true_ratio).mean() < 0.08


def test_sign_is_fixed_by_centre_not_by_chance(fitted):
    scorer, encoder, images, _ = fitted
    # Foreground tokens must project higher: the chroma component of the direction is positive
    # (the constant components carry no variance, so the centred fit leaves them out).
    assert scorer.direction[1] > 0.99
    flipped = ForegroundScorer.fit(
        lambda b: -encoder(b)[0], lambda: iter([images]), encoder.grid, fg_share=scorer.fg_share
    )
    same = scorer.token_masks(encoder(images)[0]) == flipped.token_masks(-encoder(images)[0])
    assert same.float().mean() > 0.99


def test_mask_images_and_artifacts_round_trip(fitted, tmp_path):
    scorer, encoder, images, _ = fitted
    masks = scorer.token_masks(encoder(images[:3])[0])
    pictures = scorer.mask_images(masks, [(64, 64), (96, 64), (64, 128)])
    assert pictures[0].mode == "L" and pictures[0].size == (GRID, GRID)
    # non-square images: the square token grid is stretched to the image's aspect ratio
    assert pictures[1].size == (GRID * 3 // 2, GRID) and pictures[2].size == (GRID, GRID * 2)
    for picture, mask in zip(pictures[1:], masks[1:]):
        assert abs(np.asarray(picture).mean() / 255 - mask.float().mean().item()) < 0.1
    assert set(np.unique(np.asarray(pictures[0]))) <= {0, 255}
    scorer.save(tmp_path)
    loaded = ForegroundScorer.load(tmp_path)
    assert torch.equal(loaded.direction, scorer.direction)
    assert (loaded.threshold, loaded.fg_share, loaded.grid) == (
        scorer.threshold,
        scorer.fg_share,
        scorer.grid,
    )
    assert torch.equal(loaded.token_masks(encoder(images[:3])[0]), masks)


def test_bad_input_is_named(fitted, tmp_path):
    scorer, *_ = fitted
    with pytest.raises(ValueError, match="tokens"):
        scorer.token_masks(torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="NaN"):
        scorer.token_masks(torch.full((1, GRID * GRID, 3), float("nan")))
    with pytest.raises(ValueError, match="fg_share"):
        ForegroundScorer.fit(lambda b: b, lambda: iter([]), (GRID, GRID), fg_share=1.5)
    with pytest.raises(ValueError, match="no decodable image"):
        ForegroundScorer.fit(lambda b: b, lambda: iter([]), (GRID, GRID))
    with pytest.raises(FileNotFoundError, match="foreground.json"):
        ForegroundScorer.load(tmp_path / "missing")


def _tokens_with_a_large_mean(images: int = 64, side: int = 6, channels: int = 8, seed: int = 0):
    """(B, side*side, C) tokens: a weak foreground signal on axis 0 (the centre 4x4 of each grid), a
    large mean off that axis (norm 19 and cosine -0.28 with it, as the official ViT-H fit's mean
    vector against its PC1) and isotropic noise."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.zeros(channels)
    axis[0] = 1.0
    other = torch.zeros(channels)
    other[1] = 1.0
    mean = 19.0 * (-0.28 * axis + (1 - 0.28**2) ** 0.5 * other)
    foreground = (~border_ring((side, side))).float()  # (T,) the centre block
    signal = 1.0 * foreground[None, :, None] * axis  # (1, T, C)
    noise = 0.3 * torch.randn(images, side * side, channels, generator=g)
    return mean + signal + noise, axis, foreground


def test_the_fit_centres_the_covariance_and_keeps_projections_uncentred():
    tokens, axis, foreground = _tokens_with_a_large_mean()
    flat = tokens.reshape(-1, tokens.shape[-1]).double()
    uncentred = torch.linalg.eigh(flat.T @ flat).eigenvectors[:, -1].float()
    assert abs(float(uncentred @ axis)) < 0.5  # the reference failure: pulled toward the mean
    share = float(foreground.mean())
    scorer = ForegroundScorer.fit(lambda b: b, lambda: iter(tokens.split(16)), (6, 6), fg_share=share)
    assert float(scorer.direction @ axis) > 0.99  # on the foreground axis, signed toward the centre
    # the official fit: eigh of the mean-centred covariance, then un-centred projections
    centred = flat - flat.mean(0)
    official = torch.linalg.eigh(centred.T @ centred / (flat.shape[0] - 1)).eigenvectors[:, -1].float()
    assert abs(float(official @ scorer.direction)) > 0.9999
    projections = (tokens @ scorer.direction).flatten().numpy()
    assert scorer.threshold == pytest.approx(float(np.quantile(projections, 1 - share)), rel=1e-5)
    accuracy = (scorer.token_masks(tokens).float() == foreground).float().mean()
    sign = 1.0 if float(uncentred @ axis) > 0 else -1.0  # the uncentred fit at its best sign
    uncentred_scores = tokens @ (sign * uncentred)
    threshold = float(np.quantile(uncentred_scores.flatten().numpy(), 1 - share))
    uncentred_accuracy = ((uncentred_scores > threshold).float() == foreground).float().mean()
    assert accuracy > 0.9 and accuracy > uncentred_accuracy + 0.1, (accuracy, uncentred_accuracy)


def test_the_batch_direction_is_centred_too():
    tokens, axis, _ = _tokens_with_a_large_mean(seed=1)
    assert float(principal_direction(tokens) @ axis) > 0.99


def test_foreground_artifacts_save_whole_and_a_truncated_file_is_named(tmp_path, components, monkeypatch):
    scorer = ForegroundScorer(direction=torch.ones(32) / 32**0.5, threshold=0.5, grid=(8, 8))
    scorer.save(tmp_path / "fg")
    meta = tmp_path / "fg" / "foreground.json"
    meta.write_text(meta.read_text()[:20])  # a copy cut short
    with pytest.raises(ValueError, match=rf"{meta} is not a foreground scorer's metadata .*truncated"):
        ForegroundScorer.load(tmp_path / "fg")
    with pytest.raises(ValueError, match=r"foreground.json is not a foreground scorer's metadata"):
        generate_views(
            source(),
            gen_config(tmp_path / "v", foreground_artifacts=str(tmp_path / "fg")),
            components=components,
        )
    assert not (tmp_path / "v").exists()

    # a kill while the metadata is being written leaves no artifact that looks whole
    real_write_text = Path.write_text

    def killed_halfway(path, text, *args, **kwargs):
        real_write_text(path, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(Path, "write_text", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        scorer.save(tmp_path / "fresh")
    monkeypatch.undo()
    assert not ForegroundScorer.exists(tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "foreground.json").exists()
