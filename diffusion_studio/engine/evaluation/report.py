"""Evaluating a model and writing a shareable report (report.json, report.html, samples.png).

``evaluate_model`` / ``evaluate_checkpoint`` generate ``n`` digits, compute the
requested metrics and return an ``Evaluation`` (the report as a JSON-ready
dict plus the images); ``write_report`` (``report_files``) turns it into files. The CLI
(``diffusion-studio evaluate``) and the GUI's Evaluate panel both call these.

Metrics (``metric``): "inception" = FID (Inception, pytorch-fid) only;
"mnist" = the offline metrics of the app's own MNIST classifier (``classifier.py``);
"all" = both. With "inception" and no weight file, ``InceptionWeightsMissing``
is raised *before* sampling. With "all" and no weight file, the offline
metrics still run and the report's ``errors`` say what to do.

Every metric entry carries its ``protocol`` (``PROTOCOL_FIELDS`` at least):
how many generated and real images, the reference split, the sampler and its
steps, the seed, the checkpoint and its sha256, the feature extractor and its
weight file (+ sha256), the seconds it took, the app version and the device.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ... import __version__
from .metrics import (
    SMALL_N_INCEPTION,
    EvaluationStopped,
    MetricError,
    ProgressFn,
    StopFn,
    check_stop,
    frechet_distance,
    small_n_warning,
)
from ..storage.checkpoint import sha256_file
from ..defaults import DEFAULT_EVAL_N, DEFAULT_METRIC, DEFAULT_SAMPLE_BATCH, METRIC_CHOICES
from ..diffusion.scheduling import SamplerConfig

REPORT_FORMAT = "diffusion-studio-evaluation"
REPORT_VERSION = 1
PROTOCOL_FIELDS = (
    "n_generated", "n_real", "reference_split", "sampler", "sampler_steps", "seed", "checkpoint",
    "checkpoint_sha256", "feature_extractor", "weights_file", "weights_sha256", "seconds", "app_version", "device",
)


class EvaluationError(MetricError):
    """Nothing could be evaluated; the message says why and what to do."""


@dataclass
class EvaluationConfig:
    """What to evaluate and how.

    n:        generated digits (10,000 for a comparable Inception FID).
    metric:   "inception", "mnist" or "all".
    sampler:  the reverse process, a ``SamplerConfig`` (default: the app's, the GUI sampler form's
              initial settings), so an evaluation scores exactly what ``sample`` and the sampler panel make.
    seed:     batch b of the digits is seeded seed + b, as in ``sample()``.
    split:    the real reference split ("test": the 10,000 official test digits).
    inception_weights: path of pt_inception-2015-12-05-6726825d.pth, None = torch hub's cache.
    allow_download: fetch the Inception weights when missing (needs internet).
    device / precision: where and how to sample ("auto" = CUDA when present); features always run in fp32.
    batch_size: images per sampling batch; inception_batch_size: per Inception pass (None: 50 CPU / 200 CUDA).
    random_inception: use a random-weight InceptionV3 (tests and speed checks only; the report says so).
    inception_dims: 2048 (pool3, the standard FID); pytorch-fid's 64/192/768 blocks for quick checks only.
    """

    n: int = DEFAULT_EVAL_N
    metric: str = DEFAULT_METRIC
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    seed: int = 0
    split: str = "test"
    inception_weights: str | None = None
    allow_download: bool = False
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = DEFAULT_SAMPLE_BATCH
    inception_batch_size: int | None = None
    kid_subsets: int = 100
    strip_rows: int = 6
    strip_columns: int = 8
    random_inception: bool = False
    inception_dims: int = 2048
    classifier_config: object | None = None  # classifier.ClassifierConfig; None = the default recipe

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError(f"n must be at least 2 (a covariance needs two images), got {self.n}")
        if not isinstance(self.sampler, SamplerConfig):
            raise TypeError(f"sampler must be a SamplerConfig, got {type(self.sampler).__name__}")
        if self.metric not in METRIC_CHOICES:
            raise ValueError(f"unknown metric {self.metric!r}; choose one of {', '.join(METRIC_CHOICES)}")
        if self.split not in ("train", "val", "test"):
            raise ValueError(f"unknown reference split {self.split!r}; choose train, val or test")


@dataclass
class Evaluation:
    """The outcome: ``report`` (JSON-ready dict), ``samples`` (n, 28, 28) uint8 and
    ``strip`` (H, W) uint8 (rows: chains; columns: x_T ... x_0)."""

    report: dict
    samples: np.ndarray
    strip: np.ndarray

    def metric(self, key: str) -> dict | None:
        return next((m for m in self.report["metrics"] if m["key"] == key), None)

    @property
    def errors(self) -> list[dict]:
        return self.report.get("errors", [])


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _history_curves(history: dict | None) -> dict:
    epochs = (history or {}).get("epochs") or []
    out = {"epoch": [], "train_loss": [], "val_loss": []}
    for e in epochs:
        try:
            out["epoch"].append(int(e["epoch"]))
            out["train_loss"].append(float(e["train_loss"]))
            out["val_loss"].append(float(e["val_loss"]))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _strip(model, schedule, sampler, seed, rows, cols, labels, device, precision, should_stop,
           guide=None) -> np.ndarray:
    """rows chains drawn from seed: columns x_T, then evenly spaced steps, the last x_0 -> uint8 image."""
    from ..storage.images import strip
    from ..diffusion.sampling import initial_noise, sample_steps

    x_T = initial_noise(rows, seed, device=device)  # what sample_steps draws from this seed
    total = sampler.num_steps(schedule.timesteps)
    keep = set(np.unique(np.round(np.linspace(0, total - 1, max(2, cols) - 1)).astype(int)).tolist())
    columns = [x_T.float().cpu()]
    for step in sample_steps(model, schedule, rows, sampler=sampler, labels=labels, seed=seed, device=device,
                             precision=precision, x_T=x_T, guide=guide):
        check_stop(should_stop)
        if step.index in keep:
            columns.append(step.x.float().cpu())
    return strip(columns)


def evaluate_model(
    loaded,
    data,
    config: EvaluationConfig | None = None,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_label: str | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Evaluation:
    """Generate ``config.n`` digits from ``loaded`` (checkpoint.LoadedModel) and measure them.

    data: MNISTSplits (the reference split and, for the offline metric, the train split).
    progress(stage, done, total) is called often; should_stop() is checked between
    batches and raises EvaluationStopped. Raises InceptionWeightsMissing up front for
    metric "inception" without weights; EvaluationError when no metric could be computed.

    The phases, in order: the Inception weights (before minutes of sampling), the
    checkpoint's identity, generating the digits and the strip, the offline metrics,
    the Inception FID, and the report that holds them all.
    """
    from ..device import resolve_device, resolve_precision

    config = config or EvaluationConfig()
    t_start = time.perf_counter()
    device = resolve_device(config.device) if isinstance(config.device, str) else torch.device(config.device)
    precision = resolve_precision(config.precision, device, mode="sample", model_config=loaded.model_config)
    errors: list[dict] = []
    warnings: list[str] = []

    weights, want_inception = _inception_weights(config, errors, warnings)
    ckpt_name, ckpt_sha = _checkpoint_identity(loaded, checkpoint_path, checkpoint_label)
    generated = _generate(loaded, config, device, precision, progress, should_stop)
    common = _common_protocol(config, generated["generation"], ckpt_name, ckpt_sha, device, precision)
    metrics: list[dict] = []
    if config.metric in ("mnist", "all"):
        try:
            entries, w = _offline_entries(generated, data, config, common, device, progress, should_stop)
            metrics += entries
            warnings += w
        except MetricError as exc:
            errors.append({"metric": "MNIST classifier metrics", "message": str(exc)})
    if want_inception:
        try:
            entry, w = _inception_entry(generated["samples"], data, config, weights, common, device, progress,
                                        should_stop)
            metrics.append(entry)
            warnings += w
        except MetricError as exc:
            from .fid import INCEPTION_METRIC_NAME

            errors.append({"metric": INCEPTION_METRIC_NAME, "message": str(exc)})
    check_stop(should_stop)
    report = _assemble_report(loaded, config, ckpt_name, ckpt_sha, generated["generation"], metrics, warnings,
                              errors, time.perf_counter() - t_start)
    return Evaluation(report=_json_safe(report), samples=generated["samples"], strip=generated["strip"])


def _common_protocol(config: EvaluationConfig, generation: dict, ckpt_name: str, ckpt_sha, device,
                     precision: str) -> dict:
    """The protocol fields every metric entry shares: how the digits were made and from which checkpoint."""
    from ..device import describe

    return {
        "sampler": generation["sampler"], "sampler_steps": generation["sampler_steps"],
        "seed": config.seed, "checkpoint": ckpt_name, "checkpoint_sha256": ckpt_sha, "app_version": __version__,
        "device": describe(device), "sampling_precision": precision,
        "sampling_seconds": generation["seconds"],
    }


def _inception_weights(config: EvaluationConfig, errors: list, warnings: list) -> tuple[object, bool]:
    """Phase 1: find the Inception weights before minutes of sampling. Returns (weights or
    None, whether the Inception FID will run); with metric "all", missing weights become
    an entry in ``errors`` (with "inception" alone, InceptionWeightsMissing is raised)."""
    from .fid import INCEPTION_METRIC_NAME, find_inception_weights

    want = config.metric in ("inception", "all")
    weights = None
    if want and not config.random_inception:
        try:
            weights = find_inception_weights(config.inception_weights, allow_download=config.allow_download)
        except MetricError as exc:
            if config.metric == "inception":
                raise
            errors.append({"metric": INCEPTION_METRIC_NAME, "message": str(exc)})
            want = False
    if config.random_inception and want:
        warnings.append("FID (Inception, pytorch-fid) here uses a RANDOM-weight InceptionV3 (a test run): "
                        "the number is not an FID and is not comparable with anything.")
    return weights, want


def _checkpoint_identity(loaded, checkpoint_path, checkpoint_label) -> tuple[str, str | None]:
    """Phase 2: the checkpoint's name (its resolved path, or a label) and sha256."""
    path = Path(checkpoint_path) if checkpoint_path is not None else getattr(loaded, "path", None)
    sha = sha256_file(path) if path is not None and Path(path).is_file() else None
    name = str(Path(path).resolve()) if path is not None else (checkpoint_label or "in-memory model (not saved)")
    return name, sha


