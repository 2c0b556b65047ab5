"""Tests of genview_hf.data.collators: the batch contract of every method's collator (SSL, CLIP, SLIP,
multi-positive), generated views drawn with their probability, seeded augmentation that depends on
seed, epoch and row index only, geometric views, bad input named."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from _controlled_fixtures import _pair_rows
from _views_fixtures import noise, solid, token_mask, views_dataset, views_rows
from genview_hf.data.augment import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    augment_views,
)
from genview_hf.data.collators import (
    CLIPCollator,
    GeometricViewsCollator,
    MultiPositiveCollator,
    RowIndexed,
    SLIPCollator,
    SSLCollator,
    build_collator,
)
from genview_hf.data.views import ROW_INDEX
from genview_hf.methods import SSL_METHODS, get_method
from genview_hf.testing import tiny_clip_tokenizer
from genview_hf.testing.samples import shapes

SIZE = 32


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_clip_tokenizer()


def denormalize(pixels, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    shape = (1,) * (pixels.dim() - 3) + (3, 1, 1)
    return pixels * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)


def is_generated(pixels, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Views are white, originals black: jitter dims white to >= 0.6, never lights up black
    (no solarize in the presets used with this)."""
    return denormalize(pixels, mean, std).mean((-3, -2, -1)) > 0.3


@pytest.mark.parametrize("method", SSL_METHODS)
def test_ssl_batch_contract(method):
    rows = views_rows(n=5)
    batch = SSLCollator(method, SIZE, seed=0)(rows)
    expected = {"pixel_values_1", "pixel_values_2", "masks_1", "masks_2"}
    if method == "leoclr":
        expected |= {"pixel_values_orig", "masks_orig"}
    assert set(batch) == expected
    for key, value in batch.items():
        assert value.dtype == torch.float32
        assert value.shape == ((5, 3, SIZE, SIZE) if key.startswith("pixel") else (5, SIZE, SIZE))
    for key in ("masks_1", "masks_2"):
        assert batch[key].min() >= 0 and batch[key].max() <= 1


def test_ssl_without_masks_or_generated_columns_is_the_baseline():
    rows = views_rows(n=4, modes=(), masks=False)
    batch = SSLCollator("simclr", SIZE, generated_view_prob=1.0, seed=0)(rows)
    assert set(batch) == {"pixel_values_1", "pixel_values_2"}
    assert not is_generated(batch["pixel_values_1"]).any() and not is_generated(batch["pixel_values_2"]).any()


def test_generated_view_probability_one_and_zero():
    rows = views_rows(n=40)
    batch = SSLCollator("mocov2", SIZE, generated_view_prob=1.0, seed=0)(rows)
    first, second = is_generated(batch["pixel_values_1"]), is_generated(batch["pixel_values_2"])
    assert torch.equal(first, ~second)  # exactly one generated side per pair
    assert 5 < first.sum() < 35  # on either side
    # each view carries its own mask (generated views: all foreground, originals: none)
    torch.testing.assert_close(batch["masks_1"].mean((1, 2)), first.float())
    torch.testing.assert_close(batch["masks_2"].mean((1, 2)), second.float())
    batch = SSLCollator("mocov2", SIZE, generated_view_prob=0.0, seed=0)(rows)
    assert not is_generated(batch["pixel_values_1"]).any() and not is_generated(batch["pixel_values_2"]).any()


def test_clip_probability_and_contract(tokenizer):
    rows = views_rows(n=12)
    batch = CLIPCollator(tokenizer, SIZE, generated_view_prob=1.0, seed=0)(rows)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values"}
    assert batch["pixel_values"].shape == (12, 3, SIZE, SIZE) and batch["pixel_values"].dtype == torch.float32
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[0] == 12
    assert is_generated(batch["pixel_values"], CLIP_MEAN, CLIP_STD).all()
    batch = CLIPCollator(tokenizer, SIZE, generated_view_prob=0.0, seed=0, crop="center")(rows)
    assert not is_generated(batch["pixel_values"], CLIP_MEAN, CLIP_STD).any()


