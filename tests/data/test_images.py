"""Tests of genview_hf.data.images, the one image decode of generate, train and evaluate:
transparency composited over white everywhere, high bit depths scaled rather than saturated, bad
cells named with their reason."""

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from genview_hf.data.collators import SSLCollator
from genview_hf.data.images import decode_image
from genview_hf.data.views import ROW_INDEX, load_image


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


# ------------------------------------------------------------------ the one decode
def test_zero_byte_and_transparent_images_in_the_cells_training_and_generation_read():
    with pytest.raises(ValueError, match=r"row 7, column 'image': the image file is empty \(0 bytes\)"):
        decode_image({"bytes": b"", "path": None}, "row 7, column 'image'")
    rgba = PILImage.new("RGBA", (32, 32), (255, 0, 0, 0))  # fully transparent red: white once composited
    row = {"image": rgba, ROW_INDEX: 0}
    batch = SSLCollator("mocov3", 32, mean=(0, 0, 0), std=(1, 1, 1), generated_view_prob=0.0, seed=0)(
        [row, row]
    )
    assert batch["pixel_values_1"].amin() > 0.5  # no black (alpha dropped) and no red: jittered white