def made_by(loaded, sampler) -> str:
    """One line on what made the digits (``describe_sampling``) for a loaded model."""
    from ..diffusion.sampling import describe_sampling

    distill = (getattr(loaded, "payload", None) or {}).get("distill") or {}
    return describe_sampling(loaded.model, loaded.schedule.timesteps, sampler,
                             origin=distill.get("origin") or distill.get("teacher"))


def _generate(loaded, config: EvaluationConfig, device, precision: str, progress, should_stop) -> dict:
    """Phase 3: the digits (labels 0-9 in turn for a conditional model) and the x_T -> x_0
    strip. Returns {"samples" (n, 28, 28) uint8, "strip", "labels", "generation"}."""
    from ..storage.data import to_uint8
    from ..device import describe
    from ..diffusion.sampling import SamplingStopped, sample, sampler_for

    sampler = sampler_for(loaded.model, config.sampler)  # a student samples with its own steps
    model_config = getattr(loaded, "model_config", None)
    conditional = bool(model_config is not None and model_config.conditional)
    labels = torch.arange(config.n) % 10 if conditional else None
    guide = getattr(loaded, "guide", None)
    t0 = time.perf_counter()
    try:
        x = sample(
            loaded.model, loaded.schedule, config.n, sampler=sampler, labels=labels, seed=config.seed,
            device=device, precision=precision, batch_size=config.batch_size,
            progress=(lambda d, t: progress("sampling", d, t)) if progress else None, should_stop=should_stop,
            guide=guide,
        )
    except SamplingStopped:
        raise EvaluationStopped("cancelled") from None
    samples = to_uint8(x).numpy()
    seconds = time.perf_counter() - t0
    if progress:
        progress("x_T -> x_0 strip", 0, 1)
    strip_labels = (torch.arange(config.strip_rows) % 10).to(device) if conditional else None
    strip_img = _strip(loaded.model, loaded.schedule, sampler, config.seed, config.strip_rows, config.strip_columns,
                       strip_labels, device, precision, should_stop, guide=guide)
    generation = {
        "n": config.n,
        "made_by": made_by(loaded, sampler),
        "student_steps": model_config.distilled_steps if model_config is not None and model_config.is_student
        else None,
        "sampler": sampler.kind,
        "sampler_steps": sampler.num_steps(loaded.schedule.timesteps),
        "eta": sampler.eta if sampler.takes_eta else None,
        "variance": sampler.variance if sampler.kind == "ddpm" else None,
        "clip_x0": sampler.clips_x0,
        "guidance": sampler.guidance if conditional else None,
        "autoguidance": sampler.autoguidance if guide is not None else None,
        "autoguidance_min_t": sampler.autoguidance_min_t if guide is not None else None,
        "guide": loaded.guide_info if guide is not None else None,
        "labels": "balanced: image i has label i mod 10" if conditional else None,
        "seed": config.seed,
        "seed_note": "batch b of the sampler is seeded seed + b",
        "batch_size": config.batch_size,
        "device": describe(device),
        "precision": precision,
        "seconds": seconds,
    }
    return {"samples": samples, "strip": strip_img, "labels": labels, "generation": generation}


