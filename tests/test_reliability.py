"""Nothing lost, third pass: each fault made to happen (a shard deleted or cut short, a cell that
holds only a path, a used output folder, a truncated checkpoint, wrong YAML, a read-only or full
disk, two jobs in one folder), and what the user sees."""

import contextlib
import io
import json
import logging
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Features, Image
from PIL import Image as PILImage

from genview_hf.config import ScriptArguments, parse_config
from genview_hf.data.integrity import DamagedDataError
from genview_hf.data.loading import load_split
from genview_hf.data.samples import shapes
from genview_hf.evaluation.arguments import EvaluationArguments
from genview_hf.generation import generate_views
from genview_hf.integrity import DamagedFileError
from genview_hf.recipes.evaluate_encoder import main as evaluate_main
from genview_hf.training import builders
from genview_hf.training.run_record import RUN_RECORD_FILE, used_by_a_run
from test_robustness import (  # noqa: F401 (components, uninterrupted: fixtures)
    KillAt,
    StopAt,
    assert_identical,
    components,
    gen_config,
    listing,
    recipe,
    source,
    uninterrupted,
)


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
            subprocess.run(["umount", str(folder)], check=True)
        else:
            folder.chmod(0o755)


# ------------------------------------------------------------------ 1. views folders read as written
@pytest.fixture
def views(tmp_path, components):  # noqa: F811
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


def test_a_cell_holding_only_a_local_path_is_written_as_the_image_bytes(tmp_path, components):  # noqa: F811
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
    out = generate_views(data, gen_config(tmp_path / "views"), components=components)
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
    caplog,  # noqa: F811
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


def test_a_generation_rerun_finds_and_redoes_a_damaged_shard(views, components, caplog):  # noqa: F811
    shard = views / "data" / "train-00001-of-00002.parquet"
    rows = load_split(str(views), "train").cast_column("image", Image(decode=False))
    truncate(shard)
    with caplog.at_level(logging.WARNING):
        generate_views(source(), gen_config(views), dataset_name="shapes", components=components)
    assert f"generating {shard} again: it is not a whole parquet file" in caplog.text
    again = load_split(str(views), "train").cast_column("image", Image(decode=False))
    assert again.to_dict() == rows.to_dict()  # views depend on (seed, row id) only: the same rows
