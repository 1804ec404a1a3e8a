"""Sampling: digits from a model, as the ``sample`` command writes them and as the Sampler
panel animates them.

Every entry point takes the model handle (``LoadedModel``: its network, schedule and guide),
a ``SampleRequest`` (its ``SamplerConfig``, seed and digit) and a ``TaskContext``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..engine.defaults import DEFAULT_SAMPLE_BATCH, DEFAULT_SAMPLE_COUNT
from ..engine.device import PrecisionChoice, choose_precision
from ..engine.diffusion.sampling import initial_noise, sample, sample_steps
from ..engine.diffusion.scheduling import SamplerConfig, kept_frames, reverse_timesteps
from ..engine.storage.checkpoint import LoadedModel
from ..engine.storage.data import to_uint8
from .context import TaskContext, context_or_default

MAX_IMAGES = 1_000_000  # one request; more is a typo, not a plan (1,000,000 digits are 0.8 GB)


@dataclass(frozen=True)
class SampleRequest:
    """What to sample.

    n: how many digits. sampler: the reverse process. seed: batch b is seeded seed + b.
    digit: for a class-conditional model, the digit to make, or None for 0-9 in turn
    (ignored for an unconditional model). precision: "auto", "fp32" or "bf16".
    batch_size: digits per batch (``sample_images``).
    """

    n: int = DEFAULT_SAMPLE_COUNT
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    seed: int = 0
    digit: int | None = None
    precision: str = "auto"
    batch_size: int = DEFAULT_SAMPLE_BATCH

    def __post_init__(self) -> None:
        if not 1 <= self.n <= MAX_IMAGES:
            raise ValueError(f"the number of images must lie in 1..{MAX_IMAGES:,}, got {self.n}")
        if not 1 <= self.batch_size <= MAX_IMAGES:
            raise ValueError(f"the batch size must lie in 1..{MAX_IMAGES:,}, got {self.batch_size}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"the seed must be a whole number in 0..2^63-1, got {self.seed}")
        if self.digit is not None and not 0 <= self.digit <= 9:
            raise ValueError(f"the digit must be 0..9, got {self.digit}")

    def labels(self, model: LoadedModel) -> torch.Tensor | None:
        """(n,) digits to ask a class-conditional model for; None for an unconditional one."""
        classes = model.model_config.num_classes
        if not classes:
            return None
        if self.digit is not None:
            if self.digit >= classes:
                raise ValueError(f"the digit must be 0..{classes - 1} for this model, got {self.digit}")
            return torch.full((self.n,), self.digit, dtype=torch.long)
        return torch.arange(self.n) % classes


def check_digit_applies(model: LoadedModel, request: SampleRequest) -> None:
    """A digit asked of an unconditional model is refused rather than ignored."""
    if request.digit is not None and not model.model_config.conditional:
        raise ValueError("a digit needs a class-conditional model; this one is unconditional")


def sampling_precision(model: LoadedModel, precision: str) -> PrecisionChoice:
    """The precision a model samples in here ("auto": measured once per CPU, then cached)."""
    return choose_precision(precision, torch.device(model.device), mode="sample", model_config=model.model_config)


@dataclass(frozen=True)
class SampleResult:
    images: torch.Tensor  # (n, C, 28, 28) float32 on the CPU, unclipped
    labels: torch.Tensor | None
    precision: PrecisionChoice
    path: Path | None = None  # where ``sample_to_file`` wrote them


def sample_images(model: LoadedModel, request: SampleRequest, ctx: TaskContext | None = None) -> SampleResult:
    """``request.n`` digits in batches; progress stage "sampling" counts reverse steps.
    Raises ``SamplingStopped`` when the context asks to stop."""
    ctx = context_or_default(ctx)
    check_digit_applies(model, request)
    choice = sampling_precision(model, request.precision)
    labels = request.labels(model)
    images = sample(model.model, model.schedule, request.n, sampler=request.sampler, labels=labels,
                    seed=request.seed, device=model.device, precision=choice.precision,
                    batch_size=request.batch_size, guide=model.guide,
                    progress=lambda done, total: ctx.progress("sampling", done, total),
                    should_stop=ctx.should_stop)
    return SampleResult(images, labels, choice)


SAMPLE_SUFFIXES = (".png", ".npz")


def check_output(out: str | os.PathLike) -> Path:
    """Where ``sample_to_file`` may write: a .png (a grid) or a .npz, in a writable folder."""
    from ..engine.storage.atomic import check_writable

    out = Path(out)
    if out.suffix.lower() not in SAMPLE_SUFFIXES:
        raise ValueError(f"the output must end in .png or .npz, got {out.name!r}")
    check_writable(out)
    return out


def provenance_text(model: LoadedModel, label: str, description: str = "", **settings: str) -> dict:
    """What made a picture, as PNG text chunks: the app, the model (``label`` and its file) and
    the request's ``settings`` (sampler, seed, n, digit), and a description."""
    from .. import __version__

    text = {"Software": f"Diffusion Studio {__version__}", "model": label or "current model",
            "checkpoint": str(model.path) if model.path is not None else "(not from a file)",
            **settings, "app_version": __version__}
    if description:
        text["Description"] = description
    return text


