"""What a training run will do, decided before anything is built or written.

A run is new, a resume of a run folder (its last.pt: the exact position, Adam's state and
the random streams), or a new run that continues a checkpoint (a run's, or an export such as
a bundled model: its weights, settings, epochs, history and guide; a fresh Adam). Each of
``plan_new``, ``plan_resume`` and ``plan_continue`` returns one frozen ``TrainPlan``: the
configs the run trains with, the source checkpoint read once, what the user changed, and the
metadata the run records. The Trainer takes the plan. A setting the user asked for that the
run would ignore is refused here, in one line (``ResumeConflict``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..diffusion.schedule import ScheduleConfig
from ..diffusion.unet import UNetConfig
from ..storage.bundled import bundled_name, checkpoint_file
from ..storage.checkpoint import CheckpointError, load_checkpoint, payload_epochs_trained
from .config import _EXPORT_META, CONTINUE_CHANGEABLE, RESUMABLE, TrainConfig, resume_conflicts

Mode = Literal["new", "resume", "continue"]


class ResumeConflict(ValueError):
    """A resume or continuation was asked for with settings the run would ignore (the message lists them)."""


@dataclass(frozen=True)
class TrainPlan:
    """Everything a Trainer needs to know before it starts.

    mode:     "new", "resume" or "continue".
    model, schedule, train: the configs the run trains with (a resumed or continued run's own,
              with the epochs and patience it may raise and, when continuing, ``changes``).
    preset:   the recipe the run was started from ("" when unknown).
    source:   resume: the run's last.pt; continue: the checkpoint; new: None.
    payload:  that checkpoint, read once (None for a new run).
    changes:  continue: the training settings this run changes from the file's (lr, EMA, ...).
    meta:     what the run records about itself (its preset; what it continues).
    run_dir:  resume: the run's folder (a new or continued run's folder is chosen when it starts).
    repairs:  resume: what was put right in the folder first (a save a kill interrupted), one line each.
    distill, teacher, init_weights: a distillation round's settings, its teacher (``teacher_entry``)
              and, for a new round, the student's first weights (``plan_distill``).
    """

    mode: Mode
    model: UNetConfig
    schedule: ScheduleConfig
    train: TrainConfig
    preset: str = ""
    source: Path | None = None
    payload: dict | None = field(default=None, repr=False, compare=False)
    changes: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    repairs: tuple[str, ...] = ()
    distill: Any = None  # a distillation round's DistillConfig (engine.training.distill), else None
    teacher: dict | None = field(default=None, repr=False, compare=False)  # its teacher_entry
    init_weights: dict | None = field(default=None, repr=False, compare=False)  # a new round's first weights

    @property
    def source_name(self) -> str | None:
        """What the continued checkpoint is called ("default", or a run folder's name)."""
        return continued_name(self.source) if self.source is not None else None

    @property
    def source_epochs(self) -> float:
        """The training behind the source's weights, in epochs (0 for a new run)."""
        return payload_epochs_trained(self.payload) if self.payload is not None else 0.0

    @property
    def guide(self) -> dict | None:
        """The source's autoguidance guide entry: it travels with the weights it guides."""
        return (self.payload or {}).get("guide")


def plan_new(model: UNetConfig, schedule: ScheduleConfig, train: TrainConfig, *, preset: str = "",
             meta: dict | None = None) -> TrainPlan:
    """A new run of these configs (each validated when it was built)."""
    return TrainPlan("new", model, schedule, train, preset, meta={**({"preset": preset} if preset else {}),
                                                                  **(meta or {})})


def _kept_meta(payload: dict) -> dict:
    """The meta a resumed or continued run keeps: what the run was started with, not how it ended."""
    return {k: v for k, v in (payload.get("meta") or {}).items()
            if k not in ("finished_reason", "train_seconds", *_EXPORT_META)}


def _configs(payload: dict, path: Path) -> tuple[UNetConfig, ScheduleConfig, TrainConfig]:
    missing = [key for key in ("model", "schedule", "train", "weights") if payload.get(key) is None]
    if missing:
        raise CheckpointError(f"{path} cannot be trained further: it has no {', '.join(missing)} "
                              "(choose a checkpoint written by training or an export of one)")
    try:
        return (UNetConfig.from_dict(payload["model"]), ScheduleConfig.from_dict(payload["schedule"]),
                TrainConfig.from_dict(payload["train"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has invalid settings: {exc}") from exc


def _raised(saved: TrainConfig, requested: dict) -> dict:
    """The epochs and patience a resume or continuation may raise (a lower one is a conflict)."""
    out = {}
    for section, name in RESUMABLE:
        value = requested.get((section, name))
        if value is not None:
            out[name] = max(getattr(saved, name), value)
    return out


def plan_resume(run_dir: str | os.PathLike, requested: dict[tuple[str, str], Any] | None = None, *,
                runs_dir: str | os.PathLike | None = None) -> TrainPlan:
    """Resume a run folder (or a run name in ``runs_dir``) from its last.pt.

    requested: the settings the user gave with the resume, {("train", "epochs"): 80, ...} (None
    values are ignored). The run keeps its own settings, so any that differs is a conflict, except
    ``epochs`` and ``patience``, which may be raised. Temporary files a killed save left are put
    right first (``runs.prepare_resume``; the plan's ``repairs`` say what was done). Raises RunError
    (no last.pt, or a process trains there), CheckpointError (damaged) or ResumeConflict, each one
    line saying what to do.
    """
    from .. import runs as R

    folder = Path(run_dir)
    if not folder.is_dir():
        folder = R.resolve_run(run_dir, runs_dir)
    last, repairs = R.prepare_resume(folder)  # a save a kill interrupted is put right first
    payload = load_checkpoint(last)
    requested = {key: value for key, value in (requested or {}).items() if value is not None}
    conflicts = resume_conflicts(payload, requested)
    if conflicts:
        raise ResumeConflict(
            f"a resume continues {folder.name} with its own settings, so it would ignore: "
            f"{'; '.join(conflicts)}. Drop those, or start a new run to change them")
    model, schedule, saved = _configs(payload, last)
    train = replace(saved, **_raised(saved, requested))
    meta = _kept_meta(payload)
    distill, teacher = _distillation(payload, last)
    return TrainPlan("resume", model, schedule, train, str(meta.get("preset", "")), last, payload,
                     meta=meta, run_dir=folder, repairs=tuple(repairs), distill=distill, teacher=teacher)


def _distillation(payload: dict, path: Path) -> tuple[Any, dict | None]:
    """A distillation round's settings and teacher from its last.pt, or (None, None)."""
    if payload.get("distill") is None:
        return None, None
    from .distill import DistillConfig

    try:
        distill = DistillConfig.from_dict(payload["distill"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has invalid distillation settings: {exc}") from exc
    if payload.get("teacher") is None:
        raise CheckpointError(f"{path} is a distillation round without its teacher; start the round again")
    return distill, payload["teacher"]


def continued_name(checkpoint: str | os.PathLike) -> str:
    """What a continued checkpoint is called, for people and run-folder names: its file's stem
    ("default" for the bundled model) or, for a run's best.pt / last.pt, the run folder's name."""
    path = Path(checkpoint)
    return path.parent.name if path.stem in ("best", "last") else path.stem


def checkpoint_to_continue(source: str | os.PathLike) -> Path:
    """The checkpoint a new run would continue from ``source``: a bundled model's file, a .pt
    file, or a run folder's last.pt (it keeps the optimizer state), else its best.pt.
    CheckpointError (one line) when there is none. Reads nothing but the folder."""
    return checkpoint_file(source, prefer=("last.pt", "best.pt"))


def plan_continue(source: str | os.PathLike, requested: dict[tuple[str, str], Any] | None = None) -> TrainPlan:
    """Continue a checkpoint in a new run (see the module docstring).

    requested: as ``plan_resume`` takes it; ``epochs`` and ``patience`` may be raised, and the
    settings a fresh Adam makes this run's own (``CONTINUE_CHANGEABLE``: peak lr, its schedule
    and warm-up, the EMA decay) may change: those that differ from the file's are the plan's
    ``changes``. Raises CheckpointError (missing, damaged, or holding no training settings) or
    ResumeConflict, each one line saying what to do.
    """
    path = checkpoint_to_continue(source)
    payload = load_checkpoint(path)
    if payload.get("distill") is not None or UNetConfig.from_dict(payload.get("model") or {}).is_student:
        raise ResumeConflict(f"{path.name} is a distilled student; resume its round, or distil it further "
                             "with `diffusion-studio distill`")
    model, schedule, saved = _configs(payload, path)
    requested = {key: value for key, value in (requested or {}).items() if value is not None}
    changes = {name: value for (section, name), value in requested.items()
               if (section, name) in CONTINUE_CHANGEABLE and value != getattr(saved, name)}
    conflicts = resume_conflicts(payload, {key: value for key, value in requested.items()
                                           if key not in CONTINUE_CHANGEABLE})
    if conflicts:
        raise ResumeConflict(
            f"continuing {path.name} keeps its own settings, so it would ignore: {'; '.join(conflicts)}. "
            "Drop those, or start a new run to change them")
    train = replace(saved, **changes, **_raised(saved, requested))
    meta = _kept_meta(payload)
    meta["continued_from"] = {"source": bundled_name(path) or str(path), "epochs": payload_epochs_trained(payload),
                              **({"changed": changes} if changes else {})}
    return TrainPlan("continue", model, schedule, train, str(meta.get("preset", "")), path, payload, changes, meta)
