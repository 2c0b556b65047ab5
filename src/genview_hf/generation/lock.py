"""One generation job per output folder: ``.work/lock.json`` names the job that holds the folder.

Two jobs writing one folder race on its shards and its assembly (the second died in the preview
writer). The main process of a job takes the lock before it writes anything and gives it back when
the job ends, however it ends; a second job is refused with the holder's pid, host and start time.
A lock left by a job that was killed (SIGKILL, a lost node) is taken over when its pid is not
running on this host; on another host nobody can tell, so the message says which file to delete.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "lock.json"

logger = logging.getLogger(__name__)


class FolderInUseError(RuntimeError):
    """Another generation job holds the output folder."""


@contextlib.contextmanager
def generation_lock(work: Path, is_main_process: bool = True) -> Iterator[None]:
    """Hold ``work/lock.json`` for the ``with`` block (main process only: the other processes of the
    job share its lock). Folders made only to hold the lock are removed with it when the run wrote
    nothing else (a run refused or failed before its first file leaves no folder behind)."""
    if not is_main_process:
        yield
        return
    created = [folder for folder in (work.parent, work) if not folder.exists()]
    work.mkdir(parents=True, exist_ok=True)
    path = work / LOCK_FILE
    _take(path)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):  # not empty: the run wrote something, keep it
                folder.rmdir()


def _take(path: Path) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    for _attempt in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            other = _read(path)
            if other.get("host") == holder["host"] and not _running(other.get("pid")):
                logger.warning(
                    "taking over %s: the job that held it (pid %s, started %s) is not running any more",
                    path, other.get("pid"), other.get("started"),
                )  # fmt: skip
                path.unlink(missing_ok=True)
                continue
            raise FolderInUseError(
                f"{path.parent.parent} is being written by another generation job (pid {other.get('pid', '?')} on "
                f"{other.get('host', '?')}, started {other.get('started', '?')}): wait for it to finish or choose "
                f"another output_dir; if that job is not running any more, delete {path}"
            ) from None
        with os.fdopen(descriptor, "w") as handle:
            json.dump(holder, handle)
        return


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # being written by its holder this very moment, or cut short: treat as held


def _running(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return True  # unknown holder: assume it runs
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True
