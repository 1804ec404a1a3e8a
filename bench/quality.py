"""Sample-quality comparisons with the offline metric: the numbers behind the defaults.

    python bench/quality.py --data DIR --checkpoint RUN/best.pt [options] --tag NAME

Generates ``--n`` digits from one checkpoint with one sampler setting, scores
them with the app's MNIST classifier against the test split (Frechet distance
of its features, KID, the share classified with probability >= 0.9, the label
histogram and, for a class-conditional model, per-class accuracy), and appends
one JSON line to ``--out`` (default bench/quality.jsonl). A grid of the first
100 digits is written next to it. Run it once per arm and compare the lines:

    --weights ema|raw      which weights of a training checkpoint to sample from
    --recalibrate N        re-estimate BatchNorm statistics from N training batches
                           first (0: use the statistics stored in the checkpoint)
    --sampler ddpm|ddim, --steps, --eta, --variance, --clip-x0/--no-clip-x0, --guidance W
                           the reverse process: the CLI's own options, with the app's
                           defaults (a class-conditional model's labels cycle 0..9)
    --precision auto|fp32|bf16   sampling arithmetic (auto: measured, as in the app)
    --floor                also score --n real training digits: the floor the FD is read against

Every arm uses the same seeds, so arms differ only in what is being compared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusion_studio.engine.storage.bundled import resolve_checkpoint  # noqa: E402
from diffusion_studio.engine.storage.checkpoint import LoadedModel, load_checkpoint  # noqa: E402
from diffusion_studio.engine.evaluation.classifier import class_accuracy, ensure_classifier, offline_metrics  # noqa: E402
from diffusion_studio.engine.storage.data import load_mnist, to_uint8  # noqa: E402
from diffusion_studio.engine.device import choose_precision, cpu_model_name, resolve_device  # noqa: E402
from diffusion_studio.engine.storage.images import save_grid  # noqa: E402
from diffusion_studio.commands._sampler_args import add_sampler_arguments, sampler_from_args  # noqa: E402
from diffusion_studio.engine.diffusion.sampling import sample  # noqa: E402
from diffusion_studio.engine.training.algorithm import recalibrate_on_training_split  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="MNIST folder")
    p.add_argument("--checkpoint", required=True, help="a .pt file, or a bundled model: 'default' or "
                                                        "'default-conditional'")
    p.add_argument("--tag", required=True, help="name of this arm in the output")
    p.add_argument("--weights", choices=("ema", "raw"), default="ema")
    p.add_argument("--recalibrate", type=int, default=0, metavar="N")
    add_sampler_arguments(p)  # the same flags and defaults as `sample` and `evaluate`
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="sampling arithmetic (default auto: measured, as in the app)")
    p.add_argument("--floor", action="store_true",
                   help="also score --n real training digits the same way (the real-data floor)")
    p.add_argument("--out", default=str(Path(__file__).with_name("quality.jsonl")))
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    data = load_mnist(args.data)
    path = resolve_checkpoint(args.checkpoint)  # a file, or a bundled model's name ("default-conditional")
    payload = load_checkpoint(path)
    loaded = LoadedModel(payload, path, device, use_ema=args.weights == "ema")
    exported_ema = bool((payload.get("meta") or {}).get("weights_are_ema"))
    if args.weights == "ema" and not (loaded.uses_ema or exported_ema):
        print("note: this checkpoint has no EMA weights; sampling from its raw weights")
    model, schedule = loaded.model, loaded.schedule
    conditional = loaded.model_config.conditional
    t0 = time.perf_counter()
    if args.recalibrate:
        recalibrate_on_training_split(model, schedule, data, batches=args.recalibrate, seed=args.seed,
                                      label_dropout=float(payload.get("train", {}).get("label_dropout", 0.1)))
    recal_s = time.perf_counter() - t0
    sampler = sampler_from_args(args)
    labels = torch.arange(args.n) % 10 if conditional else None
    t0 = time.perf_counter()
    precision = choose_precision(args.precision, device, mode="sample", model_config=loaded.model_config)
    x = sample(model, schedule, args.n, sampler=sampler, labels=labels, seed=args.seed, device=device,
               batch_size=args.batch_size, precision=precision.precision, guide=loaded.guide)
    sample_s = time.perf_counter() - t0
    images = to_uint8(x).numpy()
    clf = ensure_classifier(data, device=device)
    entries, warnings = offline_metrics(images, clf, data, split="test")
    values = {e["key"]: e["value"] for e in entries}
    hist = next(e["details"] for e in entries if e["key"] == "label_histogram")
    row = {
        "tag": args.tag,
        "checkpoint": os.fspath(args.checkpoint),
        "epoch": loaded.epoch,
        "weights": "ema" if loaded.uses_ema or (exported_ema and args.weights == "ema") else "raw",
        "recalibrate": args.recalibrate,
        "sampler": sampler.to_dict(),
        "guide": loaded.guide_info,
        "n": args.n,
        "seed": args.seed,
        "fd_classifier": values.get("fd_classifier"),
        "kid_classifier": values.get("kid_classifier"),
        "confident_share": values.get("confident_share"),
        "label_shares": [round(s, 4) for s in hist["shares"]],
        "sample_seconds": round(sample_s, 1),
        "precision": precision.describe(),
        "recalibrate_seconds": round(recal_s, 1),
        "device": str(device),
        "cpu": cpu_model_name(),
        "warnings": warnings,
    }
    if args.floor:
        idx = torch.randperm(len(data.train_images), generator=torch.Generator().manual_seed(args.seed))[: args.n]
        real, _ = offline_metrics(data.train_images[idx].numpy(), clf, data, split="test")
        real = {e["key"]: e for e in real}
        row["floor_fd_classifier"] = real["fd_classifier"]["value"]
        row["floor_confident_share"] = real["confident_share"]["value"]
        row["floor_label_shares"] = [round(s, 4) for s in real["label_histogram"]["details"]["shares"]]
    if conditional:
        _, probs = clf.predict(images)
        row["class_accuracy"] = class_accuracy(probs, labels.numpy())
    out = Path(args.out)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    save_grid(x[:100], out.with_name(f"{out.stem}_{args.tag}.png"), nrow=10)
    shares = " ".join(f"{s:.3f}" for s in hist["shares"])
    print(f"{args.tag}: FD {row['fd_classifier']:.2f}  KID {row['kid_classifier']:.4f}  "
          f"confident {row['confident_share']:.3f}  shares [{shares}]  ({sample_s:.0f} s sampling)")
    if args.floor:
        fl = " ".join(f"{s:.3f}" for s in row["floor_label_shares"])
        print(f"  real training digits, n = {args.n}: FD {row['floor_fd_classifier']:.2f}  "
              f"confident {row['floor_confident_share']:.3f}  shares [{fl}]")
    if conditional:
        acc = row["class_accuracy"]
        per_class = " ".join(f"{a:.2f}" for a in acc["per_class"])
        print(f"  class accuracy {acc['overall']:.3f}  per class {per_class}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
