"""Training runs: one folder per run under a runs directory, listed, compared, managed.

A run folder (``RUNS_DIR/<name>/``) holds what the Trainer writes there
(``best.pt``, ``last.pt``, ``history.json``), evaluation reports
(``reports/<name>/report.json``) and two small files of this module:

    run.json      who the run is for the user: name, tags, notes, created time,
                  a short description of its settings (written atomically)
    run.lock      the OS file lock a training process holds for its whole life
                  (``mark_running``); the operating system drops it with the process
    running.pid   who holds the lock, for display: JSON {"pid", "host", "started"}

``list_runs`` never raises for a bad run: a run whose files cannot be read is
listed with status "damaged" and the reason. Statuses (``STATUSES``):

    running        a process holds run.lock
    completed      trained all its epochs
    early stopped  the validation loss stopped improving for ``patience`` epochs
    stopped        stopped by the user, or interrupted (crash, killed process);
                   resumable from last.pt
    diverged       the loss became NaN/inf
    empty          no epoch finished yet (and nothing is training)
    damaged        history.json, a checkpoint or run.json cannot be read
    old version    made by an older app (no history.json, or one without the
                   fields this version writes); shown with what could be read

No Qt here: the CLI (``diffusion-studio runs``) and the GUI's Runs panel share it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import re
import shutil
import socket
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import paths
from .atomic import write_json_atomic

RUN_FILE = "run.json"
RUNNING_FILE = "running.pid"
LOCK_FILE = "run.lock"
HISTORY_FILE = "history.json"
REPORTS_DIR = "reports"
RUN_FORMAT = "diffusion-studio-run"
RUN_FORMAT_VERSION = 1

STATUSES = ("running", "completed", "early stopped", "time budget", "stopped", "diverged", "empty", "damaged", "old version")
_FINISHED_TO_STATUS = {
    "completed": "completed",
    "early_stopped": "early stopped",
    "budget": "time budget",
    "stopped": "stopped",
    "diverged": "diverged",
}

# Colours for runs in plots: colour-blind friendly (Okabe-Ito, then Tableau), as hex.
PALETTE = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
    "#4E79A7", "#F28E2B", "#59A14F", "#E15759", "#B07AA1", "#76B7B2", "#9C755F",
)

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-=@ ]{0,119}$")


class RunError(RuntimeError):
    """A run operation could not be done; the message says what to do."""


# ------------------------------------------------------------------ helpers
def default_runs_dir() -> Path:
    """The user's runs folder (``paths.runs_dir()``; honours DIFFUSION_STUDIO_HOME)."""
    return paths.runs_dir()


def _runs_dir(runs_dir: str | os.PathLike | None) -> Path:
    return Path(runs_dir).expanduser() if runs_dir is not None else default_runs_dir()


