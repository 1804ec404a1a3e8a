"""Make the bundled model: a training checkpoint -> a slim, sampling-only copy.

    python scripts/export_bundled_model.py --data DIR RUN/last.pt \
        diffusion_studio/resources/models/default.pt [--recalibrate 40] [--guide EARLY.pt]

Takes the checkpoint's EMA weights (its raw weights when it has none),
re-estimates their BatchNorm statistics from ``--recalibrate`` training batches
(``recalibrate_batchnorm``; checkpoints written before training did this
themselves carry the live model's statistics, which do not fit the EMA
weights), and writes the result with ``export_for_sampling``: configs, weights,
history and metadata, no optimizer state. The output is written atomically. A run
continued from a bundled model records it by its name (``meta.continued_from.source``).
``--weights-dtype bfloat16`` stores the weights in half the bytes (the bundled students).
``--guide`` attaches a weaker checkpoint of the same recipe (an earlier one of the
same run) as the model's autoguidance guide (``attach_guide``; bfloat16 weights).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusion_studio.engine.storage.bundled import bundled_name  # noqa: E402
from diffusion_studio.engine.storage.checkpoint import (  # noqa: E402
    LoadedModel, attach_guide, export_for_sampling, load_checkpoint, save_checkpoint,
)
from diffusion_studio.engine.storage.data import load_mnist  # noqa: E402
from diffusion_studio.engine.training.algorithm import recalibrate_on_training_split  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="training checkpoint (best.pt or last.pt)")
    p.add_argument("dst", help="where to write the slim copy")
    p.add_argument("--data", required=True, help="MNIST folder (for the calibration batches)")
    p.add_argument("--recalibrate", type=int, default=40, metavar="N", help="calibration batches (0 = keep)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guide", metavar="CHECKPOINT",
                   help="a weaker checkpoint of the same recipe to ship as the autoguidance guide (its EMA weights)")
    p.add_argument("--weights-dtype", choices=("float32", "bfloat16"), default="float32",
                   help="store the weights in this type (bfloat16: half the bytes; the app samples in bf16 on "
                        "CPUs where it is faster, and loads them into float32 networks elsewhere)")
    args = p.parse_args(argv)

    payload = load_checkpoint(args.src)
    key = "ema_weights" if payload.get("ema_weights") is not None else "weights"
    if args.recalibrate:
        loaded = LoadedModel(payload, Path(args.src), device=torch.device("cpu"))
        recalibrate_on_training_split(
            loaded.model, loaded.schedule, load_mnist(args.data), batches=args.recalibrate, seed=args.seed,
            label_dropout=float((payload.get("train") or {}).get("label_dropout", 0.1)),
        )
        payload[key] = {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}
        payload["meta"] = {**(payload.get("meta") or {}), "bn_recalibrated_batches": args.recalibrate}
    continued = (payload.get("meta") or {}).get("continued_from")
    if continued and isinstance(continued.get("source"), str):  # a bundled model by its name, not this machine's path
        continued["source"] = bundled_name(continued["source"]) or continued["source"]
    if args.weights_dtype == "bfloat16":
        payload[key] = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in payload[key].items()}
    if args.guide:
        payload = attach_guide(payload, load_checkpoint(args.guide), "/".join(Path(args.guide).parts[-2:]))
    with tempfile.TemporaryDirectory() as tmp:
        staged = save_checkpoint(Path(tmp) / Path(args.src).name, payload)
        out = export_for_sampling(staged, args.dst)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) from the {key.replace('_', ' ')} of {args.src}, "
          f"epoch {payload.get('epoch')}" + (f", guide: {payload['guide']['epochs_trained']:.3g} epochs of "
                                             f"{args.guide}" if args.guide else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
