"""What is on disk is what was written: the checks a local parquet folder passes before it is read.

A views folder (``genview generate``, or any folder of Hub-named shards) says what it holds twice:
each shard's name carries the shard count (``train-00003-of-00008.parquet``) and its card
(``README.md``) gives the split's row count (``dataset_info.splits[].num_examples``). A shard that
was deleted, never copied or cut short would otherwise be read as a smaller dataset; here it is
named, and the load refused, before any row is read. Only parquet footers are read: a
million-row folder is checked in the time it takes to open its files.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..integrity import check_file

SHARD_NAME = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.parquet$")
CARD_FILE = "README.md"


class DamagedDataError(ValueError):
    """A local dataset folder whose files do not match what it says it holds."""


def check_parquet_folder(folder: Path, split: str, files: list[Path]) -> int:
    """Refuse ``files`` (the ``split`` shards of ``folder``) when one is missing, unreadable or cut
    short, or when their rows do not add up to the card's count for ``split``; their row count."""
    check_shard_list(folder, split, files)
    rows = {file: parquet_rows(file) for file in files}
    expected = card_row_count(folder, split)
    total = sum(rows.values())
    if expected is not None and total != expected:
        counts = ", ".join(f"{file.name}: {count}" for file, count in rows.items())
        raise DamagedDataError(
            f"{folder}: its card ({CARD_FILE}) says split {split!r} has {expected} rows, its shards hold {total} "
            f"({counts}): a shard was replaced or the card is of another copy; copy or generate the folder again"
        )
    return total


def check_shard_list(folder: Path, split: str, files: list[Path]) -> None:
    """Shards named ``<split>-<k>-of-<n>.parquet`` must be all ``n`` of them, of one count."""
    named = [SHARD_NAME.match(file.name) for file in files]
    totals = {int(match["total"]) for match in named if match}
    if not totals:
        return  # shards named otherwise (user files): only the card's row count applies
    if len(totals) > 1:
        raise DamagedDataError(
            f"{folder}: split {split!r} mixes shards of {len(totals)} different runs (-of-"
            f"{', -of-'.join(f'{t:05d}' for t in sorted(totals))}): keep one run's shards"
        )
    total = totals.pop()
    present = {int(match["index"]) for match in named if match}
    missing = [f"{split}-{k:05d}-of-{total:05d}.parquet" for k in range(total) if k not in present]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DamagedDataError(
            f"{folder}: {len(missing)} of {total} shards of split {split!r} are missing ({shown}): "
            "copy them again, or run the same `genview generate` command to write them again"
        )


def parquet_rows(file: Path) -> int:
    """The row count in ``file``'s footer, once the file is checked whole (else it is named)."""
    import pyarrow.parquet as pq

    check_file(file, "shard")
    return pq.read_metadata(file).num_rows


def card_row_count(folder: Path, split: str) -> int | None:
    """``num_examples`` of ``split`` in the folder card's ``dataset_info`` (None without one)."""
    card = folder / CARD_FILE
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    header = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    try:
        metadata = yaml.safe_load(header) or {}
    except yaml.YAMLError:
        return None  # a card someone edited by hand: the shard list still applies
    infos = metadata.get("dataset_info") if isinstance(metadata, dict) else None
    for info in infos if isinstance(infos, list) else [infos] if isinstance(infos, dict) else []:
        for entry in info.get("splits") or []:
            if isinstance(entry, dict) and entry.get("name") == split and "num_examples" in entry:
                return int(entry["num_examples"])
    return None
