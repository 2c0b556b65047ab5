"""Two real CPU processes (``accelerate launch --multi_gpu --num_processes 2``, gloo) keep identical replicas."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from training_helpers import free_port

SCRIPT = Path(__file__).resolve().parents[1] / "distributed_train.py"


def launch_two_processes(tmp_path, *script_args) -> list[dict[str, torch.Tensor]]:
    """``distributed_train.py`` in two processes; each rank's saved state."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(SCRIPT), str(tmp_path), *script_args,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    states = [safetensors.torch.load_file(str(tmp_path / f"state-rank{rank}.safetensors")) for rank in (0, 1)]
    assert int(states[0]["__world_size__"]) == 2, "accelerate ran a single process"
    return states


@pytest.mark.parametrize("method", ["mocov2", "mocov3"])
def test_two_processes_keep_replicas_in_sync(tmp_path, method):
    states = launch_two_processes(tmp_path, method)
    assert [(tmp_path / f"group-freed-rank{rank}.txt").read_text() for rank in (0, 1)] == ["True", "True"]
    assert set(states[0]) == set(states[1])
    # Batch-norm running statistics follow each process's local batches between DDP's buffer
    # broadcasts (SyncBatchNorm, on CUDA, makes them global); everything else must be identical.
    local_stats = ("running_mean", "running_var", "num_batches_tracked")
    compared = [name for name in states[0] if not name.endswith(local_stats)]
    assert any(name.startswith("momentum_") for name in compared)
    assert method != "mocov2" or "queue" in compared
    for name in compared:
        torch.testing.assert_close(states[1][name], states[0][name], rtol=0, atol=0, msg=name)


def test_two_processes_hold_one_row_memory_of_every_process_rows(tmp_path):
    states = launch_two_processes(tmp_path, "mocov3", "row_memory")
    for key in ("__row_memory_mean__", "__row_memory_count__"):
        torch.testing.assert_close(states[1][key], states[0][key], rtol=0, atol=0, msg=key)
    # 3 steps x 4 rows on each of the 2 processes, each visit counted once by both
    assert int(states[0]["__row_memory_count__"].sum()) == 24
