"""Tests of genview_hf.training.builders: the views dataset the recipes train on (rows without their
views left out with a count or refused, a bad row named by its dataset row, captions that must be
text, a mistyped image column refused), the collator's crop settings, models loaded whole, and
checkpoint pickles that hold only tensors and plain states."""

from __future__ import annotations

import logging
import socket

import pytest
import torch
from datasets import Dataset, Features, Image
from PIL import Image as PILImage

from genview_hf.config import ScriptArguments, parse_config
from genview_hf.data.views import ROW_INDEX
from genview_hf.evaluation.arguments import EvaluationArguments
from genview_hf.integrity import DamagedFileError
from genview_hf.recipes.evaluate_encoder import main as evaluate_main
from genview_hf.testing.samples import shapes
from genview_hf.training import builders
from recipe_runs import recipe, short_run, truncate
from training_helpers import build_model, make_args


# ------------------------------------------------------------------ rows generation recorded as failed
def views_rows(num_rows: int, null_views=(), corrupt_images=()) -> Dataset:
    """shapes rows with a generated view (the mirrored image) and its mask; ``null_views``: rows whose
    view and mask generation recorded as failed; ``corrupt_images``: rows whose image bytes are garbage."""
    data = shapes(num_rows=num_rows, image_size=32)
    mirror = PILImage.Transpose.FLIP_LEFT_RIGHT

    def add_view(row, index):
        failed = index in null_views
        row["view_ic"] = None if failed else row["image"].transpose(mirror)
        row["mask_ic"] = None if failed else row["mask"].transpose(mirror)
        return row

    def break_image(row, index):
        if index in corrupt_images:
            row["image"] = {"bytes": b"not an image", "path": None}
        return row

    data = data.map(
        add_view,
        with_indices=True,
        features=Features({**data.features, "view_ic": Image(), "mask_ic": Image()}),
    )
    return (
        data.cast_column("image", Image(decode=False))
        .map(break_image, with_indices=True)
        .cast_column("image", Image())
    )


def test_rows_without_their_views_are_skipped_with_a_count_or_refused(tmp_path, caplog):
    data = views_rows(12, null_views=(3, 9))
    args = make_args(tmp_path, "mocov3", quality_mode="stored")
    with caplog.at_level(logging.WARNING):
        kept = builders.views_dataset(data, args, where="views")
    assert len(kept) == 10 and kept[ROW_INDEX] == [i for i in range(12) if i not in (3, 9)]
    assert "views: leaving out 2 of 12 rows" in caplog.text and "(rows 3, 9;" in caplog.text
    refuse = make_args(tmp_path, "mocov3", quality_mode="stored", skip_incomplete_rows=False)
    with pytest.raises(ValueError, match=r"views cannot train .*2 of 12 rows have no value .*\(rows 3, 9;"):
        builders.views_dataset(data, refuse, where="views")


def test_a_bad_row_past_the_checked_ones_is_named_by_its_dataset_row(tmp_path):
    """Row 3 lost its view (left out: the check of the first 64 rows passes); row 68's image does not
    decode: the step that draws it names the dataset row, not its place in the batch."""
    views_rows(70, null_views=(3,), corrupt_images=(68,)).save_to_disk(str(tmp_path / "views"))
    flags = ["--dataset_name", str(tmp_path / "views"), "--max_train_samples", "70", "--max_steps", "3"]
    flags += ["--per_device_train_batch_size", "23", "--save_strategy", "no"]  # 69 rows: 3 full batches
    with pytest.raises(ValueError, match=r"row 68 \(batch item \d+\), column 'image': cannot decode"):
        recipe(tmp_path / "out", *flags)


def test_a_non_text_caption_column_is_a_type_error_up_front(tmp_path):
    data = shapes(num_rows=4, image_size=32)
    args = make_args(tmp_path, "clip", quality_mode="off")
    with pytest.raises(TypeError, match=r"caption column 'caption' must hold text, it holds ClassLabel"):
        builders.views_dataset(data.remove_columns("caption"), args, caption_column="label")


def test_a_truncated_root_model_is_named_when_it_is_loaded(tmp_path):
    short_run(tmp_path, "--save_strategy", "no")
    truncate(tmp_path / "model.safetensors")
    with pytest.raises(
        DamagedFileError, match=r"model_name_or_path's weights .*model.safetensors is damaged: its header"
    ):
        builders.load_model(str(tmp_path))
    with pytest.raises(
        DamagedFileError, match=r"model_name_or_path's weights .*model.safetensors is damaged"
    ):
        evaluate_main(*parse_config((ScriptArguments, EvaluationArguments), [
            "--model_name_or_path", str(tmp_path), "--dataset_name", "sample:shapes", "--protocols", "knn",
        ]))  # fmt: skip


# ------------------------------------------------------------------ errors name the dataset's row
def test_a_bad_row_after_dropped_rows_is_named_by_its_dataset_row(tmp_path):
    """Rows 3 and 9 lost their views (left out); row 20's image does not decode: the check names row
    20, not 18 (its place among the rows kept)."""
    data = views_rows(30, null_views=(3, 9), corrupt_images=(20,))
    with pytest.raises(ValueError, match=r"row 20, column 'image': cannot decode"):
        builders.views_dataset(data, make_args(tmp_path, "mocov3", quality_mode="stored"), where="views")


def test_an_empty_caption_after_dropped_rows_is_named_by_its_dataset_row(tmp_path):
    data = views_rows(12, null_views=(1, 2)).map(
        lambda row, index: {"caption": "" if index == 7 else row["caption"]}, with_indices=True
    )
    with pytest.raises(ValueError, match=r"row 7, column 'caption': the caption is empty"):
        builders.views_dataset(data, make_args(tmp_path, "slip", quality_mode="stored"), where="views")


def test_a_checkpoint_state_that_unpickles_other_objects_is_named_and_rng_states_pass(tmp_path):
    """The Trainer's own RNG states hold numpy arrays (allowed, as the Trainer allows them); a file
    that would unpickle any other object is named before the Trainer loads it."""
    import numpy as np

    torch.save(
        {"python": None, "numpy": np.random.get_state(), "cpu": torch.get_rng_state()},
        tmp_path / "rng_state.pth",
    )
    torch.save({"state": {}, "param_groups": []}, tmp_path / "optimizer.pt")
    builders.check_pickles(tmp_path)  # whole and plain: nothing to say
    torch.save({"state": {}, "param_groups": [], "payload": socket.socket}, tmp_path / "optimizer.pt")
    with pytest.raises(
        DamagedFileError, match=r"optimizer.pt is refused: it holds objects other than tensors"
    ):
        builders.check_pickles(tmp_path)


def test_a_mistyped_image_column_is_refused_rather_than_reading_image(tmp_path):
    data = shapes(num_rows=4, image_size=32)
    with pytest.raises(
        ValueError,
        match=r"image_column 'picture' is not a column of the dataset .*'image' column would be read",
    ):
        builders.views_dataset(
            data, make_args(tmp_path, "mocov3", quality_mode="off"), image_column="picture"
        )
    renamed = data.rename_column(
        "image", "jpg"
    )  # a source column under its own name is what the setting is for
    assert (
        "image"
        in builders.views_dataset(
            renamed, make_args(tmp_path, "mocov3", quality_mode="off"), image_column="jpg"
        ).column_names
    )


class _Columns:
    column_names = ["image"]


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
