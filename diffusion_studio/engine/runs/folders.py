"""What a folder is to the app, before it writes into one or deletes one.

A folder is a run only when its ``run.json`` says so (``is_run``). Everything that would
overwrite or delete a run folder asks here first, so the CLI and the GUI refuse the same
things with the same line:

    check_new_run_folder   a new run never goes into a folder that holds a run file
    prepare_resume         a resume repairs interrupted saves, then finds last.pt or says why not
    check_deletable        only a run, not training, holding nothing the app did not write
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ._common import CHECKPOINT_FILES, REPORTS_DIR, RUN_FILE, RUN_FILES, RUN_FORMAT, RunError
from .liveness import _run_lock, leftover_temp_files, recover_interrupted_writes, running_info, temp_target


def is_run(folder: str | os.PathLike) -> bool:
    """Whether ``folder``'s run.json (a regular file holding a JSON object with the run
    format) says the folder is a Diffusion Studio run."""
    f = Path(folder) / RUN_FILE
    try:
        if not f.is_file():
            return False
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == RUN_FORMAT


def run_files_in(folder: str | os.PathLike) -> list[str]:
    """The names of the run files ``folder`` holds (run.json, history.json, best.pt, last.pt,
    run.lock, running.pid, reports, and the atomic writer's temporary files of these), in
    that order; [] for a missing folder."""
    folder = Path(folder)
    found = [name for name in (*RUN_FILES, REPORTS_DIR) if os.path.lexists(folder / name)]
    return found + [t.name for t in leftover_temp_files(folder)]


def _listing(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (", …" if len(names) > limit else "")


def check_new_run_folder(folder: str | os.PathLike) -> Path:
    """Refuse, in one line, a folder for a NEW run that holds a run file of any kind (see
    ``run_files_in``): training into it would replace a run, with or without a last.pt.
    Call it before the new run writes anything there (``init_run``). Returns the folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{folder} is a file; choose a folder for the run")
    found = run_files_in(folder)
    if not found:
        return folder
    if (folder / "last.pt").exists():
        raise RunError(f"{folder} already holds a run ({_listing(found)}); resume it, or choose another folder")
    raise RunError(f"{folder} already holds a run ({_listing(found)}) with no last.pt to resume; "
                   f"{_keep_or_delete(folder, found)}, or choose another folder")


def _keep_or_delete(folder: Path, found: list[str]) -> str:
    """What to do with a run that cannot be resumed: start anew from its weights, or (none) delete it."""
    if any(n in found for n in CHECKPOINT_FILES):
        return f"keep it and start a new run from its weights (train --continue-from {folder} --out NEW)"
    return "it saved no weights: delete it (diffusion-studio runs delete) and train again"


def prepare_resume(run_dir: str | os.PathLike) -> tuple[Path, list[str]]:
    """Make a run folder ready to resume and return (its last.pt, the repairs done: one line each).

    First repairs what killed writers left (``recover_interrupted_writes``, under the run's
    lock): a whole last.pt that was never renamed into place is put there, partial temporary
    files are removed, so a leftover never blocks a resume. Then refuses, in one line that
    says what to do, a folder being trained, and one without last.pt: a run that has other
    files (best.pt, history.json ...) is never advised to train afresh into its folder."""
    import filelock

    folder = Path(run_dir)
    if not folder.is_dir():
        raise RunError(f"no run folder {folder}: {'it is a file' if folder.exists() else 'it does not exist'}")
    repairs: list[str] = []
    if leftover_temp_files(folder):
        lock = _run_lock(folder, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            pass  # a process trains here: the check below says so
        else:
            try:
                repairs = recover_interrupted_writes(folder)
            finally:
                lock.release()
    other = running_info(folder)
    if other is not None:
        raise RunError(f"{folder.name} is being trained by process {other.get('pid', '?')}; wait for it or stop it first")
    last = folder / "last.pt"
    if last.is_file():
        return last, repairs
    found = [n for n in run_files_in(folder) if temp_target(n) is None]
    if found:
        raise RunError(f"{folder} holds a run ({_listing(found)}) but no last.pt to resume from (its first save was "
                       f"interrupted, or the file was removed); {_keep_or_delete(folder, found)}")
    raise RunError(f"{folder} holds no run to resume; train a new run into it (without --resume)")


def _written_by_the_app(entry: Path) -> bool:
    if entry.name == REPORTS_DIR:
        return entry.is_dir() and not entry.is_symlink()
    return entry.name in RUN_FILES or temp_target(entry.name) is not None


def check_deletable(run_dir: str | os.PathLike) -> Path:
    """Refuse, in one line and before anything is removed, to delete a folder that is not a
    run (its run.json does not say so), a link, a run being trained, or a run that also
    holds files the app did not write (a user's file is never deleted). Returns the folder."""
    p = Path(run_dir)
    if p.is_symlink():
        raise RunError(f"{p} is a link; remove the link itself (the app deletes only real run folders)")
    if not p.is_dir():
        raise RunError(f"no run folder {p}: {'it is a file' if p.exists() else 'it does not exist'}")
    if not is_run(p):
        why = "its run.json is not one the app wrote" if os.path.lexists(p / RUN_FILE) else "it has no run.json"
        raise RunError(f"{p} is not a Diffusion Studio run ({why}); nothing deleted")
    if running_info(p) is not None:
        raise RunError(f"{p.name} is training; stop it before deleting it")
    try:
        foreign = sorted(c.name for c in p.iterdir() if not _written_by_the_app(c))
    except OSError as exc:
        raise RunError(f"cannot read {p}: {exc.strerror or exc}") from None
    if foreign:
        raise RunError(f"{p} also holds files the app did not write ({_listing(foreign)}); move them out of "
                       "the run first, or delete the folder yourself; nothing deleted")
    return p