def _offline_entries(generated: dict, data, config: EvaluationConfig, common: dict, device, progress,
                     should_stop) -> tuple[list[dict], list[str]]:
    """Phase 4: the offline metrics of the app's MNIST classifier and the memorisation check."""
    from .classifier import ensure_classifier, offline_metrics

    samples, labels = generated["samples"], generated["labels"]
    clf = ensure_classifier(data, config=config.classifier_config, device=device, progress=progress,
                            should_stop=should_stop)
    entries, warnings = offline_metrics(samples, clf, data, split=config.split,
                                        labels=labels.numpy() if labels is not None else None,
                                        kid_subsets=config.kid_subsets, progress=progress, should_stop=should_stop)
    for e in entries:
        e["protocol"] = {**common, **e["protocol"], "classifier_trained_now": not clf.cached}
    entries.append(memorisation_entry(samples, data, clf, common, should_stop=should_stop))
    return entries, warnings


def _inception_entry(samples, data, config: EvaluationConfig, weights, common: dict, device, progress,
                     should_stop) -> tuple[dict, list[str]]:
    """Phase 5: the Inception FID (pytorch-fid's network, pool3 by default) and its warnings."""
    from .fid import INCEPTION_METRIC_NAME, InceptionExtractor, extract, pytorch_fid_version, reference_statistics

    warnings = []
    t1 = time.perf_counter()
    extractor = InceptionExtractor(weights, device=device, batch_size=config.inception_batch_size,
                                   dims=config.inception_dims)
    ref, _, info = reference_statistics(extractor, data, config.split, progress=progress, should_stop=should_stop)
    gen, _ = extract(extractor, samples, progress=progress, should_stop=should_stop, stage="Inception features")
    if progress:
        progress(f"Fréchet distance ({extractor.dims}x{extractor.dims} matrix square root)", 0, 1)
    fid, note = frechet_distance(gen, ref)
    if not extractor.official_weights and weights is not None:
        warnings.append(
            f"{INCEPTION_METRIC_NAME}: the weight file's sha256 ({extractor.weights_sha256[:8]}...) does not "
            "start with 6726825d, so it is not pytorch-fid's official file: the value is not comparable "
            "with published FIDs.")
    entry = {
        "key": "fid_inception", "name": INCEPTION_METRIC_NAME, "value": fid, "details": {"note": note} if note else {},
        "protocol": {**common, "n_generated": config.n, "n_real": ref.n, "reference_split": config.split,
                     **extractor.describe(), "pytorch_fid_version": pytorch_fid_version(),
                     "reference_statistics_cached": info["cached"], "reference_statistics_file": info["path"],
                     "seconds": time.perf_counter() - t1},
    }
    w = small_n_warning(INCEPTION_METRIC_NAME, config.n, ref.n, extractor.dims, SMALL_N_INCEPTION)
    if w:
        warnings.append(w)
    if extractor.dims != 2048:
        warnings.append(f"{INCEPTION_METRIC_NAME} was measured on {extractor.dims}-d features, not pool3's "
                        "2048: not comparable with standard FIDs.")
    return entry, warnings


