"""``diffusion-studio train``: train a U-Net headless, one line per epoch."""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
import signal
import sys
import threading
from pathlib import Path

from ..engine import defaults as D
from ..engine.text import baseline_validated, format_duration
from ._progress import advance_to, progress_bar


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model on MNIST", description="Train a DDPM on MNIST (Algorithm 1).")
    p.add_argument("--data", metavar="DIR", help="MNIST folder (default: the app's data folder)")
    p.add_argument(
        "--out", metavar="RUN_DIR",
        help="folder for best.pt, last.pt, history.json (default: a new run in --runs-dir, named after "
        "the time and what differs from the default preset); with --resume, a run folder or run name",
    )
    p.add_argument("--runs-dir", metavar="DIR", help="where new runs go (default: the app's runs folder)")
    p.add_argument("--preset", default="default",
                   help="recipe: default, plain (the previous default) or report, the report's exact recipe "
                   "(default: %(default)s). Each option below defaults to the preset's value; the default "
                   "preset's is quoted")
    p.add_argument("--epochs", type=int, help=f"most epochs (default {D.DEFAULT_EPOCHS})")
    p.add_argument("--batch-size", type=int,
                   help=f"images per step (default {D.DEFAULT_BATCH_SIZE})")
    p.add_argument("--lr", type=float, help=f"peak Adam learning rate (default {D.DEFAULT_LR:g})")
    p.add_argument("--patience", type=int,
                   help=f"early stopping: epochs without improvement (default {D.DEFAULT_PATIENCE}); with "
                        "--resume it may be raised (a resume restarts the learning-rate decay)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--ema", type=float, metavar="DECAY", dest="ema_decay",
                   help=f"EMA decay, 0 = off (default {D.DEFAULT_EMA_DECAY:g})")
    p.add_argument("--precision", choices=D.PRECISIONS,
                   help="arithmetic (default auto: the faster of the two for this network, measured once)")
    p.add_argument("--max-minutes", type=float, metavar="M",
                   help="wall-clock budget: stop after M minutes, validate and keep the best model "
                   "(early stopping still applies)")
    p.add_argument("--lr-schedule", choices=D.LR_SCHEDULES,
                   help=f"learning rate over the run (default {D.DEFAULT_LR_SCHEDULE}: it decays to the epoch or "
                   "time budget)")
    p.add_argument("--warmup-steps", type=int, metavar="N",
                   help=f"linear learning-rate warm-up steps (default {D.DEFAULT_WARMUP_STEPS})")
    p.add_argument("--min-snr", type=float, metavar="GAMMA", dest="min_snr_gamma",
                   help="min-SNR-gamma loss weighting (Hang et al. 2023); 0 = off (default off)")
    p.add_argument("--schedule", choices=D.SCHEDULE_KINDS,
                   help=f"beta schedule (default {D.DEFAULT_SCHEDULE})")
    p.add_argument("--timesteps", type=int, metavar="T", help=f"diffusion steps T (default {D.DEFAULT_TIMESTEPS})")
    p.add_argument("--width", type=int, metavar="C",
                   help="network width: channels at 28x28 (the preset's; twice and four times that at 14 and 7 px)")
    p.add_argument("--conditional", action=argparse.BooleanOptionalAction, default=None,
                   help="class-conditional model for classifier-free guidance, labels dropped 10%% of the time "
                        "(default: the preset's; the default preset is class-conditional, --no-conditional "
                        "trains an unconditional one)")
    p.add_argument("--device", default="auto", choices=D.DEVICE_CHOICES, help="default: %(default)s")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--continue-from", metavar="CHECKPOINT",
                   help="start a new run from a checkpoint's weights, settings and epoch count: a bundled model "
                        "(default, default-conditional), a .pt file or a run folder (an optimizer state the file "
                        "lacks starts afresh, with the warm-up); --lr, --lr-schedule, --warmup-steps and --ema "
                        "may change (e.g. a lower rate and a longer EMA to fine-tune)")
    p.add_argument("--download", action="store_true", help="download MNIST if the folder lacks it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from ..engine.storage import paths
    from ..engine.storage.data import load_mnist
    from ..tasks.train import TrainRequest, plan_train

    if args.continue_from is not None and args.resume:
        raise CLIError("--resume continues a run in its own folder and --continue-from starts a new run "
                       "from a checkpoint: choose one")
    if args.out is None and args.resume:
        raise CLIError("--resume needs --out: the run folder or run name to continue (see `diffusion-studio runs list`)")
    if args.max_minutes is not None and not (args.max_minutes > 0 and math.isfinite(args.max_minutes)):
        raise CLIError(f"--max-minutes must be a positive number of minutes, got {args.max_minutes}")
    mode = "resume" if args.resume else "continue" if args.continue_from is not None else "new"
    request = TrainRequest(
        mode=mode, preset=args.preset, settings={k: getattr(args, k) for k in TRAIN_SETTINGS},
        width=args.width, conditional=args.conditional, schedule_kind=args.schedule, timesteps=args.timesteps,
        source=args.out if mode == "resume" else args.continue_from,
        out=Path(args.out) if args.out is not None and mode != "resume" else None,
        runs_dir=Path(args.runs_dir) if args.runs_dir else None, max_minutes=args.max_minutes, device=args.device,
    )
    plan = plan_train(request)  # every refusal before the data is read or a folder is made
    for repair in plan.repairs:
        print(f"repaired: {repair}", file=sys.stderr, flush=True)
    rank, world = _init_distributed(args)
    if world > 1:
        if args.out is None:
            raise CLIError("under torchrun, name the run folder with --out (every process must use the same one)")
        request = replace(request, device=args.device)
    data = load_mnist(Path(args.data) if args.data else paths.default_mnist_dir(), download=args.download)
    return _train(request, plan, data, rank)


# the train settings a command line may give (None: the preset's, or the run's own)
TRAIN_SETTINGS = ("epochs", "batch_size", "lr", "patience", "seed", "ema_decay", "precision", "lr_schedule",
                  "warmup_steps", "min_snr_gamma")


def _init_distributed(args) -> tuple[int, int]:
    """Join the process group when started by torchrun (WORLD_SIZE > 1).

    gloo on CPUs, NCCL on CUDA (one GPU per process: cuda:LOCAL_RANK).
    Returns (rank, world size); (0, 1) for an ordinary run.
    """
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    use_cuda = args.device in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        args.device = f"cuda:{local_rank}"
    else:
        args.device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


# a stop asked for by the user or the system: Ctrl-C, a logout, a process manager's kill
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def _stop_on_signals(stop: threading.Event, received: list) -> dict:
    """Make each of STOP_SIGNALS ask the training to stop after the current batch, as Ctrl-C
    does (a second one aborts), noting the signal in ``received``. Returns the previous handlers
    (none off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        received.append(signum)
        stop.set()

    old = {}
    for name in STOP_SIGNALS:
        if hasattr(signal, name):
            sig = getattr(signal, name)
            old[sig] = signal.signal(sig, on_signal)
    return old


class _Printer:
    """Prints the training's records: the start line, the early estimate's line, one line per epoch,
    a progress bar per epoch."""

    def __init__(self) -> None:
        self.bar = None
        self.finished = None
        self.run_dir = None

    def __call__(self, record) -> None:
        getattr(self, f"_{record.kind}", lambda r: None)(record)

    def _started(self, record) -> None:
        self.run_dir = Path(record.run_dir)
        print(f"run folder: {record.run_dir}", flush=True)
        print(record.describe(), flush=True)

    def _step(self, record) -> None:
        if self.bar is None:
            self.bar = progress_bar(record.steps_per_epoch, f"epoch {record.epoch}")
        self.bar.set_postfix_str(f"loss {record.loss:.4f}, {record.images_per_s:.0f} img/s", refresh=False)
        advance_to(self.bar, record.step)

    def _early_validation(self, record) -> None:
        line = record.describe()
        if self.bar is not None:  # above the epoch's bar, which goes on
            self.bar.write(line, file=sys.stdout)
            sys.stdout.flush()
        else:
            print(line, flush=True)

    def _baseline(self, record) -> None:
        print(baseline_validated(record.val_loss, record.seconds), flush=True)

    def _epoch(self, record) -> None:
        self.close()
        mark = "*" if record.improved else " "
        part = "" if record.fraction >= 1 else f" ({record.fraction:.0%} of it, the time budget ended it)"
        print(
            f"epoch {record.epoch:3d}/{record.epochs}{part}  train {record.train_loss:.5f}  "
            f"val {record.val_loss:.5f}{mark} best {record.best_val_loss:.5f} (epoch {record.best_epoch})  "
            f"{format_duration(record.seconds)}  {record.images_per_s:.0f} img/s  "
            f"no improvement {record.epochs_without_improvement}/{record.patience}",
            flush=True,
        )

    def _finished(self, record) -> None:
        self.close()
        self.finished = record
        print(record.message, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _train(request, plan, data, rank: int) -> int:
    import time

    from ..tasks.context import TaskContext
    from ..tasks.train import train

    started_at = time.time() - 1.0  # (file times can be coarser than a second)
    ctx = TaskContext()
    printer = _Printer()
    received: list[int] = []
    old = _stop_on_signals(ctx.stop_event, received)
    try:
        for record in train(request, plan, data, ctx):
            if rank == 0:
                printer(record)
            elif record.kind == "finished":
                printer.finished = record
    finally:
        printer.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    _leave_distributed()
    finished = printer.finished
    if finished is not None and finished.reason == "diverged":
        return 1
    if finished is not None and rank == 0 and printer.run_dir is not None:
        out = printer.run_dir
        written = [out / n for n in ("best.pt", "last.pt")
                   if (out / n).exists() and (out / n).stat().st_mtime >= started_at]
        print(f"wrote {', '.join(map(str, written))}" if written else "no checkpoint was written", file=sys.stderr)
    if finished is not None and finished.reason == "stopped" and received:
        return 128 + received[0]  # stopped by a signal: the shell's convention (130 for Ctrl-C)
    return 0


def _leave_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
