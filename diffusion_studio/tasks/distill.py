"""Distillation: a few-step student of a trained model, round by round.

    request = DistillRequest(teacher="default-conditional", out=Path("distill"), steps=4)
    for record in distill(request, data, ctx):
        ...     # RoundRecord, then the round's training records (StartedRecord, StepRecord,
                # EpochRecord, FinishedRecord), for every round

The rounds (``engine.training.distill``): first "guidance", a student of ``start_steps``
steps that takes the guidance weight as an input, then "halve" rounds of start_steps / 2,
/ 4, ... down to ``steps``, less the students in ``skip`` (the round after a skipped student
learns from the one before it: 16 -> 4 in one round with skip=(8,)). Each round is a training
run in its own folder under ``out`` (``guidance-16``, ``steps-8``, ``steps-4`` ...): its own
curves, time budget, stop and resume. Running the same request again goes on where it
stopped: finished rounds are kept, a stopped one is resumed, the rest start from the round
before.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from ..engine import runs as R
from ..engine.defaults import (
    DEFAULT_EPOCHS, DEFAULT_GRAD_CLIP, DEFAULT_PATIENCE, DEFAULT_WARMUP_STEPS, DISTILL_BATCH_SIZE, DISTILL_LR,
    DISTILL_LOSSES, DISTILL_ROUND_MINUTES, DISTILL_START_STEPS, DISTILL_STEPS, DISTILL_VAL_IMAGES,
)
from ..engine.training.config import Record, TrainConfig
from .context import TaskContext, context_or_default
from .models import ModelRef


def distill_train_config(**changes) -> TrainConfig:
    """A round's optimisation: a fine-tuning of a trained network (Adam at DISTILL_LR with a
    warm-up and a cosine decay to the round's time budget, EMA, clipped gradients)."""
    base = dict(epochs=DEFAULT_EPOCHS, batch_size=DISTILL_BATCH_SIZE, lr=DISTILL_LR, patience=DEFAULT_PATIENCE,
                ema_decay=0.999, precision="auto", grad_clip=DEFAULT_GRAD_CLIP, bn_recalibration=0,
                lr_schedule="cosine", warmup_steps=DEFAULT_WARMUP_STEPS, label_dropout=0.1)
    return TrainConfig(**{**base, **changes})


