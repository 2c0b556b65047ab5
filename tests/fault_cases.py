"""The faults of docs/reliability.md, each made to happen and run through the recipes, and how each
one ends: ok, recorded (the row is kept out and listed), clear error (one line naming the row,
file or setting, before work where it can be checked), crash (another exception), silent wrong
(no error, a wrong result), hang (no end within the case's time).

    python tests/fault_cases.py                      # every case, a markdown table on stdout
    python tests/fault_cases.py --root /tmp/before   # the same cases on another checkout
    python tests/fault_cases.py --only shard_deleted --verbose
    python tests/fault_cases.py --table before.json now.json   # the table of docs/reliability.md

``--root`` runs another checkout's ``src`` and ``recipes`` (a ``git worktree`` of an earlier commit):
the "before" column of the table. Only the recipes, the config parser, the sample data and the tiny
components are used, so the cases run on any version that has them. ``test_fault_table.py``
runs the fast cases in the default suite and the rest under ``slow``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OUTCOMES = ("ok", "recorded", "clear error", "crash", "silent wrong", "hang")
HERE = Path(__file__).resolve().parent


@dataclass
class Case:
    """One fault. ``run(tmp)`` makes it happen through the recipes and returns how a run that
    raised nothing ended (ok / recorded / silent wrong); an exception is a clear error when its
    first line matches ``named`` (it names the row, file or setting, and the true cause), else a
    crash."""

    name: str
    fault: str
    run: Callable[[Path], str]
    named: str | None
    sees: str
    kept: str
    slow: bool = False
    timeout: int = 300
    needs_mount: bool = False  # makes the fault with a tmpfs (read-only, or a few kB)


class Hang(Exception):
    pass


class Tee(io.TextIOBase):
    """Writes to several streams (stderr kept on screen and captured for argparse's messages)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)


# ------------------------------------------------------------------ the recipes of a checkout
ROOT = Path(os.environ.get("GENVIEW_RELIABILITY_ROOT", HERE.parent)).resolve()


def recipe_module(name: str):
    """``recipes/<name>.py`` of ``ROOT``, imported by its file (not through the installed package)."""
    spec = importlib.util.spec_from_file_location(
        f"reliability_recipe_{name}", ROOT / "recipes" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny(name: str) -> str:
    from genview_hf.testing import tiny_path

    return str(tiny_path(name))


def train(output_dir: Path, *flags: str, callbacks=None):
    """The training recipe, tiny MoCo v3 on 12 shapes rows (batch 4, checkpoints every 2 steps)."""
    from genview_hf.config import ScriptArguments, parse_config
    from genview_hf.training import GenViewTrainingArguments, ModelArguments

    argv = [
        "--config", str(ROOT / "recipes" / "configs" / "tiny_mocov3_shapes.yaml"), "--model_name_or_path", tiny("vit"),
        "--output_dir", str(output_dir), "--knn_monitor_split", "", "--training_figures", "false",
        "--max_train_samples", "12", "--per_device_train_batch_size", "4", "--max_steps", "4", "--save_steps", "2",
        "--logging_steps", "1", "--disable_tqdm", "true", *flags,
    ]  # fmt: skip
    import torch

    torch.manual_seed(0)
    args = parse_config((ScriptArguments, GenViewTrainingArguments, ModelArguments), argv)
    return recipe_module("train_genview").main(*args, callbacks=callbacks)


def generate(output_dir: Path, *flags: str) -> Path:
    """The generation recipe, 4 shapes rows in 2 shards, image-conditioned views, tiny pipelines."""
    from genview_hf.config import ScriptArguments, parse_config
    from genview_hf.generation import ViewGenerationConfig

    argv = [
        "--config", str(ROOT / "recipes" / "configs" / "tiny_shapes_generate.yaml"), "--output_dir", str(output_dir),
        "--max_rows", "4", "--shard_size", "2", "--fg_sample_size", "4", "--modes", "ic",
        "--unclip_model", tiny("unclip-img2img"), "--text2img_model", tiny("text2img"), *flags,
    ]  # fmt: skip
    return recipe_module("generate_views").main(*parse_config((ScriptArguments, ViewGenerationConfig), argv))


def evaluate(model: Path | str, *flags: str):
    from genview_hf.config import ScriptArguments, parse_config
    from genview_hf.evaluation.arguments import EvaluationArguments

    argv = [
        "--model_name_or_path",
        str(model),
        "--dataset_name",
        "sample:shapes",
        "--protocols",
        "knn",
        *flags,
    ]
    return recipe_module("evaluate_encoder").main(*parse_config((ScriptArguments, EvaluationArguments), argv))


def yaml_file(tmp: Path, text: str) -> str:
    path = tmp / "mine.yaml"
    path.write_text(text)
    return str(path)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def rows(tmp: Path, count: int = 12, edit=None, name: str = "data") -> str:
    """``count`` shapes rows (``edit(row, index)`` applied to the undecoded rows), saved to disk."""
    from datasets import Image

    from genview_hf.testing.samples import shapes

    data = shapes(num_rows=max(count, 1), image_size=32).select(range(count))
    if edit is not None:
        data = (
            data.cast_column("image", Image(decode=False))
            .map(edit, with_indices=True)
            .cast_column("image", Image())
        )
    data.save_to_disk(str(tmp / name))
    return str(tmp / name)


def png(image) -> dict:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def finished(trainer_or_folder, steps: int = 4) -> str:
    """ok when the run's last checkpoint is there."""
    folder = Path(getattr(getattr(trainer_or_folder, "args", None), "output_dir", trainer_or_folder))
    return "ok" if (folder / f"checkpoint-{steps}" / "trainer_state.json").is_file() else "silent wrong"


def row_count(folder: Path) -> int:
    from genview_hf.data.loading import load_split

    return len(load_split(str(folder), "train"))


def mount_allowed() -> bool:
    """Whether this machine lets the cases mount a tmpfs (root, in a container that allows it)."""
    folder = Path(tempfile.mkdtemp(prefix="genview-mount-check-"))
    try:
        with mounted(folder, "size=64k"):
            return True
    except (subprocess.CalledProcessError, OSError):
        return False
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def mounted(folder: Path, options: str):
    """A tmpfs at ``folder`` (read-only, tiny); raises when this machine does not allow mounts."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True, capture_output=True
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


# ------------------------------------------------------------------ the cases
def _image_cell(value):
    """An ``edit`` for :func:`rows` that puts ``value`` in row 5's image cell."""
    return lambda row, index: {"image": value} if index == 5 else row


def case_corrupt_image(tmp):
    train(tmp / "out", "--dataset_name", rows(tmp, edit=_image_cell({"bytes": b"garbage", "path": None})))
    return "silent wrong"


def case_corrupt_image_late(tmp):
    data = rows(
        tmp, 70, edit=lambda row, i: {"image": {"bytes": b"garbage", "path": None}} if i == 68 else row
    )
    train(tmp / "out", "--dataset_name", data, "--max_train_samples", "70", "--per_device_train_batch_size", "23",
          "--max_steps", "3", "--save_strategy", "no")  # fmt: skip
    return "silent wrong"


def case_empty_image_file(tmp):
    train(tmp / "out", "--dataset_name", rows(tmp, edit=_image_cell({"bytes": b"", "path": None})))
    return "silent wrong"


def case_tiny_image(tmp):
    from PIL import Image

    train(tmp / "out", "--dataset_name", rows(tmp, edit=_image_cell(png(Image.new("RGB", (4, 4))))))
    return "silent wrong"


def case_greyscale_and_rgba_images(tmp):
    from PIL import Image

    def edit(row, index):
        if index in (2, 3):
            return {"image": png(Image.new("L" if index == 2 else "RGBA", (32, 32), 128))}
        return row

    return finished(train(tmp / "out", "--dataset_name", rows(tmp, edit=edit)))


def case_null_views_left_out(tmp):
    from datasets import load_from_disk

    data = load_from_disk(rows(tmp, name="source"))
    data = data.map(lambda row, i: {"mask": None} if i in (3, 9) else row, with_indices=True)
    data.save_to_disk(str(tmp / "data"))
    trainer = train(tmp / "out", "--dataset_name", str(tmp / "data"))
    return "recorded" if len(trainer.train_dataset) == 10 else "silent wrong"


def case_null_views_refused(tmp):
    from datasets import load_from_disk

    data = load_from_disk(rows(tmp, name="source"))
    data.map(lambda row, i: {"mask": None} if i == 3 else row, with_indices=True).save_to_disk(
        str(tmp / "data")
    )
    train(tmp / "out", "--dataset_name", str(tmp / "data"), "--skip_incomplete_rows", "false")
    return "silent wrong"


def case_bad_row_after_left_out_rows(tmp):
    from datasets import Image, load_from_disk

    data = load_from_disk(rows(tmp, 30, name="source"))
    data = data.map(lambda row, i: {"mask": None} if i in (3, 9) else row, with_indices=True)
    data = data.cast_column("image", Image(decode=False))
    data = data.map(
        lambda row, i: {"image": {"bytes": b"garbage", "path": None}} if i == 20 else row, with_indices=True
    )
    data.cast_column("image", Image()).save_to_disk(str(tmp / "data"))
    train(tmp / "out", "--dataset_name", str(tmp / "data"), "--max_train_samples", "30")
    return "silent wrong"


def case_empty_caption(tmp):
    data = rows(tmp, edit=lambda row, i: {"caption": ""} if i == 4 else row)
    train(tmp / "out", "--dataset_name", data, "--method", "clip", "--model_name_or_path", tiny("clip"),
          "--quality_mode", "off")  # fmt: skip
    return "silent wrong"


def case_missing_image_column(tmp):
    train(tmp / "out", "--image_column", "picture")
    return "silent wrong"


def case_one_row_dataset(tmp):
    return finished(train(tmp / "out", "--dataset_name", rows(tmp, 1), "--max_train_samples", "1"))


def case_empty_dataset_train(tmp):
    train(tmp / "out", "--dataset_name", rows(tmp, 0))
    return "silent wrong"


def case_empty_dataset_generate_disk(tmp):
    generate(tmp / "views", "--dataset_name", rows(tmp, 0))
    return "silent wrong"


def case_empty_dataset_generate_parquet(tmp):
    from genview_hf.testing.samples import shapes

    (tmp / "empty" / "data").mkdir(parents=True)
    shapes(num_rows=2, image_size=32).select([]).to_parquet(
        str(tmp / "empty" / "data" / "train-00000-of-00001.parquet")
    )
    generate(tmp / "views", "--dataset_name", str(tmp / "empty"))
    return "silent wrong"


def case_one_row_generate(tmp):
    out = generate(tmp / "views", "--max_rows", "1")
    return "ok" if row_count(out) == 1 else "silent wrong"


def case_corrupt_image_generate(tmp):
    garbage = {"bytes": b"garbage", "path": None}
    out = generate(
        tmp / "views",
        "--dataset_name",
        rows(tmp, 4, edit=lambda row, i: {"image": garbage} if i == 1 else row),
    )
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    return "recorded" if [f["row"] for f in failures] == [1] and row_count(out) == 4 else "silent wrong"


def case_path_only_image_cell(tmp):
    """An image folder (``load_dataset("imagefolder")``): every Image cell holds only a path."""
    from datasets import Image

    from genview_hf.data.loading import load_split
    from genview_hf.testing.samples import shapes

    (tmp / "photos").mkdir()
    files = []
    for index, row in enumerate(shapes(num_rows=4, image_size=32)):
        files.append(tmp / "photos" / f"image-{index}.png")
        row["image"].save(files[-1])
    originals = {file.name: file.read_bytes() for file in files}
    # a folder of files says no licence: the user names it (--license), as the views card needs one
    out = generate(tmp / "views", "--dataset_name", str(tmp / "photos"), "--license", "other")
    shutil.rmtree(tmp / "photos")  # the views dataset must not need the files any more
    cells = load_split(str(out), "train").cast_column("image", Image(decode=False))["image"]
    return "ok" if {cell["bytes"] for cell in cells} == set(originals.values()) else "silent wrong"


def case_pickle_in_a_cell(tmp):
    """A binary source column holding a pickle passes through untouched and is never unpickled."""
    import pickle

    from datasets import load_from_disk

    payload = pickle.dumps({"anything": 1})
    data = load_from_disk(rows(tmp, 4, name="source")).map(lambda row: {"blob": payload})
    data.save_to_disk(str(tmp / "data"))
    out = generate(tmp / "views", "--dataset_name", str(tmp / "data"))
    from genview_hf.data.loading import load_split

    return "ok" if load_split(str(out), "train")["blob"] == [payload] * 4 else "silent wrong"


# views folders
_VIEWS_CACHE: dict[str, Path] = {}


def views_copy(tmp: Path) -> Path:
    """A finished views folder (generated once per session), copied into ``tmp``."""
    if "views" not in _VIEWS_CACHE:
        _VIEWS_CACHE["views"] = generate(Path(tempfile.mkdtemp(prefix="genview-views-")) / "views")
    target = tmp / "views"
    shutil.copytree(_VIEWS_CACHE["views"], target)
    return target


def case_shard_deleted(tmp):
    views = views_copy(tmp)
    (views / "data" / "train-00001-of-00002.parquet").unlink()
    flags = ["--max_train_samples", "4", "--per_device_train_batch_size", "2", "--quality_mode", "off"]
    trainer = train(tmp / "out", "--dataset_name", str(views), *flags)
    return "ok" if len(trainer.train_dataset) == 4 else "silent wrong"


def case_shard_truncated(tmp):
    views = views_copy(tmp)
    truncate(views / "data" / "train-00000-of-00002.parquet")
    train(tmp / "out", "--dataset_name", str(views), "--quality_mode", "off")
    return "silent wrong"


def case_shard_replaced_short(tmp):
    import pyarrow.parquet as pq

    views = views_copy(tmp)
    shard = views / "data" / "train-00000-of-00002.parquet"
    pq.write_table(pq.read_table(shard).slice(0, 1), shard)
    flags = ["--max_train_samples", "4", "--per_device_train_batch_size", "2", "--quality_mode", "off"]
    trainer = train(tmp / "out", "--dataset_name", str(views), *flags)
    return "ok" if len(trainer.train_dataset) == 4 else "silent wrong"


def case_unfinished_views_folder(tmp):
    views = views_copy(tmp)
    (views / "data").rename(views / ".work" / "shards")
    train(tmp / "out", "--dataset_name", str(views), "--quality_mode", "off")
    return "silent wrong"


def case_views_rewritten_same_mtime(tmp):
    from genview_hf.data.loading import load_split

    folder = tmp / "views" / "data"
    folder.mkdir(parents=True)
    shard = folder / "train-00000-of-00001.parquet"
    from datasets import Dataset

    Dataset.from_dict({"value": [1] * 4}).to_parquet(str(shard))
    assert load_split(str(tmp / "views"), "train")["value"] == [1] * 4
    before = shard.stat()
    Dataset.from_dict({"value": [2] * 4}).to_parquet(str(shard))
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))
    return "ok" if load_split(str(tmp / "views"), "train")["value"] == [2] * 4 else "silent wrong"


