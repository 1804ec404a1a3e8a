"""The forward (noising) process of a DDPM and the quantities derived from it.

Notation follows Ho et al. 2020 ("Denoising Diffusion Probabilistic Models"):
timesteps run t = 1..T, and every per-t tensor here is indexed by t directly,
with a padding entry at index 0 that stands for "no noise" (beta_0 = 0,
alphabar_0 = 1). So ``schedule.alphabar[t]`` is alphabar_t for t in 0..T.

Schedules are computed in float64 and stored in float32 (as
lucidrains/denoising-diffusion-pytorch does), so that cumulative products over
hundreds of steps do not drift.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch

ScheduleKind = Literal["linear", "cosine", "rescaled_linear"]
# Longest chain: Ho et al. used T = 1000; 10,000 already samples for hours on a CPU.
MAX_TIMESTEPS = 10_000
from ..defaults import SCHEDULE_KINDS  # noqa: E402 (the Literal above names the same values)


@dataclass(frozen=True)
class ScheduleConfig:
    """Which beta schedule, over how many steps.

    kind:
      - ``linear``: beta linear from ``beta_start`` to ``beta_end`` (the report's
        schedule; with T=300 it leaves sqrt(alphabar_T) = 0.22 of the image at t=T).
      - ``rescaled_linear``: the same line with both ends multiplied by 1000/T
        (Nichol & Dhariwal 2021, ``get_named_beta_schedule("linear")``), so a
        short chain destroys the signal as thoroughly as Ho et al.'s T=1000 did;
        betas are clipped at 0.999 (only very short chains, T < 50, reach it).
      - ``cosine``: alphabar_t = f(t)/f(0), f(t) = cos((t/T + s)/(1 + s) * pi/2)^2,
        s = 0.008, betas clipped at 0.999 (Nichol & Dhariwal 2021, eq. 17).
    """

    kind: ScheduleKind = "linear"
    timesteps: int = 300
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_s: float = 0.008

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(
                f"unknown schedule kind {self.kind!r}; choose one of {', '.join(SCHEDULE_KINDS)}"
            )
        if not isinstance(self.timesteps, int) or self.timesteps < 1:
            raise ValueError(f"timesteps must be a positive integer, got {self.timesteps!r}")
        if self.timesteps > MAX_TIMESTEPS:
            raise ValueError(f"timesteps must be at most {MAX_TIMESTEPS} (asked for {self.timesteps})")
        for name in ("beta_start", "beta_end", "cosine_s"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.kind != "cosine":
            if not 0.0 < self.beta_start <= self.beta_end:
                raise ValueError(
                    f"need 0 < beta_start <= beta_end, got {self.beta_start} and {self.beta_end}"
                )
            if self.beta_end >= 1.0:
                raise ValueError(f"beta_end must stay below 1, got {self.beta_end}")
        if self.cosine_s <= 0:
            raise ValueError(f"cosine_s must be positive, got {self.cosine_s}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ScheduleConfig":
        return cls(**_known_fields(cls, data))


def _known_fields(cls, data: dict) -> dict:
    names = set(cls.__dataclass_fields__)
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    return dict(data)


def _betas64(config: ScheduleConfig) -> torch.Tensor:
    """beta_1..beta_T in float64, shape (T,)."""
    T = config.timesteps
    if config.kind == "linear":
        return torch.linspace(config.beta_start, config.beta_end, T, dtype=torch.float64)
    if config.kind == "rescaled_linear":
        scale = 1000.0 / T
        return torch.linspace(
            config.beta_start * scale, config.beta_end * scale, T, dtype=torch.float64
        ).clamp(max=0.999)
    # cosine: alphabar(t) = f(t) / f(0); beta_t = 1 - alphabar_t / alphabar_{t-1}
    s = config.cosine_s
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alphabar = f / f[0]
    return (1 - alphabar[1:] / alphabar[:-1]).clamp(max=0.999)


class NoiseSchedule:
    """All per-timestep constants of the forward process, indexed by t = 0..T.

    Attributes (float32 tensors of shape (T+1,), index 0 = no noise):
      beta:        beta_t                          (beta_0 = 0)
      alpha:       alpha_t = 1 - beta_t
      alphabar:    alphabar_t = prod_{s<=t} alpha_s (alphabar_0 = 1)
      posterior_variance: beta-tilde_t = beta_t (1 - alphabar_{t-1}) / (1 - alphabar_t)
                   (Ho et al. eq. 7; 0 at t = 1 and at t = 0)
      snr:         alphabar_t / (1 - alphabar_t)    (inf at t = 0)
    """

    def __init__(self, config: ScheduleConfig | None = None) -> None:
        self.config = config or ScheduleConfig()
        T = self.config.timesteps
        beta = torch.cat([torch.zeros(1, dtype=torch.float64), _betas64(self.config)])
        alpha = 1.0 - beta
        alphabar = torch.cumprod(alpha, dim=0)  # alphabar[0] = 1
        alphabar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphabar[:-1]])
        # beta-tilde_t = beta_t (1 - alphabar_{t-1}) / (1 - alphabar_t); define 0 at t = 0.
        denom = (1.0 - alphabar).clone()
        denom[0] = 1.0
        posterior_variance = beta * (1.0 - alphabar_prev) / denom
        with torch.no_grad():
            snr = alphabar / (1.0 - alphabar)  # inf at t = 0 by design

        self.timesteps = T
        self.beta = beta.float()
        self.alpha = alpha.float()
        self.alphabar = alphabar.float()
        self.alphabar_prev = alphabar_prev.float()
        self.posterior_variance = posterior_variance.float()
        self.snr = snr.float()
        self.sqrt_alphabar = alphabar.sqrt().float()
        self.sqrt_one_minus_alphabar = (1.0 - alphabar).sqrt().float()
        self._alphabar64 = alphabar

    # ------------------------------------------------------------------ forward
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0) in closed form (Ho et al. eq. 4).

        x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps

        x0, noise: (B, C, H, W) float in [-1, 1] and N(0, I); t: (B,) integer in 0..T.
        The noise is an argument so that callers (and tests) control it.
        """
        a = self.sqrt_alphabar.to(x0.device)[t].view(-1, 1, 1, 1).to(x0.dtype)
        b = self.sqrt_one_minus_alphabar.to(x0.device)[t].view(-1, 1, 1, 1).to(x0.dtype)
        return a * x0 + b * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Invert eq. 4 for x_0 given a noise estimate: (x_t - sqrt(1-abar_t) eps) / sqrt(abar_t)."""
        a = self.sqrt_alphabar.to(x_t.device)[t].view(-1, 1, 1, 1)
        b = self.sqrt_one_minus_alphabar.to(x_t.device)[t].view(-1, 1, 1, 1)
        return (x_t - b * eps) / a

    # ------------------------------------------------------- how noisy is x_T?
    def signal_at_T(self) -> float:
        """sqrt(alphabar_T): the share of the image x_0 that survives in x_T."""
        return float(self._alphabar64[-1].sqrt())

    def prior_kl(self, x0: torch.Tensor) -> float:
        """Mean per-pixel KL( q(x_T | x_0) || N(0, I) ) in nats, for images x0 in [-1, 1].

        q(x_T | x_0) = N(sqrt(abar_T) x_0, (1 - abar_T) I), so per pixel
        KL = 0.5 * (abar_T x_0^2 + (1 - abar_T) - 1 - log(1 - abar_T)).
        It is 0 only when the chain has destroyed the image; sampling starts from
        N(0, I), so a large value means training and sampling see different x_T.
        """
        abar = self._alphabar64[-1]
        x0 = x0.double()
        kl = 0.5 * (abar * x0**2 + (1 - abar) - 1 - torch.log1p(-abar))
        return float(kl.mean())

    def summary(self) -> dict:
        """A few headline numbers about the schedule, for display."""
        return {
            "kind": self.config.kind,
            "timesteps": self.timesteps,
            "beta_1": float(self.beta[1]),
            "beta_T": float(self.beta[-1]),
            "alphabar_T": float(self._alphabar64[-1]),
            "signal_at_T": self.signal_at_T(),
            # KL for the MNIST background pixel (x_0 = -1), the commonest value.
            "prior_kl_background": self.prior_kl(torch.tensor([-1.0])),
        }

    def __repr__(self) -> str:
        c = self.config
        return f"NoiseSchedule(kind={c.kind!r}, T={c.timesteps}, alphabar_T={float(self._alphabar64[-1]):.3g})"
