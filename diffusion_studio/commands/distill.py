"""``diffusion-studio distill``: few-step students of a model, round by round, one line per epoch."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..engine import defaults as D


def register(sub) -> None:
    p = sub.add_parser(
        "distill", help="distil a model into few-step students",
        description="Distil a model into a student that samples in a few steps: first the guidance is folded "
                    "in (the student takes the weight as an input: one network call per step), then each round "
                    "halves the steps (progressive distillation). Each round is a run in its own folder in OUT; "
                    "the same command again goes on where it stopped.")
    p.add_argument("--teacher", default="default-conditional", metavar="MODEL",
                   help="the model to distil: a bundled model (default, default-conditional), a .pt file or a run "
                        "folder (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="the distillation's folder (one run per round)")
    p.add_argument("--steps", type=int, default=D.DISTILL_STEPS,
                   help="the last student's steps (default %(default)s)")
    p.add_argument("--start-steps", type=int, default=D.DISTILL_START_STEPS,
                   help="the first student's steps, the teacher's deterministic DDIM grid it learns (default "
                        "%(default)s); each round then halves them")
    p.add_argument("--skip", default="", metavar="K[,K...]",
                   help="students not to make: the round after one learns from the student before it, so "
                        "'--start-steps 16 --steps 4 --skip 8' makes the 4-step student from the 16-step one in one "
                        "round (four teacher steps per student step: fewer rounds, fewer errors that compound)")
    p.add_argument("--round-minutes", default=f"{D.DISTILL_ROUND_MINUTES:g}", metavar="M[,M...]",
                   help="each round's time budget in minutes: one number for all, or one per round "
                        "(default %(default)s)")
    p.add_argument("--weights", metavar="LO,HI",
                   help="the guidance weights the students learn (default: w "
                        f"{D.DISTILL_GUIDANCE_RANGE[0]:g}..{D.DISTILL_GUIDANCE_RANGE[1]:g} for a class-conditional "
                        f"teacher, g {D.DISTILL_AUTOGUIDANCE_RANGE[0]:g}..{D.DISTILL_AUTOGUIDANCE_RANGE[1]:g} for "
                        "one with an autoguidance guide)")
    p.add_argument("--guidance-loss", choices=D.DISTILL_LOSSES,
                   help="the space the guidance round measures the student's error in (default "
                        f"{D.DISTILL_LOSS['guidance']}: the error the teacher was trained on; v weights the steps "
                        "from pure noise as much as the rest)")
    p.add_argument("--epochs", type=int,
                   help=f"each round's most epochs (default {D.DEFAULT_EPOCHS}: the time budget ends a round first)")
    p.add_argument("--lr", type=float, help=f"peak Adam learning rate (default {D.DISTILL_LR:g})")
    p.add_argument("--batch-size", type=int, help=f"images per step (default {D.DISTILL_BATCH_SIZE})")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--precision", choices=D.PRECISIONS, help="arithmetic (default auto: measured once)")
    p.add_argument("--data", metavar="DIR", help="MNIST folder (default: the app's data folder)")
    p.add_argument("--device", default="auto", choices=D.DEVICE_CHOICES, help="(default %(default)s)")
    p.add_argument("--strip", metavar="FILE.png",
                   help="at the end, write the learner's view: the teacher's digits and every round's student's "
                        "from the same x_T (default: OUT/rounds.png)")
    p.set_defaults(func=run)


def _numbers(text: str, what: str) -> tuple[float, ...]:
    from ..cli import CLIError

    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"{what} must be numbers separated by commas (for example 20,25), got {text!r}") from None


def _whole_numbers(text: str, what: str) -> tuple[int, ...]:
    from ..cli import CLIError

    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise CLIError(f"{what} must be whole numbers separated by commas (for example 8 or 8,2), got {text!r}") \
            from None


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from ..engine.storage import paths
    from ..engine.storage.data import load_mnist
    from ..tasks.distill import DistillRequest, check_request, distill_train_config

    weights = None
    if args.weights is not None:
        weights = _numbers(args.weights, "--weights")
        if len(weights) != 2:
            raise CLIError(f"--weights takes two numbers, LO,HI (for example 0,0.5), got {args.weights!r}")
    changes = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size),
                                 ("seed", args.seed), ("precision", args.precision)) if v is not None}
    request = DistillRequest(teacher=args.teacher, out=Path(args.out), steps=args.steps,
                             start_steps=args.start_steps, skip=_whole_numbers(args.skip, "--skip"),
                             round_minutes=_numbers(args.round_minutes, "--round-minutes"),
                             weights=weights, guidance_loss=args.guidance_loss, device=args.device,
                             train=distill_train_config(**changes))
    check_request(request)  # every refusal before the data is read
    data = load_mnist(Path(args.data) if args.data else paths.default_mnist_dir())
    code = _distill(request, data)
    if code == 0:
        _write_strip(request, Path(args.strip) if args.strip else request.out / "rounds.png")
    return code


def _distill(request, data) -> int:
    from ..tasks.context import TaskContext
    from ..tasks.distill import distill
    from .train import _Printer, _stop_on_signals

    ctx = TaskContext()
    printer = _Printer()
    received: list[int] = []
    old = _stop_on_signals(ctx.stop_event, received)
    try:
        for record in distill(request, data, ctx):
            if record.kind == "round":
                printer.close()
                print(record.describe(), flush=True)
            else:
                printer(record)
    finally:
        printer.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    finished = printer.finished
    if finished is not None and finished.reason == "diverged":
        return 1
    if finished is not None and finished.reason == "stopped":
        print("stopped; the same command goes on from here", file=sys.stderr)
        return 128 + received[0] if received else 1
    return 0


def _write_strip(request, out: Path) -> None:
    from ..engine.storage.images import save_png
    from ..tasks.distill import round_strip, student_checkpoints

    strip = round_strip(request.teacher, student_checkpoints(request.out), device=request.device)
    save_png(strip.picture(), out, text={"Software": "Diffusion Studio", "teacher": str(request.teacher),
                                         "description": "the same x_T through the teacher and each round's student"})
    print(f"wrote {out}", file=sys.stderr)
