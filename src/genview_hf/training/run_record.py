"""One run per output folder: ``genview_run.json`` records the settings that give a training run its
meaning, and a resume or a second run into the folder is checked against it before any work.

- A fresh folder (absent, empty, or holding only what a run that died before its first checkpoint
  left) is claimed: the record is written just before training starts.
- A used folder (a ``checkpoint-*`` or an exported encoder at its root) is refused to a run that
  does not resume: its message gives the two ways forward (resume, or a new or emptied folder).
  transformers 5 has no ``overwrite_output_dir``; overwriting the root and some checkpoints of
  another run, and resuming it later, mixes two runs in one folder.
- A resume whose meaning settings differ from the record is refused, naming each setting with
  the recorded value and the asked one (a ``stored`` run is not continued as ``off``).

The output folder itself is checked up front too (``preflight.check_output_dir``): not a file, and
writable (found at the first save otherwise, after the training it would have saved).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..preflight import check_output_dir

RUN_RECORD_FILE = "genview_run.json"
# The settings that change what a run trains (method, data, model, quality weights, views);
# batch size, steps, learning rate and logging may change across a resume, as with any Trainer run.
TRAINING_MEANING = (
    "method", "model_name_or_path", "from_scratch", "image_column", "caption_column", "view_mode",
    "generated_view_prob", "multi_positive", "use_hallucinator", "use_peft", "quality_mode", "quality_model",
    "quality_foreground", "quality_views", "quality_center", "gamma", "image_size",
)  # fmt: skip
DATASET_MEANING = ("dataset_name", "dataset_config", "dataset_train_split")
EXPORTED_ROOT_FILES = ("model.safetensors", "pytorch_model.bin", "trainer_state.json")


def run_record(*arguments: Any) -> dict[str, Any]:
    """The meaning settings of a run, as plain JSON values, each read from the first of the
    ``arguments`` dataclasses that has it (script, model and training arguments alike)."""
    record = {
        name: next((getattr(group, name) for group in arguments if hasattr(group, name)), None)
        for name in (*DATASET_MEANING, *TRAINING_MEANING)
    }
    return json.loads(json.dumps(record, default=str))


def is_resume(training_args: Any) -> bool:
    value = getattr(training_args, "resume_from_checkpoint", None)
    return value is not None and str(value).strip().lower() not in ("", "false", "none")


def used_by_a_run(folder: Path) -> list[str]:
    """What in ``folder`` a run wrote and a new run would overwrite or mix with (empty: fresh)."""
    if not folder.is_dir():
        return []
    found = sorted(p.name for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir())
    return found + [name for name in EXPORTED_ROOT_FILES if (folder / name).is_file()]


def check_run_folder(training_args: Any, *other_arguments: Any) -> dict[str, Any]:
    """Refuse an output folder that holds another run (see the module docstring); the record of this
    run, for :func:`write_run_record`. ``other_arguments``: the run's other argument dataclasses
    (the script's dataset arguments, ...), read for the record."""
    folder = check_output_dir(training_args.output_dir)
    record = run_record(training_args, *other_arguments)
    used = used_by_a_run(folder)
    if not used:
        return record
    if not is_resume(training_args):
        shown = ", ".join(used[:4]) + (", ..." if len(used) > 4 else "")
        raise FileExistsError(
            f"output_dir {folder} already holds a run ({shown}): resume it with --resume_from_checkpoint true, "
            "or train into a new or emptied output_dir"
        )
    path = folder / RUN_RECORD_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        changed = [name for name in record if name in previous and previous[name] != record[name]]
        if changed:
            values = "; ".join(f"{name}: {previous[name]!r} there, {record[name]!r} now" for name in changed)
            raise ValueError(
                f"cannot resume the run in {folder} with other settings ({values}): resume with its settings, "
                "or train into a new output_dir"
            )
    return record


def write_run_record(output_dir: str | Path, record: dict[str, Any]) -> None:
    """Write the record atomically (a kill leaves the old one or the new one, never half of one)."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{RUN_RECORD_FILE}-{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, folder / RUN_RECORD_FILE)