def _assemble_report(loaded, config: EvaluationConfig, ckpt_name: str, ckpt_sha, generation: dict, metrics: list,
                     warnings: list, errors: list, total_seconds: float) -> dict:
    """Phase 6: the report (JSON-ready): versions, the checkpoint, the generation, every metric."""
    from .fid import pytorch_fid_version

    payload = getattr(loaded, "payload", {}) or {}
    model_config = getattr(loaded, "model_config", None)
    report = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "created_utc": _now(),
        "app_version": __version__,
        "torch_version": torch.__version__,
        "pytorch_fid_version": pytorch_fid_version(),
        "python": platform.python_version(),
        "metric_choice": config.metric,
        "checkpoint": {
            "path": ckpt_name,
            "sha256": ckpt_sha,
            "epoch": int(payload.get("epoch", 0)) if payload else None,
            "uses_ema": bool(getattr(loaded, "uses_ema", False)),
            "model": model_config.to_dict() if model_config is not None else None,
            "schedule": loaded.schedule.config.to_dict(),
            "best": payload.get("best") if payload else None,
        },
        "generation": generation,
        "metrics": metrics,
        "warnings": warnings,
        "errors": errors,
        "history": _history_curves(getattr(loaded, "history", None)),
        "total_seconds": total_seconds,
    }
    if not metrics:
        report["errors"].append({"metric": "all", "message": "no metric could be computed"})
    return report


