"""Checks at the edge, before any work: the paths a run reads and writes, and the one message a full
disk gets.

- :func:`check_model_source`: a model setting that names a local folder (absent, a file, unreadable,
  without ``config.json`` / ``model_index.json``, a weights file cut short) is named with the
  setting; offline, transformers would answer a mistyped path with "Repo id must be in the
  form ..." and an unreadable folder with "Should have a model_type key".
- :func:`check_output_dir`: an output folder is a folder and is writable, found before training or
  generation rather than at the first save.
- :func:`disk_full_named`: a write that fails for want of space says so (ENOSPC), naming the file
  and the folder's free space; torch's writer otherwise reports ``unexpected pos``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .integrity import check_file

MODEL_MARKERS = ("config.json", "model_index.json")  # transformers, diffusers
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# torch's zip writer on a full disk: "[enforce fail at inline_container.cc] . unexpected pos N vs M"
# or "PytorchStreamWriter failed writing file ...: file write failed"
TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed")
NO_SPACE_MESSAGES = ("No space left on device", "os error 28", "Disk quota exceeded")
LOW_SPACE_BYTES = 64 * 1024**2  # below this, a failed write is taken for a full disk


def looks_local(name: str) -> bool:
    """A name that can only be a local path: absolute, relative with ``./`` / ``../`` / ``~``, or with
    more than one ``/`` (a Hub id is ``owner/name``)."""
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1 or "\\" in name


def check_model_source(name: str | os.PathLike, setting: str) -> None:
    """Refuse a local model folder that cannot be loaded, naming ``setting`` and the path. Hub ids
    pass untouched (their errors name the id already)."""
    name = str(name)
    path = Path(name).expanduser()
    try:
        exists = path.exists()
    except PermissionError as error:  # a parent folder that cannot be entered
        raise PermissionError(
            f"{setting} {name} cannot be read ({error.strerror}): fix its permissions"
        ) from error
    if not exists:
        if looks_local(name):
            parent = next((p for p in path.parents if p.exists()), None)
            raise FileNotFoundError(
                f"{setting} {name}: no such folder (the nearest existing folder is {parent}): check the path"
            )
        return
    if not path.is_dir():
        raise NotADirectoryError(f"{setting} {name} is a file; give the folder a model was saved to")
    try:
        entries = list(path.iterdir())
    except PermissionError as error:
        raise PermissionError(
            f"{setting} {name} cannot be read ({error.strerror}): fix its permissions"
        ) from error
    names = {entry.name for entry in entries}
    if not names & set(MODEL_MARKERS):
        raise FileNotFoundError(
            f"{setting} {name} has no {' or '.join(MODEL_MARKERS)}: it is not a saved model folder "
            f"(it holds {', '.join(sorted(names)[:6]) or 'nothing'})"
        )
    for marker in names & set(MODEL_MARKERS):
        if not os.access(path / marker, os.R_OK) or _unreadable(path / marker):
            raise PermissionError(f"{setting} {name}: {marker} cannot be read: fix the folder's permissions")
    for weights in sorted(p for p in path.glob("**/*") if p.suffix in WEIGHT_SUFFIXES and p.is_file()):
        check_file(weights, f"{setting}'s weights")


def _unreadable(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError:
        return True
    return False


def check_output_dir(output_dir: str | os.PathLike, setting: str = "output_dir") -> Path:
    """``output_dir`` is a folder (or can be made) and is writable: checked by writing a file in it,
    or in its nearest existing parent (what a save will do; permission bits alone lie for root and
    for read-only mounts). Nothing is left behind."""
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{setting} {folder} is a file, not a folder: choose a folder path")
    probe_in = next(p for p in (folder, *folder.parents) if p.exists())
    if not probe_in.is_dir():
        raise NotADirectoryError(
            f"{setting} {folder}: {probe_in} is a file, not a folder: choose another path"
        )
    try:
        handle, probe = tempfile.mkstemp(prefix=".genview-write-check-", dir=probe_in)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise PermissionError(
            f"{setting} {folder} is not writable ({error.strerror} in {probe_in}): choose another folder or "
            "make it writable; nothing was written"
        ) from error
    return folder


def is_disk_full(error: BaseException, folder: Path) -> bool:
    """Whether ``error``, raised while writing into ``folder``, comes from a full disk: an ENOSPC /
    EDQUOT ``OSError``, a writer's own error quoting it (safetensors' ``SafetensorError``), or
    torch's zip writer failing on a disk with almost no space left."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if any(text in str(error) for text in NO_SPACE_MESSAGES):
        return True
    if isinstance(error, RuntimeError) and any(text in str(error) for text in TORCH_WRITE_FAILURES):
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        return shutil.disk_usage(existing).free < LOW_SPACE_BYTES
    return False


@contextlib.contextmanager
def disk_full_named(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Re-raise a write into ``folder`` that failed for want of space as ``OSError(ENOSPC)`` saying
    that ``what`` is incomplete, with the file written last (the one cut short, or the one before it)
    and the disk's free space."""
    folder = Path(folder)
    try:
        yield
    except Exception as error:
        if not is_disk_full(error, folder):
            raise
        written = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
        last = max(written, key=lambda p: p.stat().st_mtime_ns, default=None)
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        free = shutil.disk_usage(existing).free / 1024**2
        raise OSError(
            errno.ENOSPC,
            f"No space left on device while writing {what} in {folder} (file written last: {last}; "
            f"{free:.1f} MiB free): it is incomplete; free some space or choose another output_dir, then run "
            "the same command again",
        ) from error
