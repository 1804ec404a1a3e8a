"""What every part of ``engine.runs`` shares: file names, statuses, colours, RunError, small helpers."""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import re
from pathlib import Path


from ..storage import paths



RUN_FILE = "run.json"
RUNNING_FILE = "running.pid"
LOCK_FILE = "run.lock"
HISTORY_FILE = "history.json"
REPORTS_DIR = "reports"
RUN_FORMAT = "diffusion-studio-run"
RUN_FORMAT_VERSION = 1
CHECKPOINT_FILES = ("best.pt", "last.pt")
# every file the app writes at the top of a run folder (and the reports folder)
RUN_FILES = (RUN_FILE, HISTORY_FILE, *CHECKPOINT_FILES, LOCK_FILE, RUNNING_FILE)

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
