"""Scheduling for the reverse process, as diffusers splits its schedulers: the sampler's
config, the pure step functions (Ho et al. 2020 Algorithm 2 (DDPM), DDIM (Song et al. 2021),
DPM-Solver++ (2M) (Lu et al. 2022)) and the timestep plans they visit.

Each step maps (x_t, eps, t) to a ``StepResult``; the loop that calls the network and
these steps is ``sampling``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch

from ..text import guided_above
from .schedule import NoiseSchedule, _known_fields

SamplerKind = Literal["ddpm", "ddim", "dpmpp2m"]
SPACINGS = ("linspace", "trailing")
VarianceKind = Literal["posterior", "beta"]
from ..defaults import SAMPLER_KINDS, VARIANCE_KINDS  # noqa: E402 (the Literals above name the same values)
from ..defaults import (  # noqa: F401 - re-exported: the engine's names for the app's defaults
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
    spacing:  DDIM's timesteps: "linspace" from T to 1 (``ddim_timesteps``), or "trailing",
              k T / K for k = K..1 (``trailing_timesteps``: the grid a distilled student
              learnt, nested so that each halving keeps every other step).

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
    spacing: Literal["linspace", "trailing"] = "linspace"

    def __post_init__(self) -> None:
        if self.kind not in SAMPLER_KINDS:
            raise ValueError(f"unknown sampler {self.kind!r}; choose one of {', '.join(SAMPLER_KINDS)}")
        if self.spacing not in SPACINGS:
            raise ValueError(f"unknown step spacing {self.spacing!r}; choose one of {', '.join(SPACINGS)}")
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
            if self.spacing == "trailing":
                parts.append("trailing spacing")
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
    x_t:     (B, C, H, W) float32, the x_t that guess was made from (this step's input).
    """

    index: int
    steps: int
    t: int
    t_prev: int
    x: torch.Tensor
    x0_pred: torch.Tensor
    x_t: torch.Tensor | None = None


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


def student_sampler(sampler: SamplerConfig, steps: int) -> SamplerConfig:
    """How a distilled student of ``steps`` steps samples: the deterministic DDIM steps it was
    distilled on (trailing spacing, x_0 clipped as its teacher's steps were), keeping the
    guidance weights of ``sampler`` (the student takes them as an input)."""
    from dataclasses import replace

    return replace(sampler, kind="ddim", steps=steps, eta=0.0, clip_x0=True, spacing="trailing")


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


def trailing_timesteps(timesteps: int, steps: int, start: int | None = None) -> list[int]:
    """k T / K rounded, for k = K..1 (diffusers' "trailing" spacing), descending from T.

    Halving K keeps every other timestep (round(2k T / 2K) = round(k T / K)), so a student
    that takes one step where its teacher took two lands where the teacher landed. With a
    ``start`` below T (denoising from a given x_t) the run starts there and then visits the
    grid's timesteps below it."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"steps must lie in 1..T={timesteps}, got {steps}")
    grid = [(2 * k * timesteps + steps) // (2 * steps) for k in range(steps, 0, -1)]  # floor(kT/K + 1/2)
    if start is None or start >= timesteps:
        return grid
    return [int(start)] + [t for t in grid if t < start]


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
    if sampler.spacing == "trailing":
        return trailing_timesteps(timesteps, sampler.num_steps(timesteps), start)
    steps = min(sampler.num_steps(timesteps), start)
    if sampler.kind == "dpmpp2m":
        if isinstance(schedule, int):
            raise ValueError("DPM-Solver++ spaces its steps by the schedule's log-SNR: pass the schedule, not T")
        return log_snr_timesteps(schedule, steps, start)
    return ddim_timesteps(start, steps)

