"""Is a file whole? Cheap structural checks of the files a run reads back, before a reader that would
die with its own message (``MetadataIncompleteBuffer``, ``PytorchStreamReader failed``, ``Parquet
magic bytes not found``) and no file name.

Each check reads a header or a footer, never the data: a copy cut short (a kill, a full disk, an
interrupted transfer) loses its end, and every format here keeps an index there (safetensors its
header's offsets, torch's zip its central directory, parquet its footer).
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path


class DamagedFileError(ValueError):
    """A file that is not whole; the message names it and what to do."""


def file_damage(path: str | Path) -> str | None:
    """Why ``path`` is not a whole file of its kind (by suffix), or None when it looks whole.

    Kinds: ``.safetensors``, torch's zip files (``.pt``, ``.pth``, ``.bin``), ``.json``, ``.parquet``;
    other files only need to be readable.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return "the file is empty (0 bytes)"
        suffix = path.suffix
        if suffix == ".safetensors":
            return _safetensors_damage(path, size)
        if suffix in (".pt", ".pth", ".bin"):
            return _torch_zip_damage(path, size)
        if suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_metadata(path)
        else:
            with open(path, "rb") as handle:
                handle.read(1)
    except PermissionError as error:
        return f"it cannot be read ({error.strerror})"
    except (OSError, ValueError, UnicodeDecodeError) as error:  # json and pyarrow errors are ValueErrors
        return f"it is not a whole {path.suffix.lstrip('.')} file ({str(error).splitlines()[0]}; {path.stat().st_size} bytes)"
    return None


def check_file(path: str | Path, what: str = "") -> None:
    """Raise ``DamagedFileError`` naming ``path`` when :func:`file_damage` finds it damaged."""
    damage = file_damage(path)
    if damage is not None:
        label = f"{what} " if what else ""
        raise DamagedFileError(
            f"{label}{path} is damaged: {damage}; it was cut short (a kill, a full disk or a copy that did not "
            "finish): copy or write it again"
        )


def unsafe_pickle(path: str | Path) -> str | None:
    """Why torch's weights-only loader, with the Trainer's allowlist, refuses ``path`` (a pickle of
    objects other than tensors, plain containers and numpy arrays, which could run code when
    unpickled), or None. Memory-mapped: the tensors' bytes are not read."""
    import pickle

    import torch
    from transformers.trainer_pt_utils import safe_globals

    try:
        with safe_globals():  # the numpy types the Trainer allows in its RNG states
            torch.load(path, weights_only=True, mmap=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        reason = next((line for line in str(error).splitlines() if "Unsupported global" in line), "")
        return f"it holds objects other than tensors, which weights-only loading refuses ({reason.strip() or 'see torch.load'})"
    except RuntimeError:
        return None  # not a zip torch file (legacy format): left to the loader
    return None


def _safetensors_damage(path: Path, size: int) -> str | None:
    with open(path, "rb") as handle:
        if size < 8:
            return f"it is {size} bytes, shorter than a safetensors header"
        (header_size,) = struct.unpack("<Q", handle.read(8))
        if 8 + header_size > size:
            return f"its header says {header_size} bytes of metadata but the file has {size} bytes"
        header = json.loads(handle.read(header_size))
    end = max((entry["data_offsets"][1] for k, entry in header.items() if k != "__metadata__"), default=0)
    if 8 + header_size + end != size:
        return f"its header describes {8 + header_size + end} bytes but the file has {size}"
    return None


def _torch_zip_damage(path: Path, size: int) -> str | None:
    with open(path, "rb") as handle:
        if handle.read(2) != b"PK":
            return None  # torch's legacy (non-zip) format: nothing cheap to check
    try:
        with zipfile.ZipFile(path) as archive:
            for entry in archive.infolist():
                if entry.header_offset + entry.compress_size > size:
                    return f"its entry {entry.filename} runs past the end of the file ({size} bytes)"
    except zipfile.BadZipFile as error:
        return f"it is not a whole torch file ({error}; {size} bytes)"
    return None
