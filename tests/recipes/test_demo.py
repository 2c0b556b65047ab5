"""``genview demo``: a reduced run of the whole job (generate -> train -> evaluate) and its outputs
(the ``demo`` fixture of ``conftest.py``)."""

import json

import pytest
from PIL import Image

from genview_hf import cli
from genview_hf.recipes.demo import DemoArguments, DemoRun, load_data, write_preview


def test_the_views_dataset_loads_with_plain_datasets(demo):
    from datasets import load_dataset

    output_dir, _ = demo
    views = load_dataset(str(output_dir / "views"), split="train")
    assert len(views) == 16
    for column in ("image", "mask", "fg_ratio", "noise_level", "label", "view_ic", "view_tc", "view_itc"):
        assert column in views.column_names
    assert (output_dir / "views" / "README.md").is_file()
    with Image.open(output_dir / "views" / "preview.png") as preview:
        assert preview.format == "PNG"


def test_the_trained_roots_load_with_plain_transformers(demo):
    import torch
    from transformers import AutoImageProcessor, AutoModel, CLIPModel, CLIPProcessor

    output_dir, _ = demo
    model = AutoModel.from_pretrained(output_dir / "model")
    processor = AutoImageProcessor.from_pretrained(output_dir / "model")
    with Image.open(output_dir / "samples.png") as image:
        inputs = processor(images=image.convert("RGB"), return_tensors="pt")
    with torch.no_grad():
        assert model(**inputs).last_hidden_state.shape[0] == 1
    assert type(model).__name__ == "ResNetModel"
    assert list((output_dir / "model").glob("checkpoint-*"))  # the exact-resume state
    assert type(AutoModel.from_pretrained(output_dir / "model_off")).__name__ == "ResNetModel"
    assert isinstance(CLIPModel.from_pretrained(output_dir / "clip"), CLIPModel)
    CLIPProcessor.from_pretrained(output_dir / "clip")


BLOCKED_LOAD = """
import sys
sys.modules["genview_hf"] = None  # import genview_hf now fails: the roots must not need it
from transformers import AutoImageProcessor, AutoModel, CLIPModel, CLIPProcessor
encoder = AutoModel.from_pretrained(sys.argv[1] + "/model")
AutoImageProcessor.from_pretrained(sys.argv[1] + "/model")
CLIPModel.from_pretrained(sys.argv[1] + "/clip"), CLIPProcessor.from_pretrained(sys.argv[1] + "/clip")
print(type(encoder).__name__)
"""


def test_the_roots_load_with_genview_hf_blocked(demo):
    import subprocess
    import sys

    output_dir, _ = demo
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_LOAD, str(output_dir)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ResNetModel")


def test_eval_results_and_cards(demo):
    output_dir, _ = demo
    results = json.loads((output_dir / "eval_results.json").read_text())
    # the keys `genview evaluate` writes
    for key in ("knn_top1", "linear_top1", "dataset_name", "model_name_or_path"):
        assert key in results
    assert set(results["mocov3_untrained"]) >= {"knn_top1", "linear_top1"}
    assert set(results["mocov3_off"]) >= {"knn_top1", "linear_top1"}
    assert set(results["clip"]) >= {"zero_shot_top1", "i2t_R@1"}
    assert set(results["clip_untrained"]) >= {"zero_shot_top1", "i2t_R@1"}
    card = (output_dir / "model" / "README.md").read_text()
    assert "kNN top-1" in card
    for figure in ("weights.png", "pairs.png", "knn.png"):  # training figures, linked from the card
        with Image.open(output_dir / "model" / figure) as image:
            assert image.format == "PNG"
        assert f"({figure})" in card
    assert "zero-shot top-1" in (output_dir / "clip" / "README.md").read_text()


def test_the_summary_reports_every_stage(demo):
    output_dir, out = demo
    steps = ("load_data", "write_preview", "generate", "build_controlled", "train", "compare_weighting")
    for step in (*steps, "train_clip", "evaluate"):
        assert f"] {step}:" in out
    for row in (
        "rows generated",
        "mean fg_ratio",
        "noise levels",
        "MoCo v3",
        "kNN monitor",
        "learning, kNN top-1",
        "learning, linear top-1",
        "weighting, kNN top-1",
        "user CPU",
    ):
        assert row in out
    assert str(output_dir / "eval_results.json") in out
    with Image.open(output_dir / "samples.png") as image:
        assert image.format == "PNG" and image.width > 256 and image.height > 128


def test_demo_preview_of_a_set_without_masks(tmp_path):
    run = DemoRun(args=DemoArguments(sample="photos"), output_dir=tmp_path)
    load_data(run)
    assert "no ground-truth masks" in write_preview(run)
    with Image.open(tmp_path / "samples.png") as image:
        assert image.format == "PNG"


def test_demo_rejects_an_unknown_sample_set(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--output-dir", str(tmp_path), "--sample", "imagenet"])
    assert exit_info.value.code == 2
    assert "digits" in capsys.readouterr().err


def test_the_demo_encoder_learns_at_its_full_training_size(tmp_path):
    """The MoCo v3 stages at the demo's own size (generation reduced, no CLIP run): the trained
    encoder beats its untrained start on the controlled test split by a clear margin."""
    argv = ["demo", "--output-dir", str(tmp_path), "--max-rows", "16", "--clip-steps", "0"]
    assert cli.main(argv) == 0
    results = json.loads((tmp_path / "eval_results.json").read_text())
    untrained = results["mocov3_untrained"]
    assert results["knn_top1"] - untrained["knn_top1"] >= 0.03
    assert results["linear_top1"] > untrained["linear_top1"]
    assert results["mocov3_off"]["knn_top1"] > untrained["knn_top1"]
