"""The reverse-process options, one set for every command that samples.

``sample`` and ``evaluate`` register them here and turn them into one
``SamplerConfig`` here, so the two commands take the same flags, show the same
defaults in ``--help`` (read from the torch-free ``engine.defaults``) and run
exactly the sampler the GUI's sampler form describes.
"""

from __future__ import annotations

import argparse

from ..engine import defaults as D


def model_help() -> str:
    """--checkpoint's help for the commands that sample, the bundled names from ``engine.defaults``."""
    suffixes = ", ".join(f"-{k}step" for k in D.BUNDLED_STUDENT_STEPS[:-1]) + f" or -{D.BUNDLED_STUDENT_STEPS[-1]}step"
    return ("a .pt checkpoint, a run folder, or a bundled model: default, default-conditional, or a student of "
            f"either (its name and {suffixes}, e.g. default-4step) (default: %(default)s, the model the app "
            "opens with)")


def add_sampler_arguments(p: argparse.ArgumentParser) -> None:
    """--sampler, --steps, --eta, --variance, --clip-x0, --guidance, --autoguidance and
    --autoguidance-min-t, each defaulting to None
    (= ``SamplerConfig``'s field default, named in the help)."""
    g = p.add_argument_group("reverse process (defaults: the app's, as in the GUI's sampler form)")
    g.add_argument("--sampler", choices=D.SAMPLER_KINDS, default=D.DEFAULT_SAMPLER,
                   help="ddpm: Algorithm 2, all T steps; ddim; dpmpp2m: DPM-Solver++ (2M), a deterministic "
                        "second-order solver (default: %(default)s)")
    g.add_argument("--steps", type=int, metavar="K",
                   help=f"DDIM steps (default {D.DEFAULT_DDIM_STEPS}) or DPM-Solver++ steps (default "
                        f"{D.DEFAULT_DPM_STEPS}); DDPM always runs T")
    g.add_argument("--eta", type=float, default=None,
                   help=f"DDIM eta (default {D.DEFAULT_DDIM_ETA:g}: measured better than 0)")
    g.add_argument("--variance", choices=D.VARIANCE_KINDS, default=None,
                   help=f"DDPM sigma_t^2 (default {D.DEFAULT_VARIANCE})")
    g.add_argument("--clip-x0", action=argparse.BooleanOptionalAction, default=None,
                   help="clip the predicted x_0 to [-1, 1] at every step "
                        f"(default {'on' if D.DEFAULT_CLIP_X0 else 'off'} for DDPM and DDIM, "
                        f"{'on' if D.DEFAULT_DPM_CLIP_X0 else 'off'} for DPM-Solver++)")
    g.add_argument("--guidance", type=float, default=None, metavar="W",
                   help=f"classifier-free guidance weight for class-conditional models (default "
                        f"{D.DEFAULT_GUIDANCE:g}; ignored for unconditional ones)")
    g.add_argument("--autoguidance", type=float, default=None, metavar="G",
                   help=f"autoguidance weight for models that carry a guide network, a weaker version of "
                        f"themselves (default {D.DEFAULT_AUTOGUIDANCE:g}; the bundled 'default' has one; "
                        "ignored for models without one)")
    g.add_argument("--autoguidance-min-t", type=int, default=None, metavar="T",
                   help="autoguidance only at steps whose t is above this, leaving the last, low-noise "
                        f"steps to the model alone; 0 = every step (default {D.DEFAULT_AUTOGUIDANCE_MIN_T})")


def sampler_from_args(args: argparse.Namespace):
    """The ``SamplerConfig`` the options describe (a ValueError names a bad value)."""
    from ..engine.diffusion.scheduling import SamplerConfig

    given = {"kind": args.sampler, "steps": args.steps, "eta": args.eta, "variance": args.variance,
             "clip_x0": args.clip_x0, "guidance": args.guidance, "autoguidance": args.autoguidance,
             "autoguidance_min_t": args.autoguidance_min_t}
    return SamplerConfig(**{k: v for k, v in given.items() if v is not None})
