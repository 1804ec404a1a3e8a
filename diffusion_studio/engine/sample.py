"""Reverse process: Ho et al. 2020 Algorithm 2 (DDPM), DDIM (Song et al. 2021) and
DPM-Solver++ (2M) (Lu et al. 2022).

The samplers are iterators: each step yields a ``SampleStep`` holding the new,
less noisy image and the network's current guess of the clean image, so a
viewer can animate x_T -> x_0. ``sample()`` runs one to the end in batches.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterator, Literal, NamedTuple, get_args

import numpy as np
import torch
from torch import nn

from .device import autocast
from .schedule import NoiseSchedule, _known_fields
from .stopping import Stopped
from .text import guided_above

SamplerKind = Literal["ddpm", "ddim", "dpmpp2m"]
SAMPLER_KINDS: tuple[str, ...] = get_args(SamplerKind)
VarianceKind = Literal["posterior", "beta"]
VARIANCE_KINDS: tuple[str, ...] = get_args(VarianceKind)
from .defaults import (  # noqa: F401 - re-exported: the engine's names for the app's defaults
    DEFAULT_AUTOGUIDANCE, DEFAULT_AUTOGUIDANCE_MIN_T, DEFAULT_CLIP_X0, DEFAULT_DDIM_ETA, DEFAULT_DDIM_STEPS,
    DEFAULT_DPM_CLIP_X0, DEFAULT_DPM_STEPS, DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_VARIANCE,
)
MAX_GUIDANCE = 100.0


@dataclass(frozen=True)
class SamplerConfig:
    """How to run the reverse process.

    kind:     "ddpm" (Algorithm 2, all T steps), "ddim" (``steps`` steps) or "dpmpp2m"
              (DPM-Solver++ (2M): a deterministic second-order solver, ``steps`` steps).
    steps:    DDIM step count (default 50), DPM-Solver++ step count (default 20); for DDPM None or T.
    eta:      DDIM stochasticity: 0 = deterministic, 1 = DDPM-like noise (the default,
              chosen by measurement: see DEFAULT_DDIM_ETA).
    variance: DDPM sigma_t^2: "posterior" = beta-tilde_t = beta_t (1-abar_{t-1})/(1-abar_t)
              (the true posterior variance), or "beta" = beta_t (Ho et al. found both work).
    clip_x0:  clip the predicted x_0 to [-1, 1] and step from it; None = the sampler's own
              default (``clips_x0``): off for DDPM and DDIM (Algorithm 2 as written), on for
              DPM-Solver++ (see DEFAULT_DPM_CLIP_X0).
    guidance: classifier-free guidance weight w for conditional models:
              eps = (1 + w) eps(x, t, y) - w eps(x, t, no label). Used only when
              labels are given (a class-conditional model asked for digits).
    autoguidance: autoguidance weight g (Karras et al. 2024) for a model that comes with a
              guide network, a weaker version of itself: eps = eps(x, t) + g (eps(x, t) -
              eps_guide(x, t)). Used only when a guide is given (``LoadedModel.guide``).
              With labels both apply: eps = eps_cfg + g (eps(x, t, y) - eps_guide(x, t, y)).
    autoguidance_min_t: autoguidance applies only at steps whose t is above this (a guidance
              interval, after Kynkaenniemi et al. 2024): the last, low-noise steps, which
              draw the strokes' fine detail, go unguided. 0 = every step.

    The field defaults are the app's defaults, for every front end: the GUI's
    sampler form, ``sample``, ``evaluate`` and the benchmarks read them here.
    """

    kind: SamplerKind = DEFAULT_SAMPLER
    steps: int | None = None
    eta: float = DEFAULT_DDIM_ETA
    variance: VarianceKind = DEFAULT_VARIANCE
    clip_x0: bool | None = None
    guidance: float = DEFAULT_GUIDANCE
    autoguidance: float = DEFAULT_AUTOGUIDANCE
    autoguidance_min_t: int = DEFAULT_AUTOGUIDANCE_MIN_T

    def __post_init__(self) -> None:
        if self.kind not in SAMPLER_KINDS:
            raise ValueError(f"unknown sampler {self.kind!r}; choose one of {', '.join(SAMPLER_KINDS)}")
        if self.variance not in VARIANCE_KINDS:
            raise ValueError(f"unknown variance {self.variance!r}; choose one of {', '.join(VARIANCE_KINDS)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not (0.0 <= self.eta <= 1.0):
            raise ValueError(f"eta must lie in [0, 1], got {self.eta}")
        if not (0.0 <= self.guidance <= MAX_GUIDANCE):  # (also refuses nan and inf)
            raise ValueError(f"guidance must be a number in 0..{MAX_GUIDANCE:g}, got {self.guidance}")
        if not (0.0 <= self.autoguidance <= MAX_GUIDANCE):
            raise ValueError(f"autoguidance must be a number in 0..{MAX_GUIDANCE:g}, got {self.autoguidance}")
        if isinstance(self.autoguidance_min_t, bool) or not isinstance(self.autoguidance_min_t, int) \
                or self.autoguidance_min_t < 0:
            raise ValueError(f"autoguidance_min_t must be a whole timestep >= 0, got {self.autoguidance_min_t!r}")

    @property
    def takes_steps(self) -> bool:
        """Whether ``steps`` applies (DDPM always runs all T)."""
        return self.kind != "ddpm"

    @property
    def takes_eta(self) -> bool:
        return self.kind == "ddim"

    @property
    def clips_x0(self) -> bool:
        """Whether the steps clip the predicted x_0: ``clip_x0``, else the sampler's default."""
        if self.clip_x0 is not None:
            return bool(self.clip_x0)
        return DEFAULT_DPM_CLIP_X0 if self.kind == "dpmpp2m" else DEFAULT_CLIP_X0

    def num_steps(self, timesteps: int) -> int:
        if self.kind == "ddpm":
            if self.steps not in (None, timesteps):
                raise ValueError(
                    f"DDPM runs all T={timesteps} steps (asked for {self.steps}); use the DDIM sampler for fewer"
                )
            return timesteps
        steps = self.steps or min(self.default_steps, timesteps)
        if steps > timesteps:
            raise ValueError(f"{self.title} steps ({steps}) cannot exceed T={timesteps}")
        return steps

    @property
    def default_steps(self) -> int | None:
        """The step count when ``steps`` is None (None for DDPM: all T)."""
        return {"ddim": DEFAULT_DDIM_STEPS, "dpmpp2m": DEFAULT_DPM_STEPS}.get(self.kind)

    @property
    def title(self) -> str:
        return {"ddpm": "DDPM", "ddim": "DDIM", "dpmpp2m": "DPM-Solver++ (2M)"}[self.kind]

    def describe(self, timesteps: int | None = None) -> str:
        """One line for people: "DDIM, 50 steps, eta 1, guidance 2 (class-conditional models)"."""
        if self.kind == "ddpm":
            parts = [f"DDPM (Algorithm 2), all {timesteps or 'T'} steps", f"{self.variance} variance"]
        else:
            steps = self.num_steps(timesteps) if timesteps else (self.steps or self.default_steps)
            parts = [f"{self.title}, {steps} steps"] + ([f"eta {self.eta:g}"] if self.takes_eta else [])
        if self.clips_x0:
            parts.append("x_0 clipped")
        parts.append(f"guidance {self.guidance:g} (class-conditional models)")
        above = guided_above(self.autoguidance_min_t) if self.autoguidance else ""
        parts.append(f"autoguidance {self.autoguidance:g}{above} (models with a guide)")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SamplerConfig":
        return cls(**_known_fields(cls, data))


