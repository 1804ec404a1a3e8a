"""The Inception pass in bf16 and channels_last against fp32: speed, and what it does to FID.

    python bench/inception_precision.py --data DIR --n 1000 [--weights FILE] [--out bench/inception_precision.jsonl]

Each variant extracts pytorch-fid's pool3 features of the same ``--n`` real test digits and
``--n`` real training digits (the app's preprocessing: grey to RGB, [0, 255] -> [0, 1], resized
to 299 inside the network). Reported per variant: images per second on this machine (both sets,
the feature pass only), the Frechet distance between the two real sets, its difference from
fp32's, and the largest relative deviation of a feature vector from fp32's.

Without the official weights (``--weights`` or torch hub's cached copy) the network has random
weights: the speeds hold (they do not depend on the weights) but the distances are not FID, and
the JSON line says so. Variants: fp32 (what the app runs), fp32 channels_last, bf16 autocast,
bf16 autocast channels_last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusion_studio.engine.device import cpu_model_name  # noqa: E402
from diffusion_studio.engine.evaluation.fid import (  # noqa: E402
    InceptionExtractor,
    InceptionWeightsMissing,
    find_inception_weights,
)
from diffusion_studio.engine.evaluation.metrics import feature_stats, frechet_distance  # noqa: E402
from diffusion_studio.engine.storage.data import load_mnist  # noqa: E402

VARIANTS = {
    "fp32": (torch.float32, False),
    "fp32-channels_last": (torch.float32, True),
    "bf16": (torch.bfloat16, False),
    "bf16-channels_last": (torch.bfloat16, True),
}


def features(extractor: InceptionExtractor, images: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """(N, 2048) float64 features of uint8 (N, 28, 28) images under ``dtype`` autocast."""
    autocast = (torch.autocast(extractor.device.type, dtype=dtype) if dtype != torch.float32
                else contextlib.nullcontext())
    with autocast:
        return np.concatenate(list(extractor.batches(images)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="MNIST folder (the four IDX .gz files)")
    p.add_argument("--n", type=int, default=1000, help="real digits per set (default 1000)")
    p.add_argument("--weights", default=None, help="pt_inception-2015-12-05-6726825d.pth (default: torch hub's copy)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--out", default="bench/inception_precision.jsonl")
    args = p.parse_args(argv)

    try:
        weights = find_inception_weights(args.weights)
    except InceptionWeightsMissing:
        weights = None
        print("no Inception weights here: random weights (speeds hold; distances are not FID)")
    data = load_mnist(args.data)
    a = data.test_images[: args.n].numpy()
    b = data.train_images[: args.n].numpy()

    rows: list[dict] = []
    reference: tuple[np.ndarray, np.ndarray, float] | None = None
    for name in args.variants:
        dtype, channels_last = VARIANTS[name]
        extractor = InceptionExtractor(weights, batch_size=args.batch_size)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        extractor.model = extractor.model.to(memory_format=layout)
        features(extractor, a[: args.batch_size], dtype)  # warm-up (oneDNN picks its kernels)
        start = time.perf_counter()
        fa = features(extractor, a, dtype)
        fb = features(extractor, b, dtype)
        seconds = time.perf_counter() - start
        fd, _ = frechet_distance(feature_stats(fa), feature_stats(fb))
        if reference is None and name == "fp32":
            reference = (fa, fb, fd)
        row = {
            "variant": name, "n": args.n, "images_per_s": round(2 * args.n / seconds, 2),
            "frechet_real_vs_real": round(fd, 4), "weights": "official" if extractor.official_weights else "random",
            "cpu": cpu_model_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        }
        if reference is not None:
            ra, rb, rfd = reference
            deviation = max(np.max(np.linalg.norm(f - r, axis=1) / np.maximum(np.linalg.norm(r, axis=1), 1e-12))
                            for f, r in ((fa, ra), (fb, rb)))
            row.update(fd_minus_fp32=round(fd - rfd, 4), max_relative_feature_deviation=float(f"{deviation:.3g}"))
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open(args.out, "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")

    print("\n| variant | images/s | FD real vs real | minus fp32 | max feature deviation |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['images_per_s']} | {r['frechet_real_vs_real']} | "
              f"{r.get('fd_minus_fp32', '')} | {r.get('max_relative_feature_deviation', '')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
