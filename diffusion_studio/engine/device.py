"""Choosing the device and the arithmetic precision."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

DeviceChoice = Literal["auto", "cpu", "cuda"]
from .defaults import DEVICE_CHOICES, PRECISIONS  # noqa: E402 (the one list of each)
Precision = Literal["auto", "fp32", "bf16"]


def resolve_device(choice: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU. 'cuda' without a GPU is an error that says so."""
    if choice not in DEVICE_CHOICES and not str(choice).startswith("cuda:"):
        raise ValueError(f"unknown device {choice!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(choice).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(choice)


def cpu_has_fast_bf16() -> bool:
    """True when oneDNN offers bf16 kernels on this CPU at all.

    oneDNN says yes on every AVX-512 CPU, native (AVX512-BF16, AMX) or emulated,
    so this only rules bf16 out (AVX2-only CPUs, where it ran 65x slower);
    ``choose_precision`` measures the rest.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


PrecisionMode = Literal["train", "sample"]


@dataclass(frozen=True)
class PrecisionChoice:
    """What "auto" chose and why: the best images/s seen at each precision (None when
    nothing was measured, e.g. an explicit choice or a GPU's capability). ``cached``:
    the rates come from ``precision.json``, last measured at ``measured_at`` (epoch
    seconds; None in a cache written before it was recorded); ``quiet`` is False when
    the machine was busy then (see ``is_quiet``)."""

    precision: str
    rates: dict | None = None  # {"fp32": img/s, "bf16": img/s}
    cached: bool = False
    reason: str = ""
    measured_at: float | None = None
    quiet: bool = True

    def describe(self) -> str:
        """E.g. "bf16 (measured: bf16 612 img/s, fp32 301 img/s)", or for a cached
        choice "bf16 (cached, measured 2026-11-30: bf16 612 img/s, fp32 301 img/s)"."""
        if self.rates:
            other = "fp32" if self.precision == "bf16" else "bf16"
            when = "measured"
            if self.cached:
                day = (time.strftime("%Y-%m-%d", time.localtime(self.measured_at))
                       if self.measured_at is not None else "at an unknown date")
                when = f"cached, measured {day}"
            when += "" if self.quiet else " under load"
            return (f"{self.precision} ({when}: {self.precision} {self.rates[self.precision]:.0f} img/s, "
                    f"{other} {self.rates[other]:.0f} img/s)")
        return f"{self.precision}" + (f" ({self.reason})" if self.reason else "")


def cpu_model_name() -> str:
    """The CPU's model string ("Intel(R) Xeon(R) Processor", "AMD EPYC 7B13", ...)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux), or an empty set."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def precision_cache_file() -> Path:
    """Where the measured precision choices are kept (per machine key)."""
    from .storage.paths import cache_dir

    return cache_dir() / "precision.json"


def machine_key(*parts: str) -> str:
    """A cache key for a speed measured on this machine: CPU model and its vector/bf16
    flags, torch version, thread count, then ``parts``."""
    isa = ",".join(sorted(f for f in cpu_flags() if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2"))))
    return " | ".join([f"{cpu_model_name()} [{isa}]", f"torch {torch.__version__}",
                       f"{torch.get_num_threads()} threads", *parts])


def read_measurements(path: Path) -> dict:
    """A JSON file of measurements keyed by ``machine_key`` ({} when missing or unreadable)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_measurement(path: Path, key: str, value) -> None:
    """Add one measurement to ``path`` (atomically); a cache that cannot be written only
    costs the measurement again next time."""
    from .storage.atomic import write_json_atomic

    data = read_measurements(path)
    data[key] = value
    try:
        write_json_atomic(path, data)
    except OSError:
        pass


def _cache_key(mode: str, model_config) -> str:
    net = json.dumps(model_config.to_dict(), sort_keys=True) if model_config is not None else "default"
    return machine_key(mode, net)


def images_per_second(step, batch: int, min_seconds: float = 0.5, max_steps: int = 20) -> float:
    """Run ``step()`` once to warm up, then repeatedly for at least ``min_seconds``
    (at least two calls, at most ``max_steps``); returns batch x calls / seconds.
    The tests replace this function to prove both of auto's branches."""
    step()
    calls, start = 0, time.perf_counter()
    while True:
        step()
        calls += 1
        elapsed = time.perf_counter() - start
        if (calls >= 2 and elapsed >= min_seconds) or calls >= max_steps:
            return batch * calls / elapsed


def network_rate(precision: str, mode: str, model_config, device: torch.device) -> float:
    """images/s of the network at one precision: forward + backward (train) or forward (sample)
    (what ``choose_precision`` compares)."""
    from .diffusion.unet import UNetConfig, build_model

    torch.manual_seed(0)
    config = model_config or UNetConfig()
    net = build_model(config).to(device, memory_format=torch.channels_last)
    batch = 32 if mode == "train" else 64
    x = torch.randn(batch, config.image_channels, 28, 28, device=device).contiguous(memory_format=torch.channels_last)
    t = torch.randint(1, 100, (batch,), device=device)

    if mode == "train":
        net.train()

        def step():
            with autocast(device, precision):
                out = net(x, t)
            out.float().square().mean().backward()
    else:
        net.eval()

        def step():
            with torch.inference_mode(), autocast(device, precision):
                net(x, t)

    return images_per_second(step, batch)


# A cached measurement is trusted for MEASUREMENT_MAX_AGE_S and only when the 1-minute
# load average per core was below QUIET_LOAD_PER_CORE: other work then filled under half
# of the cores, so most of the timed threads (one per core) had a core to themselves.
MEASUREMENT_MAX_AGE_S = 30 * 24 * 3600
QUIET_LOAD_PER_CORE = 0.5
# bf16 must win clearly (5%): a tie is not worth its rounding
BF16_MARGIN = 1.05


def load_per_core() -> float | None:
    """The 1-minute load average divided by the CPU count (None where the OS has no
    load average, e.g. Windows)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return None


def is_quiet(load: float | None) -> bool:
    """Quiet enough to time the network; an unknown load counts as quiet (nothing
    better to go on, and it keeps such machines from re-measuring forever)."""
    return not isinstance(load, (int, float)) or load < QUIET_LOAD_PER_CORE


def _measured_at(entry: dict) -> float | None:
    at = entry.get("measured_at")
    return float(at) if isinstance(at, (int, float)) else None


def _recent(entry: dict, now: float) -> bool:
    """Younger than ``MEASUREMENT_MAX_AGE_S``; a cache written before ``measured_at``
    was recorded has no age: not recent."""
    at = _measured_at(entry)
    return at is not None and 0 <= now - at < MEASUREMENT_MAX_AGE_S


def _trusted(entry: dict, now: float) -> bool:
    """Recent and taken on a quiet machine."""
    return _recent(entry, now) and is_quiet(entry.get("load_per_core"))


def _faster(rates: dict) -> str:
    return "bf16" if rates["bf16"] > BF16_MARGIN * rates["fp32"] else "fp32"


def choose_precision(precision: str, device: torch.device, *, mode: PrecisionMode = "train",
                     model_config=None) -> PrecisionChoice:
    """Resolve "auto" to the faster of fp32 and bf16 for this network on this device.

    CUDA: bf16 where the GPU supports it. CPU: bf16 only when it was measured
    more than 5% faster. oneDNN reports bf16 support on any AVX-512 CPU because it
    can emulate it, and emulated bf16 trained the default U-Net at 104 img/s
    against 391 in fp32 on such a Xeon; native AVX512-BF16 / AMX CPUs are about 2x
    faster in bf16. So each precision is timed for about half a second (forward +
    backward for "train", forward for "sample") and the rates are cached per CPU
    model, torch version, thread count, mode and network in the user cache folder
    (``precision.json``), with when they were taken and the load per core then.

    A cached entry is used as it is while it is younger than 30 days and was taken
    on a quiet machine (``QUIET_LOAD_PER_CORE``). Otherwise it is measured again,
    but only when the machine is quiet now; when busy, the cached rates are used
    rather than timing under load again. Re-measuring keeps the best rate seen for
    each precision (a busy measurement can only be beaten, never lower a quiet one);
    an entry past its age, or from an older cache without dates, is replaced.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return PrecisionChoice(precision, reason="asked for")
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return PrecisionChoice("bf16" if ok else "fp32", reason="GPU supports bf16" if ok else "GPU lacks bf16")
    if not cpu_has_fast_bf16():
        return PrecisionChoice("fp32", reason="no bf16 kernels on this CPU")
    key = _cache_key(mode, model_config)
    entry = read_measurements(precision_cache_file()).get(key)
    try:
        cached = {p: float(entry[p]) for p in ("fp32", "bf16")}
    except (TypeError, KeyError, ValueError):
        entry, cached = None, None
    # The load is read before timing, so it is other work's load, not this measurement's
    # own (a few seconds of it would add up to ~0.08 per core per 5-second tick).
    now, load = time.time(), load_per_core()
    if entry is not None and (_trusted(entry, now) or not is_quiet(load)):
        return PrecisionChoice(_faster(cached), cached, cached=True, measured_at=_measured_at(entry),
                               quiet=is_quiet(entry.get("load_per_core")))
    rates = {p: network_rate(p, mode, model_config, device) for p in ("fp32", "bf16")}
    if entry is not None and _recent(entry, now):  # untrusted only for its load: keep the best
        rates = {p: max(rates[p], cached[p]) for p in rates}
    choice = _faster(rates)
    record_measurement(precision_cache_file(), key, {
        **rates, "choice": choice, "measured_at": now, "load_per_core": load, "cpus": os.cpu_count()})
    return PrecisionChoice(choice, rates, measured_at=now, quiet=is_quiet(load))


def resolve_precision(precision: str, device: torch.device, *, mode: PrecisionMode = "train",
                      model_config=None) -> str:
    """'auto' -> the measured faster precision (see ``choose_precision``); else as asked."""
    return choose_precision(precision, device, mode=mode, model_config=model_config).precision


def autocast(device: torch.device, precision: str):
    """A context that runs the network in bf16 when asked; fp32 is a no-op context."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
