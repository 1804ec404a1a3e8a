"""Run operations, one layer for both front ends: open a model, start a run, resume one.

The GUI and the CLI call these instead of each deciding for themselves where a
model goes, which checkpoint a run folder means, or which settings a resume
would ignore. Nothing here touches Qt; the GUI calls ``open_model`` from a worker
thread (``AppState.open_model``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import runs as R
from .storage.checkpoint import CheckpointError, LoadedModel, load_checkpoint, load_model
from .device import resolve_device


class ResumeConflict(ValueError):
    """A resume was asked for with settings the run would ignore (the message lists them)."""


# ------------------------------------------------------------------ models
def model_device(requested: str | torch.device = "auto") -> torch.device:
    """The one device policy for a model to sample from: the device asked for, or the
    CPU when that one is not available here (a checkpoint trained on a GPU opens on
    a laptop). Unknown names are an error."""
    if isinstance(requested, torch.device):
        requested = str(requested)
    try:
        return resolve_device(requested)
    except ValueError:
        if requested.startswith("cuda"):
            return torch.device("cpu")
        raise


def checkpoint_of(source: str | os.PathLike) -> Path:
    """The checkpoint file a source names: a bundled model ("default",
    "default-conditional"), a .pt file, or a run folder (its best.pt, else last.pt).
    CheckpointError (one line) when there is none."""
    from .storage.bundled import BUNDLED, resolve_checkpoint

    if isinstance(source, str) and source in BUNDLED:
        return resolve_checkpoint(source)
    path = Path(source).expanduser()
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds no checkpoint (best.pt or last.pt): has this run saved an epoch yet?")
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; choose a .pt checkpoint, a run folder or a bundled model")
    return path


def open_model(source: str | os.PathLike, device: str | torch.device = "auto") -> LoadedModel:
    """Load the model a source names (see ``checkpoint_of``) onto ``model_device(device)``.
    Slow (reads and builds the network): front ends call it off their GUI thread."""
    return load_model(checkpoint_of(source), model_device(device))


# ------------------------------------------------------------------ runs
def prepare_run_dir(out: str | os.PathLike | None, description: str, *,
                    runs_dir: str | os.PathLike | None = None) -> Path:
    """The folder a new run trains into: ``out`` (given run.json if it has none) or a new
    folder in the runs folder named after ``description``. RunError when ``out`` already
    holds a run (resume it instead)."""
    if out is None:
        return R.new_run_dir(runs_dir, description)
    out = Path(out)
    if (out / "last.pt").exists():
        raise R.RunError(f"{out} already holds a run; resume it or choose another folder")
    return R.init_run(out, description)


@dataclass(frozen=True)
class ResumePlan:
    """What a resume will continue: the run folder, its last.pt and that checkpoint's
    saved settings (a ``TrainConfig``), and the preset the run was started from."""

    run_dir: Path
    last: Path
    train: Any  # engine.train.TrainConfig
    preset: str


def plan_resume(run_dir: str | os.PathLike, requested: dict[tuple[str, str], Any] | None = None, *,
                runs_dir: str | os.PathLike | None = None) -> ResumePlan:
    """Check that a run can be resumed, with nothing asked for that it would ignore.

    run_dir: a run folder or a run name in ``runs_dir``. requested: the settings the
    user gave with the resume, {("train", "lr"): 1e-4, ...} (None values are ignored;
    ``epochs`` may always be raised). Raises RunError (no last.pt), CheckpointError
    (damaged) or ResumeConflict, each one line saying what to do.
    """
    from .training.config import CONTINUE_CHANGEABLE, TrainConfig, resume_conflicts

    folder = Path(run_dir)
    if not folder.is_dir():
        folder = R.resolve_run(run_dir, runs_dir)
    last = folder / "last.pt"
    if not last.is_file():
        raise R.RunError(f"{folder} has no last.pt to resume from; choose a run folder made by training")
    payload = load_checkpoint(last)
    conflicts = resume_conflicts(payload, requested or {})
    if conflicts:
        raise ResumeConflict(
            f"a resume continues {folder.name} with its own settings, so it would ignore: "
            f"{'; '.join(conflicts)}. Drop those, or start a new run to change them"
        )
    train = TrainConfig.from_dict(payload.get("train") or {})
    return ResumePlan(folder, last, train, str((payload.get("meta") or {}).get("preset", "")))


@dataclass(frozen=True)
class ContinuePlan:
    """What a new run will continue (``Trainer(continue_from=...)``): the checkpoint, its
    loaded payload, its saved settings (a ``TrainConfig``), its preset and the epochs
    behind its weights."""

    checkpoint: Path
    payload: dict
    train: Any  # engine.train.TrainConfig
    preset: str
    epochs: float
    changes: dict[str, Any] = field(default_factory=dict)  # train settings this run changes (lr, ema_decay, ...)

    @property
    def name(self) -> str:
        return continued_name(self.checkpoint)


def continued_name(checkpoint: str | os.PathLike) -> str:
    """What a continued checkpoint is called, for people and run-folder names: its file's stem
    ("default" for the bundled model) or, for a run's best.pt / last.pt, the run folder's name."""
    path = Path(checkpoint)
    return path.parent.name if path.stem in ("best", "last") else path.stem


def checkpoint_to_continue(source: str | os.PathLike) -> Path:
    """The checkpoint a new run would continue from ``source``: a bundled model's file, a .pt
    file, or a run folder's last.pt (it keeps the optimizer state), else its best.pt.
    CheckpointError (one line) when there is none. Reads nothing but the folder."""
    from .storage.bundled import BUNDLED

    last = None if isinstance(source, str) and source in BUNDLED else Path(source).expanduser() / "last.pt"
    return last if last is not None and last.is_file() else checkpoint_of(source)


def plan_continue(source: str | os.PathLike, requested: dict[tuple[str, str], Any] | None = None) -> ContinuePlan:
    """Check that a checkpoint can be continued in a new run, with nothing asked for that it
    would ignore (as ``plan_resume``: ``epochs`` and ``patience`` may be raised). Its Adam starts
    afresh, so the settings in ``train.CONTINUE_CHANGEABLE`` (peak lr, its schedule and warm-up,
    the EMA decay) may be changed: those that differ from the file's are the plan's ``changes``.

    source: as ``checkpoint_to_continue`` takes it. Raises CheckpointError (missing, damaged, or
    holding no training settings) or ResumeConflict, each one line saying what to do.
    """
    from .storage.checkpoint import payload_epochs_trained
    from .training.config import CONTINUE_CHANGEABLE, TrainConfig, resume_conflicts

    path = checkpoint_to_continue(source)
    payload = load_checkpoint(path)
    missing = [key for key in ("model", "schedule", "train", "weights") if payload.get(key) is None]
    if missing:
        raise CheckpointError(f"{path} cannot be continued: it has no {', '.join(missing)} "
                              "(choose a checkpoint written by training or an export of one)")
    requested = {key: value for key, value in (requested or {}).items() if value is not None}
    saved_train = payload["train"]
    changes = {name: value for (section, name), value in requested.items()
               if (section, name) in CONTINUE_CHANGEABLE and value != saved_train.get(name)}
    conflicts = resume_conflicts(payload, {key: value for key, value in requested.items()
                                           if key not in CONTINUE_CHANGEABLE})
    if conflicts:
        raise ResumeConflict(
            f"continuing {path.name} keeps its own settings, so it would ignore: {'; '.join(conflicts)}. "
            "Drop those, or start a new run to change them"
        )
    return ContinuePlan(path, payload, TrainConfig.from_dict({**saved_train, **changes}),
                        str((payload.get("meta") or {}).get("preset", "")), payload_epochs_trained(payload),
                        changes)

