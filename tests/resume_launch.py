"""Run by the two-process resume tests (tests/training/test_trainer_resume_multiprocess.py,
tests/generation/test_driver_multiprocess.py) under ``accelerate launch --multi_gpu --num_processes 2``
(CPU, gloo): the training recipe stopped, killed and resumed, or the generation recipe with process 1
killed before its second shard. ``launch`` starts this file so."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from transformers import TrainerCallback

from genview_hf.distributed import end_distributed

sys.path.insert(0, str(Path(__file__).parent))
from recipe_runs import StopAt, recipe  # noqa: E402
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