def case_generation_damaged_shard_rerun(tmp):
    views = views_copy(tmp)
    truncate(views / "data" / "train-00001-of-00002.parquet")
    generate(views)
    return "ok" if row_count(views) == 4 else "silent wrong"


def case_generation_killed_rerun(tmp):
    from genview_hf.generation import driver

    real, calls = driver.write_shard, []

    def killed_at_the_second_shard(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    driver.write_shard = killed_at_the_second_shard
    try:
        with contextlib.suppress(KeyboardInterrupt):
            generate(tmp / "views")
    finally:
        driver.write_shard = real
    generate(tmp / "views")
    return "ok" if row_count(tmp / "views") == 4 else "silent wrong"


def case_generation_rerun_other_settings(tmp):
    generate(tmp / "views")
    generate(tmp / "views", "--seed", "1")
    return "silent wrong"


# YAML and flags
def case_yaml_float_for_int(tmp):
    train(tmp / "out", "--config", yaml_file(tmp, "max_steps: 2.5\n"))
    return "silent wrong"


def case_yaml_text_for_float(tmp):
    train(tmp / "out", "--config", yaml_file(tmp, "learning_rate: fast\n"))
    return "silent wrong"


def case_yaml_unquoted_off(tmp):
    trainer = train(tmp / "out", "--config", yaml_file(tmp, "quality_mode: off\n"))
    return "ok" if trainer.args.quality_mode == "off" else "silent wrong"


def case_yaml_unquoted_no(tmp):
    trainer = train(tmp / "out", "--config", yaml_file(tmp, "eval_strategy: no\n"))
    return "ok" if getattr(trainer.args.eval_strategy, "value", None) == "no" else "silent wrong"


def case_yaml_scalar_for_list(tmp):
    from genview_hf.data.loading import load_split

    out = generate(tmp / "views", "--config", yaml_file(tmp, "modes: ic\n"))
    return "ok" if "view_ic" in load_split(str(out), "train").column_names else "silent wrong"


def case_yaml_unknown_key(tmp):
    train(tmp / "out", "--config", yaml_file(tmp, "learning_rat: 0.1\n"))
    return "silent wrong"


def case_yaml_missing_file(tmp):
    train(tmp / "out", "--config", str(tmp / "nowhere.yaml"))
    return "silent wrong"


def case_unknown_method(tmp):
    train(tmp / "out", "--method", "mocov4")
    return "silent wrong"


# paths
def case_model_path_typo_train(tmp):
    train(tmp / "out", "--model_name_or_path", tiny("vit") + "x")
    return "silent wrong"


def case_model_path_typo_generate(tmp):
    generate(tmp / "views", "--unclip_model", "./models/unclip-tiny")
    return "silent wrong"


def case_model_folder_without_config(tmp):
    (tmp / "empty-model").mkdir()
    train(tmp / "out", "--model_name_or_path", str(tmp / "empty-model"))
    return "silent wrong"


def case_model_path_is_a_file(tmp):
    (tmp / "model.bin").write_bytes(b"x")
    train(tmp / "out", "--model_name_or_path", str(tmp / "model.bin"))
    return "silent wrong"


def case_unreadable_model_folder(tmp):
    """The training recipe's model loading as a user the folder's permissions apply to (a forked
    child as nobody when this runs as root, who reads everything)."""
    public = Path(tempfile.mkdtemp(prefix="genview-unreadable-"))
    public.chmod(0o755)
    model = public / "vit"
    shutil.copytree(tiny("vit"), model)
    model.chmod(0o755)
    (model / "config.json").chmod(0o000)
    try:
        message = as_nobody(lambda: recipe_module("train_genview").builders.load_model(str(model)))
    finally:
        (model / "config.json").chmod(0o644)
        shutil.rmtree(public)
    if message:
        raise RuntimeError(message)
    return "silent wrong"


def as_nobody(function) -> str:
    """The first line of what ``function()`` raises, run as nobody when this process is root ('' when
    it raises nothing)."""
    if os.geteuid() != 0:
        try:
            function()
        except Exception as error:
            return f"{type(error).__name__}: {error}".splitlines()[0]
        return ""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        message = ""
        try:
            os.setgid(65534)
            os.setuid(65534)
            function()
        except BaseException as error:
            message = f"{type(error).__name__}: {error}".splitlines()[0]
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        return pipe.read()


def case_dataset_path_typo(tmp):
    train(tmp / "out", "--dataset_name", str(tmp / "no-such-views"))
    return "silent wrong"


def case_unknown_split(tmp):
    train(tmp / "out", "--dataset_train_split", "trian")
    return "silent wrong"


# output folders
def case_output_dir_is_a_file_train(tmp):
    (tmp / "out").write_text("")
    train(tmp / "out")
    return "silent wrong"


def case_output_dir_is_a_file_generate(tmp):
    (tmp / "views").write_text("")
    generate(tmp / "views")
    return "silent wrong"


def case_output_dir_read_only_train(tmp):
    with mounted(tmp / "ro", "ro,size=1m") as folder:
        train(folder / "out")
    return "silent wrong"


def case_output_dir_read_only_generate(tmp):
    with mounted(tmp / "ro", "ro,size=1m") as folder:
        generate(folder / "views")
    return "silent wrong"


def case_full_disk_checkpoint(tmp):
    with mounted(tmp / "disk", "size=96k") as folder:
        train(folder / "out")
    return "silent wrong"


def case_full_disk_generation(tmp):
    with mounted(tmp / "disk", "size=100k") as folder:  # room for one shard, not two
        generate(folder / "views")
    return "silent wrong"


# run folders and resume
def case_resume_stored_as_off(tmp):
    train(tmp / "out", "--max_steps", "2")
    trainer = train(tmp / "out", "--resume_from_checkpoint", "true", "--quality_mode", "off")
    return "silent wrong" if trainer.args.quality_mode == "off" else "ok"


def case_second_run_into_used_folder(tmp):
    train(tmp / "out")
    train(tmp / "out", "--seed", "1", "--max_steps", "2")
    return "silent wrong"


def case_resume_other_method(tmp):
    train(tmp / "out", "--max_steps", "2")
    train(tmp / "out", "--resume_from_checkpoint", str(tmp / "out" / "checkpoint-2"), "--method", "byol")
    return "silent wrong"


def case_killed_and_resumed(tmp):
    from transformers import TrainerCallback

    class KillAt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt("killed")

    with contextlib.suppress(KeyboardInterrupt):
        train(tmp / "out", callbacks=[KillAt()])
    return finished(train(tmp / "out", "--resume_from_checkpoint", "true"))


def _two_checkpoints_then(tmp, damage) -> str:
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 4

    train(tmp / "out", "--max_steps", "6", callbacks=[StopAt()])
    damage(tmp / "out" / "checkpoint-4")
    return finished(train(tmp / "out", "--max_steps", "6", "--resume_from_checkpoint", "true"), 6)


def case_killed_during_save(tmp):
    return _two_checkpoints_then(tmp, lambda folder: (folder / "trainer_state.json").unlink())


def case_truncated_optimizer(tmp):
    return _two_checkpoints_then(tmp, lambda folder: truncate(folder / "optimizer.pt"))


def case_truncated_checkpoint_weights(tmp):
    return _two_checkpoints_then(tmp, lambda folder: truncate(folder / "model.safetensors"))


def case_truncated_checkpoint_named_explicitly(tmp):
    train(tmp / "out", "--max_steps", "2")
    truncate(tmp / "out" / "checkpoint-2" / "optimizer.pt")
    train(tmp / "out", "--resume_from_checkpoint", str(tmp / "out" / "checkpoint-2"))
    return "silent wrong"


def case_pickle_in_optimizer(tmp):
    """An optimizer.pt replaced by a pickle that would run code: weights-only loading refuses it."""
    import torch

    train(tmp / "out", "--max_steps", "2")
    torch.save(
        {"state": {}, "param_groups": [], "payload": socket.socket},
        tmp / "out" / "checkpoint-2" / "optimizer.pt",
    )
    train(tmp / "out", "--resume_from_checkpoint", str(tmp / "out" / "checkpoint-2"))
    return "silent wrong"


def case_truncated_root_model(tmp):
    train(tmp / "out", "--max_steps", "2", "--save_strategy", "no")
    truncate(tmp / "out" / "model.safetensors")
    evaluate(tmp / "out")
    return "silent wrong"


def case_push_offline(tmp):
    train(tmp / "out", "--push_to_hub", "true", "--hub_model_id", "someone/tiny-genview")
    return "silent wrong"


def case_two_generation_jobs(tmp):
    """Two generation processes started at once into one folder (64 rows in 32 shards: whichever
    loads its models first is still at work when the other has loaded its own)."""
    script = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import fault_cases as c; from pathlib import Path; "
        f"c.generate(Path({str(tmp / 'views')!r}), '--max_rows', '64')"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "GENVIEW_RELIABILITY_ROOT": str(ROOT)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    first, second = (
        subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    )
    errors = [job.communicate(timeout=600)[1] for job in (first, second)]
    failed = [error for job, error in zip((first, second), errors) if job.returncode != 0]
    if failed:
        raise RuntimeError(" / ".join(error.strip().splitlines()[-1] for error in failed))
    return "ok" if row_count(tmp / "views") == 64 else "silent wrong"


def case_two_process_kill_resume(tmp):
    """training/test_trainer_resume_multiprocess.py's SIGKILL of rank 0 and resume, run here for the table."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow",
         str(ROOT / "tests" / "training" / "test_trainer_resume_multiprocess.py") + "::test_two_processes_killed_and_resumed_train_bit_identical"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stdout.strip().splitlines()[-1])
    return "ok"


ROW = r"row \d+"
CASES = [
    Case("corrupt_image", "an image cell of garbage bytes (row 5)", case_corrupt_image, r"row 5.*'image'.*cannot decode",
         "`row 5, column 'image': cannot decode ...` before step 1", "nothing written"),
    Case("corrupt_image_late", "garbage bytes in row 68, past the 64 rows checked up front", case_corrupt_image_late,
         r"row 68 \(batch item \d+\).*'image'", "the step that draws it names dataset row 68", "checkpoints saved before it"),
    Case("empty_image_file", "a 0-byte image cell", case_empty_image_file, r"row 5.*empty \(0 bytes\)",
         "`row 5, column 'image': the image file is empty (0 bytes)`", "nothing written"),
    Case("tiny_image", "a 4x4 image", case_tiny_image, r"row 5.*'image'.*4x4|row 5.*too small|row 5.*at least",
         "the row, its size and the minimum", "nothing written"),
    Case("greyscale_rgba", "greyscale and RGBA images", case_greyscale_and_rgba_images, None,
         "trains (converted to RGB, alpha composited on white)", "the run"),
    Case("null_views_left_out", "rows whose mask generation recorded as failed (null)", case_null_views_left_out, None,
         "a warning: `leaving out 2 of 12 rows ... (rows 3, 9; ...)`", "the other rows train"),
    Case("null_views_refused", "a null mask with skip_incomplete_rows false", case_null_views_refused,
         r"1 of 12 rows have no value.*rows 3", "the count, the rows and the setting to change", "nothing written"),
    Case("bad_row_after_left_out", "rows 3, 9 left out, row 20's image garbage", case_bad_row_after_left_out_rows,
         r"row 20, column 'image'", "`row 20, ...` (the dataset's row, not its place among the kept)", "nothing written"),
    Case("empty_caption", "an empty caption (CLIP)", case_empty_caption, r"row 4, column 'caption'.*empty",
         "`row 4, column 'caption': the caption is empty`", "nothing written"),
    Case("missing_image_column", "image_column names no column", case_missing_image_column, r"needs the column\(s\) image|picture",
         "`image_column 'picture' is not a column of the dataset (columns: ...); its 'image' column would be read instead`", "nothing written"),
    Case("one_row_dataset", "a one-row dataset (batch 4)", case_one_row_dataset, r"batch of one|one row|1 row",
         "`the training set has 1 rows, fewer than one batch of 4 ...`", "nothing written"),
    Case("empty_dataset_train", "a 0-row dataset (save_to_disk) to training", case_empty_dataset_train, r"0 rows|empty",
         "`...: split 'train' has 0 rows: nothing to ... train ...`", "nothing written"),
    Case("empty_dataset_generate_disk", "a 0-row dataset (save_to_disk) to generation", case_empty_dataset_generate_disk,
         r"data: split 'train' has 0 rows", "`<path>: split 'train' has 0 rows (saved with save_to_disk)`", "nothing written"),
    Case("empty_dataset_generate_parquet", "a 0-row parquet folder to generation", case_empty_dataset_generate_parquet,
         r"empty: split 'train' has 0 rows", "`<path>: split 'train' has 0 rows (in 1 parquet files)`", "nothing written"),
    Case("one_row_generate", "generation of one row", case_one_row_generate, None, "a one-row views folder", "the folder"),
    Case("corrupt_image_generate", "a garbage image cell in generation (row 1)", case_corrupt_image_generate, None,
         "row 1 in failures.jsonl with its reason; its views null", "every row, the failed one listed"),
    Case("path_only_image_cell", "an image folder (Image cells hold only a path to a local file)", case_path_only_image_cell, None,
         "nothing: the views dataset holds the files' bytes", "the original images, even once the files are gone"),
    Case("pickle_in_a_cell", "a binary column holding a pickle", case_pickle_in_a_cell, None,
         "passed through as bytes, never unpickled", "the column"),
    Case("shard_deleted", "a views folder with one of its 2 shards deleted", case_shard_deleted,
         r"1 of 2 shards .*missing \(train-00001-of-00002", "the missing shard's name and how to get it back",
         "the folder untouched"),
    Case("shard_truncated", "a views shard cut in half", case_shard_truncated, r"train-00000-of-00002.parquet is damaged",
         "the shard's path: not a whole parquet file, its size", "the folder untouched"),
    Case("shard_replaced_short", "a shard replaced by a whole file of fewer rows", case_shard_replaced_short,
         r"says split 'train' has 4 rows, its shards hold 3", "the card's row count against the shards'", "the folder untouched"),
    Case("unfinished_views_folder", "an unfinished generation folder given to training", case_unfinished_views_folder,
         r"unfinished `genview generate` run", "`... is an unfinished genview generate run (2 of 2 shards done)`",
         "the run's shards"),
    Case("views_rewritten_same_mtime", "a views shard rewritten with the same size and mtime", case_views_rewritten_same_mtime,
         None, "the new rows (the cache is checked against ctime)", "-"),
    Case("generation_damaged_shard_rerun", "re-run of generation over a truncated shard", case_generation_damaged_shard_rerun,
         None, "a warning `generating <shard> again: ...`; the folder whole", "every other shard"),
    Case("generation_killed_rerun", "generation killed after its first shard, run again", case_generation_killed_rerun,
         None, "the re-run finishes the folder", "finished shards"),
    Case("generation_rerun_other_settings", "generation re-run into its folder with another seed",
         case_generation_rerun_other_settings, r"holds a run with other settings \(seed\)",
         "`<folder> holds a run with other settings (seed): ...`", "the folder untouched"),
    Case("yaml_float_for_int", "YAML `max_steps: 2.5`", case_yaml_float_for_int, r"mine.yaml: max_steps: must be a whole number",
         "`<file>: max_steps: must be a whole number, got 2.5`", "nothing written (no empty output folder)"),
    Case("yaml_text_for_float", "YAML `learning_rate: fast`", case_yaml_text_for_float, r"learning_rate.*'fast'",
         "`<file>: learning_rate: must be a number, got 'fast'`", "nothing written"),
    Case("yaml_unquoted_off", "YAML `quality_mode: off` (YAML 1.1 reads False)", case_yaml_unquoted_off, None,
         "taken for 'off', the one choice it spells", "the run"),
    Case("yaml_unquoted_no", "YAML `eval_strategy: no` (read False)", case_yaml_unquoted_no, None,
         "taken for 'no'", "the run"),
    Case("yaml_scalar_for_list", "YAML `modes: ic` (one value for a list)", case_yaml_scalar_for_list, None,
         "taken for [ic]", "the run"),
    Case("yaml_unknown_key", "YAML key with a typo (`learning_rat`)", case_yaml_unknown_key, r"unknown settings learning_rat",
         "`<file>: unknown settings learning_rat`", "nothing written"),
    Case("yaml_missing_file", "--config naming no file", case_yaml_missing_file, r"nowhere.yaml",
         "the missing file's path", "nothing written"),
    Case("unknown_method", "--method mocov4", case_unknown_method, r"invalid choice: 'mocov4'", "the name and the known methods", "nothing written"),
    Case("model_path_typo_train", "a mistyped local model folder, offline (training)", case_model_path_typo_train,
         r"model_name_or_path .*vitx: no such folder", "`model_name_or_path <path>: no such folder (the nearest existing ...)`",
         "nothing written"),
    Case("model_path_typo_generate", "a mistyped local pipeline folder, offline (generation)", case_model_path_typo_generate,
         r"unclip_model ./models/unclip-tiny: no such folder", "`unclip_model ./models/...: no such folder`", "nothing written"),
    Case("model_folder_without_config", "a model folder without config.json", case_model_folder_without_config,
         r"empty-model has no config.json", "`<path> has no config.json or model_index.json: it is not a saved model folder`",
         "nothing written"),
    Case("model_path_is_a_file", "model_name_or_path naming a file", case_model_path_is_a_file, r"model.bin is a file",
         "`model_name_or_path <path> is a file; give the folder ...`", "nothing written"),
    Case("unreadable_model_folder", "a model folder whose config.json cannot be read", case_unreadable_model_folder,
         r"config.json cannot be read|vit cannot be read", "`model_name_or_path <path>: config.json cannot be read: fix ...`", "nothing written"),
    Case("dataset_path_typo", "dataset_name naming no folder", case_dataset_path_typo, r"no-such-views",
         "the path that does not exist", "nothing written"),
    Case("unknown_split", "dataset_train_split `trian`", case_unknown_split, r"'trian'",
         "the split asked and the splits there are", "nothing written"),
    Case("output_dir_is_a_file_train", "output_dir is a file (training)", case_output_dir_is_a_file_train,
         r"output_dir .*out is a file", "`output_dir <path> is a file, not a folder`, before the data loads", "the file"),
    Case("output_dir_is_a_file_generate", "output_dir is a file (generation)", case_output_dir_is_a_file_generate,
         r"output_dir .*views is a file", "the same, before a model loads", "the file"),
    Case("output_dir_read_only_train", "output_dir on a read-only mount (training)", case_output_dir_read_only_train,
         r"output_dir .* is not writable", "`output_dir <path> is not writable (...)`, before training", "-"),
    Case("output_dir_read_only_generate", "output_dir on a read-only mount (generation)", case_output_dir_read_only_generate,
         r"output_dir .* is not writable", "the same, before generation", "-"),
    Case("full_disk_checkpoint", "a 96 kB disk: the first checkpoint does not fit", case_full_disk_checkpoint,
         r"No space left on device while writing checkpoint-2", "ENOSPC naming the checkpoint, the file written last, the free space",
         "earlier checkpoints; the cut one is passed over on resume"),
    Case("full_disk_generation", "a 100 kB disk: the second shard does not fit", case_full_disk_generation,
         r"No space left on device while writing the views folder", "ENOSPC naming the folder, the file written last",
         "finished shards (the same command finishes)"),
    Case("resume_stored_as_off", "resume a `stored` run with `--quality_mode off`", case_resume_stored_as_off,
         r"quality_mode: 'stored' there, 'off' now", "`cannot resume ... (quality_mode: 'stored' there, 'off' now)`",
         "the folder untouched"),
    Case("second_run_into_used_folder", "a second run into a used output_dir, no resume", case_second_run_into_used_folder,
         r"already holds a run .*--resume_from_checkpoint true, or .*new or emptied output_dir",
         "`output_dir ... already holds a run (checkpoint-2, ...): resume it ..., or train into a new or emptied output_dir`",
         "the first run whole"),
    Case("resume_other_method", "resume a MoCo v3 checkpoint as BYOL", case_resume_other_method,
         r"checkpoint of method 'mocov3'|method: 'mocov3' there, 'byol' now", "the recorded and the asked method",
         "the folder untouched"),
    Case("killed_and_resumed", "a run killed between steps 3 and 4, resumed", case_killed_and_resumed, None,
         "resumes from checkpoint-2, bit-identical (training/test_trainer_resume)", "every checkpoint"),
    Case("killed_during_save", "checkpoint-4 without trainer_state.json (killed while saving)", case_killed_during_save, None,
         "a warning: passing over checkpoint-4 (no trainer_state.json); resumes from checkpoint-2", "every checkpoint"),
    Case("truncated_optimizer", "the newest checkpoint's optimizer.pt cut in half", case_truncated_optimizer, None,
         "a warning: passing over checkpoint-4: its optimizer.pt is damaged ...; resumes from checkpoint-2",
         "every checkpoint"),
    Case("truncated_checkpoint_weights", "the newest checkpoint's model.safetensors cut in half",
         case_truncated_checkpoint_weights, None, "the same, naming model.safetensors", "every checkpoint"),
    Case("truncated_checkpoint_named", "resume_from_checkpoint naming a checkpoint with a cut optimizer.pt",
         case_truncated_checkpoint_named_explicitly, r"checkpoint-2/optimizer.pt is damaged",
         "the file, why, and resume=true as the way past it", "the folder untouched"),
    Case("pickle_in_optimizer", "an optimizer.pt that unpickles a non-tensor object", case_pickle_in_optimizer,
         r"optimizer.pt is refused: it holds objects other than tensors",
         "`checkpoint file <path>/optimizer.pt is refused: it holds objects other than tensors, which weights-only loading refuses`", "the folder untouched"),
    Case("truncated_root_model", "the exported model.safetensors cut in half, then evaluated", case_truncated_root_model,
         r"model.safetensors is damaged", "`model_name_or_path's weights <path>/model.safetensors is damaged: ...`",
         "the checkpoints"),
    Case("push_offline", "--push_to_hub with HF_HUB_OFFLINE=1", case_push_offline, r"[Oo]ffline|HF_HUB_OFFLINE|connect",
         "the Hub cannot be reached (offline mode), before training", "nothing trained"),
    Case("two_generation_jobs", "two generation jobs started into one folder", case_two_generation_jobs,
         r"being written by another generation job \(pid \d+ on", "the second: the first's pid, host and start; "
         "delete the lock if it is dead", "the first job's folder", slow=True, timeout=900),
    Case("two_process_kill_resume", "two processes (gloo), rank 0 SIGKILLed after checkpoint-2, resumed",
         case_two_process_kill_resume, None, "resumes bit-identical to an uninterrupted two-process run",
         "every checkpoint", slow=True, timeout=900),
]  # fmt: skip
BY_NAME = {case.name: case for case in CASES}
for _name in (
    "output_dir_read_only_train",
    "output_dir_read_only_generate",
    "full_disk_checkpoint",
    "full_disk_generation",
):
    BY_NAME[_name].needs_mount = True
# Cases that train or generate to the end (3 to 15 s each on 2 cores): under `slow` in the test
# suite, where the module tests (tests/data, tests/generation, tests/training, test_preflight.py,
# test_config.py) have a fast test of each mechanism.
for _name in (
    "greyscale_rgba", "null_views_left_out", "output_dir_read_only_generate", "path_only_image_cell",
    "corrupt_image_late", "yaml_unquoted_no", "full_disk_generation", "yaml_unquoted_off", "corrupt_image_generate",
    "truncated_root_model", "resume_stored_as_off", "generation_damaged_shard_rerun", "yaml_scalar_for_list",
    "pickle_in_a_cell", "one_row_generate", "empty_dataset_generate_parquet", "generation_rerun_other_settings",
    "resume_other_method", "second_run_into_used_folder", "missing_image_column", "shard_deleted",
    "truncated_checkpoint_named", "truncated_checkpoint_weights", "generation_killed_rerun", "truncated_optimizer",
    "pickle_in_optimizer", "killed_and_resumed", "killed_during_save",
):  # fmt: skip
    BY_NAME[_name].slow = True


def run_case(case: Case, verbose: bool = False) -> tuple[str, str]:
    """(outcome, the first line of the error or '') of ``case`` in a fresh temporary folder."""

    def alarm(signum, frame):
        raise Hang(f"no end within {case.timeout} s")

    tmp = Path(tempfile.mkdtemp(prefix=f"genview-case-{case.name}-"))
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(case.timeout)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(Tee(stderr, sys.stderr)):
            return case.run(tmp), ""
    except Hang as error:
        return "hang", str(error)
    except BaseException as error:  # noqa: BLE001 (every way a run ends is an outcome here)
        if isinstance(error, SystemExit):  # argparse: its message went to stderr
            lines = stderr.getvalue().strip().splitlines()
            error = SystemExit(lines[-1] if lines else f"exit status {error.code}")
        message = f"{type(error).__name__}: {error}".strip()
        first = message.splitlines()[0] if message else type(error).__name__
        if verbose:
            import traceback

            traceback.print_exc()
        one_line = "\n" not in str(error).strip()
        clear = case.named is not None and re.search(case.named, str(error)) is not None and one_line
        return ("clear error" if clear else "crash"), first[:300]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        shutil.rmtree(tmp, ignore_errors=True)


def markdown_table(before: dict, after: dict) -> str:
    """docs/reliability.md's table from two ``--json`` results (before, now)."""
    lines = [
        "| # | fault | what the user sees now | what is kept | before | now |",
        "|---|---|---|---|---|---|",
    ]
    for number, case in enumerate(CASES, start=1):
        was, now = (results.get(case.name, ["not run"])[0] for results in (before, after))
        lines.append(f"| {number} | {case.fault} | {case.sees} | {case.kept} | {was} | {now} |")
    for label, results in (("before", before), ("now", after)):
        counts = [sum(results.get(case.name, [""])[0] == outcome for case in CASES) for outcome in OUTCOMES]
        lines.append(
            f"\n{label}: " + ", ".join(f"{count} {outcome}" for count, outcome in zip(counts, OUTCOMES))
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="another checkout whose src and recipes to run (the 'before' column)")
    parser.add_argument("--only", nargs="*", help="case names")
    parser.add_argument("--fast", action="store_true", help="leave out the slow cases")
    parser.add_argument("--json", help="write {case: [outcome, message]} to this file")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--table", nargs=2, metavar=("BEFORE_JSON", "NOW_JSON"), help="print the markdown table"
    )
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(*(json.loads(Path(path).read_text()) for path in args.table)))
        return 0
    if args.root and Path(args.root).resolve() != ROOT:
        env = {**os.environ, "GENVIEW_RELIABILITY_ROOT": str(Path(args.root).resolve())}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(args.root).resolve() / "src"), env.get("PYTHONPATH", "")]
        )
        rest = list(argv if argv is not None else sys.argv[1:])
        index = rest.index("--root")
        del rest[index : index + 2]
        return subprocess.call([sys.executable, __file__, *rest], env=env)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cases = [BY_NAME[name] for name in args.only] if args.only else CASES
    cases = [case for case in cases if not (args.fast and case.slow)]
    results = {}
    for case in cases:
        started = time.perf_counter()
        outcome, message = run_case(case, args.verbose)
        results[case.name] = [outcome, message]
        print(
            f"{case.name:40s} {outcome:13s} {time.perf_counter() - started:6.1f} s  {message[:160]}",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    counts = {outcome: sum(r[0] == outcome for r in results.values()) for outcome in OUTCOMES}
    print("totals: " + ", ".join(f"{count} {outcome}" for outcome, count in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
