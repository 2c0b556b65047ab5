"""Tests of the image SSL training recipe (genview_hf.recipes.train_genview) end to end on the
embedded sample sets with the real collators, the tiny components passed as folders: the tiny config
trains, resumes and exports; each recipe refuses the other kind of method naming the right one; a
dataset missing what the method needs is named before training."""

import json

import pytest
import torch
from transformers import AutoModel

from genview_hf.recipes import clip_genview, train_genview
from recipe_runs import TINY, run


def test_tiny_mocov3_config_trains_resumes_and_exports(tmp_path):
    assert run(TINY["ssl"], tmp_path, "--logging_steps", "1", "--knn_monitor_steps", "1") == 0
    encoder = AutoModel.from_pretrained(tmp_path)
    assert type(encoder).__name__ == "ViTModel" and encoder.config.genview_pooling == "cls"
    assert {"weights.png", "pairs.png", "knn.png", "README.md"} <= {p.name for p in tmp_path.iterdir()}
    state = json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())
    logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert logs and all("weight_mean" in entry for entry in logs)  # stored masks reached the loss
    # resume to 3 steps from the checkpoint written at step 2
    assert run(TINY["ssl"], tmp_path, "--max_steps", "3", "--resume_from_checkpoint", "true") == 0
    assert (tmp_path / "checkpoint-3").is_dir()


def test_row_memory_weighting_trains_with_the_stock_column_removal(tmp_path):
    # remove_unused_columns keeps its default (True): the row index the memory reads must survive it
    assert run(TINY["ssl"], tmp_path, "--quality_weighting", "row_memory", "--logging_steps", "1") == 0
    state = json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())
    logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert logs and all("weight_mean" in entry for entry in logs)
    args = torch.load(tmp_path / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert args.remove_unused_columns and args.quality_weighting == "row_memory"


@pytest.mark.parametrize("method", ["leoclr", "simclr"])
def test_other_ssl_methods_run_from_the_tiny_config(tmp_path, method):
    assert run(TINY["ssl"], tmp_path, "--method", method, "--quality_mode", "off") == 0
    assert (tmp_path / "model.safetensors").exists()


def test_each_recipe_refuses_the_other_kind_of_method_naming_the_right_one(tmp_path):
    with pytest.raises(
        ValueError, match=r"method='slip' is an image-text method: run it with recipes/clip_genview\.py"
    ):
        train_genview.cli(["--config", TINY["clip"], "--output_dir", str(tmp_path)])
    with pytest.raises(
        ValueError, match=r"method='mocov3' is an image SSL method: run it with recipes/train_genview\.py"
    ):
        clip_genview.cli(["--config", TINY["ssl"], "--output_dir", str(tmp_path)])
    assert not any(tmp_path.iterdir())  # refused before anything is loaded or written


def test_dataset_missing_what_the_method_needs_is_named_before_training(tmp_path):
    with pytest.raises(ValueError, match="quality_mode='stored'.*mask"):
        run(TINY["ssl"], tmp_path, "--dataset_name", "sample:digits")
    with pytest.raises(SystemExit):  # a Literal field: argparse refuses the value and lists the choices
        run(TINY["ssl"], tmp_path, "--method", "dino")