def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _iso(t: _dt.datetime) -> str:
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def color_for(key: str) -> str:
    """A stable colour (hex "#RRGGBB") for a run: a hash of ``key`` picks from PALETTE.

    The same run name gets the same colour in every plot, session and program."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return PALETTE[int.from_bytes(digest[:4], "big") % len(PALETTE)]


def format_number(x: float) -> str:
    """Compact number for names and tables: 0.0005 -> "5e-4", 0.999 -> "0.999", 128 -> "128"."""
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    if x != 0 and abs(x) < 1e-2:
        mant, exp = f"{x:.3e}".split("e")
        mant = mant.rstrip("0").rstrip(".")
        return f"{mant}e{int(exp)}"
    return f"{x:.6g}"


def format_duration(seconds: float | None) -> str:
    """Seconds as "m:ss" or "h:mm:ss" ("" when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# -------------------------------------------------------- naming of runs
_SHORT = {
    # (section, field): (formatter of the value)
    ("schedule", "kind"): lambda v: {"rescaled_linear": "rlinear"}.get(v, str(v)),
    ("schedule", "timesteps"): lambda v: f"T{v}",
    ("schedule", "beta_start"): lambda v: f"b0_{format_number(v)}",
    ("schedule", "beta_end"): lambda v: f"bT_{format_number(v)}",
    ("schedule", "cosine_s"): lambda v: f"s{format_number(v)}",
    ("model", "base_channels"): lambda v: f"ch{v}",
    ("model", "convs_per_block"): lambda v: f"convs{v}",
    ("model", "time_embed_dim"): lambda v: f"temb{v}",
    ("model", "num_classes"): lambda v: f"cond{v}" if v else "uncond",
    ("model", "image_channels"): lambda v: f"c{v}",
    ("train", "ema_decay"): lambda v: f"ema{format_number(v)}" if v else "noema",
    ("train", "lr"): lambda v: f"lr{format_number(v)}",
    ("train", "batch_size"): lambda v: f"bs{v}",
    ("train", "epochs"): lambda v: f"ep{v}",
    ("train", "patience"): lambda v: f"pat{v}",
    ("train", "seed"): lambda v: f"seed{v}",
    ("train", "label_dropout"): lambda v: f"drop{format_number(v)}",
    ("train", "grad_clip"): lambda v: f"clip{format_number(v)}" if v else "noclip",
    ("train", "bn_recalibration"): lambda v: f"bnrecal{v}" if v else "bnrunning",
}
# Fields that do not change what is learned (or only how fast): not part of a name.
_IGNORED = {("train", "precision"), ("train", "channels_last"), ("train", "val_seed")}


def _as_dict(cfg: Any) -> dict:
    if cfg is None:
        return {}
    if isinstance(cfg, dict):
        return dict(cfg)
    if hasattr(cfg, "to_dict"):
        return cfg.to_dict()
    raise TypeError(f"expected a config dataclass or dict, got {type(cfg).__name__}")


def _differences(base: dict[str, dict], cfg: dict[str, dict]) -> list[str]:
    out = []
    for section in ("schedule", "model", "train"):
        b, c = base.get(section, {}), cfg.get(section, {})
        for key, value in c.items():
            if (section, key) in _IGNORED or key not in b or b[key] == value:
                continue
            if section == "schedule" and key in ("beta_start", "beta_end") and c.get("kind") == "cosine":
                continue
            if section == "schedule" and key == "cosine_s" and c.get("kind") != "cosine":
                continue
            if section == "train" and key == "label_dropout" and not cfg.get("model", {}).get("num_classes"):
                continue
            fmt = _SHORT.get((section, key), lambda v, k=key: f"{k}{format_number(v) if isinstance(v, float) else v}")
            out.append(fmt(value))
    return out


def describe_differences(model_cfg: Any = None, schedule_cfg: Any = None, train_cfg: Any = None) -> str:
    """A short slug saying how these settings differ from the default preset.

    Configs may be the dataclasses (UNetConfig, ScheduleConfig, TrainConfig) or
    their dicts; None means "the default preset's". Returns e.g. "default",
    "report-recipe", "report-recipe_ch16", "linear_noema_lr5e-4". Settings that
    do not change what is learned (precision, channels_last, val_seed) are
    ignored. When the settings are closer to the report's recipe than to the
    default, they are described as the report's recipe plus its differences.
    """
    from .presets import PRESETS

    cfg = {"model": _as_dict(model_cfg), "schedule": _as_dict(schedule_cfg), "train": _as_dict(train_cfg)}
    best = None
    for preset_name, label in (("default", ""), ("report", "report-recipe")):
        p = PRESETS.get(preset_name)
        if p is None:
            continue
        base = {"model": p.model.to_dict(), "schedule": p.schedule.to_dict(), "train": p.train.to_dict()}
        full = {k: {**base[k], **cfg[k]} for k in base}
        diffs = _differences(base, full)
        parts = ([label] if label else []) + diffs
        if best is None or len(diffs) < best[0]:
            best = (len(diffs), parts)
    parts = best[1] if best else []
    return _slug("_".join(parts)) or "default"


def _slug(text: str, limit: int = 60) -> str:
    text = re.sub(r"\s+", "-", text.strip())
    text = re.sub(r"[^A-Za-z0-9._+\-=]", "", text)
    text = re.sub(r"-{2,}", "-", text).strip("-_.")
    return text[:limit].rstrip("-_.")


def suggest_run_name(description: str = "", now: _dt.datetime | None = None) -> str:
    """The name ``new_run_dir`` would start from (without creating anything),
    e.g. for a form that shows where the next run will go."""
    now = now or _utc_now()
    stem = now.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d_%H%M")
    desc = _slug(description)
    return f"{stem}_{desc}" if desc else stem


def new_run_dir(
    runs_dir: str | os.PathLike | None = None,
    description: str = "",
    *,
    tags: list[str] | tuple[str, ...] = (),
    notes: str = "",
    now: _dt.datetime | None = None,
) -> Path:
    """Create a new, empty run folder with a run.json and return its path.

    The name is the UTC time plus ``description`` made safe for a folder name,
    e.g. ``2026-11-28_0712_report-recipe`` (use ``describe_differences`` for
    the description); ``_2``, ``_3``... is appended if that name is taken.
    ``runs_dir`` defaults to ``paths.runs_dir()`` and is created if missing.
    """
    root = _runs_dir(runs_dir)
    if root.exists() and not root.is_dir():
        raise RunError(f"the runs folder {root} is a file; choose a folder with --runs-dir")
    root.mkdir(parents=True, exist_ok=True)
    now = now or _utc_now()
    desc = _slug(description)
    base = suggest_run_name(desc, now)
    for i in range(1, 1000):
        name = base if i == 1 else f"{base}_{i}"
        path = root / name
        try:
            path.mkdir()
        except FileExistsError:
            continue
        write_json_atomic(
            path / RUN_FILE,
            {
                "format": RUN_FORMAT,
                "version": RUN_FORMAT_VERSION,
                "id": uuid.uuid4().hex[:12],
                "name": name,
                "created": _iso(now),
                "description": desc,
                "tags": _clean_tags(tags),
                "notes": str(notes),
                "app_version": _app_version(),
            },
        )
        return path
    raise RunError(f"could not find a free run name for {base!r} in {root}")


def init_run(run_dir: str | os.PathLike, description: str = "", *, tags=(), notes: str = "") -> Path:
    """Give an existing (or new) folder a run.json if it has none, so a run
    trained into a folder of the user's choice (``train --out DIR``) gets a
    created time, tags and notes like one made by ``new_run_dir``. Returns the folder."""
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / RUN_FILE).exists():
        write_json_atomic(
            path / RUN_FILE,
            {
                "format": RUN_FORMAT,
                "version": RUN_FORMAT_VERSION,
                "id": uuid.uuid4().hex[:12],
                "name": path.name,
                "created": _iso(_utc_now()),
                "description": _slug(description),
                "tags": _clean_tags(tags),
                "notes": str(notes),
                "app_version": _app_version(),
            },
        )
    return path


