"""The one dataset loader of generate, train and evaluate: :func:`load_split`.

``name`` may be

- ``sample:NAME``: an embedded sample set (``genview_hf.data.samples``: digits, shapes, photos);
- a folder written by ``Dataset.save_to_disk`` (``state.json`` / ``dataset_dict.json``);
- a folder of parquet files, such as a views dataset written by ``genview generate``: loaded
  by its files (``load_dataset("parquet", data_files=...)``), whose cache key follows the files
  themselves, so a folder regenerated in place is read afresh;
- any other local folder or Hub id, through ``datasets.load_dataset``.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_PREFIX = "sample:"


def load_split(name: str, split: str, config: str | None = None, *, max_rows: int | None = None):
    """One split of ``name`` as a ``datasets.Dataset`` (the first ``max_rows`` rows when given)."""
    if name.startswith(SAMPLE_PREFIX):
        from .samples import load_sample

        dataset = load_sample(name[len(SAMPLE_PREFIX) :], split=split)
    else:
        path = Path(name)
        if path.is_dir() and any((path / marker).exists() for marker in ("state.json", "dataset_dict.json")):
            dataset = _from_disk(path, split)
        elif path.is_dir() and _parquet_files(path, split):
            from datasets import load_dataset

            files = [str(file) for file in _parquet_files(path, split)]
            dataset = load_dataset("parquet", data_files={split: files}, split=split)
        elif path.is_dir() and any(path.rglob("*.parquet")):
            names = sorted({file.name.split("-")[0] for file in path.rglob("*.parquet")})
            raise KeyError(f"{name} has no split {split!r} (its parquet files are of: {', '.join(names)})")
        else:
            dataset = _from_hub_or_folder(name, split, config)
    if max_rows is not None:
        dataset = dataset.select(range(min(max_rows, len(dataset))))
    return dataset


def _parquet_files(folder: Path, split: str) -> list[Path]:
    """``<split>-*.parquet`` (the Hub's shard naming) anywhere under ``folder``, hidden files excluded."""
    return sorted(
        file
        for file in folder.rglob(f"{split}-*.parquet")
        if not any(part.startswith(".") for part in file.relative_to(folder).parts)
    )


def _from_disk(path: Path, split: str):
    from datasets import DatasetDict, load_from_disk

    loaded = load_from_disk(str(path))
    if isinstance(loaded, DatasetDict):
        if split not in loaded:
            raise KeyError(f"{path} has no split {split!r} (splits: {', '.join(loaded)})")
        return loaded[split]
    return loaded


def _from_hub_or_folder(name: str, split: str, config: str | None):
    from datasets import get_dataset_split_names, load_dataset

    try:
        return load_dataset(name, config, split=split)
    except ValueError as error:
        if "split" not in str(error).lower():
            raise
        splits = get_dataset_split_names(name, config)
        raise KeyError(f"{name} has no split {split!r} (splits: {', '.join(splits)})") from error
