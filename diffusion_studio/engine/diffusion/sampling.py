"""The sampling loop: at every step the guided eps (``guidance``), then one step
(``scheduling``), yielding a ``SampleStep`` so a viewer can animate x_T -> x_0.
``sample()`` runs the loop to the end in batches.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from ..stopping import Stopped
from .guidance import _channels_last, guided_eps
from .schedule import NoiseSchedule
from .scheduling import SampleStep, SamplerConfig, ddim_step, ddpm_step, dpmpp2m_step, reverse_timesteps


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

    Exactly ``sampler.num_steps(T)`` steps are yielded; the last one's ``x`` is x_0.
    Randomness comes from a generator seeded with ``seed`` on ``device`` (x_T, z).
    labels: (n,) int64 digits for a class-conditional model, or None.
    x_T: start from this (n, C, H, W) noise instead of drawing it.
    guidance: (n,) one guidance weight per image, instead of ``sampler.guidance``.
    start_t: start the chain at this t < T instead of T, from ``x_T`` (then x_{start_t},
        e.g. a real digit noised to start_t: "denoise from here", SDEdit); the steps
        are ``reverse_timesteps(sampler, schedule, start_t)``.
    guide: the model's guide network (``LoadedModel.guide``: a weaker version of it, trained
        on the same schedule), for autoguidance with weight ``sampler.autoguidance``.
    autoguidance: (n,) one autoguidance weight per image, instead of ``sampler.autoguidance``.
    The models are put in eval mode for the run and restored afterwards.
    """
    sampler = sampler or SamplerConfig()
    device = torch.device(device)
    if start_t is not None and x_T is None:
        raise ValueError("start_t needs the x_t to start from (x_T)")
    ts = reverse_timesteps(sampler, schedule, start_t)
    total = len(ts)
    num_classes = getattr(getattr(model, "config", None), "num_classes", 0)
    if labels is not None:
        if num_classes == 0:
            raise ValueError("labels were given but this model is not class-conditional")
        labels = labels.to(device=device, dtype=torch.long)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    channels = getattr(getattr(model, "config", None), "image_channels", 1)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    # x_T is always the generator's first draw, so a given x_T (the same one, or another)
    # leaves the noise z of every later step exactly as a seeded run has it
    x = torch.randn((n, channels, 28, 28), generator=gen, device=device)
    if x_T is not None:
        x = x_T.to(device=device, dtype=torch.float32).clone()
    memory_format = torch.channels_last if _channels_last(model) else torch.contiguous_format
    if guide is not None and (autoguidance is not None or sampler.autoguidance > 0):
        guide_classes = getattr(getattr(guide, "config", None), "num_classes", 0)
        if guide_classes != num_classes:
            raise ValueError(f"the guide network takes {guide_classes or 'no'} classes and the model "
                             f"{num_classes or 'none'}: a guide must be conditioned like its model")
    else:
        guide = None
    was_training = [(m, m.training) for m in (model, guide) if m is not None]
    for m, _ in was_training:
        m.eval()
    previous = None  # DPM-Solver++: the last step's (t, predicted x_0)
    try:
        with torch.inference_mode():
            for i, t in enumerate(ts):
                t_prev = ts[i + 1] if i + 1 < len(ts) else 0
                t_batch = torch.full((n,), t, device=device, dtype=torch.long)
                guided = guide is not None and t > sampler.autoguidance_min_t  # the guidance interval
                eps = guided_eps(
                    model, x.contiguous(memory_format=memory_format), t_batch, labels,
                    sampler.guidance if guidance is None else guidance, num_classes, device, precision,
                    guide=guide if guided else None,
                    autoguidance=sampler.autoguidance if autoguidance is None else autoguidance,
                )
                # z for this step, drawn only where the step uses one (the generator's
                # stream is part of what a seed means: keep the order of draws)
                needs_noise = t_prev > 0 and (sampler.kind == "ddpm" or (sampler.takes_eta and sampler.eta > 0))
                z = torch.randn(x.shape, generator=gen, device=device) if needs_noise else None
                if sampler.kind == "ddpm":
                    x, x0_pred, _ = ddpm_step(schedule, x, eps, t, noise=z, variance=sampler.variance,
                                              clip_x0=sampler.clips_x0)
                elif sampler.kind == "dpmpp2m":
                    x, x0_pred, _ = dpmpp2m_step(schedule, x, eps, t, t_prev, previous=previous,
                                                 clip_x0=sampler.clips_x0)
                    previous = (t, x0_pred)
                else:
                    x, x0_pred, _ = ddim_step(schedule, x, eps, t, t_prev, eta=sampler.eta, noise=z,
                                              clip_x0=sampler.clips_x0)
                yield SampleStep(i, total, t, t_prev, x, x0_pred.clamp(-1, 1))
    finally:
        for m, mode in was_training:
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
    sampler = sampler or SamplerConfig()
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

