"""Evaluation: generate digits from a model, measure them (FID, the offline metrics, the
memorisation check) and write a report. One function for the ``evaluate`` command and the
Evaluate panel, so both score exactly what the sampler makes, guide network included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..engine.device import resolve_device
from ..engine.evaluation.report import Evaluation, EvaluationConfig, evaluate_model
from ..engine.storage.checkpoint import LoadedModel
from .context import TaskContext, context_or_default
from .models import ModelRef, open_model


@dataclass(frozen=True)
class EvaluateRequest:
    """What to evaluate.

    model: a ``ModelRef`` (a bundled name, a file, a run folder: read onto ``config.device``)
        or a loaded handle (the app's current model: evaluated on a private copy, with its guide).
    config: n, metrics, the sampler and its seed, the reference split, devices.
    report_dir: where report.json, report.html and samples.png go; None writes nothing.
    label: what the report calls a handle that has no file.
    """

    model: ModelRef | LoadedModel
    config: EvaluationConfig = field(default_factory=EvaluationConfig)
    report_dir: Path | None = None
    label: str | None = None


def default_report_dir(model: ModelRef, config: EvaluationConfig) -> Path:
    """A checkpoint's own reports folder, where the Runs panel finds it:
    <its folder>/reports/<UTC time>_<metric>_n<N>. A bundled model has no folder of its own."""
    if model.is_bundled:
        raise ValueError("name a report folder for the bundled model")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d_%H%M%S")
    path = Path(model.source).expanduser()
    folder = path if path.is_dir() else path.parent
    return folder / "reports" / f"{stamp}_{config.metric}_n{config.n}"


def check_report_dir(report_dir: Path) -> Path:
    """A folder the report can be written to, checked before minutes of sampling."""
    from ..engine.storage.atomic import check_writable

    report_dir = Path(report_dir)
    if report_dir.exists() and not report_dir.is_dir():
        raise ValueError(f"the report must go to a folder, but {report_dir} is a file")
    check_writable(report_dir, is_dir=True)
    return report_dir


@dataclass(frozen=True)
class EvaluationResult:
    evaluation: Evaluation
    files: dict | None  # {"json", "html", "samples"} paths when a report was written


def evaluate(request: EvaluateRequest, data, ctx: TaskContext | None = None) -> EvaluationResult:
    """Evaluate ``request.model`` against ``data`` (MNISTSplits). Progress stages are the
    evaluation's ("sampling", "classifier", "inception", ...); a stop raises ``EvaluationStopped``
    or ``SamplingStopped``. MetricError when a requested metric cannot run at all."""
    from ..engine.evaluation.report_files import write_report

    ctx = context_or_default(ctx)
    config = request.config
    report_dir = check_report_dir(request.report_dir) if request.report_dir is not None else None
    if isinstance(request.model, LoadedModel):
        # a private copy: the sampler may use the shared networks at the same time
        loaded = request.model.copy_to(resolve_device(config.device))
        path, label = loaded.path, request.label
    else:
        path = request.model.checkpoint()
        loaded = open_model(request.model, config.device)
        label = request.label or request.model.label
    evaluation = evaluate_model(loaded, data, config, checkpoint_path=path, checkpoint_label=label,
                                progress=ctx.progress, should_stop=ctx.should_stop)
    files = write_report(evaluation, report_dir) if report_dir is not None else None
    return EvaluationResult(evaluation, files)