def students_between(start_steps: int, steps: int) -> tuple[int, ...]:
    """The students a halving ladder from ``start_steps`` to ``steps`` makes between them (16, 4:
    (8,)); () when there are none or the ratio is not a power of 2."""
    ratio = start_steps // steps if steps >= 1 else 0
    if ratio < 2 or start_steps % steps or ratio & (ratio - 1):
        return ()
    return tuple(start_steps // 2 ** k for k in range(1, ratio.bit_length() - 1))


def round_what(stage: str, steps: int, teacher_steps: int) -> str:
    """What a round does, in words: "fold the guidance in, 16 steps" or "16 steps -> 4"."""
    return f"fold the guidance in, {steps} steps" if stage == "guidance" else f"{teacher_steps} steps -> {steps}"


@dataclass(frozen=True)
class Round:
    """One round: its stage ("guidance" or "halve"), the student's steps, its folder and the
    steps of the teacher it learns from (the round before's student; the guidance round's own)."""

    stage: str
    steps: int
    folder: Path
    teacher_steps: int

    @property
    def factor(self) -> int:
        return self.teacher_steps // self.steps


@dataclass(frozen=True)
class DistillRequest:
    """What to distil.

    teacher: a model as a user names it (bundled name, .pt file or run folder).
    out: the distillation's folder (one run folder per round inside it).
    steps: the last round's student; start_steps: the guidance round's grid (steps times a power of 2).
    skip: students of the halving ladder between them not to make (the next round learns from the
        one before: fewer rounds, fewer errors that compound, each round a harder jump).
    round_minutes: the time budget of each round: one number for all, or one per round.
    weights: the weight range the students learn (None: ``engine.defaults``).
    guidance_loss: the space the guidance round's error is measured in, "eps" or "v" (None:
        ``engine.defaults.DISTILL_LOSS``); the halving rounds measure it in v.
    """

    teacher: str
    out: Path
    steps: int = DISTILL_STEPS
    start_steps: int = DISTILL_START_STEPS
    skip: tuple[int, ...] = ()
    round_minutes: tuple[float, ...] = (DISTILL_ROUND_MINUTES,)
    weights: tuple[float, float] | None = None
    guidance_loss: str | None = None
    device: str = "auto"
    train: TrainConfig = field(default_factory=distill_train_config)
    val_images: int = DISTILL_VAL_IMAGES

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "round_minutes", tuple(float(m) for m in self.round_minutes))
        object.__setattr__(self, "skip", tuple(sorted(set(self.skip), reverse=True)))
        if not (isinstance(self.steps, int) and isinstance(self.start_steps, int)
                and 1 <= self.steps <= self.start_steps <= 1000):
            raise ValueError(f"the steps must satisfy 1 <= steps <= start steps <= 1000, got {self.steps} "
                             f"and {self.start_steps}")
        ratio = self.start_steps // self.steps
        if self.start_steps % self.steps or ratio & (ratio - 1):
            raise ValueError(f"the start steps ({self.start_steps}) must be the steps ({self.steps}) times a "
                             "power of 2: each round halves them")
        ladder = students_between(self.start_steps, self.steps)
        if any(k not in ladder for k in self.skip):
            between = ", ".join(map(str, ladder)) or "none"
            raise ValueError(f"only the students between the start and the last can be skipped ({between}), "
                             f"got {', '.join(map(str, self.skip))}")
        if not self.round_minutes or any(not (m > 0 and math.isfinite(m)) for m in self.round_minutes):
            raise ValueError(f"each round's time budget must be a positive number of minutes, got "
                             f"{list(self.round_minutes)}")
        if self.guidance_loss is not None and self.guidance_loss not in DISTILL_LOSSES:
            raise ValueError(f"the guidance round's loss is eps or v, got {self.guidance_loss!r}")
        if len(self.round_minutes) not in (1, len(self.rounds)):
            raise ValueError(f"give one time budget for all rounds or one per round ({len(self.rounds)}), "
                             f"got {len(self.round_minutes)}")

    @property
    def rounds(self) -> list[Round]:
        out = [Round("guidance", self.start_steps, self.out / f"guidance-{self.start_steps}", self.start_steps)]
        steps = self.start_steps
        while steps > self.steps:
            steps //= 2
            if steps not in self.skip:
                out.append(Round("halve", steps, self.out / f"steps-{steps}", out[-1].steps))
        return out

    def minutes(self, index: int) -> float:
        return self.round_minutes[index if len(self.round_minutes) > 1 else 0]


@dataclass(frozen=True)
class RoundRecord:
    """A round begins ("starting", "resuming") or is already done ("done"); ``loss``: the space
    its error is measured in ("v" or "eps"; "" for a round already done)."""

    index: int
    rounds: int
    stage: str
    steps: int
    folder: str
    status: str
    teacher_steps: int
    loss: str = ""
    kind: str = "round"

    def describe(self) -> str:
        what = round_what(self.stage, self.steps, self.teacher_steps)
        return f"round {self.index + 1}/{self.rounds} ({what}): {self.status}, {self.folder}"


def round_status(folder: Path) -> str:
    """"new" (nothing there yet), "resume" (a run that stopped before its end) or "done"."""
    if not R.run_files_in(folder):
        return "new"
    if not (folder / "last.pt").exists():
        R.check_new_run_folder(folder)  # refuses, in one line, a folder it cannot go on with
    reason = _history(folder).get("finished_reason")
    return "done" if reason not in (None, "stopped") else "resume"


def _history(folder: Path) -> dict:
    try:
        history = json.loads((folder / "history.json").read_text())
    except (OSError, ValueError):
        return {}
    return history if isinstance(history, dict) else {}


