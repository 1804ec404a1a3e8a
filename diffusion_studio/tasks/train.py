"""Training: one request for a new run, a resume or a continuation, planned before anything
is written, then run as a stream of records both front ends draw.

    plan = plan_train(request)          # validates everything, refuses in one line, writes nothing
    for record in train(request, plan, data, ctx):
        ...                             # StartedRecord, StepRecord, EarlyValidationRecord, EpochRecord,
                                        # BaselineRecord, PreviewRecord, FinishedRecord

``train`` makes the run folder (a new or continued run), holds the run's lock while it
trains, and stops cooperatively when ``ctx`` asks (within one batch; last.pt then holds
the exact position for a resume).
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np

from ..engine import runs as R
from ..engine.defaults import DEFAULT_EARLY_STEPS
from ..engine.diffusion.schedule import ScheduleConfig
from ..engine.diffusion.unet import UNetConfig
from ..engine.training.config import Record, TrainConfig
from ..engine.training.plan import TrainPlan, plan_continue, plan_new, plan_resume
from ..engine.training.presets import get_preset
from .context import TaskContext, context_or_default

Mode = Literal["new", "resume", "continue"]
PREVIEW_SEED = 1234


@dataclass(frozen=True)
class TrainRequest:
    """What the user asked for.

    mode: "new", "resume" (``source``: a run folder or a run name in ``runs_dir``) or "continue"
        (``source``: a bundled model, a .pt file or a run folder, continued in a new run).
    preset: the recipe a new run starts from; settings / width / conditional / schedule_kind /
        timesteps: what the user changed (None: the preset's, or the run's own). A resume or a
        continuation refuses, in one line, any that it would ignore (see ``engine.training.plan``).
    model / schedule / train: a form's whole configs for a new run, instead of the preset's with
        changes (``preset`` then only names the recipe they came from).
    out: the run folder of a new or continued run (None: a new folder in ``runs_dir``).
    max_minutes: a wall-clock budget. preview_every: epochs between preview digits (0: none).
    preview_first_steps: with previews on, one more after this many steps of the run (0: none),
        so a learner sees digits long before the first epoch ends.
    early_validation_steps: after this many steps of the first epoch, an estimate of the validation
        loss on a subset of the split (``EarlyValidationRecord``; 0: none), for the CLI too.
    """

    mode: Mode = "new"
    preset: str = "default"
    settings: dict[str, Any] = field(default_factory=dict)
    width: int | None = None
    conditional: bool | None = None
    schedule_kind: str | None = None
    timesteps: int | None = None
    model: UNetConfig | None = None
    schedule: ScheduleConfig | None = None
    train: TrainConfig | None = None
    source: str | os.PathLike | None = None
    out: Path | None = None
    runs_dir: Path | None = None
    max_minutes: float | None = None
    device: str = "auto"
    preview_every: int = 0
    preview_count: int = 8
    preview_steps: int = 20
    preview_first_steps: int = DEFAULT_EARLY_STEPS
    early_validation_steps: int = DEFAULT_EARLY_STEPS

    def __post_init__(self) -> None:
        if self.mode not in ("new", "resume", "continue"):
            raise ValueError(f"unknown training mode {self.mode!r}; choose new, resume or continue")
        if self.mode != "new" and self.source is None:
            raise ValueError(f"a {self.mode} needs the run or checkpoint it starts from")
        if self.max_minutes is not None and not (self.max_minutes > 0 and math.isfinite(self.max_minutes)):
            raise ValueError(f"the time budget must be a positive number of minutes, got {self.max_minutes}")
        if self.early_validation_steps < 0:
            raise ValueError(f"the early validation's step must be >= 0 (0: none), got {self.early_validation_steps}")

    @property
    def max_seconds(self) -> float | None:
        return None if self.max_minutes is None else 60.0 * self.max_minutes


def _preset_configs(request: TrainRequest) -> tuple[UNetConfig, ScheduleConfig, TrainConfig]:
    """The configs a new run of this request trains: the preset's (or the form's) with the changes."""
    whole = (request.model, request.schedule, request.train)
    preset = get_preset(request.preset) if None in whole else None
    settings = {k: v for k, v in request.settings.items() if v is not None}
    train = replace(request.train or preset.train, **settings)
    model = request.model or preset.model
    model_changes = {}
    if request.width is not None:
        if request.width < 1:
            raise ValueError(f"the width must be a positive number of channels, got {request.width}")
        if model.arch == "res":  # channels at 28, 14 and 7 px
            model_changes["level_channels"] = (request.width, 2 * request.width, 4 * request.width)
            model_changes["norm_groups"] = math.gcd(model.norm_groups, request.width)
        else:
            model_changes["base_channels"] = request.width
    if request.conditional is not None:
        model_changes["num_classes"] = 10 if request.conditional else 0
    schedule = request.schedule or preset.schedule
    schedule_changes = {k: v for k, v in (("kind", request.schedule_kind), ("timesteps", request.timesteps))
                        if v is not None}
    return replace(model, **model_changes), replace(schedule, **schedule_changes), train


def requested_settings(request: TrainRequest) -> dict[tuple[str, str], Any]:
    """The settings the user gave, as a resume or a continuation checks them against the file's."""
    model, _, _ = _preset_configs(request)
    requested = {("train", k): v for k, v in request.settings.items() if v is not None}
    requested[("schedule", "kind")] = request.schedule_kind
    requested[("schedule", "timesteps")] = request.timesteps
    if request.width is not None:
        for key in ("base_channels", "level_channels"):
            requested[("model", key)] = getattr(model, key)
    if request.conditional is not None:
        requested[("model", "num_classes")] = 10 if request.conditional else 0
    if request.preset != "default":
        requested[("meta", "preset")] = request.preset
    return requested


