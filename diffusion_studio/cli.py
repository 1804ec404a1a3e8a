"""``diffusion-studio``: the GUI with no subcommand, headless work with one.

    diffusion-studio [--data DIR] [--checkpoint MODEL]  open the app
    diffusion-studio train ...                          see ``diffusion-studio train -h``
    diffusion-studio distill ...
    diffusion-studio sample ...
    diffusion-studio explore ...
    diffusion-studio evaluate ...
    diffusion-studio runs ...
    diffusion-studio noise ...

Each subcommand lives in ``diffusion_studio/commands/<name>.py`` with a
``register(subparsers)`` that adds its parser and sets ``func``. Failures the
user can fix end with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# Modules under diffusion_studio.commands, in the order `--help` lists them.
COMMAND_MODULES = ["train", "distill", "sample", "explore", "noise", "evaluate", "runs", "desktop"]


class CLIError(Exception):
    """A problem with the user's input; the message says what to do."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from .engine.storage.checkpoint import CheckpointError
    from .engine.storage.data import DataError
    from .engine.runs import RunError

    return (CLIError, DataError, CheckpointError, RunError, ValueError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusion-studio",
        description="Explore DDPMs on MNIST. With no command, opens the app.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="the app (no COMMAND):\n" + "\n".join(
            f"  {', '.join(a.option_strings)} {a.metavar or ''}".ljust(26) + (a.help or "")
            for a in _gui_parser()._actions if a.option_strings and a.dest != "help"),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"diffusion_studio.commands.{name}").register(sub)
    # Names as typed: a module may register several (desktop: install-desktop, uninstall-desktop).
    parser.command_names = frozenset(sub.choices)
    return parser


def _gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffusion-studio", description="Open the Diffusion Studio app.")
    parser.add_argument("--data", metavar="DIR", help="MNIST folder (the four .gz files or torchvision's MNIST/raw)")
    parser.add_argument("--checkpoint", metavar="MODEL",
                        help="open the sampler with this model: a .pt file, a run folder or a bundled model (default, "
                             "default-conditional)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    wants_gui = not argv or (argv[0] not in parser.command_names and argv[0] not in ("-h", "--help", "--version"))
    if wants_gui:
        args = _gui_parser().parse_args(argv)
        from .app import main as gui_main

        return gui_main(data=args.data, checkpoint=args.checkpoint)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("diffusion-studio: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        print(f"diffusion-studio {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
