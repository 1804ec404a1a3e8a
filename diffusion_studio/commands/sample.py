"""``diffusion-studio sample``: generate digits from a checkpoint."""

from __future__ import annotations

import argparse
import sys

from ..engine import defaults as D
from ._progress import advance_to, progress_bar
from ._sampler_args import add_sampler_arguments, model_help, sampler_from_args


def register(sub) -> None:
    p = sub.add_parser("sample", help="generate digits from a checkpoint",
                       description="Generate digits (DDPM's Algorithm 2, DDIM or DPM-Solver++; a student with its own "
                                   "steps) and save a PNG grid or an NPZ.")
    p.add_argument("--checkpoint", default=D.DEFAULT_MODEL, metavar="MODEL",
                   help=model_help())
    p.add_argument("--n", type=int, default=D.DEFAULT_SAMPLE_COUNT, help="how many images (default %(default)s)")
    p.add_argument("--out", required=True, metavar="FILE", help=".png (a grid) or .npz (key 'images', uint8)")
    add_sampler_arguments(p)
    p.add_argument("--label", type=int, help="digit to generate (class-conditional models; default: the digits "
                                              "0-9 in turn, as the GUI's sampler makes them)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=D.DEFAULT_SAMPLE_BATCH)
    p.add_argument("--device", default="auto", choices=D.DEVICE_CHOICES)
    p.add_argument("--precision", default="auto", choices=D.PRECISIONS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.text import guided_above
    from ..tasks.context import TaskContext
    from ..tasks.models import ModelRef, open_model
    from ..tasks.sample import SampleRequest, check_output, sample_to_file, sampling_precision

    from ..cli import CLIError

    if args.n < 1:
        raise CLIError(f"--n must be at least 1, got {args.n}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    request = SampleRequest(n=args.n, sampler=sampler_from_args(args), seed=args.seed, digit=args.label,
                            precision=args.precision, batch_size=args.batch_size)
    check_output(args.out)  # before the model is read and minutes of sampling
    loaded = open_model(args.checkpoint, args.device)
    choice = sampling_precision(loaded, request.precision)  # measured once, then cached
    print(f"sampling on {loaded.device.type}, {choice.describe()}", file=sys.stderr, flush=True)
    if loaded.guide is not None:
        sampler = request.sampler
        print(f"autoguidance {sampler.autoguidance:g}{guided_above(sampler.autoguidance_min_t)} with the checkpoint's "
              f"guide network ({loaded.guide_info})" + (" (off)" if sampler.autoguidance == 0 else ""),
              file=sys.stderr, flush=True)
    steps = request.sampler.num_steps(loaded.schedule.timesteps)
    bar = progress_bar(steps * ((args.n + args.batch_size - 1) // args.batch_size), f"{args.sampler}")
    try:
        result = sample_to_file(loaded, request, args.out,
                                TaskContext(on_progress=lambda stage, done, total: advance_to(bar, done)),
                                label=ModelRef.of(args.checkpoint).label)
    finally:
        bar.close()
    print(f"wrote {args.n} images to {result.path}")
    return 0
