"""Explorations that connect x_T and x_0: interpolation between seeds, guidance sweeps,
"denoise from here" (SDEdit) and the share of digits that keep their identity.

Each runs the sampling loop on chosen inputs; all take a ``should_stop`` callback and raise
``SamplingStopped`` when it turns true.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn

from .schedule import NoiseSchedule
from .sampling import SamplingStopped, initial_noise, sample_steps
from .scheduling import DEFAULT_AUTOGUIDANCE, DEFAULT_AUTOGUIDANCE_MIN_T, DEFAULT_DDIM_STEPS, DEFAULT_GUIDANCE, SampleStep, SamplerConfig

def slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation from ``a`` (w = 0) to ``b`` (w = 1), both taken as one vector.

    Gaussian noise in many dimensions lives near a sphere of radius sqrt(d); a
    straight line between two draws passes inside it (at w = 0.5 its norm is about
    0.71 of theirs), so the midpoints are not noise the model was trained on. Along
    the great circle the norm stays put (Shoemake 1985; Song et al. 2021, DDIM sec. 5.3).
    """
    fa, fb = a.flatten().double(), b.flatten().double()
    cos = torch.clamp(fa @ fb / (fa.norm() * fb.norm()), -1.0, 1.0)
    omega = torch.arccos(cos)
    if float(omega) < 1e-6:
        return (1 - w) * a + w * b
    s = torch.sin(omega)
    return ((torch.sin((1 - w) * omega) / s) * a.double() + (torch.sin(w * omega) / s) * b.double()).to(a.dtype)


def interpolate(model: nn.Module, schedule: NoiseSchedule, seed_a: int, seed_b: int, *, count: int = 9,
                steps: int = DEFAULT_DDIM_STEPS, label: int | None = None, guidance: float = DEFAULT_GUIDANCE,
                device: torch.device | str = "cpu", precision: str = "fp32", should_stop=None,
                guide: nn.Module | None = None, autoguidance: float = DEFAULT_AUTOGUIDANCE,
                autoguidance_min_t: int = DEFAULT_AUTOGUIDANCE_MIN_T) -> torch.Tensor:
    """Digits made from ``count`` points on the great circle between the x_T of two seeds.

    Deterministic DDIM (eta = 0), so each image is a function of its x_T alone and
    the strip shows how the reverse process maps nearby noise to nearby digits. The
    predicted x_0 is clipped to [-1, 1] at every step: with the default schedule
    sqrt(alphabar_T) = 0.006, and without noise injected to wash them out, the
    first steps' errors in x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) were
    amplified into visibly noisy digits (a young conditional model's sweep ranged
    over [-6, 4] instead of [-1, 1]).
    Returns (count, C, 28, 28) float32 on the CPU, unclipped; the ends are exactly
    what DDIM with eta = 0 makes from seed_a and seed_b. ``label``/``guidance``: for a
    class-conditional model; ``guide``/``autoguidance``/``autoguidance_min_t``: for a model with a
    guide network.
    Raises SamplingStopped when should_stop() turns true.
    """
    if count < 2:
        raise ValueError(f"an interpolation needs at least 2 images, got {count}")
    channels = getattr(getattr(model, "config", None), "image_channels", 1)
    a = initial_noise(1, seed_a, channels=channels, device=device)
    b = initial_noise(1, seed_b, channels=channels, device=device)
    x_T = torch.cat([slerp(a, b, float(w)) for w in torch.linspace(0, 1, count)])
    sampler = SamplerConfig(kind="ddim", steps=min(steps, schedule.timesteps), eta=0.0, guidance=guidance,
                            clip_x0=True, autoguidance=autoguidance, autoguidance_min_t=autoguidance_min_t)
    labels = None if label is None else torch.full((count,), int(label), dtype=torch.long)
    return _run_to_end(sample_steps(model, schedule, count, sampler=sampler, labels=labels, seed=seed_a,
                                    device=device, precision=precision, x_T=x_T, guide=guide), should_stop)


GUIDANCE_SWEEP = (0.0, 0.5, 1.0, 2.0, 4.0)


def guidance_sweep(model: nn.Module, schedule: NoiseSchedule, label: int, seed: int, *,
                   weights=GUIDANCE_SWEEP, steps: int = DEFAULT_DDIM_STEPS,
                   device: torch.device | str = "cpu", precision: str = "fp32", should_stop=None) -> torch.Tensor:
    """One seed, one digit, several classifier-free guidance weights w, in one batch.

    Every image starts from the same x_T and runs deterministic DDIM (eta = 0, x_0
    clipped as in ``interpolate``), so the strip differs only in w. Returns (len(weights), C, 28, 28) float32 on the
    CPU, unclipped.
    """
    if not getattr(getattr(model, "config", None), "conditional", False):
        raise ValueError("a guidance sweep needs a class-conditional model")
    k = len(weights)
    channels = model.config.image_channels
    x_T = initial_noise(1, seed, channels=channels, device=device).expand(k, -1, -1, -1).contiguous()
    sampler = SamplerConfig(kind="ddim", steps=min(steps, schedule.timesteps), eta=0.0, clip_x0=True)
    w = torch.tensor([float(v) for v in weights])
    for v in w.tolist():
        SamplerConfig(guidance=v)  # validates each weight (finite, 0..MAX_GUIDANCE)
    labels = torch.full((k,), int(label), dtype=torch.long)
    steps = sample_steps(model, schedule, k, sampler=sampler, labels=labels, seed=seed, device=device,
                         precision=precision, x_T=x_T, guidance=w)
    return _run_to_end(steps, should_stop)


