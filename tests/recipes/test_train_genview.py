"""The training recipes (``recipes/train_genview.py`` for image SSL, ``recipes/clip_genview.py`` for
image-text; ``genview train`` runs either) end to end on the embedded sample sets with the real
collators; the tiny components are passed as folders."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, CLIPModel

from genview_hf import cli as genview
from genview_hf.recipes import clip_genview, train_genview
from genview_hf.testing import tiny_path

CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "configs"
TINY = dict(ssl=str(CONFIGS / "tiny_mocov3_shapes.yaml"), clip=str(CONFIGS / "tiny_clip_shapes.yaml"))


def run(config, tmp_path, *flags):
    image_text = config == TINY["clip"]
    model = tiny_path("clip" if image_text else "vit")
    recipe = clip_genview if image_text else train_genview
    return recipe.cli(
        ["--config", config, "--model_name_or_path", str(model), "--quality_model", str(tiny_path("clip")),
         "--output_dir", str(tmp_path), "--max_steps", "2", "--save_steps", "2", *flags]
    )  # fmt: skip


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


def test_tiny_slip_config_exports_a_clip_model(tmp_path):
    assert run(TINY["clip"], tmp_path) == 0
    model = CLIPModel.from_pretrained(tmp_path)
    assert torch.isfinite(model.logit_scale).all()


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


def test_genview_train_runs_either_recipe(tmp_path):
    flags = ["--max_steps", "1", "--save_strategy", "no", "--knn_monitor_split", "none"]
    for name, config in TINY.items():
        assert genview.main(["train", "--config", config, "--output_dir", str(tmp_path / name), *flags]) == 0
    assert isinstance(AutoModel.from_pretrained(tmp_path / "clip"), CLIPModel)


def test_dataset_missing_what_the_method_needs_is_named_before_training(tmp_path):
    with pytest.raises(ValueError, match="quality_mode='stored'.*mask"):
        run(TINY["ssl"], tmp_path, "--dataset_name", "sample:digits")
    with pytest.raises(SystemExit):  # a Literal field: argparse refuses the value and lists the choices
        run(TINY["ssl"], tmp_path, "--method", "dino")


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


@pytest.mark.parametrize("mode", ["stored", "frozen"])
def test_genview_pp_multi_positive_run_from_a_views_dataset(tmp_path, mode):
    views = _views_dataset(tmp_path / "views")
    flags = ["--dataset_name", views, "--knn_monitor_split", "", "--multi_positive", "--quality_mode", mode]
    flags += ["--per_device_train_batch_size", "4", "--logging_steps", "1"]
    assert run(TINY["clip"], tmp_path / "out", *flags) == 0
    state = json.loads((tmp_path / "out" / "checkpoint-2" / "trainer_state.json").read_text())
    assert all("weight_mean" in entry for entry in state["log_history"] if "loss" in entry)
    assert CLIPModel.from_pretrained(tmp_path / "out") is not None
