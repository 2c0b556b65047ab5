"""Tests of genview_hf.data.views: choosing a pair of an original and a generated view, decoding
and checking images and masks, validating a views dataset, renaming source columns to the contract,
errors that name the column or the row."""

from collections import Counter

import pytest
import torch
from datasets import Dataset, Features, Image, Value

from _views_fixtures import noise, png_bytes, solid, token_mask, views_dataset, views_rows
from genview_hf.data.views import (
    check_mask_shape,
    choose_pair,
    describe_row,
    generated_columns,
    load_image,
    mask_column_for,
    pick_generated,
    to_contract_columns,
    validate_views_dataset,
)

VIEWS = ["view_ic", "view_tc"]


def test_probability_one_always_pairs_an_original_with_a_generated_view():
    g = torch.Generator().manual_seed(0)
    pairs = [choose_pair(VIEWS, 1.0, g) for _ in range(400)]
    assert all(pair.count("image") == 1 for pair in pairs)
    sides = Counter(pair.index("image") for pair in pairs)
    assert 150 < sides[0] < 250  # the generated side is random
    generated = Counter(next(c for c in pair if c != "image") for pair in pairs)
    assert set(generated) == set(VIEWS) and min(generated.values()) > 150


def test_probability_zero_and_plain_datasets_give_the_baseline():
    g = torch.Generator().manual_seed(0)
    assert all(choose_pair(VIEWS, 0.0, g) == ("image", "image") for _ in range(100))
    assert all(choose_pair([], 1.0, g) == ("image", "image") for _ in range(100))


def test_intermediate_probability():
    g = torch.Generator().manual_seed(0)
    picks = [pick_generated(VIEWS, 0.3, g) for _ in range(2000)]
    share = sum(p is not None for p in picks) / len(picks)
    assert 0.25 < share < 0.35


def test_generated_columns_selection():
    names = ["image", "mask", "view_itc", "view_ic", "mask_ic"]
    assert generated_columns(names) == ["view_ic", "view_itc"]
    assert generated_columns(names, ["view_itc"]) == ["view_itc"]
    assert generated_columns(["image"]) == []
    with pytest.raises(ValueError, match="'view_tc' is not in the dataset"):
        generated_columns(names, ["view_tc"])
    with pytest.raises(ValueError, match="unknown view column 'view_xx'"):
        generated_columns(names, ["view_xx"])
    assert mask_column_for("image") == "mask" and mask_column_for("view_itc") == "mask_itc"


def test_image_modes_are_converted_to_rgb():
    for mode in ("L", "RGBA", "P", "LA", "CMYK", "I"):
        image = load_image(solid(100, mode=mode), "row 0")
        assert image.mode == "RGB"
    assert load_image({"bytes": png_bytes(noise(0)), "path": None}, "row 0").size == (32, 32)
    assert load_image(solid(10), "row 0", mode="L").mode == "L"


def test_image_paths_and_bytes_are_decoded(tmp_path):
    path = tmp_path / "a.png"
    noise(1).save(path)
    assert load_image(str(path), "row 0").size == (32, 32)
    assert load_image({"bytes": None, "path": str(path)}, "row 0").size == (32, 32)
    assert load_image(png_bytes(noise(2)), "row 0").mode == "RGB"
    with pytest.raises(ValueError, match="row 5: expected a PIL image.*got int"):
        load_image(3, "row 5")


def test_bad_images_are_named():
    with pytest.raises(ValueError, match=r"row 4, column 'image': cannot decode"):
        load_image({"bytes": b"not a png", "path": None}, "row 4, column 'image'")
    with pytest.raises(ValueError, match="row 2: the image is missing"):
        load_image(None, "row 2")
    with pytest.raises(ValueError, match="3x3 px, smaller than 8"):
        load_image(solid(0, (3, 3)), "row 1")


