"""Named training recipes: the app's default, the previous default ("plain") and the original
DDPM one ("report": the recipe of the project's first report).

A preset is the triple of configs a run starts from. The default was chosen by
measurement (docs/quality.md); the original recipe is kept, exactly, so
people can compare against it. Titles are what a learner reads in the form; the paper and the
report are named in the descriptions (the form's tooltip).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import defaults as D
from ..diffusion.schedule import ScheduleConfig
from .config import TrainConfig
from ..diffusion.unet import UNetConfig


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    description: str
    model: UNetConfig
    schedule: ScheduleConfig
    train: TrainConfig


PRESETS: dict[str, Preset] = {
    "default": Preset(
        name="default",
        title="Default",
        description=(
            "A class-conditional residual U-Net (GroupNorm, SiLU, self-attention at 7x7; 32/64/128 channels "
            "at 28/14/7 px, 1.9 M parameters; the label is dropped 10% of the time, so the sampler can use "
            "classifier-free guidance), the linear schedule rescaled by 1000/T (T=300), EMA 0.999; Adam 1e-3 "
            "with batch 32, 100 warm-up steps and a cosine decay to the end of training (the epoch or "
            "time budget), gradient clipping at 1. Chosen by bench/time_to_quality.py (docs/quality.md)."
        ),
        model=UNetConfig(arch="res", num_classes=10),
        schedule=ScheduleConfig(kind=D.DEFAULT_SCHEDULE, timesteps=D.DEFAULT_TIMESTEPS),
        train=TrainConfig(ema_decay=D.DEFAULT_EMA_DECAY, batch_size=D.DEFAULT_BATCH_SIZE, lr=D.DEFAULT_LR,
                          lr_schedule=D.DEFAULT_LR_SCHEDULE, warmup_steps=D.DEFAULT_WARMUP_STEPS,
                          grad_clip=D.DEFAULT_GRAD_CLIP, epochs=D.DEFAULT_EPOCHS, patience=D.DEFAULT_PATIENCE,
                          bn_recalibration=0),
    ),
    "plain": Preset(
        name="plain",
        title="Plain U-Net",
        description=(
            "A smaller, older network: the plain U-Net of the original recipe (0.54 M parameters, BatchNorm) "
            "with the linear schedule rescaled by 1000/T, EMA 0.999 and BatchNorm statistics re-estimated "
            "before each validation; Adam 1e-3, batch 128. The app's default before the current one."
        ),
        model=UNetConfig(),
        schedule=ScheduleConfig(kind="rescaled_linear", timesteps=300),
        train=TrainConfig(ema_decay=0.999),
    ),
    "report": Preset(
        name="report",
        title="Original DDPM recipe",  # T and the schedule are the form's next rows
        description=(
            "The first recipe, kept to compare against: the linear beta schedule of the DDPM paper (Ho et al. "
            "2020, beta 1e-4..0.02) over T=300 steps instead of its 1000, so x_T keeps 22% of the image; "
            "the plain U-Net, no EMA; Adam 1e-3, batch 128, up to 50 epochs, patience 5. "
            "Exactly the recipe of the project's first report."
        ),
        model=UNetConfig(),
        schedule=ScheduleConfig(kind="linear", timesteps=300, beta_start=1e-4, beta_end=0.02),
        # BatchNorm evaluated with the running statistics training leaves, as the report's code did
        train=TrainConfig(ema_decay=0.0, bn_recalibration=0),
    ),
}
PRESET_NAMES = tuple(PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def with_overrides(preset: Preset, **train_overrides) -> Preset:
    """The preset with some TrainConfig fields replaced (None values are ignored)."""
    changes = {k: v for k, v in train_overrides.items() if v is not None}
    return replace(preset, train=replace(preset.train, **changes)) if changes else preset
