"""Is a run training? The OS file lock a training process holds for the run's whole life."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from pathlib import Path
from typing import Iterator


from ..storage.atomic import write_json_atomic

from ._common import CHECKPOINT_FILES, HISTORY_FILE, LOCK_FILE, RUN_FILE, RUN_FILES, RUNNING_FILE, RunError, _iso, _utc_now


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


# the atomic writer's temporary files: ".NAME.<random>.tmp" beside NAME (``storage.atomic``)
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]+\.tmp$")
_WRITE_CHECK = "write-check"  # ``atomic.check_writable``'s probe
_RECOVERABLE = (*CHECKPOINT_FILES, HISTORY_FILE, RUN_FILE)  # (running.pid is only ever removed)


def temp_target(name: str) -> str | None:
    """The run file a temporary file of the atomic writer was to become ("last.pt" for
    ``.last.pt.k2j4_x9a.tmp``), or None when ``name`` is not one (a user's file)."""
    m = _TEMP_NAME.match(name)
    return m["target"] if m and m["target"] in (*RUN_FILES, _WRITE_CHECK) else None


def leftover_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Temporary files of the atomic writer (``.NAME.*.tmp`` for a run file NAME) that a killed
    writer or a full disk left in ``run_dir``."""
    run_dir = Path(run_dir)
    try:
        return sorted(p for p in run_dir.iterdir() if temp_target(p.name) and p.is_file() and not p.is_symlink())
    except OSError:
        return []


def _complete(temp: Path, target: str) -> bool:
    """Whether ``temp`` holds a whole, valid ``target``: a checkpoint that passes the validator
    (its checksum included), or a JSON object."""
    try:
        if target in CHECKPOINT_FILES:
            from ..storage.checkpoint import load_checkpoint

            load_checkpoint(temp)
        else:
            if not isinstance(json.loads(temp.read_text(encoding="utf-8")), dict):
                return False
    except Exception:  # noqa: BLE001 - anything unreadable is a partial write
        return False
    return True


def recover_interrupted_writes(run_dir: str | os.PathLike) -> list[str]:
    """Clean up after writers that were killed part-way; call it holding the run's lock
    (``mark_running`` does), so no writer is alive. Returns one line per repair, for the user.

    A temporary file whose target is missing and which holds a whole, valid file (the kill
    came after the write, before the rename: a checkpoint passes the validator, checksum
    and all) is put in place: nothing is lost. Every other temporary file of the atomic
    writer is a partial write and is removed. Files that are not the writer's are never
    touched, and an existing target is never replaced."""
    run_dir = Path(run_dir)
    temps = leftover_temp_files(run_dir)
    done: list[str] = []
    for target in sorted({temp_target(t.name) for t in temps}):
        mine = [t for t in temps if temp_target(t.name) == target]
        with contextlib.suppress(OSError):
            mine.sort(key=lambda t: t.stat().st_mtime, reverse=True)
        if target in _RECOVERABLE and not (run_dir / target).exists():
            whole = next((t for t in mine if _complete(t, target)), None)
            if whole is not None:
                os.replace(whole, run_dir / target)
                mine.remove(whole)
                done.append(f"recovered {target} from a save interrupted just before it was put in place")
        removed = []
        for t in mine:
            with contextlib.suppress(OSError):
                t.unlink()
                removed.append(t.name)
        if removed:
            done.append(f"removed {len(removed)} partial {target} file{'s' if len(removed) > 1 else ''} left by "
                        f"an interrupted save ({', '.join(removed[:2])})")
    return done


@contextlib.contextmanager
def mark_running(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Mark ``run_dir`` as being trained by this process while the block runs.

    Takes an OS file lock on ``run.lock`` for the whole block (two processes
    started together cannot both pass: the operating system grants it to one),
    repairs what earlier killed writers left behind (``recover_interrupted_writes``), writes
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
        recover_interrupted_writes(run_dir)  # we hold the lock: no writer is alive
        write_json_atomic(marker, {"pid": os.getpid(), "host": socket.gethostname(), "started": _iso(_utc_now())})
        yield run_dir
    finally:
        with contextlib.suppress(OSError):
            marker.unlink()
        lock.release()