def test_mask_shape_is_checked_by_aspect_ratio():
    check_mask_shape((4, 4), (32, 32), "row 0")  # token grid
    check_mask_shape((32, 32), (32, 32), "row 0")  # full resolution
    check_mask_shape((16, 12), (500, 375), "row 0")
    check_mask_shape((14, 10), (500, 333), "row 0")
    with pytest.raises(ValueError, match="row 7.*14x14 but its image is 640x480"):
        check_mask_shape((14, 14), (640, 480), "row 7, column 'mask'")


def test_describe_row_uses_an_id_column():
    assert describe_row({"id": "abc"}, 3) == "batch item 3 (id='abc')"
    assert describe_row({"image": None}, 1) == "batch item 1"


def test_validate_a_views_dataset():
    dataset = views_dataset(views_rows())
    info = validate_views_dataset(dataset, "mocov3")
    assert info.view_columns == ("view_ic", "view_tc") and info.has_masks and info.num_rows == 6
    assert info.checked_rows == 6
    assert not validate_views_dataset(dataset, "clip", masks=False).has_masks
    plain = views_dataset(views_rows(modes=(), masks=False))
    info = validate_views_dataset(plain, "simclr")
    assert info.view_columns == () and not info.has_masks
    # lists of rows work as well
    assert validate_views_dataset(views_rows(n=2), "byol", max_rows=None).checked_rows == 2


def test_validation_errors_name_the_column_or_row():
    with pytest.raises(ValueError, match="empty"):
        validate_views_dataset(views_dataset(views_rows()).select([]), "mocov2")
    with pytest.raises(ValueError, match=r"needs the column\(s\) caption"):
        validate_views_dataset(views_dataset(views_rows(captions=False)), "clip")
    with pytest.raises(ValueError, match="at least one generated column"):
        validate_views_dataset(views_dataset(views_rows(modes=())), "clip", multi_positive=True)
    with pytest.raises(ValueError, match="unknown method 'moco'"):
        validate_views_dataset(views_dataset(views_rows()), "moco")
    rows = views_rows()
    for row in rows:
        del row["mask_tc"]
    with pytest.raises(ValueError, match=r"no column\(s\) mask_tc"):
        validate_views_dataset(views_dataset(rows), "mocov2", masks=True)
    assert not validate_views_dataset(views_dataset(rows), "mocov2").has_masks  # auto: masks off

    rows = views_rows()
    rows[3]["mask"] = token_mask(0, (4, 2))
    with pytest.raises(ValueError, match=r"row 3, column 'mask'.*4x2 but its image is 32x32"):
        validate_views_dataset(views_dataset(rows), "mocov2")

    rows = views_rows()
    rows[2]["caption"] = "   "
    with pytest.raises(ValueError, match=r"row 2, column 'caption'"):
        validate_views_dataset(views_dataset(rows), "slip", max_rows=1)  # captions: every row


def test_corrupt_image_in_a_dataset_is_named_by_row():
    images = [{"bytes": png_bytes(noise(i)), "path": None} for i in range(4)]
    images[2] = {"bytes": b"\x89PNG truncated", "path": None}
    dataset = Dataset.from_dict(
        {"image": images, "caption": ["a"] * 4},
        features=Features({"image": Image(), "caption": Value("string")}),
    )
    with pytest.raises(ValueError, match=r"row 2, column 'image': cannot decode"):
        validate_views_dataset(dataset, "mocov2")


def test_source_columns_are_renamed_to_the_contract():
    cc3m = Dataset.from_dict({"jpg": [1], "txt": ["a cat"], "view_tc": [2]})
    renamed = to_contract_columns(cc3m, "jpg", "txt")
    assert renamed.column_names == ["image", "caption", "view_tc"]
    assert to_contract_columns(renamed).column_names == renamed.column_names
    with pytest.raises(ValueError, match="already has a column 'image'"):
        to_contract_columns(Dataset.from_dict({"jpg": [1], "image": [2]}), "jpg")