def describe_model_sampling(model: LoadedModel, sampler: SamplerConfig) -> str:
    """What makes ``model``'s digits with ``sampler``, in one line (a student: its own steps)."""
    from ..engine.diffusion.sampling import sampler_for
    from ..engine.evaluation.report import made_by

    return made_by(model, sampler_for(model.model, sampler))


def sample_settings(model: LoadedModel, request: SampleRequest) -> dict:
    """A SampleRequest's settings as text: the sampler as ``SamplerConfig.describe``, seed, n, digit."""
    if not model.model_config.conditional:
        digit = "none (an unconditional model)"
    else:
        digit = "0-9 in turn" if request.digit is None else str(request.digit)
    return {"sampler": describe_model_sampling(model, request.sampler), "seed": str(request.seed),
            "n": str(request.n), "digit": digit}


def sample_to_file(model: LoadedModel, request: SampleRequest, out: str | os.PathLike,
                   ctx: TaskContext | None = None, *, label: str = "") -> SampleResult:
    """``sample_images``, written to ``out``: a PNG grid (its text chunks say what made it:
    ``provenance_text``) or an NPZ (key "images", uint8). The output is checked before minutes
    of sampling."""
    from ..engine.storage.images import save_grid, save_npz

    out = check_output(out)
    result = sample_images(model, request, ctx)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".png":
        save_grid(result.images, out, text=provenance_text(model, label, **sample_settings(model, request)))
    else:
        save_npz(result.images, out)
    return SampleResult(result.images, result.labels, result.precision, out)


# ------------------------------------------------------------------ the animation
@dataclass(frozen=True)
class Frame:
    """One kept moment of the reverse process.

    t:  the timestep of ``x`` (T for pure noise, 0 for the result)
    x:  (n, 28, 28) uint8, x_t (0 = black)
    x0: (n, 28, 28) uint8, the network's prediction of x_0 from x_t (at t = 0: x_0 itself)
    """

    t: int
    x: np.ndarray
    x0: np.ndarray


@dataclass(frozen=True)
class Frames:
    """What ``sample_frames`` kept: the frames in order (t descending), whether a stop ended
    the run early, and the precision it sampled in."""

    frames: list[Frame]
    stopped: bool
    precision: PrecisionChoice


def _uint8(x: torch.Tensor) -> np.ndarray:
    return to_uint8(x).numpy()


def sample_frames(model: LoadedModel, request: SampleRequest, ctx: TaskContext | None = None, *,
                  max_frames: int = 120, x_start: torch.Tensor | None = None,
                  start_t: int | None = None) -> Frames:
    """Run the reverse process for ``request.n`` digits in one batch, keeping about
    ``max_frames`` frames (plus the strip's timesteps and x_0: ``kept_frames``), so memory
    stays bounded. Each kept frame goes to ``ctx.partial`` as it is made; progress stage
    "sampling" counts steps. A stop ends the run with the frames kept so far
    (``stopped`` True). ``x_start``/``start_t``: start from this x_t at t = start_t
    ("denoise from here") instead of noise from the seed.
    """
    ctx = context_or_default(ctx)
    check_digit_applies(model, request)
    sampler = request.sampler
    ts = reverse_timesteps(sampler, model.schedule, start_t)
    device = torch.device(model.device)
    choice = sampling_precision(model, request.precision)
    if x_start is not None:
        x_T = x_start.to(device=device, dtype=torch.float32)
    else:  # the x_T sample_steps draws from this seed
        x_T = initial_noise(request.n, request.seed, channels=model.model_config.image_channels, device=device)
    wanted = kept_frames(ts, max_frames, model.schedule.timesteps)  # t_prev values; x_T is kept too
    frames: list[Frame] = []

    def keep(t: int, x: torch.Tensor, x0: torch.Tensor) -> None:
        frames.append(Frame(int(t), _uint8(x), _uint8(x0)))
        ctx.partial(frames[-1])

    steps = sample_steps(model.model, model.schedule, request.n, sampler=sampler, seed=request.seed,
                         device=device, precision=choice.precision, labels=request.labels(model), x_T=x_T,
                         start_t=start_t, guide=model.guide)
    x = x_T
    for step in steps:
        if ctx.should_stop():
            return Frames(frames, True, choice)
        if step.index == 0 or step.t in wanted:  # x_t and the x_0 the network predicted from it
            keep(step.t, step.x_t, step.x0_pred)
        x = step.x
        ctx.progress("sampling", step.index + 1, len(ts))
    keep(0, x, x)  # t = 0: the result is its own x_0
    return Frames(frames, False, choice)
