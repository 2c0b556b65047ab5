"""Tests of genview_hf.testing.controlled, checked with its ground-truth masks: a false view is
another object on the original's own background, a clean view the same object on another background,
and the set is seeded, balanced, with no false views in its test split."""

import numpy as np
import pytest

from genview_hf.testing.controlled import FALSE_POSITIVE, controlled_views
from genview_hf.testing.samples import COLOURS, SHADE


# ---------------------------------------------------------------------------------- the controlled set
@pytest.fixture(scope="module")
def controlled():
    return controlled_views(72, 0.5, seed=3)


def _object_colours(image: np.ndarray, mask: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(pixel) for pixel in image[mask]}


def _palette(colour: int) -> set[tuple[int, ...]]:
    rgb = np.asarray(list(COLOURS.values())[colour], dtype=np.float32)
    return {
        tuple(np.clip(rgb, 0, 255).astype(np.uint8)),
        tuple(np.clip(rgb * SHADE, 0, 255).astype(np.uint8)),
    }


def test_false_views_are_another_object_on_the_originals_own_background(controlled):
    false_rows = [row for row in controlled if row[FALSE_POSITIVE]]
    assert len(false_rows) == 36  # exactly the rate
    for row in false_rows:
        image, view = np.asarray(row["image"]), np.asarray(row["view_ic"])
        mask, view_mask = np.asarray(row["mask"]) > 127, np.asarray(row["mask_ic"]) > 127
        background = ~mask & ~view_mask
        assert background.mean() > 0.4
        np.testing.assert_array_equal(
            view[background], image[background]
        )  # the same background, pixel for pixel
        assert _object_colours(image, mask) <= _palette(row["label"])  # the label is the object's colour
        other = _object_colours(view, view_mask)
        assert not other & _palette(row["label"])  # another colour
        assert other <= set().union(*(_palette(c) for c in range(len(COLOURS)) if c != row["label"]))


def test_clean_views_are_the_same_object_on_another_background(controlled):
    clean_rows = [row for row in controlled if not row[FALSE_POSITIVE]]
    assert len(clean_rows) == 36
    for row in clean_rows:
        image, view = np.asarray(row["image"]), np.asarray(row["view_ic"])
        mask, view_mask = np.asarray(row["mask"]) > 127, np.asarray(row["mask_ic"]) > 127
        assert _object_colours(view, view_mask) <= _palette(row["label"])  # the same colour
        assert abs(int(view_mask.sum()) - int(mask.sum())) < 0.5 * mask.sum()  # about the same size
        background = ~mask & ~view_mask
        same = np.all(view[background] == image[background], axis=-1)
        assert same.mean() < 0.1  # another background


def test_the_set_is_seeded_balanced_and_the_test_split_has_no_false_views(controlled):
    again = controlled_views(72, 0.5, seed=3)
    assert again[FALSE_POSITIVE] == controlled[FALSE_POSITIVE]
    assert np.array_equal(np.asarray(again[5]["view_ic"]), np.asarray(controlled[5]["view_ic"]))
    assert np.bincount(controlled["label"]).tolist() == [12] * 6  # colours cycle
    test = controlled_views(12, 0.0, seed=3, split="test")
    assert not any(test[FALSE_POSITIVE])
    assert not np.array_equal(np.asarray(test[0]["image"]), np.asarray(controlled[0]["image"]))
    with pytest.raises(ValueError, match="false_positive_rate"):
        controlled_views(8, 1.5)
