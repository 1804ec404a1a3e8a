"""``diffusion-studio noise``: the forward-process strip (the report's Figure 3)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine import defaults as D


def register(sub) -> None:
    p = sub.add_parser("noise", help="draw x_t for chosen t (forward process)",
                       description="Save a strip of digits noised to several timesteps: x_0, then x_t for each t.")
    p.add_argument("--data", metavar="DIR", help="MNIST folder (default: the app's data folder)")
    p.add_argument("--t", default="20,50,100,300", help="comma-separated timesteps (default %(default)s)")
    p.add_argument("--out", required=True, metavar="FILE.png")
    p.add_argument("--n", type=int, default=4, help="how many digits (rows, default %(default)s)")
    p.add_argument("--split", choices=D.SPLITS, default="test")
    p.add_argument("--schedule", choices=D.SCHEDULE_KINDS, default="linear",
                   help="beta schedule (default %(default)s, the report's)")
    p.add_argument("--timesteps", type=int, default=D.DEFAULT_TIMESTEPS, help="T (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def parse_timesteps(text: str, T: int) -> list[int]:
    from ..cli import CLIError

    try:
        ts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CLIError(f"--t must be comma-separated integers such as 20,50,100,300, got {text!r}") from None
    if not ts or any(not 0 <= t <= T for t in ts):
        raise CLIError(f"--t values must lie in 0..{T}, got {text!r}")
    return ts


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from ..engine.storage import paths
    from ..engine.storage.data import load_mnist
    from ..engine.storage.images import save_png
    from ..tasks.forward import NoiseStripRequest, noise_strip

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise CLIError(f"--out must end in .png, got {out.name!r}")
    ts = parse_timesteps(args.t, args.timesteps)
    request = NoiseStripRequest(ts=tuple(ts), n=args.n, split=args.split, kind=args.schedule,
                                timesteps=args.timesteps, seed=args.seed)
    data = load_mnist(Path(args.data) if args.data else paths.default_mnist_dir())
    result = noise_strip(data, request)
    save_png(result.image, out)
    print(f"wrote {out}: x_0 then t = {', '.join(map(str, ts))} ({args.schedule}, "
          f"sqrt(alphabar_T) = {result.signal_at_T:.3f})")
    return 0
