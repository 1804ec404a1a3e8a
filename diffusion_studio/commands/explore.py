"""``diffusion-studio explore``: the Sampler and Forward-noise panels' explorations, headless.

    explore interpolate  digits between two seeds' x_T (slerp, deterministic DDIM)
    explore sweep        one seed at several guidance (or autoguidance) weights
    explore neighbours   generated digits beside their nearest training digits
    explore denoise      real digits noised to t, then denoised ("denoise from here")
    explore identity     the share of digits that keep their label after denoising from each t

Each writes a PNG (the identity curve: an SVG) to ``--out`` and prints what it shows; the
panels call the same tasks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine import defaults as D
from ._sampler_args import add_sampler_arguments, sampler_from_args



def register(sub) -> None:
    p = sub.add_parser("explore", help="interpolations, guidance sweeps, denoising, nearest neighbours",
                       description="The app's explorations of a model, each as a PNG strip.")
    kinds = p.add_subparsers(dest="exploration", metavar="EXPLORATION", required=True)
    for name, helptext in (("interpolate", "digits between the x_T of two seeds"),
                           ("sweep", "one seed at guidance w (conditional models) or autoguidance g = 0..4"),
                           ("neighbours", "generated digits and their nearest training digits"),
                           ("denoise", "real digits noised to t, then denoised from there"),
                           ("identity", "the share of digits that keep their label after denoising from t")):
        q = kinds.add_parser(name, help=helptext, description=helptext)
        q.add_argument("--checkpoint", default=D.DEFAULT_MODEL, metavar="MODEL",
                       help="a bundled model (default, default-conditional or a student, e.g. default-4step), a "
                            ".pt file or a run folder (default: %(default)s)")
        q.add_argument("--seed", type=int, default=0, help="default: %(default)s")
        q.add_argument("--device", default="auto", choices=D.DEVICE_CHOICES)
        add_sampler_arguments(q)
        if name in ("interpolate", "sweep"):
            q.add_argument("--digit", type=int, help="for a class-conditional model (default 0)")
            q.add_argument("--ddim-steps", type=int, default=D.DEFAULT_DDIM_STEPS,
                           help="deterministic DDIM steps of the strip (default %(default)s)")
        if name == "interpolate":
            q.add_argument("--to-seed", type=int, default=1, help="the other seed (default %(default)s)")
        if name in ("neighbours", "denoise", "identity"):
            q.add_argument("--data", metavar="DIR", help="MNIST folder (default: the app's data folder)")
            q.add_argument("--n", type=int, default=D.DEFAULT_VIEW_DIGITS, help="digits (default %(default)s, as the panels)")
        if name in ("denoise", "identity"):
            q.add_argument("--split", choices=D.SPLITS, default="test", help="real digits from (default %(default)s)")
        if name == "denoise":
            q.add_argument("--t", type=int, default=150, help="the timestep to noise to (default %(default)s)")
        if name == "identity":
            q.add_argument("--t", metavar="T,T,...", help="timesteps (default: seven shares of T)")
        q.add_argument("--out", required=True, metavar="FILE.svg" if name == "identity" else "FILE.png")
        q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from ..engine.storage.atomic import check_writable
    from ..tasks.models import open_model

    out = Path(args.out)
    suffix = ".svg" if args.exploration == "identity" else ".png"  # a curve, or a strip of digits
    if out.suffix.lower() != suffix:
        raise CLIError(f"--out must end in {suffix}, got {out.name!r}")
    check_writable(out)  # before the model is read and minutes of sampling
    model = open_model(args.checkpoint, args.device)
    image, caption = EXPLORATIONS[args.exploration](model, args, sampler_from_args(args))
    _save(image, out)
    print(caption)
    print(f"wrote {out}")
    return 0


def _save(image, out: Path) -> None:
    from ..engine.storage.atomic import write_text_atomic
    from ..engine.storage.images import save_png

    out.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, str):  # an SVG
        write_text_atomic(out, image)
    else:
        save_png(image, out)


def _interpolate(model, args, sampler):
    from ..tasks.explore import InterpolateRequest, interpolate

    strip = interpolate(model, InterpolateRequest(args.seed, args.to_seed, sampler=sampler, steps=args.ddim_steps,
                                                  digit=args.digit if model.model_config.conditional else None))
    return strip.picture(), strip.caption


def _sweep(model, args, sampler):
    from ..tasks.explore import GuidanceSweepRequest, guidance_sweep

    from ..tasks.explore import SWEEP_DIGITS

    digits = SWEEP_DIGITS if args.digit is None and model.model_config.conditional else None
    strip = guidance_sweep(model, GuidanceSweepRequest(args.seed, sampler=sampler, steps=args.ddim_steps,
                                                       digit=args.digit, digits=digits))
    return strip.picture(), strip.caption


def _data(args):
    from ..engine.storage import paths
    from ..engine.storage.data import load_mnist

    return load_mnist(Path(args.data) if args.data else paths.default_mnist_dir())


def _neighbours(model, args, sampler):
    from ..engine.storage.data import to_uint8
    from ..tasks.explore import NeighboursRequest, nearest_neighbours
    from ..tasks.sample import SampleRequest, sample_images

    data = _data(args)
    images = sample_images(model, SampleRequest(n=args.n, sampler=sampler, seed=args.seed)).images
    strip = nearest_neighbours(data, NeighboursRequest(to_uint8(images).numpy()))
    return strip.picture(), strip.caption


def _real_digits(args):
    """The first --n digits of --split in [-1, 1], their labels, and noise drawn from --seed."""
    import torch

    from ..engine.storage.data import to_model_range

    data = _data(args)
    images = data.images(args.split)
    if not 1 <= args.n <= len(images):
        raise ValueError(f"--n must lie in 1..{len(images)}, got {args.n}")
    x0 = to_model_range(images[: args.n])
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(args.seed + 1))
    return data, x0, data.labels(args.split)[: args.n].numpy(), noise


def _denoise(model, args, sampler):
    import numpy as np

    from ..engine.storage.images import tile
    from ..tasks.explore import DenoiseRequest, denoise_from

    data, x0, labels, noise = _real_digits(args)
    result = denoise_from(model, DenoiseRequest(x0, noise, args.t, labels, sampler), data)
    kept = result.kept
    caption = (f"From t = {result.t}: the originals, their x_t, and what the reverse process made "
               f"({sampler.describe(model.schedule.timesteps)})")
    if kept is not None:
        caption += f"; still the same digit: {int(kept.sum())} of {len(kept)}"
    rows = np.concatenate([result.x0, result.x_t, result.result])
    return tile(rows, ncols=len(result.x0), pad=2, pad_value=255), caption


def _identity(model, args, sampler):
    from ..engine.evaluation.charts import line_plot
    from ..tasks.explore import IdentityCurveRequest, identity_curve

    data, x0, labels, _ = _real_digits(args)
    from .noise import parse_timesteps

    ts = tuple(t for t in parse_timesteps(args.t, model.schedule.timesteps) if t > 0) if args.t else None
    curve = identity_curve(model, IdentityCurveRequest(x0, labels, ts, sampler), data)
    caption = "Share of digits that keep their label after denoising from t: " + ", ".join(
        f"t={t}: {s:.0%}" for t, s in curve)
    svg = line_plot([{"name": "kept", "x": [t for t, _ in curve], "y": [s for _, s in curve], "markers": True}],
                    "Digits that keep their label after denoising from t", "t", ylabel="share", log_y=False)
    return svg, caption


EXPLORATIONS = {"interpolate": _interpolate, "sweep": _sweep, "neighbours": _neighbours, "denoise": _denoise,
                "identity": _identity}