def test_slip_contract(tokenizer):
    batch = SLIPCollator(tokenizer, SIZE, seed=0)(views_rows(n=6))
    assert set(batch) == {
        "input_ids",
        "attention_mask",
        "pixel_values",
        "pixel_values_1",
        "pixel_values_2",
        "masks_1",
        "masks_2",
    }
    for key in ("pixel_values", "pixel_values_1", "pixel_values_2"):
        assert batch[key].shape == (6, 3, SIZE, SIZE)
    first = is_generated(batch["pixel_values_1"], CLIP_MEAN, CLIP_STD)
    assert torch.equal(first, ~is_generated(batch["pixel_values_2"], CLIP_MEAN, CLIP_STD))
    batch = SLIPCollator(tokenizer, SIZE, masks=False, seed=0)(views_rows(n=2))
    assert "masks_1" not in batch


@pytest.mark.parametrize("modes", [("ic",), ("ic", "tc", "itc")])
def test_multi_positive_contract(tokenizer, modes):
    rows = views_rows(n=3, modes=modes)
    rows[0]["image"] = noise(0, (40, 32))
    rows[0]["mask"] = token_mask(0, (5, 4))
    batch = MultiPositiveCollator(tokenizer, "clip", SIZE, seed=0)(rows)
    views = 1 + len(modes)
    assert set(batch) == {
        "input_ids",
        "attention_mask",
        "pixel_values",
        "masks",
        "pixel_values_real",
        "masks_real",
    }
    assert batch["pixel_values"].shape == (3, views, 3, SIZE, SIZE)
    assert batch["masks"].shape == (3, views, SIZE, SIZE)
    assert batch["pixel_values_real"].shape == (3, 3, SIZE, SIZE) and batch["masks_real"].shape == (
        3,
        SIZE,
        SIZE,
    )
    generated = is_generated(batch["pixel_values"], CLIP_MEAN, CLIP_STD)
    assert generated[1:, 0].eq(False).all() and generated[:, 1:].all()  # slot 0 real, the rest generated
    torch.testing.assert_close(batch["masks"][:, 1:], torch.ones(3, views - 1, SIZE, SIZE))
    torch.testing.assert_close(batch["masks"][:, 0], torch.zeros(3, SIZE, SIZE))
    # the real reference is the whole image resized, unaugmented (resampled in uint8: within 1/255)
    image = torch.from_numpy(np.array(rows[0]["image"])).permute(2, 0, 1).float()[None] / 255
    expected = F.interpolate(image, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(
        denormalize(batch["pixel_values_real"][:1], CLIP_MEAN, CLIP_STD),
        expected,
        atol=1 / 255 + 1e-5,
        rtol=0,
    )
    slip = MultiPositiveCollator(tokenizer, "slip", SIZE, masks=False, seed=0)(rows)
    assert "masks" not in slip and slip["pixel_values"].shape == (3, views, 3, SIZE, SIZE)


def test_seeded_determinism(tokenizer):
    rows = [dict(row, image=noise(i)) for i, row in enumerate(views_rows(n=4))]
    for make in (
        lambda: SSLCollator("byol", SIZE, seed=3),
        lambda: SLIPCollator(tokenizer, SIZE, seed=3),
        lambda: MultiPositiveCollator(tokenizer, "slip", SIZE, seed=3),
    ):
        a, b = make()(rows), make()(rows)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    collator = SSLCollator("byol", SIZE, seed=3)
    first, second = collator(rows), collator(rows)
    assert not torch.equal(first["pixel_values_1"], second["pixel_values_1"])  # the stream moves on
    collator = SSLCollator("byol", SIZE)  # seed=None: torch's global generator
    torch.manual_seed(5)
    a = collator(rows)
    torch.manual_seed(5)
    b = collator(rows)
    assert torch.equal(a["pixel_values_2"], b["pixel_values_2"])


def test_dataloader_workers_draw_different_augmentations():
    dataset = views_dataset([dict(row, image=noise(0)) for row in views_rows(n=4)])  # four identical rows
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=SSLCollator("simclr", SIZE, seed=0))
    first, second = list(loader)
    assert not torch.equal(first["pixel_values_1"], second["pixel_values_1"])


