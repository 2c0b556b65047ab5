"""The frozen quality mode's inputs, each against a hand computation: one foreground direction
fitted once on the training set (the generation scorer's fit, in the token space it is used in),
saved and read back; views re-normalised with the frozen model's own statistics; CLIP tokens
after ``post_layernorm``, as the generation scorer reads them."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image
from transformers import AutoImageProcessor, CLIPModel

from genview_hf.data.collators import build_collator
from genview_hf.foreground import ForegroundScorer, border_ring
from genview_hf.generation.encoder import ClipTokenEncoder
from genview_hf.quality import pair_quality
from genview_hf.testing import tiny_path
from genview_hf.training import GenViewTrainer, builders, frozen_quality, load_direction, quality_modes
from genview_hf.training.frozen_quality import DIRECTION_FOLDER, FrozenQualityModel
from tolerances import reduction_tolerance
from training_helpers import build_model, make_args, make_trainer

N = 4
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _clip():
    path = str(tiny_path("clip"))
    return CLIPModel.from_pretrained(path), AutoImageProcessor.from_pretrained(path)


def _images(count: int, seed: int = 0) -> list[Image.Image]:
    """Noisy 40 x 48 pictures with a bright square object near the centre."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        array = rng.integers(0, 120, (40, 48, 3), dtype=np.uint8)
        top, left = rng.integers(10, 16), rng.integers(12, 20)
        array[top : top + 14, left : left + 14] = rng.integers(160, 256, 3, dtype=np.uint8)
        images.append(Image.fromarray(array))
    return images


def _image_dataset(count: int) -> Dataset:
    return Dataset.from_dict({"image": _images(count), "label": list(range(count))}).cast_column(
        "image", ImageFeature()
    )


