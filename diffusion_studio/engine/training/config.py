"""Training settings and what a training run reports: ``TrainConfig``, the records
``Trainer.run()`` yields, the learning-rate schedule, the loss-by-timestep bins, and the
rules for what a resumed or continued run may change. Torch-free but for nothing: plain data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Union

from ..defaults import LR_SCHEDULES, PRECISIONS
from ..diffusion.schedule import _known_fields


# meta entries that describe a sampling-only export (``export_for_sampling``), not a training run
_EXPORT_META = ("exported_from", "weights_are_ema", "bn_recalibrated_batches")
# bounds past which a value is a typo, not a setting (and overflows float32 arithmetic)
MAX_LR = 1.0
MAX_SEED = 2**40  # the generators are seeded seed * 1000 + 7 + rank, within torch's 64 bits
MAX_WARMUP_STEPS = 1_000_000
MAX_MIN_SNR_GAMMA = 1e6  # above the largest SNR of any schedule here, gamma changes nothing
MAX_BATCH_SIZE = 8192  # a sixth of the training split; beyond it an "epoch" is a handful of steps


def lr_factor(schedule: str, step: int, warmup_steps: int, progress: float) -> float:
    """The multiplier of the peak learning rate for optimiser step ``step`` (0-based).

    Linear warm-up over ``warmup_steps``, then 1 ("constant") or a half cosine
    from 1 to 0 over ``progress`` in [0, 1] ("cosine").
    """
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return warm


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the report's: Adam, lr 1e-3, 50 epochs, patience 5).

    ema_decay:  0 disables the exponential moving average of the weights; with
                EMA on, validation, early stopping and sampling use the EMA weights.
    precision:  "auto" (bf16 autocast on CPUs and bf16-capable GPUs), "fp32" or "bf16".
    label_dropout: for class-conditional models, the share of labels replaced by
                "no label" so the same network learns the unconditional score (CFG).
    grad_clip:  clip the gradient norm to this value (0 = off).
    val_seed:   seeds the fixed (t, eps) drawn once per validation image, so the
                validation curve measures the model, not the draw.
    bn_recalibration: before each validation, re-estimate the BatchNorm statistics
                of the weights being validated (the EMA copy when EMA is on) from
                this many training batches with t ~ U{1..T}; 0 keeps the running
                statistics training left behind (the report's behaviour). See
                ``recalibrate_batchnorm`` for why.
    lr_schedule: "constant" (the report's) or "cosine": after ``warmup_steps``
                of linear warm-up, the rate decays as a half cosine to zero at the
                end of training: at the epoch budget, or at the time budget when
                the run has one (``Trainer(max_seconds=...)``), whichever comes first.
    min_snr_gamma: weight each image's loss by min(SNR(t), gamma) / SNR(t)
                (Hang et al. 2023, "Min-SNR", for eps-prediction), so the
                nearly noise-free timesteps stop dominating the gradient; 0 = off.
    """

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    patience: int = 5
    seed: int = 0
    ema_decay: float = 0.0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True
    label_dropout: float = 0.1
    grad_clip: float = 0.0
    val_seed: int = 12345
    bn_recalibration: int = 40
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    min_snr_gamma: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch size must be >= 2 (BatchNorm needs it), got {self.batch_size}")
        if self.batch_size > MAX_BATCH_SIZE:
            raise ValueError(f"batch size must be at most {MAX_BATCH_SIZE} (asked for {self.batch_size})")
        if self.epochs > 100_000:
            raise ValueError(f"epochs must be at most 100000 (asked for {self.epochs})")
        if not (0 < self.lr <= MAX_LR):
            raise ValueError(f"learning rate must be a number in (0, {MAX_LR:g}], got {self.lr}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be a whole number in 0..{MAX_SEED}, got {self.seed}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if not (0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not (0.0 <= self.label_dropout < 1.0):
            raise ValueError(f"label_dropout must lie in [0, 1), got {self.label_dropout}")
        if not (self.grad_clip >= 0 and math.isfinite(self.grad_clip)):
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.bn_recalibration < 0:
            raise ValueError(f"bn_recalibration must be >= 0 batches, got {self.bn_recalibration}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
        if self.warmup_steps > MAX_WARMUP_STEPS:
            raise ValueError(f"warmup_steps must be at most {MAX_WARMUP_STEPS:,} (hundreds of epochs; the rate "
                             f"would stay near zero), got {self.warmup_steps}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not (0 <= self.min_snr_gamma <= MAX_MIN_SNR_GAMMA):
            raise ValueError(f"min_snr_gamma must be a number in 0..{MAX_MIN_SNR_GAMMA:g} (0 = off), got {self.min_snr_gamma}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class StartedRecord:
    """Everything a start line or a panel header shows about a run that is starting
    (``Trainer.started()``; the train task yields it first).

    mode: "new", "resume" or "continue"; start_epoch / start_step: where it starts (completed
    epochs, steps of the next one); start_lr: the rate its first step uses (a resume's warm
    restart, a fresh Adam's first warm-up step); history: the per-epoch records and per-step
    losses it brings ({"epochs": [...], "global_step": [...], "loss": [...]})."""

    mode: str
    device: str  # "cpu (2 threads)", "cuda (NVIDIA H100)"
    precision: str
    precision_detail: str  # what "auto" chose and why
    train_images: int
    val_images: int
    validation_images: int  # per validation: the split plus BatchNorm recalibration batches
    epochs: int
    start_epoch: int
    start_step: int
    start_lr: float
    steps_per_epoch: int
    timesteps: int
    train_config: dict
    model_config: dict
    schedule_config: dict
    preset: str
    run_dir: str
    max_seconds: float | None
    history: dict
    continued_from: dict | None = None  # {"source", "epochs", "changed"?} of a continued run
    source_name: str = ""  # what a continued run continues ("default", a run's name)
    kind: str = "started"

    def describe(self) -> str:
        """The start line: "training on cpu (2 threads), bf16 (measured: ...); 50000 train /
        10000 val digits; preset default, schedule rescaled_linear T=300; batch 32, lr 0.001,
        patience 5, EMA 0.999[; resuming at epoch 8, lr 0.00093][; time budget 15 min]"."""
        from ..text import continuing_from, resuming_at

        c = self.train_config
        where = ""
        if self.mode == "resume":
            where = f"; {resuming_at(self.start_epoch + 1, self.start_lr)}"
        elif self.mode == "continue":
            epochs = float((self.continued_from or {}).get("epochs", self.start_epoch))
            where = f"; {continuing_from(self.source_name, epochs, self.start_epoch + 1, self.start_lr)}"
        budget = f"; time budget {self.max_seconds / 60:g} min" if self.max_seconds else ""
        return (f"training on {self.device}, {self.precision_detail}; {self.train_images} train / "
                f"{self.val_images} val digits; preset {self.preset or 'unknown'}, schedule "
                f"{self.schedule_config.get('kind')} T={self.timesteps}; batch {c['batch_size']}, lr {c['lr']:g}, "
                f"patience {c['patience']}, EMA {c['ema_decay'] or 'off'}{where}{budget}")


@dataclass(frozen=True)
class StepRecord:
    epoch: int  # 1-based epoch this step belongs to
    step: int  # 1-based step within the epoch
    steps_per_epoch: int
    global_step: int
    loss: float
    images_per_s: float  # this epoch so far
    elapsed: float  # seconds since this run() started
    lr: float = 0.0  # the learning rate this step used (after warm-up and decay)
    kind: str = "step"


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    seconds: float
    images_per_s: float
    best_val_loss: float
    best_epoch: int
    epochs_without_improvement: int
    patience: int
    improved: bool
    validation_seconds: float = 0.0  # of ``seconds``: BatchNorm recalibration + validation
    fraction: float = 1.0  # of the epoch trained: below 1 when the time budget ended it part-way
    # the validation loss per t bin (``loss_bins(T)``; None for an empty bin)
    val_loss_by_t: list | None = None
    kind: str = "epoch"


@dataclass(frozen=True)
class BaselineRecord:
    """A continued run validated the weights it brought before training: they are its best so
    far (best.pt), the loss its epochs must beat."""

    epoch: int  # the epochs those weights were trained
    val_loss: float
    seconds: float  # the validation's
    kind: str = "baseline"


@dataclass(frozen=True)
class EarlyValidationRecord:
    """An estimate of the validation loss after the run's first steps, long before the first
    epoch's validation: the sampling weights on the first ``images`` validation digits with the
    epoch validation's own fixed (t, eps), so it estimates the same loss, with more noise. It is
    not an epoch's validation: best.pt, early stopping and the time budget ignore it."""

    epoch: int  # 1-based epoch the steps belong to
    step: int  # steps of that epoch done
    global_step: int
    position: float  # in epochs: epoch - 1 + step / steps_per_epoch (where a chart draws it)
    val_loss: float
    images: int  # validation digits it used
    val_images: int  # in the whole validation split (what the epoch's validation uses)
    seconds: float
    kind: str = "early_validation"

    def describe(self) -> str:
        """"early estimate after 200 steps (0.13 epoch): validation loss 0.04512 on the first 1,000
        of 10,000 validation digits, 2.1 s"."""
        return (f"early estimate after {self.global_step:,} steps ({self.position:.2f} epoch): validation loss "
                f"{_format_loss(self.val_loss)} on the first {self.images:,} of {self.val_images:,} validation "
                f"digits, {self.seconds:.1f} s")


@dataclass(frozen=True)
class FinishedRecord:
    reason: Literal["completed", "early_stopped", "stopped", "diverged", "budget"]
    epoch: int  # completed epochs
    best_epoch: int  # 0 when no epoch finished
    best_val_loss: float
    message: str
    kind: str = "finished"


Record = Union[StartedRecord, StepRecord, EpochRecord, EarlyValidationRecord, BaselineRecord, FinishedRecord]


LOSS_BINS = 20


def loss_bins(timesteps: int, bins: int = LOSS_BINS) -> list[int]:
    """Edges of the t bins of the loss-by-timestep curve: bin i holds edges[i] <= t < edges[i+1],
    t in 1..T (at most ``bins`` bins of about equal width)."""
    n = max(1, min(bins, timesteps))
    return sorted({int(round(1 + i * timesteps / n)) for i in range(n)} | {timesteps + 1})


# what a resume may raise: the epochs, and the patience of early stopping. A resume's cosine decay
# restarts warm (``Trainer.next_lr``), and the validation loss can stay above its old best for
# several epochs after it (docs/bundled-models.md), so a resume may ask to wait longer. A lower
# value would be ignored, so it is a conflict.
RESUMABLE = (("train", "epochs"), ("train", "patience"))
# what a continued run may change: its Adam starts afresh, so the optimiser's rate and its
# schedule and the EMA of the weights are this run's own (a lower peak rate and a longer EMA
# fine-tune weights that an earlier run's decay has already settled)
CONTINUE_CHANGEABLE = (("train", "lr"), ("train", "lr_schedule"), ("train", "warmup_steps"),
                       ("train", "ema_decay"))


def resume_conflicts(payload: dict, requested: dict[tuple[str, str], Any]) -> list[str]:
    """Settings asked for with a resume that the run would otherwise silently ignore.

    payload: the run's last.pt; requested: {("train", "lr"): 1e-4, ("schedule", "timesteps"): 100, ...}
    (only what the user set). A resumed run keeps its own model, schedule and
    training settings, so any value that differs from the run's is a conflict;
    ``epochs`` and ``patience`` may be raised (``RESUMABLE``: train longer, wait
    longer for an improvement), and only a lower value of theirs is one. Returns one phrase
    per conflict, e.g. "lr 0.0001 (the run uses 0.001)"; [] when there is none.
    """
    out = []
    for (section, name), value in requested.items():
        if value is None:
            continue
        saved = (payload.get(section) or {}).get(name)
        if isinstance(saved, list):
            saved = tuple(saved)
        if (section, name) in RESUMABLE:
            if saved is not None and value < saved:
                out.append(f"{name} {value} (the run uses {saved}; a resume may only raise it)")
        elif saved != value:
            out.append(f"{name} {value} (the run uses {saved})")
    return out


def _format_loss(x: float) -> str:
    return f"{x:.5f}" if math.isfinite(x) else str(x)
