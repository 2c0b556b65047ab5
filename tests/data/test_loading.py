"""Tests of genview_hf.data.loading, the one dataset loader: sample sets, saved folders and parquet
folders read the same way, a folder rewritten in place (even with the same size and mtime) is read
afresh, and an empty split is refused."""

import os
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from genview_hf.data.loading import load_split


def _rows(value: int, n: int = 4) -> Dataset:
    features = Features({"image": Image(), "label": Value("int64")})
    return Dataset.from_dict(
        {"image": [PILImage.new("RGB", (8, 8), (value,) * 3)] * n, "label": list(range(n))}, features=features
    )


def test_one_loader_for_samples_saved_folders_and_parquet_folders(tmp_path):
    assert len(load_split("sample:shapes", "test")) == 48
    DatasetDict({"train": _rows(1), "test": _rows(2, 2)}).save_to_disk(tmp_path / "saved")
    assert len(load_split(str(tmp_path / "saved"), "test")) == 2
    with pytest.raises(KeyError, match="no split 'validation'.*train, test"):
        load_split(str(tmp_path / "saved"), "validation")
    views = tmp_path / "views" / "data"
    views.mkdir(parents=True)
    _rows(10).to_parquet(str(views / "train-00000-of-00001.parquet"))
    assert load_split(str(tmp_path / "views"), "train", max_rows=3)["label"] == [0, 1, 2]
    with pytest.raises(KeyError, match="no split 'test'"):
        load_split(str(tmp_path / "views"), "test")


def test_a_parquet_folder_rewritten_in_place_is_read_afresh(tmp_path):
    shard = tmp_path / "views" / "data" / "train-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    _rows(10).to_parquet(str(shard))
    first = load_split(str(tmp_path / "views"), "train")
    assert np.asarray(first[0]["image"])[0, 0, 0] == 10
    _rows(200).to_parquet(str(shard))  # same name, same size, new content
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = load_split(str(tmp_path / "views"), "train")
    assert np.asarray(second[0]["image"])[0, 0, 0] == 200


# ------------------------------------------------------------------ stale caches
def rows_of(value: int, n: int = 4) -> Dataset:
    return Dataset.from_dict({"value": [value] * n, "text": [f"row {value}"] * n})


def keep_times(path: Path, write) -> None:
    """``write()`` the file again with the same size and the very same mtime (``cp -p`` / ``rsync -t``)."""
    before = path.stat()
    write()
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_views_folder_rewritten_with_the_same_size_and_mtime_is_read_afresh(tmp_path):
    shard = tmp_path / "views" / "data" / "train-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    rows_of(1).to_parquet(str(shard))
    assert load_split(str(tmp_path / "views"), "train")["value"] == [1] * 4
    keep_times(shard, lambda: rows_of(2).to_parquet(str(shard)))
    assert load_split(str(tmp_path / "views"), "train")["value"] == [2] * 4


def test_a_folder_with_a_configs_card_rewritten_in_place_is_read_afresh(tmp_path):
    """load_dataset(folder) with a configs block caches on the card's YAML alone (see data.loading)."""
    folder = tmp_path / "jsonl"
    (folder / "data").mkdir(parents=True)
    card = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/*.jsonl\n---\n"
    (folder / "README.md").write_text(card)
    rows = folder / "data" / "rows.jsonl"
    rows_of(1).to_json(str(rows))
    assert load_split(str(folder), "train")["value"] == [1] * 4
    keep_times(rows, lambda: rows_of(2).to_json(str(rows)))
    assert load_split(str(folder), "train")["value"] == [2] * 4