def _normalise(pixels, mean, std):
    return (pixels - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def _post_layernorm_tokens(model: CLIPModel, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        hidden = model.vision_model(pixel_values=pixels).last_hidden_state
        return model.vision_model.post_layernorm(hidden[:, 1:])  # (N, T, C): CLS dropped


def test_the_fit_is_the_scorers_fit_on_the_frozen_models_tokens_of_the_unaugmented_images():
    model, processor = _clip()
    frozen = FrozenQualityModel(model)  # its processor is found from the folder it was loaded from
    dataset = _image_dataset(6)
    scorer = frozen.fit_direction(dataset, num_samples=10_000, batch_size=4)  # capped: all 6 images
    assert scorer.num_fit_images == 6 and scorer.grid == (4, 4)
    # by hand: processor pixels -> tokens after post_layernorm -> top eigenvector of the centred covariance
    tokens = _post_layernorm_tokens(
        model, processor(images=_images(6), return_tensors="pt").pixel_values
    ).double()
    flat = tokens.reshape(-1, tokens.shape[-1])
    centred = flat - flat.mean(0)
    direction = torch.linalg.eigh(centred.T @ centred).eigenvectors[:, -1]
    ring = border_ring((4, 4))
    projections = tokens @ direction
    if (projections[:, ~ring].mean(1) - projections[:, ring].mean(1)).sum() < 0:
        direction = -direction
    torch.testing.assert_close(scorer.direction.double(), direction, atol=1e-5, rtol=0)
    # the sign rule: with the fitted direction the centre of the grid projects above its border
    projections = tokens @ scorer.direction.double()
    assert (projections[:, ~ring].mean(1) - projections[:, ring].mean(1)).sum() > 0
    assert frozen.fit_direction(dataset, num_samples=3).num_fit_images == 3
    with pytest.raises(ValueError, match="quality_direction_samples"):
        frozen.fit_direction(dataset, num_samples=0)


def test_the_trainer_fits_the_direction_once_saves_it_and_reads_it_back(tmp_path, monkeypatch):
    fits = []
    fit = ForegroundScorer.fit.__func__
    monkeypatch.setattr(ForegroundScorer, "fit", classmethod(lambda cls, *a, **k: fits.append(1) or fit(cls, *a, **k)))  # fmt: skip
    settings = dict(quality_mode="frozen", quality_direction_samples=10, max_steps=3)
    trainer = make_trainer(make_args(tmp_path, "mocov3", **settings))
    fitted = trainer.frozen_quality.direction.clone()
    assert len(fits) == 1 and fitted.shape == (32,)

    def batch_fit(tokens):
        raise AssertionError("a batch's own principal direction was fitted")

    monkeypatch.setattr(frozen_quality, "principal_direction", batch_fit)
    trainer.train()
    assert len(fits) == 1 and torch.equal(trainer.frozen_quality.direction, fitted)
    saved = tmp_path / DIRECTION_FOLDER
    assert ForegroundScorer.load(saved).num_fit_images == 10  # the setting, below the 16 rows
    torch.testing.assert_close(load_direction(saved), fitted)
    resumed = make_trainer(
        make_args(tmp_path, "mocov3", **settings)
    )  # same output_dir: read back, not re-fitted
    assert len(fits) == 1 and torch.equal(resumed.frozen_quality.direction, fitted)
    batch = make_trainer(
        make_args(tmp_path / "batch", "mocov3", quality_mode="frozen", quality_direction="batch")
    )
    assert batch.frozen_quality.direction is None and not (tmp_path / "batch" / DIRECTION_FOLDER).exists()


def test_a_rows_weight_no_longer_depends_on_the_rest_of_its_batch():
    model, _ = _clip()
    frozen = FrozenQualityModel(model)
    frozen.direction = frozen.fit_direction(_image_dataset(6)).direction
    g = torch.Generator().manual_seed(3)
    shared = torch.randn(2, 1, 3, 32, 32, generator=g)  # row 0's two views, in both batches

    def q_of(frozen, seed):
        others = torch.randn(2, N - 1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
        views = torch.cat([shared, others], 1)
        maps = frozen.token_maps(
            {"pixel_values_1": views[0], "pixel_values_2": views[1]}, multi_positive=False
        )
        return pair_quality(maps.views[:, 0], maps.views[:, 1], maps.direction)  # un-normalised q (N,)

    torch.testing.assert_close(q_of(frozen, 1)[0], q_of(frozen, 2)[0])
    frozen.direction = None  # quality_direction="batch": the direction, so row 0's q, follows the batch
    assert not torch.allclose(q_of(frozen, 1)[0], q_of(frozen, 2)[0])


def test_views_are_renormalised_with_the_quality_models_own_statistics_and_resized():
    model, processor = _clip()
    frozen = FrozenQualityModel(model, input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD)
    crops = torch.rand(2 * N, 3, 48, 48, generator=torch.Generator().manual_seed(4))  # [0, 1] pixels
    batch = {"pixel_values_1": _normalise(crops[:N], IMAGENET_MEAN, IMAGENET_STD)}
    batch["pixel_values_2"] = _normalise(crops[N:], IMAGENET_MEAN, IMAGENET_STD)
    maps = frozen.token_maps(batch, multi_positive=False)
    # by hand: the same crops at the frozen model's 32 px, normalised as its processor normalises
    seen = _normalise(
        F.interpolate(crops, size=(32, 32), mode="bilinear"), processor.image_mean, processor.image_std
    )
    tokens = _post_layernorm_tokens(model, seen)
    # resized and normalised in another order, then the same CLIP: ~1,000-term float32 sums per token
    within = reduction_tolerance(torch.float32, 1_000, tokens.abs().max())
    torch.testing.assert_close(maps.views, torch.stack([tokens[:N], tokens[N:]], 1), **within)


def test_the_trainer_fits_on_the_training_images_and_hands_over_the_collators_statistics(tmp_path):
    args = make_args(tmp_path, "mocov3", quality_mode="frozen")
    model, _ = build_model(args)
    quality_model, direction = builders.quality_model(args)
    dataset = _image_dataset(6)
    collator = build_collator("mocov3", image_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    trainer = GenViewTrainer(
        model, args, train_dataset=dataset, data_collator=collator,
        quality_model=quality_model, quality_direction=direction,
    )  # fmt: skip
    # the direction: the fit on the unaugmented training images (checked by hand above)
    clip, processor = _clip()
    fitted = FrozenQualityModel(clip).fit_direction(dataset).direction
    # a unit vector from a covariance of ~100 tokens x 32 channels, batched differently
    torch.testing.assert_close(
        trainer.frozen_quality.direction, fitted, **reduction_tolerance(torch.float32, 1_000)
    )
    # the views arrive normalised with the collator's statistics, the frozen model sees its own
    crops = torch.rand(N, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    views = _normalise(crops, IMAGENET_MEAN, IMAGENET_STD)
    maps = trainer.frozen_quality.token_maps({"pixel_values_1": views, "pixel_values_2": views}, False)
    expected = _post_layernorm_tokens(clip, _normalise(crops, processor.image_mean, processor.image_std))
    torch.testing.assert_close(
        maps.views[:, 0], expected, **reduction_tolerance(torch.float32, 1_000, expected.abs().max())
    )


def test_clip_tokens_are_the_generation_scorers_tokens():
    model, processor = _clip()
    encoder = ClipTokenEncoder(model.vision_model, processor)
    images = _images(3)
    scorer_tokens, _ = encoder(images)
    frozen = FrozenQualityModel(model)
    pixels = encoder.pixel_values(images)  # the frozen model's own statistics: nothing to re-normalise
    with torch.no_grad():
        tokens = frozen.token_maps({"pixel_values_1": pixels, "pixel_values_2": pixels}, False).views[:, 0]
    within = reduction_tolerance(
        torch.float32, 1_000, scorer_tokens.abs().max()
    )  # the same CLIP, other batching
    torch.testing.assert_close(tokens, scorer_tokens, **within)


def test_a_direction_of_the_wrong_width_is_refused_naming_both_widths_and_the_file(tmp_path):
    path = tmp_path / "direction.npy"
    np.save(path, np.ones(7, dtype=np.float32))
    with pytest.raises(ValueError, match=r"direction\.npy: .* 7 values .* 32 channels"):
        load_direction(path, 32)
    with pytest.raises(ValueError, match=r"direction\.npy: .* 7 values .* 32 channels"):
        builders.quality_model(
            make_args(tmp_path, "mocov3", quality_mode="frozen", quality_direction=str(path))
        )
    with pytest.raises(ValueError, match="7 values .* 32 channels"):
        FrozenQualityModel(_clip()[0], torch.ones(7))
    with pytest.raises(FileNotFoundError, match="no file or folder"):
        load_direction(tmp_path / "missing.npy")


def test_the_official_pca_vectors_file_is_accepted(tmp_path):
    """The official repo ships its direction as pca_vectors.npy, float32 (1024, 1)."""
    from transformers import ConvNextConfig, ConvNextModel

    from genview_hf.modeling.convert_open_clip import image_processor

    vectors = np.random.default_rng(0).standard_normal((1024, 1)).astype(np.float32)
    vectors /= np.linalg.norm(vectors)
    np.save(tmp_path / "pca_vectors.npy", vectors)
    direction = load_direction(tmp_path / "pca_vectors.npy", 1024)
    assert direction.shape == (1024,) and torch.equal(direction, torch.from_numpy(vectors[:, 0]))
    # with a quality model of the official token width (ConvNeXt, 1024 channels at its last stage)
    folder = tmp_path / "convnext"
    ConvNextModel(
        ConvNextConfig(num_stages=2, hidden_sizes=[8, 1024], depths=[1, 1], image_size=32)
    ).save_pretrained(folder)
    image_processor(32).save_pretrained(folder)
    args = make_args(tmp_path, "mocov3", quality_mode="frozen", quality_model=str(folder), quality_direction=str(tmp_path / "pca_vectors.npy"))  # fmt: skip
    model, direction = builders.quality_model(args)
    frozen = FrozenQualityModel(model, direction)
    views = torch.randn(2, N, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    weights = quality_modes.quality_weights(
        "frozen", {"pixel_values_1": views[0], "pixel_values_2": views[1]}, None,
        frozen=frozen, gamma=1.0, multi_positive=False,
    )  # fmt: skip
    assert torch.equal(frozen.direction, direction) and torch.isclose(weights.pairs.mean(), torch.tensor(1.0))