def _app_version() -> str:
    from .. import __version__

    return __version__


def _clean_tags(tags) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for t in tags:
        t = str(t).strip()
        if not t:
            continue
        if any(c in t for c in ",\n\r\t"):
            raise RunError(f"a tag cannot contain commas, tabs or line breaks: {t!r}")
        if t not in out:
            out.append(t)
    return out


# ----------------------------------------------------- running marker
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


# ----------------------------------------------------------- RunInfo
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


def _check_checkpoint_file(path: Path) -> str:
    """"" when ``path`` looks like an intact torch checkpoint (a readable zip
    archive: cheap, catches garbage and truncation), else why not."""
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


def read_run(run_dir: str | os.PathLike) -> RunInfo:
    """Read one run folder into a RunInfo. Never raises for unreadable files:
    they give status "damaged" with the reason (see the module docstring)."""
    path = Path(run_dir)
    info = RunInfo(path=path, name=path.name, status="empty")
    try:
        info.created = _iso(_dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc))
    except OSError:
        pass
    problems: list[str] = []
    old: list[str] = []

    # run.json: the user's name, tags, notes
    rf = path / RUN_FILE
    if rf.exists():
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

    # checkpoints: cheap integrity check
    for name in ("best.pt", "last.pt"):
        f = path / name
        if f.exists():
            why = _check_checkpoint_file(f)
            if why:
                problems.append(why)
            elif name == "best.pt":
                info.has_best = True
            else:
                info.has_last = True

    # history.json: what the trainer writes
    hf = path / HISTORY_FILE
    history: dict | None = None
    if hf.exists():
        try:
            history = json.loads(hf.read_text(encoding="utf-8"))
            if not isinstance(history, dict) or not isinstance(history.get("epochs"), list):
                raise ValueError("no list of epochs")
        except (OSError, ValueError) as exc:
            history = None
            problems.append(f"{HISTORY_FILE} is unreadable ({str(exc).splitlines()[0] if str(exc) else 'empty'})")
    if history is not None:
        try:
            _fill_from_history(info, history)
        except (TypeError, ValueError, AttributeError) as exc:
            problems.append(f"{HISTORY_FILE} has unexpected contents ({exc})")
        for key in ("finished_reason", "train_seconds", "best_epoch", "train"):
            if key not in history:
                old.append(f"{HISTORY_FILE} has no {key!r}")
                break
    elif not problems and (info.has_best or info.has_last):
        # an older app kept only checkpoints: read what we can from one
        old.append(f"no {HISTORY_FILE}")
        try:
            from .checkpoint import load_checkpoint

            p = load_checkpoint(path / ("last.pt" if info.has_last else "best.pt"))
            h = dict(p.get("history") or {})
            h.setdefault("best_epoch", (p.get("best") or {}).get("epoch"))
            h.setdefault("best_val_loss", (p.get("best") or {}).get("val_loss"))
            for section in ("model", "schedule", "train"):
                h.setdefault(section, p.get(section))
            h.update({k: v for k, v in (p.get("meta") or {}).items() if k in ("finished_reason", "train_seconds")})
            h["epochs"] = h.get("epochs") if isinstance(h.get("epochs"), list) else []
            _fill_from_history(info, h)
        except Exception as exc:  # noqa: BLE001 - a damaged run must not break the list
            problems.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    info.metrics, info.metrics_report = _read_metrics(path)
    info.temp_files = [p.name for p in leftover_temp_files(path)]

    # status
    running = running_info(path)
    if running is not None:
        info.status = "running"
        info.reason = f"training in process {running.get('pid')} since {running.get('started', '?')}"
        return info
    if problems:
        info.status, info.reason = "damaged", "; ".join(problems)
        return info
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
    return info