MEMORISATION_NAME = "Memorisation check: samples nearer a training digit than 99% of test digits are"


def memorisation_entry(samples: np.ndarray, data, classifier, common: dict, *, should_stop=None,
                       bins: int = 30) -> dict:
    """The report's memorisation check: each generated digit's distance to its nearest
    training digit against the same distance for as many real test digits (pixels in
    [0, 1], and the classifier's features). The value is the share of generated
    digits nearer than the nearest 1% of test digits: about 1% for a model that does
    not copy, near 100% for one that does. Details hold both distance histograms."""
    from .neighbours import memorisation_check

    t0 = time.perf_counter()
    n_test = min(len(samples), len(data.test_images))
    check = memorisation_check(samples, data, classifier=classifier, n_test=n_test, should_stop=should_stop)
    summary = check.summary()
    histograms = {}
    for space, gen, test in (("pixel", check.generated_pixel, check.test_pixel),
                             ("feature", check.generated_feature, check.test_feature)):
        top = float(max(gen.distance.max(), test.distance.max())) or 1.0
        edges = np.linspace(0.0, top, bins + 1)
        histograms[space] = {"edges": edges.tolist(),
                             "generated": np.histogram(gen.distance, edges)[0].tolist(),
                             "test": np.histogram(test.distance, edges)[0].tolist()}
    return {"key": "memorisation", "name": MEMORISATION_NAME,
            "value": summary["pixel"]["generated_share_below_test_1st_percentile"],
            "details": {**summary, "histograms": histograms},
            "protocol": {**common, **classifier.describe(), "n_generated": int(len(samples)), "n_real": int(n_test),
                         "reference_split": "train (nearest neighbours), test (for scale)",
                         "feature_extractor": "pixels and the MNIST classifier's features",
                         "seconds": time.perf_counter() - t0}}


def evaluate_checkpoint(path: str | os.PathLike, data, config: EvaluationConfig | None = None, *,
                        progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> Evaluation:
    """Load ``path`` (checkpoint.load_model, EMA weights when present) and ``evaluate_model`` it."""
    from ..storage.checkpoint import load_model
    from ..device import resolve_device

    config = config or EvaluationConfig()
    loaded = load_model(path, resolve_device(config.device))
    return evaluate_model(loaded, data, config, checkpoint_path=path, progress=progress, should_stop=should_stop)


def _json_safe(obj):
    """NaN/inf -> None and numpy scalars -> Python, so report.json is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    return obj

