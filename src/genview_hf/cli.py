"""The ``genview`` command: ``genview {generate,train,evaluate,demo,export-open-clip} [options]``.

Each subcommand hands the rest of the command line to the ``cli(argv)`` of its module, imported
only when that subcommand runs: the recipes (``recipes/*.py``, shipped as ``genview_hf.recipes``)
for generate, train and evaluate, so ``genview train`` and ``accelerate launch
recipes/train_genview.py`` run the same code, and each owns its options (``genview train --help``).
``genview train`` takes a config of either training recipe: ``train_genview.py`` (image SSL) or
``clip_genview.py`` (image-text).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import version

# subcommand -> (module, its function that runs on the rest of the command line, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "generate": (
        "genview_hf.recipes.generate_views",
        "cli",
        "add generated views and foreground masks to a dataset",
    ),
    "train": (  # either training recipe (train_genview.py, clip_genview.py), by the config's method
        "genview_hf.recipes.train_genview",
        "any_method_cli",
        "train an encoder with a quality-driven contrastive objective",
    ),
    "evaluate": (
        "genview_hf.recipes.evaluate_encoder",
        "cli",
        "kNN, linear probe, zero-shot and retrieval metrics of an encoder",
    ),
    "demo": ("genview_hf.recipes.demo", "cli", "run the main job on the embedded sample data, offline"),
    "export-open-clip": (
        "genview_hf.modeling.export_open_clip",
        "cli",
        "add open_clip's files to a CLIP root (open_clip and CLIP_benchmark load it)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genview",
        description="Generative positive views and quality-driven contrastive learning on the Hugging Face stack.",
        epilog="Options after the subcommand go to it: genview SUBCOMMAND --help.",
    )
    parser.add_argument("--version", action="version", version=f"genview_hf {version('genview-hf')}")
    subcommands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name, (_module, _function, help_text) in COMMANDS.items():
        subcommands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only the subcommand's name is ours: everything after it belongs to the subcommand.
    args = build_parser().parse_args(argv[:1])
    module_name, function, _help = COMMANDS[args.command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        parts = module_name.split(".")
        if error.name not in {".".join(parts[:end]) for end in range(2, len(parts) + 1)}:
            raise  # something the module imports is missing: that is not "not written yet"
        print(
            f"genview {args.command}: not available yet ({module_name} does not exist in this version)",
            file=sys.stderr,
        )
        return 2
    return int(getattr(module, function)(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
