"""Reading runs: ``RunInfo`` for one folder (never raising for a damaged one), the list, name lookup."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from ..text import first_line

from ._common import HISTORY_FILE, REPORTS_DIR, RUN_FILE, RUN_FORMAT_VERSION, RunError, _FINISHED_TO_STATUS, _iso, _runs_dir, color_for, format_number
from .naming import _clean_tags
from .liveness import leftover_temp_files, running_info


@dataclass
class RunInfo:
    """What the runs list shows about one run folder.

    status is one of STATUSES; ``reason`` explains "damaged", "old version",
    an interrupted "stopped" or a "running" run (one line, for the user).
    Numbers are None when unknown. ``metrics`` maps metric names (from the
    latest reports/*/report.json) to floats.
    """

    path: Path
    name: str
    status: str
    reason: str = ""
    run_id: str = ""
    created: str = ""  # ISO 8601 UTC, from run.json (or the folder's time)
    description: str = ""
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    preset: str = ""
    model: dict = field(default_factory=dict)
    schedule: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    epochs_done: int = 0
    epochs_planned: int | None = None
    best_val_loss: float | None = None
    best_epoch: int | None = None
    early_stop_epoch: int | None = None
    last_train_loss: float | None = None
    last_val_loss: float | None = None
    train_seconds: float | None = None
    finished_reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_report: str = ""  # the report folder's name the metrics came from
    temp_files: list = field(default_factory=list)  # leftovers of killed writers (removed at the next start)
    has_best: bool = False
    has_last: bool = False

    @property
    def color(self) -> str:
        """The run's plot colour (stable: a hash of its name)."""
        return color_for(self.name)

    @property
    def resumable(self) -> bool:
        """A last.pt exists and nothing trains into the folder."""
        return self.has_last and self.status not in ("running", "damaged")

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint to sample from: best.pt, else last.pt, else None."""
        if self.has_best:
            return self.path / "best.pt"
        if self.has_last:
            return self.path / "last.pt"
        return None

    def key_settings(self) -> str:
        """e.g. "cosine T300 · ch32 · EMA 0.999 · lr 1e-3 · bs128" ("" when unknown)."""
        parts = []
        s, m, t = self.schedule, self.model, self.train
        if s:
            parts.append(f"{s.get('kind', '?')} T{s.get('timesteps', '?')}")
        if m:
            parts.append(f"ch{m.get('base_channels', '?')}" + (f" cond{m['num_classes']}" if m.get("num_classes") else ""))
        if t:
            ema = t.get("ema_decay")
            parts.append(f"EMA {format_number(ema)}" if ema else "no EMA")
            if t.get("lr") is not None:
                parts.append(f"lr {format_number(float(t['lr']))}")
            if t.get("batch_size") is not None:
                parts.append(f"bs{t['batch_size']}")
        return " · ".join(parts)

    def epochs_text(self) -> str:
        if self.epochs_planned:
            return f"{self.epochs_done}/{self.epochs_planned}"
        return str(self.epochs_done) if self.epochs_done else ""

    def metrics_text(self, limit: int = 3, short: bool = True) -> str:
        """e.g. "FD 12.5; FID 30.2" (short: the name up to its first " (")."""
        items = list(self.metrics.items())[:limit]
        return "; ".join(f"{k.split(' (')[0] if short else k} {v:.4g}" for k, v in items)

    def settings_flat(self) -> dict[str, Any]:
        """All settings as {"schedule.kind": ..., "model.base_channels": ..., "train.lr": ...}."""
        out: dict[str, Any] = {}
        for section, d in (("schedule", self.schedule), ("model", self.model), ("train", self.train)):
            for k, v in d.items():
                out[f"{section}.{k}"] = v
        return out


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _not_a_file(path: Path) -> str:
    """Why ``path`` (which exists) is not a regular file to read ("" when it is): a folder, a
    FIFO or a device named best.pt is never opened (reading a FIFO would wait for ever)."""
    if path.is_file():
        return ""
    return f"{path.name} is {'a folder' if path.is_dir() else 'not a regular file'}, not the file the app wrote"


def _check_checkpoint_file(path: Path) -> str:
    """"" when ``path`` looks like an intact torch checkpoint (a readable zip
    archive: cheap, catches garbage and truncation), else why not."""
    if _not_a_file(path):
        return _not_a_file(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        return f"{path.name} is damaged ({exc})" if str(exc) else f"{path.name} is damaged"
    if not any(n.endswith("data.pkl") for n in names):
        return f"{path.name} is not a PyTorch checkpoint"
    return ""


def _read_metrics(run_dir: Path) -> tuple[dict[str, float], str]:
    """Metrics of the newest reports/<name>/report.json ({} when none is readable)."""
    rdir = run_dir / REPORTS_DIR
    if not rdir.is_dir():
        return {}, ""
    candidates = []
    for f in rdir.glob("*/report.json"):
        with contextlib.suppress(OSError):
            candidates.append((f.stat().st_mtime, f))
    for _, f in sorted(candidates, key=lambda c: c[0], reverse=True):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        metrics = data.get("metrics") if isinstance(data, dict) else None
        if isinstance(metrics, list):  # engine.report's layout: [{"name": ..., "value": ...}, ...]
            metrics = {m.get("name") or m.get("key"): m.get("value") for m in metrics
                       if isinstance(m, dict) and (m.get("name") or m.get("key"))}
        if not isinstance(metrics, dict):
            continue
        out: dict[str, float] = {}
        for k, v in metrics.items():
            if isinstance(v, dict):
                v = v.get("value")
            fv = _finite(v) if not isinstance(v, bool) else None
            if fv is not None:
                out[str(k)] = fv
        if out:
            return out, f.parent.name
    return {}, ""


def _fill_from_history(info: RunInfo, h: dict) -> None:
    epochs = [e for e in h.get("epochs", []) if isinstance(e, dict)]
    info.epochs_done = max([int(e.get("epoch", 0)) for e in epochs], default=0)
    if epochs:
        info.last_train_loss = _finite(epochs[-1].get("train_loss"))
        info.last_val_loss = _finite(epochs[-1].get("val_loss"))
    info.best_val_loss = _finite(h.get("best_val_loss"))
    be = h.get("best_epoch")
    info.best_epoch = int(be) if isinstance(be, (int, float)) and be else None
    if info.best_val_loss is None and epochs:  # older history files: recompute
        vals = [(_finite(e.get("val_loss")), int(e.get("epoch", 0))) for e in epochs]
        vals = [v for v in vals if v[0] is not None]
        if vals:
            info.best_val_loss, info.best_epoch = min(vals)
    info.train_seconds = _finite(h.get("train_seconds"))
    if info.train_seconds is None and epochs:
        info.train_seconds = sum(_finite(e.get("seconds")) or 0.0 for e in epochs)
    info.finished_reason = h.get("finished_reason")
    for section in ("model", "schedule", "train"):
        if isinstance(h.get(section), dict):
            setattr(info, section, dict(h[section]))
    meta = h.get("meta") if isinstance(h.get("meta"), dict) else {}
    info.preset = str(meta.get("preset", "")) if meta.get("preset") else info.preset
    ep = info.train.get("epochs")
    info.epochs_planned = int(ep) if isinstance(ep, int) else None


def _read_run_file(info: RunInfo, problems: list[str]) -> None:
    """run.json: the run's id, its creation time and the user's description, tags and notes."""
    rf = info.path / RUN_FILE
    if os.path.lexists(rf) and _not_a_file(rf):
        problems.append(_not_a_file(rf))
    elif rf.exists():
        try:
            meta = json.loads(rf.read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
            if int(meta.get("version", 1)) > RUN_FORMAT_VERSION:
                problems.append(f"{RUN_FILE} was written by a newer Diffusion Studio; update the app to read it")
            info.run_id = str(meta.get("id", ""))
            info.created = str(meta.get("created") or info.created)
            info.description = str(meta.get("description", ""))
            info.tags = _clean_tags(meta.get("tags") or []) if isinstance(meta.get("tags"), list) else []
            info.notes = str(meta.get("notes", ""))
        except (OSError, ValueError, TypeError, RunError) as exc:
            problems.append(f"{RUN_FILE} is unreadable ({exc})")


def _check_checkpoints(info: RunInfo, problems: list[str]) -> None:
    """best.pt and last.pt: a cheap integrity check of each that exists (has_best, has_last)."""
    for name in ("best.pt", "last.pt"):
        f = info.path / name
        if os.path.lexists(f):
            why = _check_checkpoint_file(f)
            if why:
                problems.append(why)
            elif name == "best.pt":
                info.has_best = True
            else:
                info.has_last = True


def _read_history(info: RunInfo, problems: list[str], old: list[str]) -> bool:
    """history.json, what the trainer writes: fill ``info`` from it and note the fields an
    older app left out. False when there is no readable history.json."""
    hf = info.path / HISTORY_FILE
    history: dict | None = None
    if os.path.lexists(hf) and _not_a_file(hf):
        problems.append(_not_a_file(hf))
    elif hf.exists():
        try:
            history = json.loads(hf.read_text(encoding="utf-8"))
            if not isinstance(history, dict) or not isinstance(history.get("epochs"), list):
                raise ValueError("no list of epochs")
        except (OSError, ValueError) as exc:
            history = None
            problems.append(f"{HISTORY_FILE} is unreadable ({first_line(exc)})")
    if history is None:
        return False
    try:
        _fill_from_history(info, history)
    except (TypeError, ValueError, AttributeError) as exc:
        problems.append(f"{HISTORY_FILE} has unexpected contents ({exc})")
    for key in ("finished_reason", "train_seconds", "best_epoch", "train"):
        if key not in history:
            old.append(f"{HISTORY_FILE} has no {key!r}")
            break
    return True


def _read_checkpoint_history(info: RunInfo, problems: list[str]) -> None:
    """A run without history.json (an older app kept only checkpoints): fill ``info`` from
    last.pt, else best.pt."""
    try:
        from ..storage.checkpoint import load_checkpoint

        p = load_checkpoint(info.path / ("last.pt" if info.has_last else "best.pt"))
        h = dict(p.get("history") or {})
        h.setdefault("best_epoch", (p.get("best") or {}).get("epoch"))
        h.setdefault("best_val_loss", (p.get("best") or {}).get("val_loss"))
        for section in ("model", "schedule", "train"):
            h.setdefault(section, p.get(section))
        h.update({k: v for k, v in (p.get("meta") or {}).items() if k in ("finished_reason", "train_seconds")})
        h["epochs"] = h.get("epochs") if isinstance(h.get("epochs"), list) else []
        _fill_from_history(info, h)
    except Exception as exc:  # noqa: BLE001 - a damaged run must not break the list
        problems.append(first_line(exc))


def _set_status(info: RunInfo, problems: list[str], old: list[str]) -> None:
    """status and reason: running, else damaged, else how the training ended (an "old version"
    when an older app made the run)."""
    running = running_info(info.path)
    if running is not None:
        info.status = "running"
        info.reason = f"training in process {running.get('pid')} since {running.get('started', '?')}"
        return
    if problems:
        info.status, info.reason = "damaged", "; ".join(problems)
        return
    reason = info.finished_reason
    if reason in _FINISHED_TO_STATUS:
        info.status = _FINISHED_TO_STATUS[reason]
        if reason == "early_stopped":
            info.early_stop_epoch = info.epochs_done or None
    elif info.epochs_done > 0 or info.has_last:
        info.status = "stopped"
        info.reason = "interrupted: the training process ended without finishing" + (
            "; resume it from last.pt" if info.has_last else ""
        )
    else:
        info.status = "empty"
        info.reason = "no epoch finished yet"
    if old and info.status != "empty":
        info.reason = f"{info.status}, made by an older version ({', '.join(old)})"
        info.status = "old version"


def read_run(run_dir: str | os.PathLike) -> RunInfo:
    """Read one run folder into a RunInfo. Never raises for unreadable files:
    they give status "damaged" with the reason (see RunInfo)."""
    path = Path(run_dir)
    info = RunInfo(path=path, name=path.name, status="empty")
    try:
        info.created = _iso(_dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc))
    except OSError:
        pass
    problems: list[str] = []  # what makes the run "damaged", in the order the files are read
    old: list[str] = []  # what shows an older app made it
    _read_run_file(info, problems)
    _check_checkpoints(info, problems)
    has_history = _read_history(info, problems, old)
    if not has_history and not problems and (info.has_best or info.has_last):
        old.append(f"no {HISTORY_FILE}")  # an older app kept only checkpoints: read what we can from one
        _read_checkpoint_history(info, problems)
    info.metrics, info.metrics_report = _read_metrics(path)
    info.temp_files = [p.name for p in leftover_temp_files(path)]
    _set_status(info, problems, old)
    return info



def _is_run_candidate(p: Path) -> bool:
    return p.is_dir() and not p.name.startswith(".")


# the round folders of a distillation (``tasks.distill``): guidance-16, steps-8, steps-4 ...
_ROUND_NAME = re.compile(r"^(guidance|steps)-\d+$")


def distillation_rounds(folder: Path) -> list[Path]:
    """The round folders of a distillation folder, most steps first ([] for any other folder:
    a run folder holds checkpoints itself, a distillation only its rounds)."""
    if (folder / "run.json").exists() or (folder / "last.pt").exists():
        return []
    rounds = [p for p in folder.iterdir() if p.is_dir() and _ROUND_NAME.match(p.name)]
    return sorted(rounds, key=lambda p: -int(p.name.split("-")[1]))


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[RunInfo]:
    """Every run folder in ``runs_dir`` (default ``paths.runs_dir()``), oldest
    name first; a distillation folder's rounds are listed as "<distillation>/<round>". A missing runs folder gives []; a damaged run is listed with
    status "damaged" and never stops the others from loading."""
    root = _runs_dir(runs_dir)
    if not root.exists():
        return []
    if not root.is_dir():
        raise RunError(f"the runs folder {root} is a file; choose a folder with --runs-dir")
    out = []
    try:
        children = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise RunError(f"cannot read the runs folder {root}: {exc}") from exc
    for p in children:
        try:
            if not _is_run_candidate(p):
                continue
            rounds = distillation_rounds(p)
            for r in rounds:  # a distillation's rounds are runs, named "<distillation>/<round>"
                info = read_run(r)
                info.name = f"{p.name}/{r.name}"
                out.append(info)
            if not rounds:
                out.append(read_run(p))
        except Exception as exc:  # noqa: BLE001 - last resort: never let one run break the list
            out.append(RunInfo(path=p, name=p.name, status="damaged", reason=f"unreadable ({exc})"))
    return out


def given_as_path(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a folder by its path rather than a run by its name: a Path
    object, or text with a folder separator or a leading ``~`` (``./baseline``, ``~/runs/a``,
    ``/data/run``). A bare ``baseline`` is a run name, never a folder of the working directory."""
    if not isinstance(spec, str):
        return True
    seps = {os.sep, os.altsep or os.sep}
    return any(c in spec for c in seps) or spec.startswith("~") or spec in (".", "..")


def resolve_run(spec: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Path:
    """The folder a run is named by: a path when ``spec`` is given as one (``given_as_path``),
    else the run of exactly that name inside ``runs_dir`` (default: the app's runs folder).

    Never a prefix or a part of a name, and never a folder of the working directory that
    happens to have the name: ``runs delete nal`` must not reach ``mnist-final-v2``. Raises
    RunError saying which names come close."""
    if given_as_path(spec):
        path = Path(spec).expanduser()
        if path.is_dir():
            return path
        raise RunError(f"no run folder {path}: {'it is a file' if path.exists() else 'it does not exist'}")
    name = str(spec)
    root = _runs_dir(runs_dir)
    candidate = root / name
    if name and not name.startswith(".") and candidate.is_dir():
        return candidate
    try:
        names = sorted(c.name for c in root.iterdir() if _is_run_candidate(c)) if root.is_dir() else []
    except OSError:
        names = []
    close = [n for n in names if name.lower() in n.lower()] if name else []
    if close:
        hint = f"; did you mean {', '.join(close[:4])}? give the whole name"
    elif names:
        hint = f"; runs there: {', '.join(names[-5:])}"
    else:
        hint = " (it holds no runs)"
    raise RunError(f"no run {name!r} in {root}{hint}")
