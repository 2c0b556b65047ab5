"""The one dataset loader of generate, train and evaluate: :func:`load_split`.

``name`` may be

- ``sample:NAME``: an embedded sample set (``genview_hf.testing.samples``: digits, shapes, photos);
- a folder written by ``Dataset.save_to_disk`` (``state.json`` / ``dataset_dict.json``);
- a folder of parquet files, such as a views dataset written by ``genview generate``: loaded
  by its files (``load_dataset("parquet", data_files=...)``) once they are checked against their
  names and the card's row count (``data.integrity``); a ``genview generate`` folder that is not
  finished yet is refused;
- any other local folder or Hub id, through ``datasets.load_dataset``.

Local files are read afresh when they change. ``load_dataset(folder)`` on a folder whose card has
a ``configs:`` block caches under a hash of the card's ``dataset_info`` and the ``data_files``
patterns alone, so rewriting the files in place (same card) served the old rows; loading by the
files keys the cache on each file's path and mtime, which a rewrite that keeps the mtime
(``cp -p``, ``rsync -t``, a coarse-clock filesystem) still fools. So local loads also compare the
cached copy with the files' ctime (changed by every write, and never set back) and prepare the
copy again when it is older.
"""

from __future__ import annotations

import json
from pathlib import Path

from .integrity import check_parquet_folder

SAMPLE_PREFIX = "sample:"
# The layout of a `genview generate` folder (generation.driver): the run's state lives in WORK_DIR
# (RUN_FILE, the finished shards) until the last shard is done; then the shards appear in DATA_DIR.
WORK_DIR, DATA_DIR, RUN_FILE = ".work", "data", "run.json"


def load_split(name: str, split: str, config: str | None = None, *, max_rows: int | None = None):
    """One split of ``name`` as a ``datasets.Dataset`` (the first ``max_rows`` rows when given)."""
    if name.startswith(SAMPLE_PREFIX):
        from ..testing.samples import load_sample

        dataset = load_sample(name[len(SAMPLE_PREFIX) :], split=split)
    else:
        path = Path(name)
        if path.is_dir() and (path / WORK_DIR / RUN_FILE).is_file() and not (path / DATA_DIR).is_dir():
            shards = sorted((path / WORK_DIR / "shards").glob("*.parquet"))
            total = shards[0].stem.rsplit("-of-", 1)[-1].lstrip("0") if shards else "?"
            raise ValueError(
                f"{name} is an unfinished `genview generate` run ({len(shards)} of {total} shards done): run "
                "the same command again to finish it"
            )
        if path.is_dir() and any((path / marker).exists() for marker in ("state.json", "dataset_dict.json")):
            dataset = _from_disk(path, split)
        elif path.is_dir() and _parquet_files(path, split):
            files = _parquet_files(path, split)
            if check_parquet_folder(path, split, files) == 0:  # a missing or cut-short shard is named
                raise EmptyDatasetError(f"{name}: split {split!r} has 0 rows (in {len(files)} parquet files)")
            dataset = _load_fresh(files, "parquet", data_files={split: [str(f) for f in files]}, split=split)
        elif path.is_dir() and any(path.rglob("*.parquet")):
            names = sorted({file.name.split("-")[0] for file in path.rglob("*.parquet")})
            raise KeyError(f"{name} has no split {split!r} (its parquet files are of: {', '.join(names)})")
        else:
            dataset = _from_hub_or_folder(name, split, config)
    if hasattr(dataset, "__len__") and len(dataset) == 0:
        raise EmptyDatasetError(f"{name}: split {split!r} has 0 rows")
    if max_rows is not None:
        dataset = dataset.select(range(min(max_rows, len(dataset))))
    return dataset


class EmptyDatasetError(ValueError):
    """A split without rows: nothing to generate views for, train or evaluate on."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"{message}: nothing to generate views for, train or evaluate on; check the dataset and split"
        )


def _parquet_files(folder: Path, split: str) -> list[Path]:
    """``<split>-*.parquet`` (the Hub's shard naming) anywhere under ``folder``, hidden files excluded."""
    return sorted(file for file in folder.rglob(f"{split}-*.parquet") if not _hidden(file, folder))


def _hidden(file: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in file.relative_to(folder).parts)


def _from_disk(path: Path, split: str):
    from datasets import DatasetDict, load_from_disk

    state = path / "state.json" if (path / "state.json").is_file() else path / split / "state.json"
    if state.is_file() and not json.loads(state.read_text()).get("_data_files", [None]):
        # datasets cannot load a saved split without rows (IndexError in concat_tables)
        raise EmptyDatasetError(f"{path}: split {split!r} has 0 rows (saved with save_to_disk)")
    loaded = load_from_disk(str(path))
    if isinstance(loaded, DatasetDict):
        if split not in loaded:
            raise KeyError(f"{path} has no split {split!r} (splits: {', '.join(loaded)})")
        return loaded[split]
    return loaded


def _load_fresh(files: list[Path], *args, **kwargs):
    """``datasets.load_dataset(*args, **kwargs)`` of local ``files``, prepared again when its cached
    copy is older than a file's last change (see the module docstring)."""
    from datasets import load_dataset

    dataset = load_dataset(*args, **kwargs)
    cached = [Path(entry["filename"]) for entry in dataset.cache_files]
    if cached and files:
        changed = max(file.stat().st_ctime_ns for file in files)
        if changed >= min(file.stat().st_mtime_ns for file in cached):
            dataset = load_dataset(*args, **kwargs, download_mode="force_redownload")
    return dataset


def _from_hub_or_folder(name: str, split: str, config: str | None):
    from datasets import get_dataset_split_names

    path = Path(name)
    files = [f for f in path.rglob("*") if f.is_file() and not _hidden(f, path)] if path.is_dir() else []
    try:
        return _load_fresh(files, name, config, split=split)
    except ValueError as error:
        if "split" not in str(error).lower():
            raise
        splits = get_dataset_split_names(name, config)
        raise KeyError(f"{name} has no split {split!r} (splits: {', '.join(splits)})") from error
