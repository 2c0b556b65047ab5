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

A model setting may name a tiny offline component as ``tiny:NAME`` (``tiny:vit``, ``tiny:clip``,
``tiny:unclip-img2img`` ...: ``genview_hf.testing.TINY_COMPONENTS``): it is built, seeded, into
its cache folder on first use and the setting reads that folder, so the ``tiny_*.yaml`` configs
run as written on a fresh machine, offline, as ``sample:NAME`` datasets do.

``ScriptArguments`` are the settings every command shares, with TRL's names: which dataset, which
splits, which columns.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from .data import schema

TINY_PREFIX = "tiny:"


@dataclass
class DatasetColumns:
    """The source columns a command reads, defined once: ``ScriptArguments`` (every command line) and
    ``ViewGenerationConfig`` (the generation API) share them, and ``parse_config`` gives them one flag."""

    image_column: str = field(
        default=schema.IMAGE,
        metadata={
            "help": "Column of the source images: generation keeps its name, training and evaluation read it "
            "as `image`"
        },
    )
    caption_column: str = field(
        default=schema.CAPTION,
        metadata={
            "help": "Column of the captions (generation modes tc and itc, image-text training, retrieval), "
            "read as `caption`"
        },
    )


@dataclass
class ScriptArguments(DatasetColumns):
    """The dataset a command reads and its columns, with the same names in ``genview generate | train |
    evaluate`` (TRL's ``ScriptArguments``). No dataset is assumed: a config or ``--dataset_name`` names it."""

    dataset_name: str | None = field(
        default=None,
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
    label_column: str = field(
        default="label", metadata={"help": "Class labels: the kNN monitor of training, evaluate's protocols"}
    )

    def __post_init__(self) -> None:
        if not self.dataset_name:
            raise ValueError("dataset_name is required: give it in the --config file or as --dataset_name")


def parse_config(dataclass_types: tuple[type, ...], argv: list[str] | None = None) -> tuple[Any, ...]:
    """Parse ``argv`` (default ``sys.argv[1:]``) into instances of ``dataclass_types``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _check_shared_fields(dataclass_types)
    parser = HfArgumentParser(
        dataclass_types,
        epilog="--config FILE.yaml supplies settings (repeat it: later files override earlier ones); "
        "flags override every file.",
        conflict_handler="resolve",  # a field two of the dataclasses inherit (DatasetColumns) is one flag
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
        for key, value in file_values.items():
            where = f"{config_path}: {key}"
            values[key] = yaml_value(_tiny_to_folder(value, where), actions[key], where)
    argv = [_tiny_flag(arg) for arg in argv]
    # Required fields given in YAML must not stay required on the command line.
    for action in parser._actions:
        if action.dest in values:
            action.required = False
    parser.set_defaults(**values)
    namespace, unused = parser.parse_known_args(args=argv)
    if unused:
        raise ValueError(f"Some specified arguments are not used by the HfArgumentParser: {unused}")
    values = vars(namespace)
    # HfArgumentParser.parse_args_into_dataclasses, except that a shared field fills every dataclass
    return tuple(
        dataclass_type(**{f.name: values[f.name] for f in fields(dataclass_type) if f.init})
        for dataclass_type in dataclass_types
    )


def _check_shared_fields(dataclass_types: tuple[type, ...]) -> None:
    """Two dataclasses may share a field only by inheriting it from one class (``DatasetColumns``):
    the parse gives it one flag and both dataclasses its value. Two definitions are an error."""
    owners: dict[str, type] = {}
    for dataclass_type in dataclass_types:
        for field_ in fields(dataclass_type):
            owner = next(
                cls for cls in dataclass_type.__mro__ if field_.name in vars(cls).get("__annotations__", {})
            )
            if owners.setdefault(field_.name, owner) is not owner:
                raise TypeError(
                    f"{field_.name} is defined by both {owners[field_.name].__name__} and {owner.__name__}: "
                    "define it once, in a class both inherit"
                )


def _tiny_to_folder(value: Any, where: str) -> Any:
    """``tiny:NAME`` -> the folder of tiny component NAME (built on first use); other values as given."""
    if not (isinstance(value, str) and value.startswith(TINY_PREFIX)):
        return value
    from .testing import tiny_path  # only when a tiny component is named: it imports diffusers lazily

    try:
        return str(tiny_path(value.removeprefix(TINY_PREFIX)))
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _tiny_flag(arg: str) -> str:
    """A command-line token, ``tiny:NAME`` or ``--setting=tiny:NAME``, with the folder in its place."""
    flag, equals, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    return flag + equals + _tiny_to_folder(value, flag or "the command line")


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
