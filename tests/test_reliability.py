# ruff: noqa: F811 (the fixtures components and uninterrupted are imported from test_robustness)
"""Nothing lost, third pass: each fault made to happen (a shard deleted or cut short, a cell that
holds only a path, a used output folder, a truncated checkpoint, wrong YAML, a read-only or full
disk, two jobs in one folder), and what the user sees."""

import contextlib
import errno
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from datasets import Dataset, Features, Image
from PIL import Image as PILImage

from genview_hf.config import ScriptArguments, parse_config
from genview_hf.data.integrity import DamagedDataError
from genview_hf.data.loading import EmptyDatasetError, load_split
from genview_hf.evaluation.arguments import EvaluationArguments
from genview_hf.generation import ViewGenerationConfig, generate_views
from genview_hf.generation.lock import FolderInUseError
from genview_hf.integrity import DamagedFileError
from genview_hf.preflight import check_model_source
from genview_hf.recipes.evaluate_encoder import main as evaluate_main
from genview_hf.recipes.generate_views import cli as generate_cli
from genview_hf.testing import tiny_path
from genview_hf.testing.samples import shapes
from genview_hf.training import GenViewTrainingArguments, ModelArguments, builders
from genview_hf.training.run_record import RUN_RECORD_FILE, used_by_a_run
from genview_hf.training.trainer import missing_checkpoint_files
from reliability_cases import as_nobody
from test_robustness import (  # noqa: F401 (components, uninterrupted: fixtures)
    ROOT,
    SSL_CONFIG,
    TEXT2IMG,
    UNCLIP,
    KillAt,
    StopAt,
    assert_identical,
    components,
    gen_config,
    listing,
    recipe,
    source,
    uninterrupted,
    views_rows,
)
from training_helpers import make_args


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut ``path`` to ``keep`` of its size (a copy or a write that did not finish)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


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


# ------------------------------------------------------------------ 1. views folders read as written
@pytest.fixture
def views(tmp_path, components):
    """A finished views folder of 4 rows in 2 shards."""
    return generate_views(
        source(), gen_config(tmp_path / "views"), dataset_name="shapes", components=components
    )


def test_a_deleted_shard_is_named_not_silently_skipped(views):
    assert len(load_split(str(views), "train")) == 4
    (views / "data" / "train-00001-of-00002.parquet").unlink()
    with pytest.raises(
        DamagedDataError, match=r"1 of 2 shards of split 'train' are missing \(train-00001-of-00002"
    ):
        load_split(str(views), "train")


def test_a_truncated_shard_is_named(views):
    shard = views / "data" / "train-00000-of-00002.parquet"
    truncate(shard)
    with pytest.raises(DamagedFileError, match=rf"shard {shard} is damaged: it is not a whole parquet file"):
        load_split(str(views), "train")


def test_a_shard_replaced_by_one_of_other_rows_disagrees_with_the_card(views):
    shard = views / "data" / "train-00000-of-00002.parquet"
    table = pq.read_table(shard)
    pq.write_table(table.slice(0, 1), shard)  # whole, but one row short
    with pytest.raises(DamagedDataError, match=r"says split 'train' has 4 rows, its shards hold 3"):
        load_split(str(views), "train")


def test_a_cell_holding_only_a_local_path_is_written_as_the_image_bytes(tmp_path, components):
    """The views dataset keeps the original image even once the file the cell pointed at is gone."""
    files = []
    for index, row in enumerate(shapes(num_rows=4, image_size=32)):
        files.append(tmp_path / f"image-{index}.png")
        row["image"].save(files[-1])
    originals = [file.read_bytes() for file in files]
    data = Dataset.from_dict(
        {"image": [{"bytes": None, "path": str(file)} for file in files]},
        features=Features({"image": Image()}),
    )
    assert data.cast_column("image", Image(decode=False))[0]["image"]["bytes"] is None  # only a path
    out = generate_views(data, gen_config(tmp_path / "views", license="apache-2.0"), components=components)
    for file in files:
        file.unlink()
    cells = load_split(str(out), "train").cast_column("image", Image(decode=False))["image"]
    assert [cell["bytes"] for cell in cells] == originals
    assert PILImage.open(io.BytesIO(cells[0]["bytes"])).size == (32, 32)


