"""Tests of genview_hf.generation.lock: a second generation job into one folder is refused naming
the first, and the lock of a job that is no longer running is taken over, saying so."""

import json
import logging
import socket
import subprocess

import pytest

from genview_hf.data.loading import load_split
from genview_hf.generation import generate_views
from genview_hf.generation.lock import FolderInUseError
from recipe_runs import gen_config, source


def test_a_second_generation_job_into_one_folder_is_refused_naming_the_first(tmp_path, components, caplog):
    out = tmp_path / "views"
    (out / ".work").mkdir(parents=True)
    running = subprocess.Popen(["sleep", "60"])  # the other job
    try:
        lock = {"pid": running.pid, "host": socket.gethostname(), "started": "2026-12-07T16:00:00+00:00"}
        (out / ".work" / "lock.json").write_text(json.dumps(lock))
        with pytest.raises(
            FolderInUseError,
            match=rf"another generation job \(pid {running.pid} on {socket.gethostname()}, started 2026-12-07T16:00:00",
        ):
            generate_views(source(), gen_config(out), components=components)
    finally:
        running.kill()
        running.wait()
    # the job was killed without giving the lock back: the next run takes it over, saying so
    with caplog.at_level(logging.WARNING, logger="genview_hf.generation"):
        generate_views(source(), gen_config(out), components=components)
    assert (
        f"the job that held it (pid {running.pid}" in caplog.text and "is not running any more" in caplog.text
    )
    assert len(load_split(str(out), "train")) == 4 and not (out / ".work" / "lock.json").exists()
