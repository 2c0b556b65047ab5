"""Tests of genview_hf.training.run_record: one run per output folder. Resuming with other settings
or a second run into a used folder is refused naming the ways forward, a run that died before its
first checkpoint leaves the folder free."""

import json

import pytest

from genview_hf.training.run_record import RUN_RECORD_FILE, used_by_a_run
from recipe_runs import KillAt, listing, short_run


def test_resuming_a_stored_run_as_off_is_refused_naming_both_values(tmp_path):
    short_run(tmp_path)
    record = json.loads((tmp_path / RUN_RECORD_FILE).read_text())
    assert record["quality_mode"] == "stored" and record["method"] == "mocov3"
    before = listing(tmp_path)
    with pytest.raises(ValueError, match=r"quality_mode: 'stored' there, 'off' now"):
        short_run(tmp_path, "--resume_from_checkpoint", "true", "--quality_mode", "off", "--max_steps", "4")
    assert listing(tmp_path) == before  # refused before anything was touched
    short_run(tmp_path, "--resume_from_checkpoint", "true", "--max_steps", "4")  # the same settings resume
    assert (tmp_path / "checkpoint-4").is_dir()


def test_a_second_run_into_a_used_output_dir_is_refused_with_the_ways_forward(tmp_path):
    short_run(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(
        FileExistsError,
        match=r"already holds a run \(checkpoint-2, .*--resume_from_checkpoint true, or .*new or emptied output_dir",
    ):
        short_run(tmp_path, "--seed", "1")
    assert listing(tmp_path) == before


def test_a_run_that_died_before_its_first_checkpoint_leaves_the_folder_free(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        short_run(tmp_path, callbacks=[KillAt(0)])
    assert (tmp_path / RUN_RECORD_FILE).is_file() and not used_by_a_run(tmp_path)
    short_run(tmp_path, "--quality_mode", "off")  # another run may take the folder
    assert json.loads((tmp_path / RUN_RECORD_FILE).read_text())["quality_mode"] == "off"