# ------------------------------------------------------------------ 2. one run per output folder
def short_run(output_dir, *flags, callbacks=None):
    """The training recipe for 2 steps (a checkpoint at step 2) on the shapes set, quality_mode stored."""
    return recipe(output_dir, "--max_steps", "2", *flags, callbacks=callbacks)


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


def test_an_output_dir_that_is_a_file_or_read_only_is_refused_up_front(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=rf"output_dir {tmp_path / 'file'} is a file"):
        short_run(tmp_path / "file")
    with read_only_folder(tmp_path / "ro") as folder:
        with pytest.raises(PermissionError, match=rf"output_dir {folder / 'run'} is not writable"):
            short_run(folder / "run")


# ------------------------------------------------------------------ 3. damaged files: named, and the intact checkpoint used
@pytest.mark.parametrize("damaged", ["optimizer.pt", "model.safetensors"])
def test_a_truncated_file_in_the_newest_checkpoint_resumes_from_the_newest_intact_one(
    tmp_path,
    damaged,
    uninterrupted,
    caplog,
):
    recipe(tmp_path, callbacks=[StopAt(4)])
    truncate(tmp_path / "checkpoint-4" / damaged)
    with pytest.raises(
        DamagedFileError, match=rf"checkpoint file {tmp_path / 'checkpoint-4' / damaged} is damaged"
    ):
        recipe(tmp_path, "--resume_from_checkpoint", str(tmp_path / "checkpoint-4"))
    with caplog.at_level(logging.WARNING):
        recipe(tmp_path, "--resume_from_checkpoint", "true")  # from checkpoint-2
    assert f"passing over {tmp_path / 'checkpoint-4'}: its {damaged} is damaged" in caplog.text
    assert_identical(tmp_path / "checkpoint-6", uninterrupted)


def test_a_truncated_root_model_is_named_when_it_is_loaded(tmp_path):
    short_run(tmp_path, "--save_strategy", "no")
    truncate(tmp_path / "model.safetensors")
    with pytest.raises(
        DamagedFileError, match=r"model_name_or_path's weights .*model.safetensors is damaged: its header"
    ):
        builders.load_model(str(tmp_path))
    with pytest.raises(
        DamagedFileError, match=r"model_name_or_path's weights .*model.safetensors is damaged"
    ):
        evaluate_main(*parse_config((ScriptArguments, EvaluationArguments), [
            "--model_name_or_path", str(tmp_path), "--dataset_name", "sample:shapes", "--protocols", "knn",
        ]))  # fmt: skip


def test_a_generation_rerun_finds_and_redoes_a_damaged_shard(views, components, caplog):
    shard = views / "data" / "train-00001-of-00002.parquet"
    rows = load_split(str(views), "train").cast_column("image", Image(decode=False))
    truncate(shard)
    with caplog.at_level(logging.WARNING, logger="genview_hf.generation"):
        generate_views(source(), gen_config(views), dataset_name="shapes", components=components)
    assert f"generating {shard} again: it is not a whole parquet file" in caplog.text
    again = load_split(str(views), "train").cast_column("image", Image(decode=False))
    assert again.to_dict() == rows.to_dict()  # views depend on (seed, row id) only: the same rows


# ------------------------------------------------------------------ 4. refused at the edge, before any work
GENERATE_CONFIG = ROOT / "recipes" / "configs" / "tiny_shapes_generate.yaml"


def generate(output_dir, *flags):
    """The generation recipe on 4 shapes rows, tiny components."""
    argv = [
        "--config", str(GENERATE_CONFIG), "--output_dir", str(output_dir), "--max_rows", "4", "--shard_size", "2",
        "--fg_sample_size", "4", "--unclip_model", UNCLIP, "--text2img_model", TEXT2IMG, *flags,
    ]  # fmt: skip
    return generate_cli(argv)


