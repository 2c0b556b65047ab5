"""One way to read a run's settings: dataclasses parsed by ``HfArgumentParser``.

``--config file.yaml`` supplies values; flags given on the command line override them.
Unknown YAML keys are an error naming them, so a typo never silently falls back to a default.
``ScriptArguments`` are the settings every command shares, with TRL's names: which dataset and
which splits.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser


@dataclass
class ScriptArguments:
    """The dataset a command reads, with the same names in ``genview generate | train | evaluate``."""

    dataset_name: str = field(
        default="sample:shapes",
        metadata={
            "help": "Hub id, local folder (views dataset, save_to_disk or data files) or sample:NAME "
            "(an embedded set: digits, shapes, photos)"
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration name"})
    dataset_train_split: str = field(
        default="train", metadata={"help": "Split to generate views for, train on, or fit the kNN bank on"}
    )
    dataset_test_split: str = field(
        default="test", metadata={"help": "Split that is scored (evaluate) or gives the eval loss (train)"}
    )


def parse_config(dataclass_types: tuple[type, ...], argv: list[str] | None = None) -> tuple[Any, ...]:
    """Parse ``argv`` (default ``sys.argv[1:]``) into instances of ``dataclass_types``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(
        dataclass_types, epilog="--config FILE.yaml supplies settings; flags override it."
    )
    config_path = _pop_config(argv)
    if config_path is not None:
        values = yaml.safe_load(Path(config_path).read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{config_path}: expected a mapping of setting names to values")
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{config_path}: unknown settings {', '.join(unknown)}")
        # Required fields given in YAML must not stay required on the command line.
        for action in parser._actions:
            if action.dest in values:
                action.required = False
        parser.set_defaults(**values)
    return parser.parse_args_into_dataclasses(args=argv)


def _pop_config(argv: list[str]) -> str | None:
    for index, arg in enumerate(argv):
        if arg == "--config":
            if index + 1 >= len(argv):
                raise ValueError("--config needs a YAML file path")
            path = argv[index + 1]
            del argv[index : index + 2]
            return path
        if arg.startswith("--config="):
            del argv[index]
            return arg.split("=", 1)[1]
    return None
