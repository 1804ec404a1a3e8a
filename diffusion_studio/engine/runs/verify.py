"""Verifying a run: every file read in full and checked, not just listed.

``list_runs`` looks at a run cheaply (is each checkpoint a readable archive?) so that a
long list stays fast. ``verify_run`` reads each checkpoint through the checkpoint validator
(structure, checksum, finite values, the network its configuration describes), reads
history.json and run.json, and checks that best.pt, last.pt and history.json describe the
same training (a save killed part-way leaves them at different epochs). The CLI's
``runs verify`` and the Runs panel show its result.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..text import first_line
from ._common import CHECKPOINT_FILES, HISTORY_FILE, RUN_FILE
from .catalogue import _not_a_file
from .folders import is_run
from .liveness import leftover_temp_files


@dataclass(frozen=True)
class FileCheck:
    """One file's verdict: ``name`` (e.g. "best.pt"), ``ok`` (False: damaged or inconsistent)
    and one line for the user (what it holds, or what is wrong and what to do)."""

    name: str
    ok: bool
    message: str


def verify_checkpoint(path: str | os.PathLike) -> tuple[FileCheck, dict | None]:
    """Check one checkpoint file in full (``load_checkpoint``: the validator, checksum included).
    Returns its verdict and, when it passed, its contents."""
    from ..storage.checkpoint import CHECKSUM_KEY, CheckpointError, load_checkpoint

    path = Path(path)
    try:
        payload = load_checkpoint(path)
    except CheckpointError as exc:
        return FileCheck(path.name, False, first_line(exc)), None
    sealed = "checksum verified" if payload.get(CHECKSUM_KEY) else "no checksum (saved by an older version)"
    epoch = payload.get("epoch")
    return FileCheck(path.name, True, (f"epoch {epoch}, " if epoch is not None else "") + sealed), payload


def _history(path: Path) -> tuple[FileCheck, dict | None]:
    why = _not_a_file(path)
    if why:
        return FileCheck(path.name, False, why), None
    try:
        h = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(h, dict) or not isinstance(h.get("epochs"), list):
            raise ValueError("it holds no list of epochs")
        epochs = [float(e["epoch"]) for e in h["epochs"]]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return FileCheck(path.name, False, f"unreadable ({first_line(exc)}); the run's curves and results are lost "
                                           "with it unless a checkpoint still holds them"), None
    return FileCheck(path.name, True, f"{len(epochs)} epoch{'s' if len(epochs) != 1 else ''} recorded"), h


def _best_epoch(payload: dict | None) -> float | None:
    best = (payload or {}).get("best") or {}
    return best.get("epoch") if isinstance(best.get("epoch"), (int, float)) else None


def _agreement(payloads: dict[str, dict | None], history: dict | None) -> list[FileCheck]:
    """Whether best.pt, last.pt and history.json describe the same training."""
    out = []
    last = payloads.get("last.pt")
    if last is None:
        return out
    trained = float(last.get("epoch") or 0)
    if history is not None:
        recorded = max((float(e["epoch"]) for e in history["epochs"]), default=0.0)
        if int(recorded) < trained:
            out.append(FileCheck(HISTORY_FILE, False, f"stops at epoch {recorded:g} while last.pt is at epoch "
                                                      f"{trained:g}: a save was interrupted (last.pt holds the "
                                                      "whole history)"))
    best = payloads.get("best.pt")
    if best is not None and _best_epoch(best) != _best_epoch(last):
        out.append(FileCheck("best.pt", False, f"holds epoch {_best_epoch(best)} but the run's best epoch is "
                                               f"{_best_epoch(last)} (last.pt): a save was interrupted"))
    return out


def verify_run(run_dir: str | os.PathLike) -> list[FileCheck]:
    """Every file of a run checked in full: run.json, best.pt, last.pt (the checkpoint
    validator, checksum included), history.json, whether they agree, and temporary files
    left by interrupted saves. Never raises for a damaged run: that is what it reports."""
    folder = Path(run_dir)
    checks: list[FileCheck] = []
    rf = folder / RUN_FILE
    if os.path.lexists(rf):
        checks.append(FileCheck(RUN_FILE, True, "names the folder a run") if is_run(folder)
                      else FileCheck(RUN_FILE, False, _not_a_file(rf) or "unreadable, or not the app's run file"))
    payloads: dict[str, dict | None] = {}
    for name in CHECKPOINT_FILES:
        if os.path.lexists(folder / name):
            check, payloads[name] = verify_checkpoint(folder / name)
            checks.append(check)
    history = None
    if os.path.lexists(folder / HISTORY_FILE):
        check, history = _history(folder / HISTORY_FILE)
        checks.append(check)
    checks += _agreement(payloads, history)
    checks += [FileCheck(t.name, True, "a partial file left by an interrupted save; removed when the run "
                                       "trains or resumes") for t in leftover_temp_files(folder)]
    if not checks:
        checks.append(FileCheck(folder.name, False, "holds no run files"))
    return checks
