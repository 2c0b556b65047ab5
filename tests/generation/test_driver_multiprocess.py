"""Tests of genview_hf.generation.driver across two real processes (``accelerate launch --multi_gpu
--num_processes 2`` on CPU, gloo): they give the same rows as one process, and a two-process run with
a process killed resumes to the rows of one (the launches run tests/resume_launch.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset

from genview_hf.recipes.generate_views import cli
from genview_hf.testing import tiny_path
from resume_launch import GENERATE, launch
from training_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "--config", str(ROOT / "recipes" / "configs" / "tiny_shapes_generate.yaml"),
    "--unclip_model", str(tiny_path("unclip-img2img")), "--text2img_model", str(tiny_path("text2img")),
    "--max_rows", "4", "--shard_size", "1", "--modes", "ic", "itc", "--fg_sample_size", "4",
]  # fmt: skip


def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli(ARGS + ["--output_dir", str(one)]) == 0
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        str(ROOT / "recipes" / "generate_views.py"), *ARGS, "--output_dir", str(two),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 1 of 2: shards 2-3 of 4" in result.stderr, result.stderr[-3000:]  # a real second process
    a, b = load_dataset(str(one), split="train"), load_dataset(str(two), split="train")
    assert a["seed"] == b["seed"] and a["noise_level"] == b["noise_level"]
    assert a["guidance_scale"] == b["guidance_scale"]
    for column in ("view_ic", "view_itc", "mask"):
        for x, y in zip(a[column], b[column]):
            assert np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).max() <= 2, column


@pytest.mark.slow
def test_two_processes_killed_and_resumed_generate_the_rows_of_one(tmp_path):
    from datasets import load_dataset

    from genview_hf.data.loading import load_split
    from genview_hf.recipes.generate_views import cli
    from genview_hf.testing import tiny_path

    models = [
        "--unclip_model",
        str(tiny_path("unclip-img2img")),
        "--text2img_model",
        str(tiny_path("text2img")),
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli(GENERATE + models + ["--output_dir", str(one)]) == 0
    killed = launch("generate-killed", *GENERATE, *models, "--output_dir", str(two))
    assert killed.returncode != 0 and not (two / "data").exists(), killed.stderr[-3000:]
    with pytest.raises(ValueError, match="unfinished"):
        load_split(str(two), "train")
    resumed = launch("generate", *GENERATE, *models, "--output_dir", str(two))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "process 1 of 2: shards 2-3 of 4, 1 to do" in resumed.stderr, resumed.stderr[-3000:]
    a, b = load_dataset(str(one), split="train"), load_dataset(str(two), split="train")
    assert a["seed"] == b["seed"] and a["noise_level"] == b["noise_level"] and a["label"] == b["label"]
    for column in ("view_ic", "view_itc", "mask"):
        for x, y in zip(a[column], b[column], strict=True):
            assert np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).max() <= 2, column
