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
from ..engine.text import baseline_validated, continuing_from, format_duration, resuming_at
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
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="arithmetic (default auto: the faster of the two for this network, measured once)")
    p.add_argument("--max-minutes", type=float, metavar="M",
                   help="wall-clock budget: stop after M minutes, validate and keep the best model "
                   "(early stopping still applies)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"],
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
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: %(default)s")
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
    from ..engine import runs as R
    from ..engine.operations import plan_continue, plan_resume, prepare_run_dir
    from ..engine.training.presets import get_preset, with_overrides

    data_dir = Path(args.data) if args.data else paths.default_mnist_dir()
    overrides = dict(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
        seed=args.seed, ema_decay=args.ema_decay, precision=args.precision, lr_schedule=args.lr_schedule,
        warmup_steps=args.warmup_steps, min_snr_gamma=args.min_snr_gamma,
    )
    if args.max_minutes is not None and not (args.max_minutes > 0 and math.isfinite(args.max_minutes)):
        raise CLIError(f"--max-minutes must be a positive number of minutes, got {args.max_minutes}")
    preset = with_overrides(get_preset(args.preset), **overrides)
    model_changes = {}
    if args.width is not None:
        if preset.model.arch == "res":  # channels at 28, 14 and 7 px
            model_changes["level_channels"] = (args.width, 2 * args.width, 4 * args.width)
            model_changes["norm_groups"] = math.gcd(preset.model.norm_groups, args.width)
        else:
            model_changes["base_channels"] = args.width
    if args.conditional is not None:
        model_changes["num_classes"] = 10 if args.conditional else 0
    schedule_changes = {k: v for k, v in (("kind", args.schedule), ("timesteps", args.timesteps)) if v is not None}
    preset = replace(
        preset,
        model=replace(preset.model, **model_changes),
        schedule=replace(preset.schedule, **schedule_changes),
    )
    description = R.describe_differences(preset.model, preset.schedule, preset.train)
    if args.continue_from is not None and args.resume:
        raise CLIError("--resume continues a run in its own folder and --continue-from starts a new run "
                       "from a checkpoint: choose one")
    if args.out is None and args.resume:
        raise CLIError("--resume needs --out: the run folder or run name to continue (see `diffusion-studio runs list`)")
    out = None
    if args.out is not None:
        out = Path(args.out)
        if args.resume and not out.is_dir():
            out = R.resolve_run(args.out, args.runs_dir)  # a run name inside the runs folder
    resume = continued = None
    if args.continue_from is not None:
        continued = plan_continue(args.continue_from, _requested_settings(args, preset))
        description = f"continues-{continued.name}"
    if out is not None and args.resume:
        if not (out / "last.pt").is_file():
            raise CLIError(f"nothing to resume: {out / 'last.pt'} does not exist (train without --resume first)")
        resume = plan_resume(out, _requested_settings(args, preset)).last
    elif out is not None and (out / "last.pt").exists():
        raise CLIError(f"{out} already holds a run; add --resume to continue it or choose another --out")

    rank, world = _init_distributed(args)
    if world > 1 and out is None:
        raise CLIError("under torchrun, name the run folder with --out (every process must use the same one)")
    data = load_mnist(data_dir, download=args.download)
    if rank != 0:
        return _train(args, out, data, preset, resume, continued)
    if not args.resume:  # a new folder in the runs folder, or run.json for a folder of the user's choice
        out = prepare_run_dir(out, description, runs_dir=args.runs_dir)
    print(f"run folder: {out}", flush=True)
    with R.mark_running(out):  # the run's OS lock while this process trains (the Runs list shows "running")
        if resume is None and (out / "last.pt").exists():  # another process trained here since the check
            raise CLIError(f"{out} already holds a run; add --resume to continue it or choose another --out")
        return _train(args, out, data, preset, resume, continued)


