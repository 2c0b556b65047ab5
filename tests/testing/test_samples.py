"""Tests of genview_hf.testing.samples, the embedded sample sets: their splits, columns and load
times, the shapes set's masks, colours and caption constraints that are true of its images, and
unknown names or splits refused."""

import re
import time

import numpy as np
import pytest
from datasets import ClassLabel, Image

from genview_hf.testing.samples import (
    BACKGROUNDS,
    COLOURS,
    RELATIONS,
    SAMPLE_NAMES,
    SHAPE_NAMES,
    constraint_level,
    digits,
    load_sample,
    photos,
    shapes,
)


@pytest.fixture(scope="module")
def shapes_set():
    return shapes()


def _arrays(dataset, column):
    return [np.asarray(image) for image in dataset[column]]


def _chroma(pixels: np.ndarray) -> np.ndarray:
    pixels = pixels.astype(np.int16)
    return pixels.max(axis=-1) - pixels.min(axis=-1)


def test_load_times_are_reported(capsys):
    """Each set is timed and the times printed (the issue asks for under 5 s each; not asserted here)."""
    times = {}
    for name in SAMPLE_NAMES:
        start = time.perf_counter()
        dataset = load_sample(name)
        times[name] = (time.perf_counter() - start, len(dataset))
    with capsys.disabled():
        report = ", ".join(f"{name} {seconds:.2f} s ({rows} rows)" for name, (seconds, rows) in times.items())
        print(f"\nsample set load times: {report}")


def test_unknown_sample_name_is_a_one_line_error_listing_the_names():
    with pytest.raises(ValueError) as error:
        load_sample("imagenet")
    message = str(error.value)
    assert "\n" not in message and "'imagenet'" in message
    for name in SAMPLE_NAMES:
        assert name in message


def test_unknown_split_is_an_error():
    with pytest.raises(ValueError, match="validation"):
        load_sample("photos", split="validation")


def test_train_and_test_splits_partition_the_rows_stratified():
    train = load_sample("shapes", split="train", num_rows=60)
    test = load_sample("shapes", split="test", num_rows=60)
    assert (len(train), len(test)) == (48, 12)
    assert sorted([*train["caption"], *test["caption"]]) == sorted(shapes(num_rows=60)["caption"])
    assert set(test["label"]) == set(range(len(SHAPE_NAMES)))  # stratified: every class in test
    again = load_sample("shapes", split="test", num_rows=60)
    assert list(again["caption"]) == list(test["caption"])  # the same split every time


def test_digits():
    dataset = digits()
    assert len(dataset) == 1797
    assert isinstance(dataset.features["image"], Image)
    assert dataset.features["label"].names[3] == "three"
    for row in dataset.select(range(20)):
        image = row["image"]
        assert (image.mode, image.size) == ("RGB", (32, 32))
        pixels = np.asarray(image)
        assert (pixels[..., 0] == pixels[..., 1]).all() and pixels.max() > 200  # grey, with ink
        name = dataset.features["label"].int2str(row["label"])
        assert name in row["caption"] or str(row["label"]) in row["caption"]
    assert "a photo of the digit three" in dataset["caption"]


def test_photos_are_rgb_with_names_and_captions():
    dataset = photos()
    names = list(dataset["name"])
    assert {"astronaut", "coffee", "chelsea", "rocket"} <= set(names)
    assert len(set(names)) == len(names)
    assert "camera" in names  # a greyscale original, converted
    for row in dataset:
        assert row["image"].mode == "RGB" and min(row["image"].size) >= 128
        assert len(row["caption"].split()) >= 4


def test_shapes_columns(shapes_set):
    features = shapes_set.features
    assert isinstance(features["image"], Image) and isinstance(features["mask"], Image)
    assert isinstance(features["label"], ClassLabel) and features["label"].names == list(SHAPE_NAMES)
    assert len(shapes_set) == 240
    row = shapes_set[0]
    assert row["image"].mode == "RGB" and row["mask"].mode == "L"
    assert row["image"].size == row["mask"].size == (64, 64)
    assert isinstance(row["caption_constraints"], int)