def test_batch_of_one_and_mixed_image_modes(tokenizer):
    rows = views_rows(n=4)
    rows[0]["image"] = solid(0, mode="L")
    rows[1]["image"] = solid(0, mode="RGBA")
    rows[2]["image"] = solid(0, mode="P")
    rows[3]["image"] = solid(0, (48, 24))
    rows[3]["mask"] = token_mask(0, (4, 2))
    assert SSLCollator("mocov3", SIZE, seed=0)(rows)["pixel_values_1"].shape == (4, 3, SIZE, SIZE)
    assert SSLCollator("mocov3", SIZE, seed=0)(rows[:1])["pixel_values_1"].shape == (1, 3, SIZE, SIZE)
    assert CLIPCollator(tokenizer, SIZE, seed=0)(rows[:1])["pixel_values"].shape == (1, 3, SIZE, SIZE)


def test_overlong_captions_are_truncated(tokenizer):
    rows = views_rows(n=2)
    rows[0]["caption"] = "a very long caption " * 100
    batch = CLIPCollator(tokenizer, SIZE, seed=0)(rows)
    assert batch["input_ids"].shape == (2, tokenizer.model_max_length)
    assert CLIPCollator(tokenizer, SIZE, max_length=16, seed=0)(rows)["input_ids"].shape == (2, 16)


def test_a_processor_can_stand_in_for_the_tokenizer(tokenizer):
    from transformers import CLIPImageProcessor, CLIPProcessor

    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3), tokenizer=tokenizer
    )
    collator = CLIPCollator(processor, SIZE, generated_view_prob=0.0, seed=0)
    assert collator.mean == (0.5, 0.5, 0.5) and collator.tokenizer is tokenizer
    torch.testing.assert_close(
        collator(views_rows(n=1))["pixel_values"], torch.full((1, 3, SIZE, SIZE), -1.0)
    )


def test_bad_input_is_named(tokenizer):
    rows = views_rows(n=3)
    rows[1]["caption"] = ""
    with pytest.raises(ValueError, match=r"batch item 1 \(id='r1'\), column 'caption'"):
        CLIPCollator(tokenizer, SIZE)(rows)
    rows = views_rows(n=3)
    rows[2]["image"] = {"bytes": b"garbage", "path": None}
    with pytest.raises(ValueError, match=r"batch item 2 \(id='r2'\), column 'image': cannot decode"):
        SSLCollator("mocov2", SIZE, generated_view_prob=0.0)(rows)
    rows = views_rows(n=2)
    rows[1]["mask"] = token_mask(0, (4, 1))
    with pytest.raises(ValueError, match=r"batch item 1 .*column 'mask'.*4x1 but its image is 32x32"):
        SSLCollator("mocov2", SIZE, generated_view_prob=0.0)(rows)
    with pytest.raises(ValueError, match="empty batch"):
        SSLCollator("mocov2", SIZE)([])
    with pytest.raises(ValueError, match=r"masks=True but the rows have no column\(s\) mask, mask_ic"):
        SSLCollator("mocov2", SIZE, masks=True)(views_rows(n=2, modes=("ic",), masks=False))
    with pytest.raises(ValueError, match="unknown method 'swav'"):
        SSLCollator("swav")
    with pytest.raises(ValueError, match="SSL method"):
        SSLCollator("clip")
    with pytest.raises(ValueError, match="clip or slip"):
        MultiPositiveCollator(tokenizer, "byol")
    with pytest.raises(ValueError, match="at least one generated column"):
        MultiPositiveCollator(tokenizer, "clip", SIZE)(views_rows(n=2, modes=()))
    with pytest.raises(ValueError, match="generated_view_prob"):
        SSLCollator("mocov2", generated_view_prob=1.5)
    with pytest.raises(ValueError, match="tokenizer"):
        CLIPCollator(None)


def test_build_collator_picks_the_class(tokenizer):
    assert type(build_collator("mocov3", image_size=SIZE)) is SSLCollator
    assert type(build_collator("clip", tokenizer=tokenizer)) is CLIPCollator
    assert type(build_collator("slip", tokenizer=tokenizer)) is SLIPCollator
    assert type(build_collator("slip", tokenizer=tokenizer, multi_positive=True)) is MultiPositiveCollator
    with pytest.raises(ValueError, match="unknown method"):
        build_collator("dino")


