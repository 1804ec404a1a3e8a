"""``diffusion-studio evaluate``: sample from a checkpoint, measure, write a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._progress import advance_to, progress_bar
from ._sampler_args import add_sampler_arguments, sampler_from_args

EPILOG = """\
metrics:
  inception  FID (Inception, pytorch-fid): needs pt_inception-2015-12-05-6726825d.pth in torch hub's
             cache ($TORCH_HOME/hub/checkpoints/) or --inception-weights PATH; nothing is downloaded
             unless --download-inception is given. Comparable FIDs use --n 10000.
  mnist      offline: FD and KID on the features of the app's own MNIST classifier (trained on the
             training split the first time, a few minutes, then cached), the share of confidently
             classified digits and the predicted-label histogram.
  all        both; without the Inception weights the offline metrics still run and the report says
             how to get the Inception FID.

writes DIR/report.json (numbers + protocol), DIR/report.html (self-contained) and DIR/samples.png.

exit status: 0 when at least one metric was computed (a metric that could not run is listed on
stderr and in the report); 2 when none could (the report is still written if sampling finished) or
on bad input; 130 when interrupted.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="measure a checkpoint (FID, offline metrics) and write a report",
        description="Generate digits from a checkpoint, measure them against the real test digits and "
                    "write a shareable report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, metavar="FILE",
                   help="a .pt checkpoint, or a bundled model: 'default' or 'default-conditional'")
    p.add_argument("--n", type=int, default=10_000, help="digits to generate (default %(default)s)")
    p.add_argument("--report", metavar="DIR",
                   help="folder for report.json, report.html, samples.png (default: the checkpoint's run "
                        "folder, reports/<time>_<metric>_n<N>, where the Runs panel finds it)")
    p.add_argument("--metric", choices=["inception", "mnist", "all"], default="all", help="default: %(default)s")
    add_sampler_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument("--data", metavar="DIR", help="MNIST folder (default: the app's data folder)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test",
                   help="real reference split (default %(default)s: the 10,000 test digits)")
    p.add_argument("--inception-weights", metavar="PATH",
                   help="pt_inception-2015-12-05-6726825d.pth (default: torch hub's cache)")
    p.add_argument("--download-inception", action="store_true",
                   help="download the Inception weights into torch hub's cache if missing (needs internet)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: %(default)s")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="sampling arithmetic (default %(default)s); features always run in fp32")
    p.add_argument("--batch-size", type=int, default=500, help="images per sampling batch (default %(default)s)")
    p.set_defaults(func=run)


class _Progress:
    """One terminal progress bar per stage."""

    def __init__(self) -> None:
        self.stage = None
        self.bar = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.bar = stage, progress_bar(total, stage)
        advance_to(self.bar, done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = self.stage = None


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from ..engine.storage import paths
    from ..engine.storage.atomic import check_writable
    from ..engine.storage.checkpoint import load_model
    from ..engine.storage.data import load_mnist
    from ..engine.device import resolve_device
    from ..engine.evaluation.metrics import MetricError
    from ..engine.evaluation.report import EvaluationConfig, evaluate_model, format_value, write_report
    from .sample import resolve_checkpoint

    if args.n < 2:
        raise CLIError(f"--n must be at least 2, got {args.n}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.report is None:
        if args.checkpoint in ("default", "default-conditional"):
            raise CLIError("name a --report folder for the bundled model")
        from datetime import datetime, timezone

        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d_%H%M%S")
        args.report = str(Path(args.checkpoint).parent / "reports" / f"{stamp}_{args.metric}_n{args.n}")
    report_dir = Path(args.report)
    if report_dir.exists() and not report_dir.is_dir():
        raise CLIError(f"--report must be a folder, but {report_dir} is a file")
    check_writable(report_dir, is_dir=True)  # before minutes of sampling and scoring
    config = EvaluationConfig(
        n=args.n, metric=args.metric, sampler=sampler_from_args(args), seed=args.seed,
        split=args.split, inception_weights=args.inception_weights, allow_download=args.download_inception,
        device=args.device, precision=args.precision, batch_size=args.batch_size,
    )
    checkpoint = resolve_checkpoint(args.checkpoint)
    device = resolve_device(args.device)
    loaded = load_model(checkpoint, device)
    data = load_mnist(Path(args.data) if args.data else paths.default_mnist_dir())
    progress = _Progress()
    try:
        evaluation = evaluate_model(loaded, data, config, checkpoint_path=checkpoint, progress=progress)
    except MetricError as exc:
        raise CLIError(str(exc)) from None
    finally:
        progress.close()
    files = write_report(evaluation, report_dir)
    for m in evaluation.report["metrics"]:
        p = m["protocol"]
        print(f"{m['name']}: {format_value(m)}  (n = {p['n_generated']:,} generated vs {p['n_real']:,} "
              f"{p['reference_split']})")
    for w in evaluation.report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    real_errors = [e for e in evaluation.errors if e["metric"] != "all"]
    for e in real_errors:
        print(f"note: {e['metric']} was not computed: {e['message']}", file=sys.stderr)
    print(f"wrote {files['html']}, {files['json'].name} and {files['samples'].name}")
    if not evaluation.report["metrics"]:
        raise CLIError(f"no metric could be computed (the report in {report_dir} says why)")
    return 0
