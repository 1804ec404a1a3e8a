"""Diffusion Studio benchmark: one command, one table, for this machine.

    python bench/run.py [--device auto|cpu|cuda] [--preset default] [--quick]

Prints, measured in this run, with the CPU model and its vector/bf16 flags:
  - the machine's matrix-multiply peak (fp32 and bf16, 2048^2 matmul)
  - training images/s at batch 128 with the app's settings (channels_last,
    precision "auto" as the app resolves it: measured, see engine.device)
    next to a plain fp32 eager loop (NCHW, no autocast) over the same network,
    with the ratio, and the share of the fp32 peak each reaches (3x forward FLOPs)
  - DDPM (300 steps) and DDIM (50 steps) sampling images/s, batch 256, the same
    two ways. The app's settings must never be slower than the plain loop.
  - feature extraction images/s for the offline metric and for Inception (random weights)
  - the forward-noise frame time for 64 digits (what the t slider redraws)
  - peak resident memory of the process

Timings are medians over repeats after a warm-up. Sampling rates are
extrapolated from the median time of one reverse step (every step costs the
same network call): images/s = batch / (steps x step time).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusion_studio.engine.device import (  # noqa: E402
    autocast, choose_precision, cpu_flags, cpu_model_name, describe, resolve_device,
)
from diffusion_studio.engine.training.presets import PRESET_NAMES, get_preset  # noqa: E402
from diffusion_studio.engine.diffusion.schedule import NoiseSchedule, ScheduleConfig  # noqa: E402
from diffusion_studio.engine.diffusion.unet import build_model, count_parameters, forward_flops  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, device, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(device, dtype, n=2048, repeats=5):
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    if dtype == torch.bfloat16 and device.type == "cpu":
        # emulated bf16 can be ~300x slower: time one small product instead
        n = 256
        a, b = a[:n, :n].contiguous(), b[:n, :n].contiguous()
        repeats = 2
    t = median_time(lambda: a @ b, device, repeats, warmup=1)
    return 2 * n**3 / t / 1e9


def train_rate(device, config, *, channels_last, precision, batch=128, repeats=5):
    torch.manual_seed(0)
    schedule = NoiseSchedule(ScheduleConfig(kind="cosine"))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = build_model(config).to(device, memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x0 = torch.rand(batch, 1, 28, 28, device=device) * 2 - 1

    def step():
        t = torch.randint(1, 301, (batch,), device=device)
        eps = torch.randn_like(x0)
        x_t = schedule.q_sample(x0, t, eps).contiguous(memory_format=fmt)
        with autocast(device, precision):
            pred = net(x_t, t)
        loss = F.mse_loss(pred.float(), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / median_time(step, device, repeats)


def sample_step_time(device, config, *, channels_last, precision, batch=256, repeats=5):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = build_model(config).to(device, memory_format=fmt).eval()
    x = torch.randn(batch, 1, 28, 28, device=device).contiguous(memory_format=fmt)
    t = torch.full((batch,), 150, device=device)

    def step():
        with torch.inference_mode(), autocast(device, precision):
            net(x, t)

    return median_time(step, device, repeats)


def feature_rates(device, quick):
    """Images/s of the two metrics' feature extractors (weights do not change the speed)."""
    import numpy as np

    from diffusion_studio.engine.evaluation.classifier import MNISTClassifier, to_input
    from diffusion_studio.engine.evaluation.fid import InceptionExtractor

    images = np.random.default_rng(0).integers(0, 256, size=(1000, 28, 28), dtype=np.uint8)
    clf = MNISTClassifier().to(device).eval()
    x = to_input(torch.from_numpy(images[:500])).to(device)

    def clf_batch():
        with torch.inference_mode():
            clf.features(x)

    clf_rate = 500 / median_time(clf_batch, device, 3 if quick else 7)
    extractor = InceptionExtractor(None, device=device)
    n = extractor.batch_size
    sample = images[:n]

    def inception_batch():
        for _ in extractor.batches(sample):
            pass

    inc_rate = n / median_time(inception_batch, device, 1 if quick else 3, warmup=1)
    return [
        ("features, MNIST classifier (offline metric)", f"{clf_rate:,.0f} img/s", "batch 500"),
        ("features, Inception pool3 (FID)", f"{inc_rate:,.1f} img/s",
         f"batch {n}, 299x299 inside; 10,000 + 10,000 images take {20000 / inc_rate / 60:,.0f} min"),
    ]


