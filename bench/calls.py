"""Quality per network call: the table the app's default sampler and model are chosen from.

    python bench/calls.py --data DIR --teacher default-conditional \
        --students DIST/steps-8 DIST/steps-4 DIST/steps-2 DIST/steps-1 --n 5000 --seed 1

Every arm makes ``--n`` digits from the same seed (a class-conditional model's labels cycle
0..9) and is scored with the app's offline metric (the shipped MNIST classifier): the Frechet
distance of its features against the test split, read against the real-data floor (``--n``
real training digits scored the same way), the share classified with probability >= 0.9, and
the class shares. Network calls per digit are counted (forward hooks on the model and its
guide), not assumed; digits per second are timed on this machine (the sampling only).

Arms: the teacher with DDPM (all T steps), DDIM 50/20/10 and DPM-Solver++ 10, each with the
app's guidance settings, then each student (its own steps). ``--arms`` picks some by name.
One JSON line per arm goes to ``--out``; a Markdown table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusion_studio.engine.device import choose_precision, cpu_model_name, resolve_device  # noqa: E402
from diffusion_studio.engine.diffusion.sampling import sample, sampler_for  # noqa: E402
from diffusion_studio.engine.diffusion.scheduling import SamplerConfig  # noqa: E402
from diffusion_studio.engine.evaluation.classifier import ensure_classifier, offline_metrics  # noqa: E402
from diffusion_studio.engine.storage.data import load_mnist, to_uint8  # noqa: E402
from diffusion_studio.tasks.models import ModelRef, open_model  # noqa: E402

TEACHER_ARMS = {
    "ddpm": SamplerConfig(kind="ddpm"),
    "ddim50": SamplerConfig(kind="ddim", steps=50),
    "ddim20": SamplerConfig(kind="ddim", steps=20),
    "ddim10": SamplerConfig(kind="ddim", steps=10),
    "dpm10": SamplerConfig(kind="dpmpp2m", steps=10),
}


class CallCounter:
    """Images passed through the hooked networks' forward (one per digit per call)."""

    def __init__(self, *nets) -> None:
        self.images = 0
        self.hooks = [net.register_forward_hook(self._count) for net in nets if net is not None]

    def _count(self, module, inputs, output) -> None:
        self.images += int(inputs[0].shape[0])

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()


def run_arm(name: str, source: str, sampler: SamplerConfig, args, data, clf, device) -> dict:
    loaded = open_model(ModelRef.of(source), device)
    sampler = sampler_for(loaded.model, sampler)
    labels = torch.arange(args.n) % 10 if loaded.model_config.conditional else None
    precision = choose_precision(args.precision, device, mode="sample", model_config=loaded.model_config)
    counter = CallCounter(loaded.model, loaded.guide)
    t0 = time.perf_counter()
    x = sample(loaded.model, loaded.schedule, args.n, sampler=sampler, labels=labels, seed=args.seed, device=device,
               precision=precision.precision, batch_size=args.batch_size, guide=loaded.guide)
    seconds = time.perf_counter() - t0
    counter.remove()
    entries, _ = offline_metrics(to_uint8(x).numpy(), clf, data, split="test")
    values = {e["key"]: e for e in entries}
    return {
        "arm": name, "model": source, "sampler": sampler.describe(loaded.schedule.timesteps), "n": args.n,
        "seed": args.seed, "calls_per_digit": counter.images / args.n, "digits_per_s": args.n / seconds,
        "fd": values["fd_classifier"]["value"], "confident": values["confident_share"]["value"],
        "shares": [round(s, 4) for s in values["label_histogram"]["details"]["shares"]],
        "precision": precision.describe(), "cpu": cpu_model_name(), "threads": torch.get_num_threads(),
    }


def floor(args, data, clf) -> dict:
    idx = torch.randperm(len(data.train_images), generator=torch.Generator().manual_seed(args.seed))[: args.n]
    entries, _ = offline_metrics(data.train_images[idx].numpy(), clf, data, split="test")
    values = {e["key"]: e for e in entries}
    test = torch.bincount(data.test_labels, minlength=10).double() / len(data.test_labels)
    return {"arm": "real", "n": args.n, "seed": args.seed, "fd": values["fd_classifier"]["value"],
            "confident": values["confident_share"]["value"],
            "shares": [round(s, 4) for s in values["label_histogram"]["details"]["shares"]],
            "test_shares": [round(float(s), 4) for s in test]}


def table(rows: list[dict], real: dict) -> str:
    """The Markdown table; a share gap is against the test split's digit shares (the reference)."""
    lines = ["| arm | calls/digit | digits/s | FD (x floor) | confident | largest gap to the test split's shares |",
             "|---|---|---|---|---|---|"]
    reference = real.get("test_shares") or real["shares"]
    for r in rows:
        gap = max(abs(a - b) for a, b in zip(r["shares"], reference))
        lines.append(f"| {r['arm']} | {r['calls_per_digit']:.0f} | {r['digits_per_s']:.1f} | "
                     f"{r['fd']:.2f} ({r['fd'] / real['fd']:.2f}x) | {100 * r['confident']:.1f}% | "
                     f"{100 * gap:.1f} points |")
    lines.append(f"| real training digits | | | {real['fd']:.2f} (floor) | {100 * real['confident']:.1f}% | |")
    return "\n".join(lines)


def print_table(path: Path) -> int:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    real = [r for r in rows if r["arm"] == "real"][-1]
    print(table([r for r in rows if r["arm"] != "real" and (r["n"], r["seed"]) == (real["n"], real["seed"])], real))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="MNIST folder")
    p.add_argument("--teacher", default="default-conditional", help="the model the samplers run")
    p.add_argument("--students", nargs="*", default=[], help="student checkpoints or run folders (or bundled names)")
    p.add_argument("--arms", nargs="*", help=f"only these: {', '.join(TEACHER_ARMS)}, student-N")
    p.add_argument("--guidance", type=float, help="w for every arm (default: the app's)")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--out", default=str(Path(__file__).with_name("calls.jsonl")))
    p.add_argument("--table", metavar="JSONL", help="only print the table of the rows in this file (its last "
                                                     "floor row for their n and seed)")
    args = p.parse_args(argv)
    if args.table:
        return print_table(Path(args.table))

    device = resolve_device(args.device)
    data = load_mnist(args.data)
    clf = ensure_classifier(data, device=device)
    base = SamplerConfig() if args.guidance is None else SamplerConfig(guidance=args.guidance)
    arms = [(name, args.teacher, SamplerConfig(**{**s.to_dict(), "guidance": base.guidance}))
            for name, s in TEACHER_ARMS.items()]
    for source in args.students:
        steps = open_model(ModelRef.of(source), "cpu").model_config.distilled_steps
        arms.append((f"student-{steps}", source, base))
    if args.arms:
        arms = [a for a in arms if a[0] in args.arms]
    real = floor(args, data, clf)
    rows = []
    with Path(args.out).open("a") as f:
        f.write(json.dumps(real) + "\n")
        for name, source, sampler in arms:
            row = run_arm(name, source, sampler, args, data, clf, device)
            rows.append(row)
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(f"{name}: {row['calls_per_digit']:.0f} calls/digit, {row['digits_per_s']:.1f} digits/s, "
                  f"FD {row['fd']:.2f} ({row['fd'] / real['fd']:.2f}x floor), {100 * row['confident']:.1f}% confident",
                  flush=True)
    print(f"\n{cpu_model_name()}, {torch.get_num_threads()} threads, n = {args.n}, seed {args.seed}\n")
    print(table(rows, real))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