def plan_train(request: TrainRequest) -> TrainPlan:
    """Decide what the run will do; every refusal is one line (ValueError, CheckpointError,
    RunError or ResumeConflict) that says what to do. Nothing is written, but for a resume's
    repair of a save a kill interrupted (``TrainPlan.repairs``)."""
    if request.mode != "resume" and request.out is not None:
        R.check_new_run_folder(request.out)  # a new run never goes into a folder holding a run
    if request.mode == "resume":
        return plan_resume(request.source, requested_settings(request), runs_dir=request.runs_dir)
    if request.mode == "continue":
        return plan_continue(request.source, requested_settings(request))
    model, schedule, train = _preset_configs(request)
    return plan_new(model, schedule, train, preset=request.preset)


def run_description(plan: TrainPlan) -> str:
    """The slug a new run folder is named after: what differs from the default preset, or
    "continues-<name>" for a continued checkpoint."""
    if plan.mode == "continue":
        return f"continues-{plan.source_name}"
    return R.describe_differences(plan.model, plan.schedule, plan.train)


def prepare_run_dir(out: str | os.PathLike | None, description: str, *,
                    runs_dir: str | os.PathLike | None = None) -> Path:
    """The folder a new run trains into: ``out`` (given a run.json) or a new folder in the runs
    folder named after ``description``. RunError (one line) when ``out`` holds a run file of any
    kind: resume it, continue from it, or choose another folder."""
    if out is None:
        return R.new_run_dir(runs_dir, description)
    return R.init_run(R.check_new_run_folder(out), description)


@dataclass(frozen=True)
class PreviewRecord:
    """Digits sampled (DDIM) from the weights being trained (the EMA copy when EMA is on):
    (K, 28, 28) uint8. step: the run's steps so far for an early preview, 0 for one at an
    epoch's end (or of the restored best weights)."""

    epoch: int
    images: np.ndarray
    kind: str = "preview"
    step: int = 0


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def train(request: TrainRequest, plan: TrainPlan, data, ctx: TaskContext | None = None) -> Iterator[Record]:
    """Run ``plan`` on ``data`` (MNISTSplits): a ``StartedRecord`` first, then the Trainer's
    records, with ``PreviewRecord``s every ``request.preview_every`` epochs and of the restored
    best weights at the end. Under torchrun only rank 0 makes the folder and writes files (the
    other ranks need ``request.out``)."""
    from ..engine.training.trainer import Trainer

    ctx = context_or_default(ctx)
    rank = _rank()
    if plan.mode == "resume":
        run_dir = plan.run_dir
    elif rank == 0:
        run_dir = prepare_run_dir(request.out, run_description(plan), runs_dir=request.runs_dir)
    elif request.out is None:
        raise ValueError("under torchrun, name the run folder (every process must use the same one)")
    else:
        run_dir = Path(request.out)
    # the run's OS lock while this process trains (the Runs list shows "running")
    with R.mark_running(run_dir) if rank == 0 else nullcontext():
        if plan.mode != "resume" and any((run_dir / n).exists() for n in ("last.pt", "best.pt")):
            raise R.RunError(f"{run_dir} already holds a run (another process trained there since); "
                             "resume it or choose another folder")
        trainer = Trainer(plan, data, device=request.device, run_dir=run_dir, stop_event=ctx.stop_event,
                          max_seconds=request.max_seconds, early_validation_steps=request.early_validation_steps)
        yield trainer.started()
        yield from _records_with_previews(trainer, request, ctx)


def _records_with_previews(trainer, request: TrainRequest, ctx: TaskContext) -> Iterator[Record]:
    every = request.preview_every
    first = request.preview_first_steps if every else 0
    steps = 0
    # the early preview waits for the trainer's early estimate, when one follows the same step: it
    # recalibrates the plain preset's BatchNorm, which the preview's sampling weights need
    pending: int | None = None
    for record in trainer.run():
        if pending is not None and record.kind != "early_validation":
            yield from _early_preview(trainer, request, pending, first, ctx)
            pending = None
        yield record
        if record.kind == "early_validation" and pending is not None:
            yield from _early_preview(trainer, request, pending, first, ctx)
            pending = None
        elif record.kind == "step":
            steps += 1
            if steps == first and record.step < record.steps_per_epoch:
                pending = record.epoch
        elif record.kind == "epoch" and every and record.epoch % every == 0 and not ctx.should_stop():
            yield from _preview(trainer, request, record.epoch, ctx)
        elif record.kind == "finished" and every and record.best_epoch and record.reason != "stopped":
            yield from _preview(trainer, request, record.best_epoch, ctx)  # the restored best weights


def _early_preview(trainer, request: TrainRequest, epoch: int, steps: int, ctx: TaskContext) -> Iterator[Record]:
    if not ctx.should_stop():
        yield from _preview(trainer, request, epoch, ctx, after_steps=steps)


def _preview(trainer, request: TrainRequest, epoch: int, ctx: TaskContext,
             after_steps: int = 0) -> Iterator[PreviewRecord]:
    from ..engine.diffusion.sampling import sample_steps
    from ..engine.diffusion.scheduling import SamplerConfig
    from ..engine.storage.data import to_uint8

    steps = max(1, min(request.preview_steps, trainer.schedule.timesteps))
    x = None
    for step in sample_steps(trainer.sampling_model(), trainer.schedule, request.preview_count,
                             sampler=SamplerConfig(kind="ddim", steps=steps), seed=PREVIEW_SEED,
                             device=trainer.device, precision=trainer.precision):
        if ctx.should_stop():
            return
        x = step.x
    if x is not None:
        yield PreviewRecord(epoch, to_uint8(x).numpy(), step=after_steps)