def check_round_teacher(rnd: Round) -> None:
    """Refuse, in one line, a round folder made from another teacher than the request's round
    learns from (a distillation asked for with other skipped students)."""
    made = (_history(rnd.folder).get("meta") or {}).get("distilled_from") or {}
    steps = made.get("teacher_steps") if isinstance(made, dict) else None
    if rnd.stage == "halve" and isinstance(steps, int) and steps != rnd.teacher_steps:
        raise ValueError(f"{rnd.folder} learnt from a {steps}-step teacher, where this distillation's round learns "
                         f"from a {rnd.teacher_steps}-step one; ask with the skipped students that made it, or "
                         "choose another folder")


def plan_distill_round(request: DistillRequest, index: int):
    """The TrainPlan of round ``index``: a resume of its folder, or a new round whose teacher is
    the request's (the guidance round) or the round before's student."""
    from ..engine.training.distill import plan_distill
    from ..engine.training.plan import plan_resume

    rnd = request.rounds[index]
    if round_status(rnd.folder) == "resume":
        return plan_resume(rnd.folder)
    teacher = ModelRef.of(request.teacher).checkpoint() if index == 0 else request.rounds[index - 1].folder
    own = {"loss": request.guidance_loss} if rnd.stage == "guidance" else {"factor": rnd.factor}
    return plan_distill(teacher, stage=rnd.stage, steps=rnd.steps, train=request.train, weights=request.weights,
                        val_images=request.val_images, **own)


def check_request(request: DistillRequest) -> None:
    """Refuse, before anything runs, what the distillation could not do (one line each): a
    teacher it cannot distil, an ``out`` that is a file or a round folder it cannot go on with."""
    if request.out.exists() and not request.out.is_dir():
        raise ValueError(f"{request.out} is a file; choose a folder for the distillation")
    for rnd in request.rounds:
        round_status(rnd.folder)
        check_round_teacher(rnd)
    if round_status(request.rounds[0].folder) == "new":
        plan_distill_round(request, 0)  # reads the teacher: a wrong one is refused now


def distill(request: DistillRequest, data, ctx: TaskContext | None = None) -> Iterator[Record | RoundRecord]:
    """Run the request's rounds in turn (see the module docstring); ends early when a round was
    stopped (``ctx``) or failed."""
    from ..engine.training.trainer import Trainer

    ctx = context_or_default(ctx)
    rounds = request.rounds
    request.out.mkdir(parents=True, exist_ok=True)
    write_distillation_file(request)
    for index, rnd in enumerate(rounds):
        status = round_status(rnd.folder)
        if status == "done":
            yield RoundRecord(index, len(rounds), rnd.stage, rnd.steps, str(rnd.folder), "done", rnd.teacher_steps)
            continue
        if ctx.should_stop():
            return
        plan = plan_distill_round(request, index)
        if status == "new":
            R.init_run(R.check_new_run_folder(rnd.folder), f"distill-{rnd.stage}-{rnd.steps}")
        yield RoundRecord(index, len(rounds), rnd.stage, rnd.steps, str(rnd.folder),
                          "starting" if status == "new" else "resuming", rnd.teacher_steps, plan.distill.loss)
        finished = None
        with R.mark_running(rnd.folder):
            trainer = Trainer(plan, data, device=request.device, run_dir=rnd.folder, stop_event=ctx.stop_event,
                              max_seconds=60.0 * request.minutes(index))
            yield trainer.started()
            for record in trainer.run():
                yield record
                if record.kind == "finished":
                    finished = record
        if finished is None or finished.reason == "stopped":
            return


DISTILLATION_FILE = "distill.json"


