"""``diffusion-studio sample``: generate digits from a checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._progress import advance_to, progress_bar
from ._sampler_args import add_sampler_arguments, sampler_from_args


def register(sub) -> None:
    p = sub.add_parser("sample", help="generate digits from a checkpoint",
                       description="Generate digits (Algorithm 2, or DDIM) and save a PNG grid or an NPZ.")
    p.add_argument("--checkpoint", required=True, metavar="FILE",
                   help="a .pt checkpoint, or a bundled model: 'default' or 'default-conditional'")
    p.add_argument("--n", type=int, default=64, help="how many images (default %(default)s)")
    p.add_argument("--out", required=True, metavar="FILE", help=".png (a grid) or .npz (key 'images', uint8)")
    add_sampler_arguments(p)
    p.add_argument("--label", type=int, help="digit to generate (class-conditional models; default: the digits "
                                              "0-9 in turn, as the GUI's sampler makes them)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.set_defaults(func=run)


def resolve_checkpoint(value: str) -> Path:
    """'default' or 'default-conditional' -> the model shipped inside the package; anything else is a path."""
    from ..engine.storage.bundled import resolve_checkpoint as resolve

    return resolve(value)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..cli import CLIError
    from ..engine.storage.checkpoint import load_model
    from ..engine.storage.atomic import check_writable
    from ..engine.device import choose_precision, resolve_device
    from ..engine.storage.images import save_grid, save_npz
    from ..engine.diffusion.sampling import sample
    from ..engine.text import guided_above

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".npz"):
        raise CLIError(f"--out must end in .png or .npz, got {out.name!r}")
    if args.n < 1:
        raise CLIError(f"--n must be at least 1, got {args.n}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    sampler = sampler_from_args(args)
    check_writable(out)  # before minutes of sampling
    device = resolve_device(args.device)
    loaded = load_model(resolve_checkpoint(args.checkpoint), device)
    choice = choose_precision(args.precision, device, mode="sample", model_config=loaded.model_config)
    precision = choice.precision
    print(f"sampling on {device.type}, {choice.describe()}", file=sys.stderr, flush=True)
    if loaded.guide is not None:
        print(f"autoguidance {sampler.autoguidance:g}{guided_above(sampler.autoguidance_min_t)} with the checkpoint's guide network ({loaded.guide_info})"
              + (" (off)" if sampler.autoguidance == 0 else ""), file=sys.stderr, flush=True)
    labels = None
    if args.label is not None:
        if not loaded.model_config.conditional:
            raise CLIError("--label needs a class-conditional model; this checkpoint is unconditional")
        if not 0 <= args.label < loaded.model_config.num_classes:
            raise CLIError(f"--label must be a digit 0..{loaded.model_config.num_classes - 1}")
        labels = torch.full((args.n,), args.label, dtype=torch.long)
    elif loaded.model_config.conditional:  # every digit in turn, with guidance (the GUI's "All digits")
        labels = torch.arange(args.n) % loaded.model_config.num_classes
    steps = sampler.num_steps(loaded.schedule.timesteps)
    bar = progress_bar(steps * ((args.n + args.batch_size - 1) // args.batch_size), f"{args.sampler}")
    images = sample(
        loaded.model, loaded.schedule, args.n, sampler=sampler, labels=labels, seed=args.seed,
        device=device, precision=precision, batch_size=args.batch_size, guide=loaded.guide,
        progress=lambda done, total: advance_to(bar, done),
    )
    bar.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".png":
        save_grid(images, out)
    else:
        save_npz(images, out)
    print(f"wrote {args.n} images to {out}")
    return 0