def autoguidance_sweep(model: nn.Module, guide: nn.Module, schedule: NoiseSchedule, seed: int, *,
                       weights=GUIDANCE_SWEEP, label: int | None = None, steps: int = DEFAULT_DDIM_STEPS,
                       device: torch.device | str = "cpu", precision: str = "fp32",
                       should_stop=None, autoguidance_min_t: int = DEFAULT_AUTOGUIDANCE_MIN_T) -> torch.Tensor:
    """One seed, several autoguidance weights g, in one batch: the guidance sweep for a model
    with a guide network (an unconditional model has no label for classifier-free guidance).

    Every image starts from the same x_T and runs deterministic DDIM (eta = 0, x_0 clipped
    as in ``interpolate``), so the strip differs only in g, each applied above
    ``autoguidance_min_t`` as in sampling. ``label``: a digit for a
    class-conditional model (its classifier-free guidance off). Returns
    (len(weights), C, 28, 28) float32 on the CPU, unclipped.
    """
    if guide is None:
        raise ValueError("an autoguidance sweep needs a model with a guide network")
    k = len(weights)
    channels = getattr(getattr(model, "config", None), "image_channels", 1)
    x_T = initial_noise(1, seed, channels=channels, device=device).expand(k, -1, -1, -1).contiguous()
    sampler = SamplerConfig(kind="ddim", steps=min(steps, schedule.timesteps), eta=0.0, clip_x0=True, guidance=0.0,
                            autoguidance_min_t=autoguidance_min_t)
    g = torch.tensor([float(v) for v in weights])
    for v in g.tolist():
        SamplerConfig(autoguidance=v)  # validates each weight (finite, 0..MAX_GUIDANCE)
    labels = None if label is None else torch.full((k,), int(label), dtype=torch.long)
    return _run_to_end(sample_steps(model, schedule, k, sampler=sampler, labels=labels, seed=seed, device=device,
                                    precision=precision, x_T=x_T, guide=guide, autoguidance=g), should_stop)


def _run_to_end(steps: Iterator[SampleStep], should_stop) -> torch.Tensor:
    x = None
    for step in steps:
        if should_stop is not None and should_stop():
            raise SamplingStopped()
        x = step.x
    return x.float().cpu()


def denoise_from(model: nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, t: int, *,
                 noise: torch.Tensor | None = None, sampler: SamplerConfig | None = None, seed: int = 0,
                 labels: torch.Tensor | None = None, device: torch.device | str = "cpu", precision: str = "fp32",
                 should_stop=None, guide: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """"Denoise from here" (SDEdit, Meng et al. 2022): noise real digits to x_t with the
    forward process, then run the reverse process from t down to 0.

    x0: (n, C, 28, 28) in [-1, 1]; noise: the eps of q_sample (default: drawn from
    ``seed + 1``). Small t gives the same digit back; past some t the reverse
    process is free to make another one. ``guide``: for autoguidance, as in ``sample_steps``.
    Returns (x_t, x_0 result), both on the CPU.
    """
    if noise is None:
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed) + 1))
    x_t = schedule.q_sample(x0.float().cpu(), torch.full((len(x0),), int(t), dtype=torch.long), noise.float().cpu())
    result = _run_to_end(sample_steps(model, schedule, len(x0), sampler=sampler, labels=labels, seed=seed,
                                      device=device, precision=precision, x_T=x_t, start_t=int(t), guide=guide),
                         should_stop)
    return x_t, result


def identity_kept(model: nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, labels, classify, ts, *,
                  sampler: SamplerConfig | None = None, seed: int = 0, device: torch.device | str = "cpu",
                  precision: str = "fp32", should_stop=None, progress=None,
                  guide: nn.Module | None = None) -> list[tuple[int, float]]:
    """The share of digits that keep their label after "denoise from t", for each t in ``ts``.

    classify: uint8 (n, 28, 28) -> (n,) predicted labels (the offline metric's
    classifier). labels: (n,) the digits' true labels. The same noise is used at
    every t, so the curve changes only with t. Returns [(t, share)], t ascending.
    """
    labels = np.asarray(labels)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed) + 1))
    out = []
    for i, t in enumerate(sorted({int(v) for v in ts if 1 <= int(v) <= schedule.timesteps})):
        _, result = denoise_from(model, schedule, x0, t, noise=noise, sampler=sampler, seed=seed, device=device,
                                 precision=precision, should_stop=should_stop, guide=guide)
        predicted = np.asarray(classify(_to_uint8(result)))
        out.append((t, float((predicted == labels).mean())))
        if progress is not None:
            progress(i + 1, len(ts))
    return out


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy()