def test_shapes_masks_match_their_images(shapes_set):
    """Foreground pixels are saturated colour, background pixels muted: the mask is the object."""
    images, masks = _arrays(shapes_set, "image"), _arrays(shapes_set, "mask")
    for index, (image, mask) in enumerate(zip(images, masks)):
        assert set(np.unique(mask).tolist()) == {0, 255}, f"row {index}"
        inside = mask == 255
        assert 0.01 < inside.mean() < 0.6, f"row {index}: foreground share {inside.mean():.2f}"
        chroma = _chroma(image)
        assert chroma[inside].min() >= 90, f"row {index}: a foreground pixel is not saturated"
        assert chroma[~inside].max() <= 61, f"row {index}: a background pixel is too saturated"


def test_shapes_objects_have_the_colour_the_caption_states(shapes_set):
    checked = 0
    for row in shapes_set:
        caption = row["caption"]
        stated = [name for name in COLOURS if re.search(rf"\b{name}\b", caption)]
        if len(stated) != 1 or any(relation in caption for relation in RELATIONS):
            continue  # one object (or two copies) whose colour the caption names
        image, inside = np.asarray(row["image"]), np.asarray(row["mask"]) == 255
        colours, counts = np.unique(image[inside], axis=0, return_counts=True)
        top_two = colours[np.argsort(counts)[::-1][:2]]
        assert any((colour == COLOURS[stated[0]]).all() for colour in top_two), caption
        assert np.sort(counts)[::-1][:2].sum() == inside.sum(), caption  # the colour and its shade only
        assert not (image[~inside] == COLOURS[stated[0]]).all(axis=-1).any(), caption
        checked += 1
    assert checked >= 20


def test_shapes_token_level_separation(shapes_set):
    """Mean chroma over 8x8 patches separates all-foreground from all-background patches."""
    for index, (image, mask) in enumerate(zip(_arrays(shapes_set, "image"), _arrays(shapes_set, "mask"))):
        patch_chroma = _chroma(image).reshape(8, 8, 8, 8).mean(axis=(1, 3))
        share = (mask == 255).reshape(8, 8, 8, 8).mean(axis=(1, 3))
        if (share == 1).any():
            assert patch_chroma[share == 1].min() > patch_chroma[share == 0].max(), f"row {index}"


def _count_constraints(caption: str) -> int:
    """A naive reference count of the constraints a shapes caption states."""
    words = caption.split()
    attribute_words = {"small", "large", "striped", "dotted", "two", *COLOURS}
    count = sum(word in attribute_words for word in words)
    count += sum(caption.count(f" {relation} ") for relation in RELATIONS)
    count += sum(caption.endswith(f" on {background}") for background in BACKGROUNDS)
    return count


def test_shapes_caption_constraints_are_true_counts_of_graded_captions(shapes_set):
    constraints = list(shapes_set["caption_constraints"])
    for caption, count in zip(shapes_set["caption"], constraints):
        assert _count_constraints(caption) == count, caption
        assert not re.search(r"\ba [aeiou]", caption), caption
    levels = [constraint_level(count) for count in constraints]
    assert {level: levels.count(level) for level in (1, 2, 3, 4)} == {1: 60, 2: 60, 3: 60, 4: 60}
    assert "a circle" in shapes_set["caption"]
    assert max(constraints) >= 7


def test_constraint_levels_follow_the_paper():
    assert [constraint_level(count) for count in range(9)] == [1, 2, 2, 2, 3, 3, 3, 4, 4]
    with pytest.raises(ValueError):
        constraint_level(-1)


def test_shapes_rows_depend_only_on_seed_and_row():
    short, long = shapes(num_rows=6, seed=3), shapes(num_rows=12, seed=3)
    for a, b in zip(_arrays(short, "image"), _arrays(long.select(range(6)), "image")):
        assert (a == b).all()
    other = shapes(num_rows=6, seed=4)
    assert any((a != b).any() for a, b in zip(_arrays(short, "image"), _arrays(other, "image")))


def test_shapes_image_size_and_bad_arguments():
    small = shapes(num_rows=3, image_size=32)
    assert small[0]["image"].size == small[0]["mask"].size == (32, 32)
    with pytest.raises(ValueError, match="num_rows"):
        shapes(num_rows=0)
    with pytest.raises(ValueError, match="image_size"):
        shapes(image_size=8)