def _is_run_candidate(p: Path) -> bool:
    return p.is_dir() and not p.name.startswith(".")


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[RunInfo]:
    """Every run folder in ``runs_dir`` (default ``paths.runs_dir()``), oldest
    name first. A missing runs folder gives []; a damaged run is listed with
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
            out.append(read_run(p))
        except Exception as exc:  # noqa: BLE001 - last resort: never let one run break the list
            out.append(RunInfo(path=p, name=p.name, status="damaged", reason=f"unreadable ({exc})"))
    return out


def resolve_run(spec: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Path:
    """A run folder from a path or a run name inside ``runs_dir`` (an exact
    name, else a unique prefix). Raises RunError saying which names exist."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return p
    root = _runs_dir(runs_dir)
    candidate = root / str(spec)
    if candidate.is_dir():
        return candidate
    names = sorted(c.name for c in root.iterdir() if _is_run_candidate(c)) if root.is_dir() else []
    matches = [n for n in names if n.startswith(str(spec))] or [n for n in names if str(spec) in n]
    if len(matches) == 1:
        return root / matches[0]
    if len(matches) > 1:
        raise RunError(f"{spec!r} matches several runs ({', '.join(matches[:6])}); give the full name")
    hint = f"; runs in {root}: {', '.join(names[-5:])}" if names else f"; {root} holds no runs"
    raise RunError(f"no run {spec!r}: neither a folder nor a run name{hint}")


# ------------------------------------------------------------ editing
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


