"""The one data layer of generate, train and evaluate: one image decode, one dataset loader."""

import io
import os

import numpy as np
import pytest
from datasets import Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from genview_hf.data.images import decode_image
from genview_hf.data.loading import load_split
from genview_hf.data.views import load_image, to_contract_columns


def _png(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_transparency_is_composited_over_white_everywhere():
    rgba = PILImage.new("RGBA", (16, 16), (255, 0, 0, 128))  # half-transparent red
    pixels = np.asarray(decode_image(rgba, "row 0"))
    assert pixels.shape == (16, 16, 3) and np.all(np.abs(pixels[0, 0].astype(int) - [255, 127, 127]) <= 1)
    palette = PILImage.new("P", (16, 16), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0  # index 0 transparent
    assert np.all(np.asarray(decode_image(palette, "row 0")) == 255)
    # training reads the very same pixels (not alpha dropped to black)
    np.testing.assert_array_equal(np.asarray(load_image(rgba, "row 0")), pixels)


def test_high_bit_depths_are_scaled_not_saturated():
    ramp = np.linspace(0, 65535, 16 * 16).reshape(16, 16)
    sixteen = PILImage.fromarray(ramp.astype(np.uint16))  # mode I;16
    wide = PILImage.fromarray(ramp.astype(np.int32))  # mode I (16-bit PNGs load this way)
    floats = PILImage.fromarray((ramp / 65535).astype(np.float32))  # mode F in [0, 1]
    expected = np.rint(ramp * 255 / 65535)
    for image in (sixteen, wide, floats):
        grey = np.asarray(decode_image(image, "row 0"))[..., 0].astype(float)
        assert np.abs(grey - expected).max() <= 1, image.mode
        assert (grey == 255).mean() < 0.05, f"{image.mode} saturated"
    eight_bit_in_i = PILImage.fromarray(np.full((8, 8), 100, dtype=np.int32))
    assert np.asarray(decode_image(eight_bit_in_i, "row 0"))[0, 0, 0] == 100  # 0-255 data kept as is
    # a 16-bit PNG file round trip
    assert np.abs(np.asarray(decode_image(_png(sixteen), "row 0"))[..., 0] - expected).max() <= 1


def test_bad_cells_are_named_with_their_reason(tmp_path):
    with pytest.raises(ValueError, match="row 3, column 'image': the image file is empty"):
        decode_image(b"", "row 3, column 'image'")
    with pytest.raises(ValueError, match="row 3: the image is missing"):
        decode_image(None, "row 3")
    with pytest.raises(ValueError, match="cannot decode"):
        decode_image(b"not a png", "row 3")
    with pytest.raises(ValueError, match="no image file"):
        decode_image(str(tmp_path / "absent.png"), "row 3")
    with pytest.raises(ValueError, match="smaller than 8 px"):
        load_image(PILImage.new("RGB", (4, 4)), "row 3")
    assert decode_image(PILImage.new("RGB", (4, 4)), "row 3").size == (4, 4)  # generation takes any size


def _rows(value: int, n: int = 4) -> Dataset:
    features = Features({"image": Image(), "label": Value("int64")})
    return Dataset.from_dict(
        {"image": [PILImage.new("RGB", (8, 8), (value,) * 3)] * n, "label": list(range(n))}, features=features
    )


def test_one_loader_for_samples_saved_folders_and_parquet_folders(tmp_path):
    assert len(load_split("sample:shapes", "test")) == 48
    DatasetDict({"train": _rows(1), "test": _rows(2, 2)}).save_to_disk(tmp_path / "saved")
    assert len(load_split(str(tmp_path / "saved"), "test")) == 2
    with pytest.raises(KeyError, match="no split 'validation'.*train, test"):
        load_split(str(tmp_path / "saved"), "validation")
    views = tmp_path / "views" / "data"
    views.mkdir(parents=True)
    _rows(10).to_parquet(str(views / "train-00000-of-00001.parquet"))
    assert load_split(str(tmp_path / "views"), "train", max_rows=3)["label"] == [0, 1, 2]
    with pytest.raises(KeyError, match="no split 'test'"):
        load_split(str(tmp_path / "views"), "test")


def test_a_parquet_folder_rewritten_in_place_is_read_afresh(tmp_path):
    shard = tmp_path / "views" / "data" / "train-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    _rows(10).to_parquet(str(shard))
    first = load_split(str(tmp_path / "views"), "train")
    assert np.asarray(first[0]["image"])[0, 0, 0] == 10
    _rows(200).to_parquet(str(shard))  # same name, same size, new content
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = load_split(str(tmp_path / "views"), "train")
    assert np.asarray(second[0]["image"])[0, 0, 0] == 200


def test_source_columns_are_renamed_to_the_contract():
    cc3m = Dataset.from_dict({"jpg": [1], "txt": ["a cat"], "view_tc": [2]})
    renamed = to_contract_columns(cc3m, "jpg", "txt")
    assert renamed.column_names == ["image", "caption", "view_tc"]
    assert to_contract_columns(renamed).column_names == renamed.column_names
    with pytest.raises(ValueError, match="already has a column 'image'"):
        to_contract_columns(Dataset.from_dict({"jpg": [1], "image": [2]}), "jpg")
