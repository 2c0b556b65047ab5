"""Tests of the image-text training recipe (genview_hf.recipes.clip_genview) end to end on the
embedded sample sets: the tiny SLIP config exports a ``CLIPModel``, and GenView++'s multi-positive
run trains from a views dataset."""

import json

import pytest
import torch
from transformers import CLIPModel

from recipe_runs import TINY, run


def _views_dataset(folder):
    """A tiny views dataset: shapes rows plus a 'generated' view (the mirrored image) and its mask."""
    from PIL import Image

    from genview_hf.testing.samples import load_sample

    rows = load_sample("shapes", split="train").select(range(12))

    def add_view(row):
        row["view_ic"] = row["image"].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        row["mask_ic"] = row["mask"].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return row

    rows = rows.map(add_view)
    from datasets import Image as ImageFeature

    rows = rows.cast_column("view_ic", ImageFeature()).cast_column("mask_ic", ImageFeature())
    rows.save_to_disk(str(folder))
    return str(folder)


def test_tiny_slip_config_exports_a_clip_model(tmp_path):
    assert run(TINY["clip"], tmp_path) == 0
    model = CLIPModel.from_pretrained(tmp_path)
    assert torch.isfinite(model.logit_scale).all()


@pytest.mark.parametrize("mode", ["stored", "frozen"])
def test_genview_pp_multi_positive_run_from_a_views_dataset(tmp_path, mode):
    views = _views_dataset(tmp_path / "views")
    flags = ["--dataset_name", views, "--knn_monitor_split", "", "--multi_positive", "--quality_mode", mode]
    flags += ["--per_device_train_batch_size", "4", "--logging_steps", "1"]
    assert run(TINY["clip"], tmp_path / "out", *flags) == 0
    state = json.loads((tmp_path / "out" / "checkpoint-2" / "trainer_state.json").read_text())
    assert all("weight_mean" in entry for entry in state["log_history"] if "loss" in entry)
    assert CLIPModel.from_pretrained(tmp_path / "out") is not None