def _requested_settings(args, preset) -> dict:
    """The settings the command line gave, as ``operations.plan_resume`` checks them
    against the run (a resume refuses, in one line, any it would ignore)."""
    requested = {("train", k): getattr(args, k) for k in (
        "batch_size", "lr", "patience", "seed", "ema_decay", "precision", "lr_schedule", "warmup_steps",
        "min_snr_gamma")}
    requested[("schedule", "kind")] = args.schedule
    requested[("schedule", "timesteps")] = args.timesteps
    if args.width is not None:
        for key in ("base_channels", "level_channels"):
            requested[("model", key)] = getattr(preset.model, key)
    if args.conditional is not None:
        requested[("model", "num_classes")] = 10 if args.conditional else 0
    if args.preset != "default":
        requested[("meta", "preset")] = args.preset
    return requested


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


def _train(args, out, data, preset, resume, continued) -> int:
    from ..engine.device import describe
    from ..engine.training.trainer import Trainer

    import time

    started_at = time.time() - 1.0  # (file times can be coarser than a second)
    stop = threading.Event()
    trainer = Trainer(
        data,
        model_config=preset.model,
        schedule_config=preset.schedule,
        train_config=preset.train if not (resume or continued) or args.epochs else None,
        device=args.device,
        run_dir=out,
        stop_event=stop,
        resume=resume,
        continue_from=continued.checkpoint if continued else None,
        continue_settings=continued.changes if continued else None,
        extra_meta={"preset": preset.name} if resume is None and continued is None else None,
        max_seconds=60.0 * args.max_minutes if args.max_minutes else None,
        resume_patience=args.patience if resume or continued else None,
    )
    if trainer.rank == 0:
        c = trainer.config
        print(
            f"training on {describe(trainer.device)}, {trainer.precision_choice.describe()}; "
            f"{len(trainer.train_x)} train / "
            f"{len(trainer.val_x)} val digits; preset {preset.name}, schedule {trainer.schedule_config.kind} "
            f"T={trainer.schedule.timesteps}; batch {c.batch_size}, lr {c.lr:g}, patience {c.patience}, "
            f"EMA {c.ema_decay or 'off'}"
            + (f"; {resuming_at(trainer.epoch + 1, trainer.next_lr())}" if resume else "")
            + (f"; {continuing_from(continued.name, continued.epochs, trainer.epoch + 1, trainer.next_lr())}"
               if continued else "")
            + (f"; time budget {args.max_minutes:g} min" if args.max_minutes else ""),
            flush=True,
        )

    # Ctrl-C asks the trainer to stop after the current batch (a second one aborts).
    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    old = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    bar = None
    finished = None
    try:
        for record in trainer.run():
            if trainer.rank != 0:
                if record.kind == "finished":
                    finished = record
                continue
            if record.kind == "step":
                if bar is None:
                    bar = progress_bar(record.steps_per_epoch, f"epoch {record.epoch}")
                bar.set_postfix_str(f"loss {record.loss:.4f}, {record.images_per_s:.0f} img/s", refresh=False)
                advance_to(bar, record.step)
            elif record.kind == "baseline":
                print(baseline_validated(record.val_loss, record.seconds), flush=True)
            elif record.kind == "epoch":
                if bar is not None:
                    bar.close()
                    bar = None
                mark = "*" if record.improved else " "
                part = "" if record.fraction >= 1 else f" ({record.fraction:.0%} of it, the time budget ended it)"
                print(
                    f"epoch {record.epoch:3d}/{record.epochs}{part}  train {record.train_loss:.5f}  "
                    f"val {record.val_loss:.5f}{mark} best {record.best_val_loss:.5f} (epoch {record.best_epoch})  "
                    f"{format_duration(record.seconds)}  {record.images_per_s:.0f} img/s  "
                    f"no improvement {record.epochs_without_improvement}/{record.patience}",
                    flush=True,
                )
            else:
                if bar is not None:
                    bar.close()
                finished = record
                print(record.message, flush=True)
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
    if trainer.distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    if finished is not None and finished.reason == "diverged":
        return 1
    if finished is not None and trainer.rank == 0:
        written = [out / n for n in ("best.pt", "last.pt")
                   if (out / n).exists() and (out / n).stat().st_mtime >= started_at]
        print(f"wrote {', '.join(map(str, written))}" if written else "no checkpoint was written", file=sys.stderr)
    if finished is not None and finished.reason == "stopped" and stop.is_set():
        return 130  # stopped by Ctrl-C: the shell's convention (128 + SIGINT)
    return 0
