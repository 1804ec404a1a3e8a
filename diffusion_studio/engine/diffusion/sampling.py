"""The sampling loop: at every step the guided eps (``guidance``), then one step
(``scheduling``), yielding a ``SampleStep`` so a viewer can animate x_T -> x_0.
``sample()`` runs the loop to the end in batches.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..stopping import Stopped
from .guidance import _channels_last, guided_eps
from .schedule import NoiseSchedule
from .scheduling import (
    SampleStep, SamplerConfig, StepResult, ddim_step, ddpm_step, dpmpp2m_step, reverse_timesteps, student_sampler,
)


def sampler_for(model: nn.Module, sampler: SamplerConfig | None) -> SamplerConfig:
    """The sampler ``model`` runs with: ``sampler`` (default: the app's), or for a distilled
    student its own steps (``student_sampler``) with ``sampler``'s guidance weights."""
    sampler = sampler or SamplerConfig()
    steps = getattr(getattr(model, "config", None), "distilled_steps", 0)
    return student_sampler(sampler, steps) if steps else sampler


def describe_sampling(model: nn.Module, timesteps: int, sampler: SamplerConfig, origin: str | None = None) -> str:
    """One line on what makes a model's digits: ``sampler.describe``, or for a distilled student
    its own steps and the weight it takes ("a 4-step student distilled from default-conditional:
    its own 4 deterministic steps, one network call each, guidance w = 0.1")."""
    config = getattr(model, "config", None)
    if config is None or not config.is_student:
        return sampler.describe(timesteps)
    steps = config.distilled_steps
    weight = f"guidance w = {sampler.guidance:g}" if config.weight_input == "guidance" \
        else f"autoguidance g = {sampler.autoguidance:g}"
    return (f"a {steps}-step student distilled from {origin or 'a model'}: its own {steps} deterministic "
            f"step{'s' if steps > 1 else ''}, one network call each, {weight}")


def initial_noise(n: int, seed: int, *, channels: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
    """The x_T that ``sample_steps`` draws for ``n`` images from ``seed`` (its first draw):
    (n, channels, 28, 28) float32."""
    gen = torch.Generator(device=device).manual_seed(int(seed))
    return torch.randn((n, channels, 28, 28), generator=gen, device=device)


def sample_steps(
    model: nn.Module,
    schedule: NoiseSchedule,
    n: int,
    *,
    sampler: SamplerConfig | None = None,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    x_T: torch.Tensor | None = None,
    guidance: torch.Tensor | None = None,
    start_t: int | None = None,
    guide: nn.Module | None = None,
    autoguidance: torch.Tensor | None = None,
) -> Iterator[SampleStep]:
    """Run the reverse process for ``n`` images, yielding one SampleStep per step.

    Exactly ``sampler.num_steps(T)`` steps are yielded; the last one's ``x`` is x_0. Randomness
    comes from a generator seeded with ``seed`` on ``device`` (x_T, z). labels: (n,) int64 digits
    for a class-conditional model, or None. x_T: start from this (n, C, H, W) noise instead.
    guidance / autoguidance: (n,) one weight per image, instead of the sampler's.
    start_t: start at this t < T from ``x_T`` (then x_{start_t}, e.g. a real digit noised to it:
        "denoise from here", SDEdit); the steps are ``reverse_timesteps(sampler, schedule, start_t)``.
    guide: the model's guide network (``LoadedModel.guide``, a weaker version of it on the same
        schedule), for autoguidance. The models are in eval mode for the run, then restored.
    """
    sampler = sampler_for(model, sampler)
    device = torch.device(device)
    if start_t is not None and x_T is None:
        raise ValueError("start_t needs the x_t to start from (x_T)")
    ts = reverse_timesteps(sampler, schedule, start_t)
    num_classes = getattr(getattr(model, "config", None), "num_classes", 0)
    labels = _checked_labels(labels, num_classes, n, device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    x = _first_x(model, n, gen, device, x_T)
    guide = _guide_to_use(guide, sampler, autoguidance, schedule, num_classes)
    memory_format = torch.channels_last if _channels_last(model) else torch.contiguous_format
    previous = None  # DPM-Solver++: the last step's (t, predicted x_0)
    with _eval_mode(model, guide), torch.inference_mode():
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else 0
            t_batch = torch.full((n,), t, device=device, dtype=torch.long)
            guided = guide is not None and t > sampler.autoguidance_min_t  # the guidance interval
            eps = guided_eps(
                model, x.contiguous(memory_format=memory_format), t_batch, labels,
                sampler.guidance if guidance is None else guidance, num_classes, device, precision,
                guide=guide if guided else None,
                autoguidance=sampler.autoguidance if autoguidance is None else autoguidance, schedule=schedule,
            )
            # z for this step, drawn only where the step uses one (the generator's
            # stream is part of what a seed means: keep the order of draws)
            needs_noise = t_prev > 0 and (sampler.kind == "ddpm" or (sampler.takes_eta and sampler.eta > 0))
            z = torch.randn(x.shape, generator=gen, device=device) if needs_noise else None
            result = _step(sampler, schedule, x, eps, t, t_prev, z, previous)
            previous = (t, result.pred_x0)
            yield SampleStep(i, len(ts), t, t_prev, result.prev_sample, result.pred_x0.clamp(-1, 1), x_t=x)
            x = result.prev_sample


def _first_x(model: nn.Module, n: int, gen: torch.Generator, device, x_T: torch.Tensor | None) -> torch.Tensor:
    """The chain's start: ``x_T`` when given, else noise. x_T is always the generator's first draw,
    so a given x_T (the same one, or another) leaves the noise z of every later step exactly as a
    seeded run has it."""
    channels = getattr(getattr(model, "config", None), "image_channels", 1)
    x = torch.randn((n, channels, 28, 28), generator=gen, device=device)
    return x if x_T is None else x_T.to(device=device, dtype=torch.float32).clone()


def _step(sampler: SamplerConfig, schedule: NoiseSchedule, x, eps, t: int, t_prev: int, z, previous) -> StepResult:
    """One step of ``sampler``'s kind (``scheduling``'s pure step functions)."""
    if sampler.kind == "ddpm":
        return ddpm_step(schedule, x, eps, t, noise=z, variance=sampler.variance, clip_x0=sampler.clips_x0)
    if sampler.kind == "dpmpp2m":
        return dpmpp2m_step(schedule, x, eps, t, t_prev, previous=previous, clip_x0=sampler.clips_x0)
    return ddim_step(schedule, x, eps, t, t_prev, eta=sampler.eta, noise=z, clip_x0=sampler.clips_x0)


def _checked_labels(labels, num_classes: int, n: int, device) -> torch.Tensor | None:
    if labels is None:
        return None
    if num_classes == 0:
        raise ValueError("labels were given but this model is not class-conditional")
    labels = labels.to(device=device, dtype=torch.long)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    return labels


def _guide_to_use(guide, sampler: SamplerConfig, autoguidance, schedule: NoiseSchedule, num_classes: int):
    """The guide network when autoguidance applies (a guide and a weight above 0), else None;
    a guide conditioned unlike its model, or an interval that guides no step, is refused."""
    if guide is None or (autoguidance is None and sampler.autoguidance <= 0):
        return None
    if sampler.autoguidance_min_t >= schedule.timesteps:
        raise ValueError(f"autoguidance above t = {sampler.autoguidance_min_t} guides no step of a T = "
                         f"{schedule.timesteps} model; choose a t below {schedule.timesteps} (0 guides every step)")
    guide_classes = getattr(getattr(guide, "config", None), "num_classes", 0)
    if guide_classes != num_classes:
        raise ValueError(f"the guide network takes {guide_classes or 'no'} classes and the model "
                         f"{num_classes or 'none'}: a guide must be conditioned like its model")
    return guide


@contextmanager
def _eval_mode(*models):
    """The networks in eval mode for the block, then back in the mode they were in."""
    was = [(m, m.training) for m in models if m is not None]
    for m, _ in was:
        m.eval()
    try:
        yield
    finally:
        for m, mode in was:
            m.train(mode)


def sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    n: int,
    *,
    sampler: SamplerConfig | None = None,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    batch_size: int = 500,
    progress=None,
    should_stop=None,
    guide: nn.Module | None = None,
) -> torch.Tensor:
    """Generate ``n`` images; returns (n, C, 28, 28) float32 on the CPU (not clipped).

    Batches of ``batch_size`` are seeded ``seed``, ``seed + 1``, ... so results do
    not depend on how many images were asked for before them.
    progress(done_steps, total_steps) is called after every step when given;
    should_stop() is checked after every step, and when it returns True the run
    ends by raising ``SamplingStopped``. guide: for autoguidance, as in ``sample_steps``.
    """
    sampler = sampler_for(model, sampler)
    if n < 1 or batch_size < 1:
        raise ValueError(f"need at least one image and a batch size of at least 1, got n={n}, batch {batch_size}")
    total_steps = sampler.num_steps(schedule.timesteps) * ((n + batch_size - 1) // batch_size)
    out, done = [], 0
    for b, start in enumerate(range(0, n, batch_size)):
        size = min(batch_size, n - start)
        batch_labels = labels[start : start + size] if labels is not None else None
        x = None
        for step in sample_steps(
            model, schedule, size, sampler=sampler, labels=batch_labels,
            seed=seed + b, device=device, precision=precision, guide=guide,
        ):
            x = step.x
            done += 1
            if progress is not None:
                progress(done, total_steps)
            if should_stop is not None and should_stop():
                raise SamplingStopped()
        out.append(x.float().cpu())
    return torch.cat(out)


class SamplingStopped(Stopped):
    """Raised by ``sample()`` when its should_stop() callback returned True."""

