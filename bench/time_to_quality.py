"""Quality per CPU minute: train each recipe arm for the same wall-clock budget, then score it.

    python bench/time_to_quality.py --data DIR [--minutes 10] [--arms report,plain,res]
                                    [--precision fp32] [--n 1000] [--out bench/time_to_quality.jsonl]

For each arm: train on the full 50,000-digit split with a time budget of
``--minutes`` (the trainer's ``max_seconds``, as ``train --max-minutes``),
sample ``--n`` digits from its best checkpoint with the app's default sampler
(or ``--sampler``/``--steps``), and score them with the offline metric against
the 10,000 test digits: Frechet distance of the classifier's features (FD), the
share classified with p >= 0.9 ("confident") and the label shares. One JSON line
per arm goes to ``--out`` as soon as it is done; a table is printed at the end,
with the real-data floor: the same scores for ``--n`` real training digits.

Arms (a recipe each; every one is also a preset or a set of ``train`` flags):
  report          the report's recipe, exactly (preset "report")
  plain           the previous default: the report's U-Net, rescaled-linear schedule,
                  EMA, BatchNorm recalibration (preset "plain")
  default         the app's default preset: the class-conditional residual U-Net, batch 32,
                  cosine decay; sampled with the labels 0-9 in turn and classifier-free
                  guidance (``--guidance``, default the app's)
  default-uncond  the same network without labels (the default until the 15-minute bench)
  default-b<N>    the default with batch N (learning rate scaled by sqrt(N / 32))
  default-minsnr  the default with min-SNR-5 loss weighting
  default-lean    the default with one residual block per level (level_blocks 1,1,1)
  default-cond    the default (class-conditional); the name of the 15-minute bench's arm
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusion_studio.engine.storage.checkpoint import load_model  # noqa: E402
from diffusion_studio.engine.evaluation.classifier import ensure_classifier, offline_metrics  # noqa: E402
from diffusion_studio.engine.storage.data import load_mnist, to_uint8  # noqa: E402
from diffusion_studio.engine.device import choose_precision, cpu_model_name  # noqa: E402
from diffusion_studio.engine.training.presets import PRESETS, get_preset  # noqa: E402
from diffusion_studio.engine.diffusion.scheduling import SAMPLER_KINDS, SamplerConfig
from diffusion_studio.engine.diffusion.sampling import sample
from diffusion_studio.engine.training.plan import plan_new
from diffusion_studio.engine.training.trainer import Trainer  # noqa: E402


def arm_preset(name: str):
    """A recipe arm: a preset name, or "default-b<N>" (the default with batch N, the
    learning rate scaled by sqrt(N/32)), or "default-minsnr" (with min-SNR-5 weighting)."""
    if name in PRESETS:
        return get_preset(name)
    default = get_preset("default")
    if name.startswith("default-b") and name[9:].isdigit():
        batch = int(name[9:])
        lr = default.train.lr * (batch / default.train.batch_size) ** 0.5
        return replace(default, name=name, train=replace(default.train, batch_size=batch, lr=lr))
    if name == "default-minsnr":
        return replace(default, name=name, train=replace(default.train, min_snr_gamma=5.0))
    if name == "default-lean":
        return replace(default, name=name, model=replace(default.model, level_blocks=(1, 1, 1)))
    if name == "default-cond":
        return replace(default, name=name, model=replace(default.model, num_classes=10))
    if name == "default-uncond":
        return replace(default, name=name, model=replace(default.model, num_classes=0))
    raise SystemExit(f"unknown arm {name!r}; choose presets ({', '.join(PRESETS)}), default-b<N>, "
                     "default-minsnr, default-lean, default-cond or default-uncond")


def score(images_uint8: np.ndarray, clf, data, labels=None) -> dict:
    entries, _ = offline_metrics(images_uint8, clf, data, split="test", labels=labels)
    values = {e["key"]: e for e in entries}
    hist = values["label_histogram"]["details"]
    result = {
        "fd": float(values["fd_classifier"]["value"]),
        "confident": float(values["confident_share"]["value"]),
        "shares": [round(float(s), 4) for s in hist["shares"]],
    }
    if "class_accuracy" in values:
        result["class_accuracy"] = float(values["class_accuracy"]["value"])
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="MNIST folder (the four IDX files)")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per arm (default 10)")
    p.add_argument("--arms", default="default,plain,report", help="comma-separated arms (see the docstring)")
    p.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"),
                   help="training and sampling arithmetic (default fp32, the targets' setting)")
    p.add_argument("--n", type=int, default=1000, help="digits sampled and scored per arm")
    p.add_argument("--sampler", choices=SAMPLER_KINDS, help="default: the app's (SamplerConfig())")
    p.add_argument("--steps", type=int, help="DDIM or DPM-Solver++ steps (default: the app's)")
    p.add_argument("--eta", type=float, help="DDIM eta (default: the app's)")
    p.add_argument("--guidance", help="guidance weight(s) for conditional arms, comma-separated: each is "
                                      "sampled and scored (default: the app's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", metavar="DIR", help="keep each arm's run folder under DIR")
    p.add_argument("--out", default=str(Path(__file__).with_name("time_to_quality.jsonl")))
    args = p.parse_args(argv)

    device = torch.device("cpu")
    data = load_mnist(args.data)
    clf = ensure_classifier(data, device=device)
    sampler = SamplerConfig()
    if args.sampler:
        sampler = replace(sampler, kind=args.sampler, steps=args.steps if args.sampler != "ddpm" else None)
    elif args.steps:
        sampler = replace(sampler, steps=args.steps)
    if args.eta is not None:
        sampler = replace(sampler, eta=args.eta)
    guidances = [float(w) for w in args.guidance.split(",")] if args.guidance else [sampler.guidance]
    machine = {"cpu": cpu_model_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "python": platform.python_version()}
    print(f"machine: {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}", flush=True)

    # the real-data floor: n real training digits scored the same way
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(data.train_images), generator=g)[: args.n]
    floor = score(data.train_images[idx].numpy(), clf, data)
    print(f"real-data floor at n = {args.n}: FD {floor['fd']:.2f}, confident {floor['confident']:.3f}", flush=True)

    rows = []
    keep = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ttq-"))
    for name in [a.strip() for a in args.arms.split(",") if a.strip()]:
        preset = arm_preset(name)
        train_cfg = replace(preset.train, precision=args.precision, epochs=max(preset.train.epochs, 1000))
        run_dir = keep / name
        trainer = Trainer(plan_new(preset.model, preset.schedule, train_cfg), data, device=device, run_dir=run_dir, max_seconds=args.minutes * 60)
        print(f"[{name}] training for {args.minutes:g} min, {trainer.precision_choice.describe()}", flush=True)
        t0 = time.perf_counter()
        finished = None
        for record in trainer.run():
            if record.kind == "epoch":
                print(f"[{name}] epoch {record.epoch} val {record.val_loss:.5f} ({record.images_per_s:.0f} img/s)",
                      flush=True)
            elif record.kind == "finished":
                finished = record
        train_s = time.perf_counter() - t0
        epochs = trainer.global_step / trainer.steps_per_epoch
        loaded = load_model(run_dir / "best.pt", device)
        sample_precision = choose_precision(args.precision, device, mode="sample", model_config=preset.model)
        # a class-conditional arm is asked for the digits 0-9 in turn, at each guidance weight
        labels = torch.arange(args.n) % 10 if preset.model.conditional else None
        for w in guidances if labels is not None else [None]:
            arm_sampler = replace(sampler, guidance=w) if w is not None else sampler
            label = name if w is None else f"{name} w={w:g}"
            t0 = time.perf_counter()
            x = sample(loaded.model, loaded.schedule, args.n, sampler=arm_sampler, labels=labels, seed=args.seed,
                       device=device, precision=sample_precision.precision, batch_size=250)
            sample_s = time.perf_counter() - t0
            result = score(to_uint8(x).numpy(), clf, data, labels=None if labels is None else labels.numpy())
            row = {
                "arm": label, "minutes": args.minutes, "precision": trainer.precision, "n": args.n,
                "epochs": round(epochs, 2), "train_seconds": round(train_s, 1), "finished": finished.reason,
                "best_val_loss": finished.best_val_loss, "sampler": arm_sampler.to_dict(),
                "sample_seconds": round(sample_s, 1), **result, "floor_fd": floor["fd"],
                "floor_confident": floor["confident"], "machine": machine, "model": preset.model.to_dict(),
                "schedule": preset.schedule.to_dict(), "train": train_cfg.to_dict(),
            }
            rows.append(row)
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"[{label}] {epochs:.2f} epochs in {train_s:.0f} s: FD {result['fd']:.2f} "
                  f"({result['fd'] / floor['fd']:.1f}x floor), confident {result['confident']:.3f}, "
                  f"sampling {sample_s:.0f} s", flush=True)

    print(f"\n{machine['cpu']}, {machine['threads']} threads, {args.precision}, {args.minutes:g} min per arm, "
          f"n = {args.n}, sampler: {sampler.describe(300)}")
    print(f"| arm | epochs | FD (floor {floor['fd']:.2f}) | x floor | confident | 1s | largest share |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arm']} | {r['epochs']:.1f} | {r['fd']:.2f} | {r['fd'] / floor['fd']:.1f} | "
              f"{r['confident']:.1%} | {r['shares'][1]:.1%} | {max(r['shares']):.1%} |")
    print(f"| real training digits | - | {floor['fd']:.2f} | 1.0 | {floor['confident']:.1%} | "
          f"{floor['shares'][1]:.1%} | {max(floor['shares']):.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
