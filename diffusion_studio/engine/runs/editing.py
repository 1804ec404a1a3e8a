"""Editing runs: rename, tags, notes, delete (only a folder whose run.json says it is a run)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path


from ..storage.atomic import write_json_atomic

from ._common import CHECKPOINT_FILES, HISTORY_FILE, RUN_FILE, RUN_FORMAT, RUN_FORMAT_VERSION, RunError, _NAME_OK
from .naming import _clean_tags
from .liveness import running_info
from .catalogue import read_run, resolve_run
from .folders import check_deletable, is_run


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


def _require_run_dir(run: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Path:
    """The run folder ``run`` names (``resolve_run``), refused unless it is a run: its run.json
    says so, or it is an older version's run folder (a checkpoint or history.json, no run.json)."""
    p = resolve_run(run, runs_dir)
    if not (is_run(p) or any(os.path.lexists(p / name) for name in (HISTORY_FILE, *CHECKPOINT_FILES))):
        raise RunError(f"{p} is not a Diffusion Studio run (it has no run.json, history.json or checkpoint)")
    return p


def rename_run(run: str | os.PathLike, new_name: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """Rename a run (its folder and run.json); returns the new folder. ``run``: a run folder
    (a Path, or text given as a path) or a run's exact name in ``runs_dir`` (``resolve_run``).

    Names: letters, digits, space and ``._+-=@``, at most 120 characters, not
    starting with a dot. Refuses while the run is training or when the name is taken."""
    p = _require_run_dir(run, runs_dir)
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


def set_tags(run: str | os.PathLike, tags: list[str] | tuple[str, ...],
             runs_dir: str | os.PathLike | None = None) -> list[str]:
    """Replace the run's tags (stripped, de-duplicated, order kept); returns them."""
    p = _require_run_dir(run, runs_dir)
    data = _read_run_json(p)
    data["tags"] = _clean_tags(tags)
    write_json_atomic(p / RUN_FILE, data)
    return data["tags"]


def set_notes(run: str | os.PathLike, notes: str, runs_dir: str | os.PathLike | None = None) -> None:
    """Replace the run's free-text notes."""
    p = _require_run_dir(run, runs_dir)
    data = _read_run_json(p)
    data["notes"] = str(notes)
    write_json_atomic(p / RUN_FILE, data)


def deletable_runs(runs: list[str | os.PathLike], runs_dir: str | os.PathLike | None = None) -> list[Path]:
    """The run folders ``runs`` name (``resolve_run``: exact names in ``runs_dir``, paths only
    when given as paths), each checked by ``check_deletable``, so a list is refused whole
    before any of it is deleted. Duplicates are dropped."""
    out: list[Path] = []
    for spec in runs:
        p = check_deletable(resolve_run(spec, runs_dir))
        if all(p.resolve() != q.resolve() for q in out):
            out.append(p)
    return out


def delete_run(run: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Path:
    """Delete a run folder and everything in it; returns the folder. The caller asks the user first.

    ``run``: a run folder (a Path, or text given as a path) or a run's exact name in
    ``runs_dir``. Refuses (``check_deletable``) anything but a run whose run.json says so,
    a run being trained, and a run that also holds files the app did not write: a user's
    file is never deleted."""
    p = check_deletable(resolve_run(run, runs_dir))
    try:
        shutil.rmtree(p)
    except OSError as exc:
        raise RunError(f"could not delete all of {p} ({exc.strerror or exc}); what is left is still there") from None
    return p
