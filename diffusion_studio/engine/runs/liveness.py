"""Is a run training? The OS file lock a training process holds for the run's whole life."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Iterator


from ..storage.atomic import write_json_atomic

from ._common import LOCK_FILE, RUNNING_FILE, RunError, _iso, _utc_now


def _run_lock(run_dir: Path, timeout: float):
    import filelock

    return filelock.FileLock(str(run_dir / LOCK_FILE), timeout=timeout, thread_local=False)


def _lock_is_held(run_dir: Path) -> bool:
    """Whether some process (this one included) holds ``run_dir``'s OS lock now."""
    import filelock

    if not (run_dir / LOCK_FILE).exists():
        return False
    lock = _run_lock(run_dir, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


def running_info(run_dir: str | os.PathLike) -> dict | None:
    """{"pid", "host", "started"} when a process trains into ``run_dir`` now; else None.

    The truth is the OS file lock on ``run.lock``, held for the run's whole life
    (``mark_running``): the operating system drops it when its process ends, so
    a crash leaves nothing that blocks, and a reused PID cannot look alive.
    ``running.pid`` only says who holds it: without the lock it is stale (a
    crash, or an older version's marker) and ignored, even when its PID has been
    reused by another process."""
    run_dir = Path(run_dir)
    try:
        info = json.loads((run_dir / RUNNING_FILE).read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            info = {}
    except (OSError, ValueError):
        info = {}
    if not _lock_is_held(run_dir):
        return None
    return info or {"pid": "?", "host": socket.gethostname()}


def leftover_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Temporary files (``.NAME.*.tmp``) that a killed writer or a full disk left in ``run_dir``."""
    run_dir = Path(run_dir)
    try:
        return sorted(p for p in run_dir.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")
                      and p.is_file())
    except OSError:
        return []


@contextlib.contextmanager
def mark_running(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Mark ``run_dir`` as being trained by this process while the block runs.

    Takes an OS file lock on ``run.lock`` for the whole block (two processes
    started together cannot both pass: the operating system grants it to one),
    removes the temporary files earlier killed writers left behind, writes
    ``running.pid`` (who holds the lock, for display) and removes it on exit,
    even on errors. A crashed process's lock disappears with the process.
    Raises RunError when another process already trains into the folder. Use
    it around the whole training:

        with mark_running(run_dir):
            for record in Trainer(..., run_dir=run_dir).run(): ...
    """
    import filelock

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    def refuse() -> RunError:
        other = running_info(run_dir) or {}
        return RunError(
            f"{run_dir.name} is already being trained by process {other.get('pid', '?')} on "
            f"{other.get('host', 'this computer')}; wait for it or stop it first"
        )

    # (a short timeout: another process may be peeking at the lock in running_info)
    lock = _run_lock(run_dir, timeout=0.2)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise refuse() from None
    marker = run_dir / RUNNING_FILE
    try:
        for tmp in leftover_temp_files(run_dir):  # we hold the lock: no writer is alive
            with contextlib.suppress(OSError):
                tmp.unlink()
        write_json_atomic(marker, {"pid": os.getpid(), "host": socket.gethostname(), "started": _iso(_utc_now())})
        yield run_dir
    finally:
        with contextlib.suppress(OSError):
            marker.unlink()
        lock.release()