def noise_frame_ms(repeats=50):
    schedule = NoiseSchedule(ScheduleConfig())
    x0 = torch.rand(64, 1, 28, 28) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.full((64,), 150)

    def frame():
        x = schedule.q_sample(x0, t, noise)
        ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()

    return median_time(frame, torch.device("cpu"), repeats, warmup=5) * 1000


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--preset", default="default", choices=PRESET_NAMES, help="whose network (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    config = get_preset(args.preset).model
    train_choice = choose_precision("auto", device, mode="train", model_config=config)
    sample_choice = choose_precision("auto", device, mode="sample", model_config=config)
    reps = 3 if args.quick else 7
    flops = forward_flops(config)
    flags = sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"))

    print(f"# Diffusion Studio benchmark — {cpu_model_name()} ({', '.join(flags) or 'no flags read'}), "
          f"{describe(device)}, torch {torch.__version__}")
    print(f"# network: preset {args.preset!r}, arch {config.arch}, {count_parameters(build_model(config)) / 1e6:.2f} M "
          f"parameters, {flops / 1e6:.0f} MFLOP per image forward")
    print(f"# precision 'auto': training -> {train_choice.describe()}; sampling -> {sample_choice.describe()}")
    peak32 = matmul_peak(device, torch.float32)
    peak16 = matmul_peak(device, torch.bfloat16)
    rows = [("matmul peak fp32", f"{peak32:,.0f} GFLOP/s", ""),
            ("matmul peak bf16", f"{peak16:,.1f} GFLOP/s", "emulated" if peak16 < peak32 / 4 else "")]

    tp, sp = train_choice.precision, sample_choice.precision
    plain = train_rate(device, config, channels_last=False, precision="fp32", repeats=reps)
    app = train_rate(device, config, channels_last=True, precision=tp, repeats=reps)
    share = lambda rate: 3 * flops * rate / (peak32 * 1e9)  # noqa: E731
    rows += [
        ("train, plain fp32 eager (batch 128)", f"{plain:,.0f} img/s", f"{share(plain):.0%} of fp32 peak"),
        (f"train, app settings (channels_last, {tp})", f"{app:,.0f} img/s",
         f"x{app / plain:.2f} vs plain; epoch of 50,000 in {50000 / app:,.0f} s"),
    ]
    plain_step = sample_step_time(device, config, channels_last=False, precision="fp32", repeats=reps)
    step = sample_step_time(device, config, channels_last=True, precision=sp, repeats=reps)
    rows += [
        ("DDPM sampling, plain fp32 eager, 300 steps", f"{256 / (300 * plain_step):,.1f} img/s",
         f"batch 256; {flops * 256 / plain_step / (peak32 * 1e9):.0%} of fp32 peak"),
        (f"DDPM sampling, app settings ({sp}), 300 steps", f"{256 / (300 * step):,.1f} img/s",
         f"x{plain_step / step:.2f} vs plain"),
        ("DDIM sampling, plain fp32 eager, 50 steps", f"{256 / (50 * plain_step):,.1f} img/s", ""),
        (f"DDIM sampling, app settings ({sp}), 50 steps", f"{256 / (50 * step):,.1f} img/s",
         f"x{plain_step / step:.2f} vs plain"),
    ]
    rows += feature_rates(device, args.quick)
    rows.append(("forward-noise frame, 64 digits", f"{noise_frame_ms():.2f} ms", "q_sample + to uint8"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        rows.append(("peak GPU memory", f"{torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB", ""))
    rows.append(("peak resident memory", f"{peak_mb:,.0f} MiB", "whole process"))

    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"| {'measure'.ljust(w0)} | {'result'.ljust(w1)} | notes |")
    print(f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|-------|")
    for name, value, note in rows:
        print(f"| {name.ljust(w0)} | {value.ljust(w1)} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