# ------------------------------------------------------------- curves
def load_curves(run: RunInfo | str | os.PathLike) -> dict[str, np.ndarray]:
    """The run's loss curves as float64 numpy arrays.

    Per optimiser step (N,), from last.pt (else best.pt):
        step        global step 1..N
        step_epoch  fractional epoch (epoch - 1 + step/steps_per_epoch)
        step_time   training seconds so far (wall time, excluding pauses)
        train_loss  the batch loss ||eps - eps_theta||^2
    Per epoch (E,), from history.json (else the checkpoint):
        epoch       1..E
        epoch_step  global step at the end of the epoch (NaN if unknown)
        epoch_time  training seconds at the end of the epoch
        val_loss    validation loss (NaN where it was not finite)
        epoch_train_loss  mean training loss of the epoch
    Per t bin (B,), the last validation's: t_centre, val_loss_by_t (``engine.train.loss_bins``).

    Missing parts are empty arrays. Raises RunError when nothing can be read.
    """
    path = run.path if isinstance(run, RunInfo) else Path(run)
    epochs: list[dict] = []
    steps: dict = {}
    errors = []
    bins: list = []
    hf = path / HISTORY_FILE
    if hf.exists():
        try:
            h = json.loads(hf.read_text(encoding="utf-8"))
            epochs = [e for e in h.get("epochs", []) if isinstance(e, dict)]
            bins = h.get("loss_bins") if isinstance(h.get("loss_bins"), list) else []
        except (OSError, ValueError, AttributeError) as exc:
            errors.append(f"{HISTORY_FILE}: {exc}")
    from .checkpoint import CheckpointError, load_checkpoint

    for name in ("last.pt", "best.pt"):
        f = path / name
        if not f.exists():
            continue
        why = _check_checkpoint_file(f)
        if why:
            errors.append(why)
            continue
        try:
            payload = load_checkpoint(f)
        except CheckpointError as exc:
            errors.append(str(exc))
            continue
        ph = payload.get("history") or {}
        s = ph.get("steps")
        if isinstance(s, dict) and s.get("loss"):
            steps = s
        elif isinstance(s, list) and s:  # an older layout: list of records
            steps = {k: [r.get(k) for r in s if isinstance(r, dict)] for k in ("global_step", "epoch", "loss", "time")}
        pe = [e for e in ph.get("epochs", []) if isinstance(e, dict)]
        if len(pe) > len(epochs):
            epochs = pe
        break
    if not epochs and not steps and errors:
        raise RunError(f"cannot read the curves of {path.name}: " + "; ".join(errors))

    def arr(values) -> np.ndarray:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)

    n = len(steps.get("loss", []) or [])
    step = arr(steps.get("global_step", [])) if len(steps.get("global_step", []) or []) == n else np.arange(1.0, n + 1)
    step_epoch = arr(steps.get("epoch", [])) if len(steps.get("epoch", []) or []) == n else np.full(n, np.nan)
    step_time = arr(steps.get("time", [])) if len(steps.get("time", []) or []) == n else np.full(n, np.nan)
    train_loss = arr(steps.get("loss", []) or [])
    epoch = arr([e.get("epoch") for e in epochs])
    val = arr([e.get("val_loss") for e in epochs])
    val[~np.isfinite(val)] = np.nan
    etime = arr([e.get("time") for e in epochs])
    if np.isnan(etime).any() and epochs:  # older histories: cumulative seconds
        etime = np.cumsum(arr([e.get("seconds", 0.0) for e in epochs]))
    if n and np.isfinite(step_epoch).any():
        ok = np.isfinite(step_epoch)
        epoch_step = np.interp(epoch, step_epoch[ok], step[ok], left=np.nan, right=np.nan)
    else:
        epoch_step = np.full(len(epochs), np.nan)
    return {
        "step": step,
        "step_epoch": step_epoch,
        "step_time": step_time,
        "train_loss": train_loss,
        "epoch": epoch,
        "epoch_step": epoch_step,
        "epoch_time": etime,
        "val_loss": val,
        "epoch_train_loss": arr([e.get("train_loss") for e in epochs]),
        **_loss_by_t(epochs, bins, arr),
    }


def _loss_by_t(epochs: list[dict], bins: list, arr) -> dict[str, np.ndarray]:
    """t_centre (B,) and val_loss_by_t (B,): the last validation's loss per t bin (empty when the run
    has none, e.g. one trained before this was recorded)."""
    last = next((e.get("val_loss_by_t") for e in reversed(epochs) if isinstance(e.get("val_loss_by_t"), list)), None)
    if not last or len(bins) != len(last) + 1:
        return {"t_centre": np.zeros(0), "val_loss_by_t": np.zeros(0)}
    edges = arr(bins)
    return {"t_centre": (edges[:-1] + edges[1:] - 1) / 2, "val_loss_by_t": arr(last)}


X_AXES = {"step": ("step", "epoch_step"), "epoch": ("step_epoch", "epoch"), "wall time": ("step_time", "epoch_time")}
"""x axis name -> (key of the per-step x values, key of the per-epoch x values) in ``load_curves``."""


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style smoothing: a debiased exponential moving average.

    values: (N,) floats (NaNs are skipped, kept as NaN); weight in [0, 1): 0 = none."""
    values = np.asarray(values, dtype=np.float64)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must lie in [0, 1), got {weight}")
    if weight == 0 or values.size == 0:
        return values.copy()
    out = np.empty_like(values)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values):
        if not math.isfinite(v):
            out[i] = np.nan
            continue
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out