def test_collators_read_a_datasets_dataset():
    dataset = views_dataset(views_rows(n=4))
    batch = SSLCollator("leoclr", SIZE, seed=0)([dataset[i] for i in range(4)])
    assert batch["pixel_values_orig"].shape == (4, 3, SIZE, SIZE)


def test_shapes_sample_masks_stay_on_the_objects():
    from genview_hf.data.views import validate_views_dataset
    from genview_hf.testing.samples import load_sample

    dataset = load_sample("shapes", num_rows=16)
    info = validate_views_dataset(dataset, "mocov3")
    assert info.has_masks and info.view_columns == ()
    batch = SSLCollator("mocov3", SIZE, seed=0)([dataset[i] for i in range(len(dataset))])
    assert batch["masks_1"].shape == (16, SIZE, SIZE)
    # geometry only: the objects are saturated, the backgrounds grey, so chroma tells where the mask must be
    images = [torch.from_numpy(np.array(row["image"])).permute(2, 0, 1) for row in dataset]
    masks = [torch.from_numpy(np.array(row["mask"])) for row in dataset]
    aug = get_method("mocov3").augmentations.view_1.geometry_only()
    pixels, out = augment_views(images, aug, SIZE, masks=masks, generator=torch.Generator().manual_seed(0))
    rgb = denormalize(pixels)
    chroma = rgb.amax(1) - rgb.amin(1)
    inside, outside = chroma[out > 0.9], chroma[out < 0.1]
    assert inside.numel() > 100 and outside.numel() > 100
    assert inside.mean() > outside.mean() + 0.2


def test_augmentation_is_a_function_of_seed_epoch_and_row_index():
    rows = [dict(row, **{ROW_INDEX: 10 + i}) for i, row in enumerate(shapes(num_rows=6, image_size=32))]
    collator = SSLCollator("mocov3", 32, seed=0)
    batch = collator(rows)
    torch.manual_seed(123)  # the global generator plays no part
    again = SSLCollator("mocov3", 32, seed=0)(rows[::-1])  # other batch-mates, other order
    assert torch.equal(again["pixel_values_1"], batch["pixel_values_1"].flip(0))
    collator.set_epoch(1)
    assert not torch.equal(
        collator(rows)["pixel_values_1"], batch["pixel_values_1"]
    )  # a new epoch, new views
    assert not torch.equal(SSLCollator("mocov3", 32, seed=1)(rows)["pixel_values_1"], batch["pixel_values_1"])
    # DataLoader workers draw the very same views as the main process (a row keeps its own index)
    loader = DataLoader(
        RowIndexed(rows), batch_size=3, num_workers=2, collate_fn=SSLCollator("mocov3", 32, seed=0)
    )
    assert torch.equal(torch.cat([b["pixel_values_1"] for b in loader]), batch["pixel_values_1"])


def test_geometric_views_are_the_training_crops_without_their_colour_operations():
    rows = _pair_rows()
    wrapped = GeometricViewsCollator(build_collator("mocov3", image_size=32, masks=True, seed=0))
    batch = wrapped(rows)
    plain = build_collator("mocov3", image_size=32, masks=True, seed=0)
    augmentations = plain.augmentations
    plain.augmentations = type(augmentations)(
        view_1=augmentations.view_1.geometry_only(), view_2=augmentations.view_2.geometry_only()
    )
    geometric = plain(rows)
    for side in ("1", "2"):
        torch.testing.assert_close(batch[f"quality_pixel_values_{side}"], geometric[f"pixel_values_{side}"])
        torch.testing.assert_close(batch[f"masks_{side}"], geometric[f"masks_{side}"])  # the same crops
    assert not torch.allclose(batch["pixel_values_1"], batch["quality_pixel_values_1"])  # jitter etc. differ
    wrapped.seed = 5  # attribute writes reach the collator the trainer seeds
    assert wrapped.collator.seed == 5
    with pytest.raises(ValueError, match="rows need their index"):
        wrapped([{key: value for key, value in row.items() if key != "__index__"} for row in rows])
