"""The forward process: digits noised to chosen timesteps (the report's Figure 3 strip)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..engine.defaults import DEFAULT_TIMESTEPS
from ..engine.diffusion.schedule import NoiseSchedule, ScheduleConfig
from ..engine.storage.data import to_model_range

#: the strip's timesteps, as the report's Figure 3 shows them
FORWARD_STRIP_T = (20, 50, 100, 300)


@dataclass(frozen=True)
class NoiseStripRequest:
    """``n`` digits of ``split`` noised to each t in ``ts`` (fixed noise per digit from ``seed``),
    under the schedule ``kind`` with ``timesteps`` steps."""

    ts: tuple[int, ...] = FORWARD_STRIP_T
    n: int = 4
    split: str = "test"
    kind: str = "linear"
    timesteps: int = DEFAULT_TIMESTEPS
    seed: int = 0

    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule(ScheduleConfig(kind=self.kind, timesteps=self.timesteps))


@dataclass(frozen=True)
class NoiseStrip:
    image: np.ndarray  # uint8: one row per digit, x_0 then x_t for each t
    ts: tuple[int, ...]
    signal_at_T: float  # sqrt(alphabar_T): how much of the image x_T keeps


def noise_strip(data, request: NoiseStripRequest) -> NoiseStrip:
    """The strip for ``data`` (MNISTSplits); ValueError (one line) for t outside 0..T or n
    outside the split."""
    from ..engine.storage.images import strip

    schedule = request.schedule()
    T = schedule.timesteps
    if not request.ts or any(not 0 <= t <= T for t in request.ts):
        raise ValueError(f"the timesteps must lie in 0..{T}, got {', '.join(map(str, request.ts))}")
    images = data.images(request.split)
    if not 1 <= request.n <= len(images):
        raise ValueError(f"the number of digits must lie in 1..{len(images)}, got {request.n}")
    x0 = to_model_range(images[: request.n])
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(request.seed))
    columns = [x0] + [schedule.q_sample(x0, torch.full((request.n,), t), noise) for t in request.ts]
    return NoiseStrip(strip(columns), tuple(request.ts), float(schedule.signal_at_T()))