@pytest.mark.parametrize("written_by", ["save_to_disk", "parquet"])
def test_a_dataset_without_rows_is_refused_before_generation(tmp_path, written_by):
    empty = shapes(num_rows=4, image_size=32).select([])
    if written_by == "save_to_disk":
        empty.save_to_disk(str(tmp_path / "empty"))
    else:
        empty.to_parquet(str(tmp_path / "empty" / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(EmptyDatasetError, match=rf"{tmp_path / 'empty'}: split 'train' has 0 rows"):
        generate(tmp_path / "views", "--dataset_name", str(tmp_path / "empty"))
    assert not (tmp_path / "views").exists()


def test_a_mistyped_local_model_path_is_named_offline(tmp_path):
    typo = str(tiny_path("vit")) + "x"
    with pytest.raises(FileNotFoundError, match=rf"model_name_or_path {typo}: no such folder"):
        short_run(tmp_path / "run", "--model_name_or_path", typo)
    with pytest.raises(FileNotFoundError, match=r"unclip_model ./no/such/unclip: no such folder"):
        generate(tmp_path / "views", "--unclip_model", "./no/such/unclip")
    with pytest.raises(FileNotFoundError, match=rf"model_name_or_path {tmp_path} has no config.json"):
        short_run(tmp_path / "run", "--model_name_or_path", str(tmp_path))
    assert not (tmp_path / "run").exists() and not (tmp_path / "views").exists()


def check_as_unprivileged(folder: Path) -> str:
    """The message of ``check_model_source(folder)`` as a user the folder's permissions apply to
    (root reads everything: a forked child as nobody, ``reliability_cases.as_nobody``)."""
    return as_nobody(lambda: check_model_source(str(folder), "model_name_or_path"))


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


def write_yaml(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "line, message",
    [
        ("max_steps: 2.5", r"max_steps: must be a whole number, got 2.5"),
        ("learning_rate: fast", r"learning_rate: must be a number, got 'fast'"),
        ("per_device_train_batch_size: true", r"per_device_train_batch_size: must be a number, got True"),
        ("use_hallucinator: maybe", r"use_hallucinator: must be true or false, got 'maybe'"),
        ("quality_mode: sometimes", r"quality_mode: must be one of frozen, stored, off, got 'sometimes'"),
        ("dataset_name: no", r"dataset_name: must be text, got False \(YAML reads off/no/on/yes unquoted"),
    ],
)
def test_a_yaml_value_of_the_wrong_type_names_the_key_and_file(tmp_path, line, message):
    config = write_yaml(tmp_path / "mine.yaml", line + "\n")
    with pytest.raises(ValueError, match=rf"{config}: {message}"):
        short_run(tmp_path / "run", "--config", config)
    assert not (tmp_path / "run").exists()


def test_yaml_booleans_where_a_setting_takes_words_are_read_as_the_word_they_spell(tmp_path):
    train = write_yaml(tmp_path / "train.yaml", "quality_mode: off\neval_strategy: no\nmax_steps: 3.0\n")
    argv = ["--config", str(SSL_CONFIG), "--config", train, "--output_dir", str(tmp_path / "run")]
    _, args, _ = parse_config((ScriptArguments, GenViewTrainingArguments, ModelArguments), argv)
    assert (args.quality_mode, args.eval_strategy, args.max_steps) == ("off", "no", 3)
    views = write_yaml(tmp_path / "views.yaml", "modes: ic\n")  # one value for a list setting
    _, config = parse_config(
        (ScriptArguments, ViewGenerationConfig),
        ["--config", views, "--output_dir", "v", "--dataset_name", "sample:shapes"],
    )
    assert config.modes == ["ic"]


@contextlib.contextmanager
def tiny_filesystem(folder: Path, size: str):
    """``folder`` on a ``size`` tmpfs where the test may mount one; None where it may not (the test
    then patches a writer to fail as a full disk does)."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    try:
        yield folder if mounted.returncode == 0 else None
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)


def test_a_full_disk_while_saving_a_checkpoint_is_an_enospc_naming_it(tmp_path, monkeypatch, caplog):
    with tiny_filesystem(tmp_path / "disk", "96k") as disk:
        if disk is None:  # torch's writer on a full disk, and a disk with nothing free
            monkeypatch.setattr(torch, "save", fails_as_a_full_disk)
            monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 0))
        out = (disk or tmp_path) / "run"
        with pytest.raises(
            OSError,
            match=rf"No space left on device while writing checkpoint-2 in {out} \(file written last: {out}/",
        ):
            short_run(out)
        # what is kept: the incomplete checkpoint is passed over by a resume, naming why
        monkeypatch.undo()
        assert (out / "checkpoint-2").is_dir() and missing_checkpoint_files(out / "checkpoint-2")


def fails_as_a_full_disk(*args, **kwargs):
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


def test_a_full_disk_while_generating_is_an_enospc_and_the_finished_shards_stay(
    tmp_path, components, monkeypatch
):
    with tiny_filesystem(
        tmp_path / "disk", "100k"
    ) as disk:  # room for the first shard (~50 kB), not the second
        if disk is None:
            real = Dataset.to_parquet

            def second_shard_fills_the_disk(self, path, *args, **kwargs):
                if "00001-of" in str(path):
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real(self, path, *args, **kwargs)

            monkeypatch.setattr(Dataset, "to_parquet", second_shard_fills_the_disk)
        out = (disk or tmp_path) / "views"
        with pytest.raises(
            OSError, match=rf"No space left on device while writing the views folder in {out}"
        ) as error:
            generate_views(source(8), gen_config(out), components=components)
        assert error.value.errno == errno.ENOSPC
        assert (out / ".work" / "shards" / "train-00000-of-00004.parquet").is_file()  # kept for the re-run
        assert not (out / ".work" / "lock.json").exists()


def test_an_output_dir_that_is_a_file_or_read_only_is_refused_before_generation(tmp_path, components):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=rf"output_dir {tmp_path / 'file'} is a file"):
        generate_views(source(), gen_config(tmp_path / "file"), components=components)
    with read_only_folder(tmp_path / "ro") as folder:
        with pytest.raises(PermissionError, match=rf"output_dir {folder / 'views'} is not writable"):
            generate_views(source(), gen_config(folder / "views"), components=components)


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


# ------------------------------------------------------------------ 5. errors name the dataset's row
def test_a_bad_row_after_dropped_rows_is_named_by_its_dataset_row(tmp_path):
    """Rows 3 and 9 lost their views (left out); row 20's image does not decode: the check names row
    20, not 18 (its place among the rows kept)."""
    data = views_rows(30, null_views=(3, 9), corrupt_images=(20,))
    with pytest.raises(ValueError, match=r"row 20, column 'image': cannot decode"):
        builders.views_dataset(data, make_args(tmp_path, "mocov3", quality_mode="stored"), where="views")


def test_an_empty_caption_after_dropped_rows_is_named_by_its_dataset_row(tmp_path):
    data = views_rows(12, null_views=(1, 2)).map(
        lambda row, index: {"caption": "" if index == 7 else row["caption"]}, with_indices=True
    )
    with pytest.raises(ValueError, match=r"row 7, column 'caption': the caption is empty"):
        builders.views_dataset(data, make_args(tmp_path, "slip", quality_mode="stored"), where="views")


def test_a_checkpoint_state_that_unpickles_other_objects_is_named_and_rng_states_pass(tmp_path):
    """The Trainer's own RNG states hold numpy arrays (allowed, as the Trainer allows them); a file
    that would unpickle any other object is named before the Trainer loads it."""
    import numpy as np

    torch.save(
        {"python": None, "numpy": np.random.get_state(), "cpu": torch.get_rng_state()},
        tmp_path / "rng_state.pth",
    )
    torch.save({"state": {}, "param_groups": []}, tmp_path / "optimizer.pt")
    builders.check_pickles(tmp_path)  # whole and plain: nothing to say
    torch.save({"state": {}, "param_groups": [], "payload": socket.socket}, tmp_path / "optimizer.pt")
    with pytest.raises(
        DamagedFileError, match=r"optimizer.pt is refused: it holds objects other than tensors"
    ):
        builders.check_pickles(tmp_path)


def test_a_mistyped_image_column_is_refused_rather_than_reading_image(tmp_path):
    data = shapes(num_rows=4, image_size=32)
    with pytest.raises(
        ValueError,
        match=r"image_column 'picture' is not a column of the dataset .*'image' column would be read",
    ):
        builders.views_dataset(
            data, make_args(tmp_path, "mocov3", quality_mode="off"), image_column="picture"
        )
    renamed = data.rename_column(
        "image", "jpg"
    )  # a source column under its own name is what the setting is for
    assert (
        "image"
        in builders.views_dataset(
            renamed, make_args(tmp_path, "mocov3", quality_mode="off"), image_column="jpg"
        ).column_names
    )
