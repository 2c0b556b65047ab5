"""One way to read a run's settings: dataclasses parsed by ``HfArgumentParser``.

``--config file.yaml`` supplies values; flags given on the command line override them.
``--config`` may be repeated: later files override earlier ones, and flags override every file,
so a small file can swap a few settings of a shipped config without editing it::

    genview train --config recipes/configs/mocov3_vitb16_imagenet.yaml --config my_cluster.yaml --max_steps 100

Unknown YAML keys are an error naming them and their file, so a typo never silently falls back
to a default. YAML values are checked against each setting's type as a flag's text would be
(``max_steps: 2.5`` is an error naming the key and the file, not a ``TypeError`` in the Trainer);
a YAML 1.1 boolean where the setting takes words (``quality_mode: off``, ``eval_strategy: no``,
read as False) is taken for the one choice it spells.
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
        dataclass_types,
        epilog="--config FILE.yaml supplies settings (repeat it: later files override earlier ones); "
        "flags override every file.",
    )
    known = {action.dest for action in parser._actions}
    values: dict[str, Any] = {}
    for config_path in _pop_configs(argv):
        file_values = yaml.safe_load(Path(config_path).read_text()) or {}
        if not isinstance(file_values, dict):
            raise ValueError(f"{config_path}: expected a mapping of setting names to values")
        unknown = sorted(set(file_values) - known)
        if unknown:
            raise ValueError(f"{config_path}: unknown settings {', '.join(unknown)}")
        actions = {action.dest: action for action in parser._actions}
        values.update(
            {
                key: yaml_value(value, actions[key], f"{config_path}: {key}")
                for key, value in file_values.items()
            }
        )
    # Required fields given in YAML must not stay required on the command line.
    for action in parser._actions:
        if action.dest in values:
            action.required = False
    parser.set_defaults(**values)
    return parser.parse_args_into_dataclasses(args=argv)


# YAML 1.1 reads off/no/false (on/yes/true) unquoted as booleans: the choice each may have meant.
BOOLEAN_WORDS = {False: ("off", "no", "false"), True: ("on", "yes", "true")}
QUOTE_HINT = " (YAML reads off/no/on/yes unquoted as booleans: quote the value)"


def yaml_value(value: Any, action: Any, where: str) -> Any:
    """``value`` from a YAML file, checked and converted as ``action`` (the setting's flag) would
    have parsed it from text; a ValueError naming ``where`` (file and key) otherwise. A list
    setting given one value gets a list of it."""
    if action.nargs in ("+", "*"):
        values = value if isinstance(value, list) else [value]
        return [_scalar(item, action, where) for item in values]
    return _scalar(value, action, where)


def _scalar(value: Any, action: Any, where: str) -> Any:
    kind, choices = action.type, action.choices
    if value is None:
        if action.default is not None and kind in (int, float):
            raise ValueError(f"{where}: needs a number, got an empty value (null)")
        return value
    if choices:
        if isinstance(value, bool):
            meant = [word for word in BOOLEAN_WORDS[value] if word in choices]
            if len(meant) == 1:
                return meant[0]
        elif value in choices or str(value) in map(str, choices):
            return kind(str(value)) if kind is not None else value
        hint = QUOTE_HINT if isinstance(value, bool) else ""
        raise ValueError(f"{where}: must be one of {', '.join(map(str, choices))}, got {value!r}{hint}")
    if kind is int and not isinstance(value, bool):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("+-").isdigit()):
            return int(value)
        raise ValueError(f"{where}: must be a whole number, got {value!r}")
    if kind is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
        raise ValueError(f"{where}: must be a number, got {value!r}")
    if kind in (int, float):
        raise ValueError(f"{where}: must be a number, got {value!r}")
    if getattr(kind, "__name__", "") == "string_to_bool":
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: must be true or false, got {value!r}")
    if kind is str:
        if isinstance(value, bool):
            raise ValueError(f"{where}: must be text, got {value!r}{QUOTE_HINT}")
        # a number where text is asked is that text (dataset_config: 2017); mappings and lists are
        # left to the settings that take them (transformers' dict-or-JSON-text fields)
        return str(value) if isinstance(value, int | float) else value
    return value


def _pop_configs(argv: list[str]) -> list[str]:
    """Remove every ``--config PATH`` / ``--config=PATH`` from ``argv``; the paths in order."""
    paths, rest = [], iter(list(argv))
    argv.clear()
    for arg in rest:
        if arg == "--config":
            path = next(rest, None)
            if path is None:
                raise ValueError("--config needs a YAML file path")
            paths.append(path)
        elif arg.startswith("--config="):
            paths.append(arg.split("=", 1)[1])
        else:
            argv.append(arg)
    return paths
