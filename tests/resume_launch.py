"""Two real processes (``accelerate launch --multi_gpu --num_processes 2``, CPU, gloo) with a kill and
a resume: training resumes bit-identical to an uninterrupted two-process run, generation gives the
rows of one process. This file is also the script the launches run (see ``__main__``)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from transformers import TrainerCallback

from genview_hf.distributed import end_distributed

sys.path.insert(0, str(Path(__file__).parent))
from test_robustness import StopAt, assert_identical, checkpoint_tensors, recipe  # noqa: E402
from training_helpers import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GENERATE = [
    "--config", str(ROOT / "recipes" / "configs" / "tiny_shapes_generate.yaml"), "--max_rows", "4",
    "--shard_size", "1", "--modes", "ic", "itc", "--fg_sample_size", "4",
]  # fmt: skip
TRAIN_STEPS = ("--max_steps", "4", "--ddp_backend", "gloo")


def launch(*args: str) -> subprocess.CompletedProcess:
    """This file under ``accelerate launch`` on two CPU processes."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        __file__, *args,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_two_processes_stopped_and_resumed_train_bit_identical(tmp_path):
    """The default suite's version: one launch runs the uninterrupted, the stopped and the resumed run."""
    done = launch("train-stop-resume", str(tmp_path))
    assert done.returncode == 0, done.stderr[-4000:]
    assert "world size 2" in done.stdout, done.stdout[-2000:]
    assert_identical(
        tmp_path / "cut" / "checkpoint-4", checkpoint_tensors(tmp_path / "full" / "checkpoint-4")
    )


@pytest.mark.slow
def test_two_processes_killed_and_resumed_train_bit_identical(tmp_path):
    full = launch("train", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-4000:]
    killed = launch("train-killed", str(tmp_path / "cut"))  # rank 0 is SIGKILLed after checkpoint-2
    assert killed.returncode != 0 and not (tmp_path / "cut" / "checkpoint-4").exists()
    resumed = launch("train", str(tmp_path / "cut"), "--resume_from_checkpoint", "true")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert_identical(
        tmp_path / "cut" / "checkpoint-4", checkpoint_tensors(tmp_path / "full" / "checkpoint-4")
    )


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


# ------------------------------------------------------------------ what the launches run
class KillRankZeroAfter(TrainerCallback):
    """Once both processes have finished checkpoint ``step``, rank 0 dies as ``kill -9`` would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if state.global_step == self.step:
            dist.barrier()
            if dist.get_rank() == 0:
                os.kill(os.getpid(), signal.SIGKILL)


def _generate(argv: list[str], kill: bool) -> None:
    from genview_hf.generation import driver
    from genview_hf.recipes.generate_views import cli

    if kill:  # process 1 dies as `kill -9` would, before its second shard
        write_shard, written = driver.write_shard, []

        def dies_before_the_second_shard(*args, **kwargs):
            process_index = args[8] if len(args) > 8 else kwargs.get("process_index", 0)
            if process_index == 1 and written:
                os.kill(os.getpid(), signal.SIGKILL)
            written.append(args[1])
            return write_shard(*args, **kwargs)

        driver.write_shard = dies_before_the_second_shard
    cli(argv)


def _train(mode: str, rest: list[str]) -> None:
    if mode == "train-stop-resume":
        out = Path(rest[0])
        trainer = recipe(out / "full", *TRAIN_STEPS)
        recipe(out / "cut", *TRAIN_STEPS, callbacks=[StopAt(2)])
        recipe(out / "cut", *TRAIN_STEPS, "--resume_from_checkpoint", "true")
        print(f"world size {trainer.args.world_size}")
    else:
        callbacks = [KillRankZeroAfter(2)] if mode == "train-killed" else None
        recipe(rest[0], *TRAIN_STEPS, *rest[1:], callbacks=callbacks)


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode.startswith("generate"):
        _generate(rest, kill=mode == "generate-killed")
    else:
        _train(mode, rest)  # its trainers are garbage once it returns: end_distributed frees them
        end_distributed()
