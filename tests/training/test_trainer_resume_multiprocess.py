"""Tests of genview_hf.training.trainer's resume across two real processes (``accelerate launch
--multi_gpu --num_processes 2``, CPU, gloo): a run stopped, or killed, and resumed trains bit-identical
to an uninterrupted two-process run. The launches run tests/resume_launch.py."""

import pytest

from recipe_runs import assert_identical, checkpoint_tensors
from resume_launch import launch


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
