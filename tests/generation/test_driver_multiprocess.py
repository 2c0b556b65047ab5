"""Two real processes (``accelerate launch --multi_gpu --num_processes 2`` on CPU, gloo) give the
same rows as one process."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from datasets import load_dataset

from genview_hf.recipes.generate_views import cli
from genview_hf.testing import tiny_path
from training_helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
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
