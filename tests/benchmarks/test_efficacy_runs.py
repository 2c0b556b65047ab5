"""Tests of benchmarks/efficacy_runs.py: every arm and lever of the benchmark is a valid set of
training arguments."""

from genview_hf.benchmarks import efficacy_runs


def test_the_benchmarks_arms_are_valid_training_arguments(tmp_path):
    size = efficacy_runs.Size()
    for name, arm in {**efficacy_runs.ARMS, **efficacy_runs.LEVERS}.items():
        args = efficacy_runs.training_arguments(arm, 0, size, tmp_path / name, tmp_path)
        assert args.quality_mode in ("off", "stored", "frozen")