class SampleStep(NamedTuple):
    """One reverse step.

    index:   0-based step number; steps: how many in all.
    t:       the timestep the network saw; t_prev: the timestep of ``x``.
    x:       (B, C, H, W) float32, the new sample x_{t_prev} (x_0 at the last step).
    x0_pred: (B, C, H, W) float32, the network's guess of x_0 from x_t, clipped to [-1, 1].
    """

    index: int
    steps: int
    t: int
    t_prev: int
    x: torch.Tensor
    x0_pred: torch.Tensor


class StepResult(NamedTuple):
    """What one reverse step computes (as diffusers' schedulers return it).

    prev_sample: x_{t_prev}, the less noisy image (x_0 when t_prev = 0).
    pred_x0:     the x_0 the step moved towards, (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
                 (clipped to [-1, 1] when the step was asked to clip).
    eps:         the noise the step used: the network's, or the one consistent with the
                 clipped x_0.
    """

    prev_sample: torch.Tensor
    pred_x0: torch.Tensor
    eps: torch.Tensor


def _predicted_x0(x_t, eps, abar_t, clip_x0: bool):
    """x_0 from x_t and eps (eq. 4 of Ho et al. solved for x_0); with ``clip_x0`` clipped
    to [-1, 1] and eps re-derived from the clipped x_0, as diffusers does."""
    x0 = (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps = (x_t - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()
    return x0, eps


def ddpm_step(schedule: NoiseSchedule, x_t: torch.Tensor, eps: torch.Tensor, t: int, *,
              noise: torch.Tensor | None = None, variance: VarianceKind = DEFAULT_VARIANCE,
              clip_x0: bool = DEFAULT_CLIP_X0) -> StepResult:
    """One step of Algorithm 2 (Ho et al. 2020), from x_t to x_{t-1}; a pure function.

        x_{t-1} = 1/sqrt(alpha_t) (x_t - (1 - alpha_t)/sqrt(1 - abar_t) eps) + sigma_t z

    with sigma_t^2 = beta_t (1 - abar_{t-1})/(1 - abar_t) ("posterior") or beta_t
    ("beta"). ``noise`` is z; it is ignored at t = 1 (z = 0 there) and needed otherwise.
    """
    if not 1 <= t <= schedule.timesteps:
        raise ValueError(f"t must lie in 1..T={schedule.timesteps}, got {t}")
    dev = x_t.device
    alpha_t, abar_t = schedule.alpha[t].to(dev), schedule.alphabar[t].to(dev)
    x0, eps = _predicted_x0(x_t, eps, abar_t, clip_x0)
    mean = (x_t - (1 - alpha_t) / (1 - abar_t).sqrt() * eps) / alpha_t.sqrt()
    if t == 1:
        return StepResult(mean, x0, eps)
    if noise is None:
        raise ValueError("a DDPM step at t > 1 needs its noise z")
    var = schedule.posterior_variance[t] if variance == "posterior" else schedule.beta[t]
    return StepResult(mean + var.to(dev).sqrt() * noise, x0, eps)


def ddim_step(schedule: NoiseSchedule, x_t: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int, *,
              eta: float = DEFAULT_DDIM_ETA, noise: torch.Tensor | None = None,
              clip_x0: bool = DEFAULT_CLIP_X0) -> StepResult:
    """One DDIM step (Song et al. 2021, eq. 12), from x_t to x_{t_prev}; a pure function.

        x_{t'} = sqrt(abar_t') x_0 + sqrt(1 - abar_t' - s^2) eps + s z,
        s = eta sqrt((1 - abar_t')/(1 - abar_t)) sqrt(1 - abar_t/abar_t')

    With eta = 1 and t' = t - 1, s^2 is the posterior variance, so the step is Algorithm 2's.
    ``noise`` is z; it is needed when eta > 0 and t_prev > 0.
    """
    if not 0 <= t_prev < t <= schedule.timesteps:
        raise ValueError(f"a DDIM step needs 0 <= t_prev < t <= T={schedule.timesteps}, got t={t}, t_prev={t_prev}")
    dev = x_t.device
    abar_t, ab_prev = schedule.alphabar[t].to(dev), schedule.alphabar[t_prev].to(dev)
    x0, eps = _predicted_x0(x_t, eps, abar_t, clip_x0)
    s = eta * ((1 - ab_prev) / (1 - abar_t) * (1 - abar_t / ab_prev)).clamp(min=0).sqrt()
    x = ab_prev.sqrt() * x0 + (1 - ab_prev - s**2).clamp(min=0).sqrt() * eps
    if t_prev > 0 and eta > 0:
        if noise is None:
            raise ValueError("a DDIM step with eta > 0 needs its noise z")
        x = x + s * noise
    return StepResult(x, x0, eps)


def _log_snr_half(abar: torch.Tensor) -> torch.Tensor:
    """lambda = log(alpha / sigma) = log(sqrt(abar) / sqrt(1 - abar)), DPM-Solver's time variable."""
    return 0.5 * (torch.log(abar) - torch.log1p(-abar))


def dpmpp2m_step(schedule: NoiseSchedule, x_t: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int, *,
                 previous: tuple[int, torch.Tensor] | None = None,
                 clip_x0: bool = DEFAULT_DPM_CLIP_X0) -> StepResult:
    """One step of DPM-Solver++ (2M) (Lu et al. 2022, Algorithm 2), from x_t to x_{t_prev}; a pure function.

    With alpha = sqrt(abar), sigma = sqrt(1 - abar), lambda = log(alpha / sigma) and
    h = lambda_{t_prev} - lambda_t, the probability-flow ODE is integrated in lambda,
    exactly for its linear part:

        x_{t'} = (sigma_{t'} / sigma_t) x_t - alpha_{t'} (e^{-h} - 1) D

    First order (D = x_0 predicted at t, which is DDIM with eta = 0) on the first step,
    on the last one (to t' = 0, where sigma is 0 and the step returns D) and whenever
    ``previous`` is None. Otherwise second order from the previous step's
    ``previous = (t_before, x0_before)``: with r = h_before / h,
    D = (1 + 1/(2r)) x0_t - 1/(2r) x0_before.
    """
    if not 0 <= t_prev < t <= schedule.timesteps:
        raise ValueError(f"a DPM-Solver++ step needs 0 <= t_prev < t <= T={schedule.timesteps}, "
                         f"got t={t}, t_prev={t_prev}")
    dev = x_t.device
    x0, eps = _predicted_x0(x_t, eps, schedule.alphabar[t].to(dev), clip_x0)  # as DDIM's
    abar = schedule.alphabar.to(dev, torch.float64)
    if t_prev == 0:
        return StepResult(x0, x0, eps)
    lam_t, lam_prev = _log_snr_half(abar[t]), _log_snr_half(abar[t_prev])
    h = lam_prev - lam_t
    d = x0
    if previous is not None:
        t_before, x0_before = previous
        if not t < t_before <= schedule.timesteps:
            raise ValueError(f"the previous step's t ({t_before}) must come before t={t}")
        r = (lam_t - _log_snr_half(abar[t_before])) / h
        d = (1 + 1 / (2 * r)).to(x_t.dtype) * x0 - (1 / (2 * r)).to(x_t.dtype) * x0_before
    sigma_ratio = ((1 - abar[t_prev]) / (1 - abar[t])).sqrt()
    coef = abar[t_prev].sqrt() * torch.expm1(-h)
    x = sigma_ratio.to(x_t.dtype) * x_t - coef.to(x_t.dtype) * d
    return StepResult(x, x0, eps)


#: timesteps of the report's Figure 7 strip (x_T, three stops, x_0)
STRIP_TIMESTEPS = (300, 100, 50, 20, 0)


def strip_timesteps(T: int) -> list[int]:
    """The strip's timesteps for a schedule of T steps, descending: 300, 100, 50,
    20, 0 clipped to T (for T=300 exactly the report's; for T=10: 10, 0)."""
    return sorted({min(s, T) for s in STRIP_TIMESTEPS}, reverse=True)


def kept_frames(ts: list[int], max_frames: int, timesteps: int) -> set[int]:
    """The t_prev values whose x a viewer keeps from a run over ``ts`` (``reverse_timesteps``):
    about ``max_frames`` evenly spaced steps, the steps nearest the strip's timesteps
    (``strip_timesteps(T)``), and x_0 (t_prev = 0). x at ts[0] (x_T) is always kept too."""
    t_prevs = ts[1:] + [0]
    keep_every = max(1, math.ceil(len(ts) / max(1, max_frames)))
    kept = {tp for i, tp in enumerate(t_prevs) if (i + 1) % keep_every == 0}
    kept |= {min(t_prevs, key=lambda tp: abs(tp - s)) for s in strip_timesteps(timesteps)}
    kept.add(0)
    return kept


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """``steps`` timesteps from T down to 1, evenly spaced, always starting at T
    (one step: [T], since sampling starts from pure noise x_T).

    Consecutive values of linspace(T, 1, K) lie (T-1)/(K-1) >= 1 apart for K <= T,
    so after rounding they stay distinct: exactly ``steps`` timesteps."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"DDIM steps must lie in 1..T={timesteps}, got {steps}")
    return [int(t) for t in np.round(np.linspace(timesteps, 1, steps)).astype(int)]


def log_snr_timesteps(schedule: NoiseSchedule, steps: int, start: int | None = None) -> list[int]:
    """``steps`` timesteps from ``start`` (default T) down to 1, evenly spaced in
    lambda = log(alpha / sigma) rather than in t: DPM-Solver's spacing for low-resolution
    images (Lu et al. 2022, sec. 3.3). Evenly spaced t leave the last step a jump from
    t ~ T/K to 1 across most of lambda's range, where a second-order step extrapolates
    far; in lambda every step is the same size. Each lambda is rounded to the nearest
    integer t, and ties are moved apart so the timesteps stay distinct."""
    T = schedule.timesteps
    start = T if start is None else int(start)
    if not 1 <= steps <= start <= T:
        raise ValueError(f"steps must lie in 1..{start} (the start t, at most T={T}), got {steps}")
    lam = _log_snr_half(schedule.alphabar[1 : start + 1].double()).numpy()  # lambda_1 .. lambda_start, falling
    targets = np.linspace(lam[-1], lam[0], steps)
    # t for each lambda (np.interp wants rising x: lambda reversed, t start..1)
    ts = np.rint(np.interp(targets, lam[::-1], np.arange(start, 0, -1))).astype(int).tolist()
    ts[0] = start
    for i in range(1, steps):  # strictly falling ...
        ts[i] = min(ts[i], ts[i - 1] - 1)
    return [max(t, steps - i) for i, t in enumerate(ts)]  # ... with room left for the rest, down to 1


def reverse_timesteps(sampler: SamplerConfig, schedule: NoiseSchedule | int, start: int | None = None) -> list[int]:
    """The timesteps the reverse process visits, descending, ending at 1.

    DDPM: every t from ``start`` (default T) down to 1. DDIM: ``sampler``'s step count
    spread evenly over start..1 (at most ``start`` steps), always beginning at ``start``.
    DPM-Solver++: as many, evenly spaced in log-SNR (``log_snr_timesteps``; it needs the
    schedule, not only T). The sampler worker and the report read it here instead of
    re-deriving it.
    """
    timesteps = schedule if isinstance(schedule, int) else schedule.timesteps
    start = timesteps if start is None else int(start)
    if not 1 <= start <= timesteps:
        raise ValueError(f"the reverse process starts at a t in 1..T={timesteps}, got {start}")
    if sampler.kind == "ddpm":
        if start == timesteps:
            sampler.num_steps(timesteps)  # refuses DDPM with a step count other than T
        return list(range(start, 0, -1))
    steps = min(sampler.num_steps(timesteps), start)
    if sampler.kind == "dpmpp2m":
        if isinstance(schedule, int):
            raise ValueError("DPM-Solver++ spaces its steps by the schedule's log-SNR: pass the schedule, not T")
        return log_snr_timesteps(schedule, steps, start)
    return ddim_timesteps(start, steps)


def _channels_last(model: nn.Module) -> bool:
    """Whether the model's conv weights are channels_last. A weight with one input
    channel (the first conv's) is both layouts at once, so it decides nothing."""
    for p in model.parameters():
        if p.dim() == 4:
            cl, plain = p.is_contiguous(memory_format=torch.channels_last), p.is_contiguous()
            if cl != plain:
                return cl
    return False


def _call(model, x, t_batch, labels):
    return model(x, t_batch, labels) if labels is not None else model(x, t_batch)


def _predict_eps(model, x, t_batch, labels, guidance, num_classes, device, precision, guide=None,
                 autoguidance=0.0):
    """eps_theta, with classifier-free guidance when labels are given: ``guidance`` is
    one weight w, or a (B,) tensor of one weight per image (the guidance sweep):
    eps = (1 + w) eps(x, t, y) - w eps(x, t, no label). With a ``guide`` network and
    ``autoguidance`` g > 0 (one weight, or a (B,) tensor of one per image), autoguidance
    (Karras et al. 2024) is added to that: + g (eps(x, t, y) - eps_guide(x, t, y))
    (without labels: eps(x, t) - eps_guide(x, t))."""
    if torch.is_tensor(guidance):
        guidance = guidance.to(device=x.device, dtype=torch.float32).view(-1, 1, 1, 1)
    if torch.is_tensor(autoguidance):
        autoguidance = autoguidance.to(device=x.device, dtype=torch.float32).view(-1, 1, 1, 1)
    with autocast(device, precision):
        if labels is None or (not torch.is_tensor(guidance) and guidance == 0.0):
            eps = eps_c = _call(model, x, t_batch, labels).float()
        else:
            null = torch.full_like(labels, num_classes)
            both = model(torch.cat([x, x]), torch.cat([t_batch, t_batch]), torch.cat([labels, null]))
            eps_c, eps_u = both.float().chunk(2)
            eps = (1 + guidance) * eps_c - guidance * eps_u
        if guide is not None and (torch.is_tensor(autoguidance) or autoguidance > 0):
            eps = eps + autoguidance * (eps_c - _call(guide, x, t_batch, labels).float())
    return eps.float()


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
    T = schedule.timesteps
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
                eps = _predict_eps(
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


# ------------------------------------------------- views that connect x_T and x_0
def initial_noise(n: int, seed: int, *, channels: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
    """The x_T that ``sample_steps`` draws for ``n`` images from ``seed`` (its first draw):
    (n, channels, 28, 28) float32."""
    gen = torch.Generator(device=device).manual_seed(int(seed))
    return torch.randn((n, channels, 28, 28), generator=gen, device=device)


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