def write_distillation_file(request: DistillRequest) -> None:
    """``out/distill.json``: what the distillation was asked to do, so a viewer finds its teacher
    (as the user named it) and a later run of the command can be compared with it."""
    from ..engine.storage.atomic import write_json_atomic

    write_json_atomic(request.out / DISTILLATION_FILE, {
        "teacher": str(request.teacher), "steps": request.steps, "start_steps": request.start_steps,
        "skip": list(request.skip), "round_minutes": list(request.round_minutes),
        "weights": list(request.weights) if request.weights is not None else None})


def distillation_teacher(out: str | os.PathLike) -> str | None:
    """The teacher a distillation folder was made from, as the user named it (``distill.json``),
    or None when the folder has no readable record of it."""
    try:
        teacher = json.loads((Path(out) / DISTILLATION_FILE).read_text()).get("teacher")
    except (OSError, ValueError, AttributeError):
        return None
    return teacher if isinstance(teacher, str) and teacher else None


def student_checkpoints(out: str | os.PathLike) -> list[tuple[int, Path]]:
    """(steps, best.pt) of every round in a distillation folder that has one, most steps first."""
    found = []
    for folder in Path(out).iterdir() if Path(out).is_dir() else []:
        name = folder.name
        steps = name.split("-", 1)[1] if name.startswith(("guidance-", "steps-")) else ""
        if steps.isdigit() and (folder / "best.pt").is_file():
            found.append((int(steps), folder / "best.pt"))
    return sorted(found, reverse=True)


@dataclass(frozen=True)
class RoundStrip:
    """The learner's view of a distillation: the same digits (one x_T each) from the teacher's
    samplers and from every round's student, one row each. rows: (label, (n, 28, 28) uint8)."""

    rows: list[tuple[str, np.ndarray]]

    def picture(self, scale: int = 2) -> np.ndarray:
        from ..engine.storage.images import labelled_grid

        n = len(self.rows[0][1])
        images = np.concatenate([images for _, images in self.rows])
        return labelled_grid(images, n, row_labels=[label for label, _ in self.rows], scale=scale)


def round_strip(teacher, students: list[tuple[int, Path]], *, n: int = 10, seed: int = 0,
                sampler=None, device: str = "auto", ctx: TaskContext | None = None) -> RoundStrip:
    """The teacher's digits (DDPM with all T steps, and the deterministic DDIM grid the
    students started from) beside each student's, every row from the same x_T and digits.
    teacher: a ModelRef or its name; students: ``student_checkpoints``' list."""
    from ..engine.diffusion.sampling import initial_noise, sample_steps
    from ..engine.diffusion.scheduling import SamplerConfig, student_sampler
    from ..engine.storage.data import to_uint8
    from .models import open_model
    from .sample import sampling_precision

    ctx = context_or_default(ctx)
    sampler = sampler or SamplerConfig()
    rows = []
    x_T = initial_noise(n, seed)

    def run(model, label: str, how) -> None:
        ctx.check()
        labels = None
        if model.model_config.conditional:
            import torch

            labels = torch.arange(n) % model.model_config.num_classes
        x = None
        precision = sampling_precision(model, "auto").precision
        for step in sample_steps(model.model, model.schedule, n, sampler=how, labels=labels, seed=seed,
                                 device=model.device, precision=precision, x_T=x_T, guide=model.guide):
            x = step.x
        rows.append((label, to_uint8(x).numpy()))
        ctx.progress("comparing", len(rows), len(students) + 2)

    loaded = open_model(ModelRef.of(teacher), device)
    calls = 2 if (loaded.model_config.conditional or loaded.guide is not None) else 1
    T = loaded.schedule.timesteps
    run(loaded, f"teacher, DDPM {T} steps ({calls * T} calls)",
        replace(sampler, kind="ddpm", steps=None, spacing="linspace"))
    if students:
        first = students[0][0]
        run(loaded, f"teacher, DDIM {first} steps ({calls * first} calls)", student_sampler(sampler, first))
    for steps, path in students:
        run(open_model(path, device), f"student, {steps} step{'s' if steps > 1 else ''} ({steps} call"
                                      f"{'s' if steps > 1 else ''})", sampler)
    return RoundStrip(rows)
