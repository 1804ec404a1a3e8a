"""Editing runs: rename, tags, notes, delete (with a check that the folder is a run)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path


from ..storage.atomic import write_json_atomic

from ._common import HISTORY_FILE, REPORTS_DIR, RUNNING_FILE, RUN_FILE, RUN_FORMAT, RUN_FORMAT_VERSION, RunError, _NAME_OK
from .naming import _clean_tags
from .liveness import running_info
from .catalogue import read_run


def _read_run_json(run_dir: Path) -> dict:
    f = run_dir / RUN_FILE
    if not f.exists():
        return {"format": RUN_FORMAT, "version": RUN_FORMAT_VERSION, "id": uuid.uuid4().hex[:12], "name": run_dir.name,
                "created": read_run(run_dir).created, "description": "", "tags": [], "notes": ""}
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as exc:
        raise RunError(f"{f} is damaged ({exc}); delete it to start its name, tags and notes afresh") from exc


def _require_run_dir(run_dir: str | os.PathLike) -> Path:
    p = Path(run_dir)
    if not p.is_dir():
        raise RunError(f"{p} is not a run folder")
    return p


def rename_run(run_dir: str | os.PathLike, new_name: str) -> Path:
    """Rename a run (its folder and run.json); returns the new folder.

    Names: letters, digits, space and ``._+-=@``, at most 120 characters, not
    starting with a dot. Refuses while the run is training or when the name is taken."""
    p = _require_run_dir(run_dir)
    new_name = str(new_name).strip()
    if not _NAME_OK.match(new_name):
        raise RunError(
            f"{new_name!r} is not a usable run name: use letters, digits, spaces and . _ + - = @ "
            "(at most 120 characters, starting with a letter or digit)"
        )
    if new_name == p.name:
        return p
    if running_info(p) is not None:
        raise RunError(f"{p.name} is training; rename it when it has stopped")
    target = p.parent / new_name
    if target.exists():
        raise RunError(f"a run named {new_name!r} already exists; choose another name")
    data = _read_run_json(p)
    os.rename(p, target)
    data["name"] = new_name
    write_json_atomic(target / RUN_FILE, data)
    return target


def set_tags(run_dir: str | os.PathLike, tags: list[str] | tuple[str, ...]) -> list[str]:
    """Replace the run's tags (stripped, de-duplicated, order kept); returns them."""
    p = _require_run_dir(run_dir)
    data = _read_run_json(p)
    data["tags"] = _clean_tags(tags)
    write_json_atomic(p / RUN_FILE, data)
    return data["tags"]


def set_notes(run_dir: str | os.PathLike, notes: str) -> None:
    """Replace the run's free-text notes."""
    p = _require_run_dir(run_dir)
    data = _read_run_json(p)
    data["notes"] = str(notes)
    write_json_atomic(p / RUN_FILE, data)


_RUN_MARKERS = (RUN_FILE, HISTORY_FILE, "best.pt", "last.pt", RUNNING_FILE, REPORTS_DIR)


def delete_run(run_dir: str | os.PathLike) -> None:
    """Delete a run folder and everything in it. The caller asks the user first.

    Refuses while the run trains, and refuses folders that do not look like a
    run (no run.json, history.json, checkpoint or reports, and not empty), so a
    mistyped path cannot delete unrelated files."""
    p = _require_run_dir(run_dir)
    if running_info(p) is not None:
        raise RunError(f"{p.name} is training; stop it before deleting it")
    try:
        children = list(p.iterdir())
    except OSError as exc:
        raise RunError(f"cannot read {p}: {exc}") from exc
    if children and not any((p / m).exists() for m in _RUN_MARKERS):
        raise RunError(f"{p} does not look like a training run (no {RUN_FILE}, {HISTORY_FILE} or checkpoint); not deleting it")
    shutil.rmtree(p)
