"""Tests of genview_hf.preflight: a mistyped or unreadable local model folder, and an output folder
that is a file or read-only, are named before any work (offline; for training and for generation)."""

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from fault_cases import as_nobody
from genview_hf.generation import generate_views
from genview_hf.preflight import check_model_source
from genview_hf.testing import tiny_path
from recipe_runs import gen_config, generate, short_run, source


@contextlib.contextmanager
def read_only_folder(folder: Path):
    """``folder`` on a read-only mount where the test may mount one (root ignores permission bits),
    else a folder without write permission."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        if os.geteuid() == 0:
            pytest.skip("root without mount: no way to make a folder read-only here")
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)
        else:
            folder.chmod(0o755)


def check_as_unprivileged(folder: Path) -> str:
    """The message of ``check_model_source(folder)`` as a user the folder's permissions apply to
    (root reads everything: a forked child as nobody, ``fault_cases.as_nobody``)."""
    return as_nobody(lambda: check_model_source(str(folder), "model_name_or_path"))


def test_an_output_dir_that_is_a_file_or_read_only_is_refused_up_front(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=rf"output_dir {tmp_path / 'file'} is a file"):
        short_run(tmp_path / "file")
    with read_only_folder(tmp_path / "ro") as folder:
        with pytest.raises(PermissionError, match=rf"output_dir {folder / 'run'} is not writable"):
            short_run(folder / "run")


def test_a_mistyped_local_model_path_is_named_offline(tmp_path):
    typo = str(tiny_path("vit")) + "x"
    with pytest.raises(FileNotFoundError, match=rf"model_name_or_path {typo}: no such folder"):
        short_run(tmp_path / "run", "--model_name_or_path", typo)
    with pytest.raises(FileNotFoundError, match=r"unclip_model ./no/such/unclip: no such folder"):
        generate(tmp_path / "views", "--unclip_model", "./no/such/unclip")
    with pytest.raises(FileNotFoundError, match=rf"model_name_or_path {tmp_path} has no config.json"):
        short_run(tmp_path / "run", "--model_name_or_path", str(tmp_path))
    assert not (tmp_path / "run").exists() and not (tmp_path / "views").exists()


def test_an_unreadable_model_folder_is_named(tmp_path):
    public = Path(tempfile.mkdtemp(prefix="genview-unreadable-"))  # enterable by every user
    try:
        public.chmod(0o755)
        model = public / "vit"
        shutil.copytree(tiny_path("vit"), model)
        model.chmod(0o000)
        assert f"model_name_or_path {model} cannot be read" in check_as_unprivileged(model)
        model.chmod(0o755)
        (model / "config.json").chmod(0o000)
        assert "config.json cannot be read" in check_as_unprivileged(model)
    finally:
        for path in (public / "vit", public / "vit" / "config.json"):
            if path.exists():
                path.chmod(0o755)
        shutil.rmtree(public)


def test_an_output_dir_that_is_a_file_or_read_only_is_refused_before_generation(tmp_path, components):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=rf"output_dir {tmp_path / 'file'} is a file"):
        generate_views(source(), gen_config(tmp_path / "file"), components=components)
    with read_only_folder(tmp_path / "ro") as folder:
        with pytest.raises(PermissionError, match=rf"output_dir {folder / 'views'} is not writable"):
            generate_views(source(), gen_config(folder / "views"), components=components)
