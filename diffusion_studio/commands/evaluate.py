"""``diffusion-studio evaluate``: sample from a checkpoint, measure, write a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..engine import defaults as D
from ._progress import advance_to, progress_bar
from ._sampler_args import add_sampler_arguments, model_help, sampler_from_args

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
    p.add_argument("--checkpoint", default=D.DEFAULT_MODEL, metavar="MODEL",
                   help=model_help())
    p.add_argument("--n", type=int, default=D.DEFAULT_EVAL_N, help="digits to generate (default %(default)s)")
    p.add_argument("--report", metavar="DIR",
                   help="folder for report.json, report.html, samples.png (default: the checkpoint's run "
                        "folder, reports/<time>_<metric>_n<N>, where the Runs panel finds it)")
    p.add_argument("--metric", choices=D.METRIC_CHOICES, default=D.DEFAULT_METRIC, help="default: %(default)s")
    add_sampler_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument("--data", metavar="DIR", help="MNIST folder (default: the app's data folder)")
    p.add_argument("--split", choices=D.SPLITS, default="test",
                   help="real reference split (default %(default)s: the 10,000 test digits)")
    p.add_argument("--inception-weights", metavar="PATH",
                   help="pt_inception-2015-12-05-6726825d.pth (default: torch hub's cache)")
    p.add_argument("--download-inception", action="store_true",
                   help="download the Inception weights into torch hub's cache if missing (needs internet)")
    p.add_argument("--device", default="auto", choices=D.DEVICE_CHOICES, help="default: %(default)s")
    p.add_argument("--precision", default="auto", choices=D.PRECISIONS,
                   help="sampling arithmetic (default %(default)s); features always run in fp32")
    p.add_argument("--batch-size", type=int, default=D.DEFAULT_SAMPLE_BATCH, help="images per sampling batch (default %(default)s)")
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
    from ..engine.evaluation.metrics import MetricError
    from ..engine.evaluation.report import EvaluationConfig
    from ..engine.evaluation.report_files import format_value
    from ..engine.storage import paths
    from ..engine.storage.data import load_mnist
    from ..tasks.context import TaskContext
    from ..tasks.evaluate import EvaluateRequest, check_report_dir, default_report_dir, evaluate
    from ..tasks.models import ModelRef

    if args.n < 2:
        raise CLIError(f"--n must be at least 2, got {args.n}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    config = EvaluationConfig(
        n=args.n, metric=args.metric, sampler=sampler_from_args(args), seed=args.seed,
        split=args.split, inception_weights=args.inception_weights, allow_download=args.download_inception,
        device=args.device, precision=args.precision, batch_size=args.batch_size,
    )
    model = ModelRef.of(args.checkpoint)
    report_dir = Path(args.report) if args.report else default_report_dir(model, config)
    check_report_dir(report_dir)  # before the data, the model and minutes of sampling
    request = EvaluateRequest(model, config, report_dir)
    data = load_mnist(Path(args.data) if args.data else paths.default_mnist_dir())
    progress = _Progress()
    try:
        result = evaluate(request, data, TaskContext(on_progress=progress))
    except MetricError as exc:
        raise CLIError(str(exc)) from None
    finally:
        progress.close()
    report, files = result.evaluation.report, result.files
    for m in report["metrics"]:
        p = m["protocol"]
        print(f"{m['name']}: {format_value(m)}  (n = {p['n_generated']:,} generated vs {p['n_real']:,} "
              f"{p['reference_split']})")
    for w in report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    for e in result.evaluation.errors:
        if e["metric"] != "all":
            print(f"note: {e['metric']} was not computed: {e['message']}", file=sys.stderr)
    print(f"wrote {files['html']}, {files['json'].name} and {files['samples'].name}")
    if not report["metrics"]:
        raise CLIError(f"no metric could be computed (the report in {report_dir} says why)")
    return 0
