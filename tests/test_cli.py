"""Tests of genview_hf.cli (the ``genview`` command): the subcommands and their help, the rest of the
command line passed on, one-line errors for a missing subcommand or dependency, and ``genview train``
running either training recipe."""

import subprocess
import sys
from importlib.metadata import entry_points

import pytest
from transformers import AutoModel, CLIPModel

from genview_hf import cli
from genview_hf import cli as genview
from recipe_runs import TINY


@pytest.fixture
def command_modules(tmp_path, monkeypatch):
    """Two throwaway command modules on sys.path: one that works, one whose import fails inside."""
    (tmp_path / "fake_command.py").write_text(
        "received = []\n\ndef cli(argv):\n    received.append(list(argv))\n    return 3\n"
    )
    (tmp_path / "fake_broken_command.py").write_text("import no_such_dependency_xyz  # noqa: F401\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("fake_command", "fake_broken_command"):
        sys.modules.pop(name, None)


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("generate", "train", "evaluate", "demo"):
        assert name in out


def test_missing_or_unknown_subcommand_exits_2(capsys):
    for argv in ([], ["bogus"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2


def test_the_rest_of_the_command_line_goes_to_the_subcommand(command_modules, monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "train", ("fake_command", "cli", "fake"))
    assert cli.main(["train", "--config", "x.yaml", "--help"]) == 3
    assert sys.modules["fake_command"].received == [["--config", "x.yaml", "--help"]]


def test_a_subcommand_not_written_yet_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "generate", ("genview_hf.not_written_yet.run", "cli", "fake"))
    assert cli.main(["generate", "--anything"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not available yet" in err and "generate" in err


def test_a_missing_dependency_is_not_reported_as_not_written_yet(command_modules, monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "evaluate", ("fake_broken_command", "cli", "fake"))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        cli.main(["evaluate"])


def test_console_script_and_lazy_imports():
    scripts = {entry.name: entry.value for entry in entry_points(group="console_scripts")}
    assert scripts.get("genview") == "genview_hf.cli:main"
    code = (
        "import sys, genview_hf.cli; print(sorted(m for m in ('datasets', 'diffusers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"  # `genview --help` imports neither datasets nor diffusers


def test_every_command_runs_a_recipe_with_its_own_help(capsys):
    for command in ("generate", "train", "evaluate"):
        assert cli.COMMANDS[command][0].startswith("genview_hf.recipes.")
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert "--dataset_name" in out and "--dataset_train_split" in out, command
    with pytest.raises(SystemExit):
        cli.main(["train", "--method", "dino"])
    assert "invalid choice: 'dino'" in capsys.readouterr().err


def test_genview_train_runs_either_recipe(tmp_path):
    flags = ["--max_steps", "1", "--save_strategy", "no", "--knn_monitor_split", "none"]
    for name, config in TINY.items():
        assert genview.main(["train", "--config", config, "--output_dir", str(tmp_path / name), *flags]) == 0
    assert isinstance(AutoModel.from_pretrained(tmp_path / "clip"), CLIPModel)
