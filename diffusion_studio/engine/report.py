"""Evaluating a model and writing a shareable report (report.json, report.html, samples.png).

``evaluate_model`` / ``evaluate_checkpoint`` generate ``n`` digits, compute the
requested metrics and return an ``Evaluation`` (the report as a JSON-ready
dict plus the images); ``write_report`` turns it into files. The CLI
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

import base64
import html
import io
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from .metrics import (
    SMALL_N_INCEPTION,
    EvaluationStopped,
    MetricError,
    ProgressFn,
    StopFn,
    as_uint8_images,
    check_stop,
    frechet_distance,
    sha256_file,
    small_n_warning,
)
from .sample import DEFAULT_DDIM_ETA, DEFAULT_GUIDANCE

REPORT_FORMAT = "diffusion-studio-evaluation"
REPORT_VERSION = 1
METRIC_CHOICES = ("inception", "mnist", "all")
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
    sampler / steps / eta / seed / guidance: the reverse process (SamplerConfig); steps None = DDPM's T or DDIM's 50.
    split:    the real reference split ("test": the 10,000 official test digits).
    inception_weights: path of pt_inception-2015-12-05-6726825d.pth, None = torch hub's cache.
    allow_download: fetch the Inception weights when missing (needs internet).
    device / precision: where and how to sample ("auto" = CUDA when present); features always run in fp32.
    batch_size: images per sampling batch; inception_batch_size: per Inception pass (None: 50 CPU / 200 CUDA).
    random_inception: use a random-weight InceptionV3 (tests and speed checks only; the report says so).
    inception_dims: 2048 (pool3, the standard FID); pytorch-fid's 64/192/768 blocks for quick checks only.
    """

    n: int = 10_000
    metric: str = "all"
    sampler: str = "ddpm"
    steps: int | None = None
    eta: float = DEFAULT_DDIM_ETA
    seed: int = 0
    guidance: float = DEFAULT_GUIDANCE
    split: str = "test"
    inception_weights: str | None = None
    allow_download: bool = False
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 500
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


def _strip(model, schedule, sampler, seed, rows, cols, labels, device, precision, should_stop) -> np.ndarray:
    """rows chains drawn from seed: columns x_T, then evenly spaced steps, the last x_0 -> uint8 image."""
    from .images import strip
    from .sample import initial_noise, sample_steps

    x_T = initial_noise(rows, seed, device=device)  # what sample_steps draws from this seed
    total = sampler.num_steps(schedule.timesteps)
    keep = set(np.unique(np.round(np.linspace(0, total - 1, max(2, cols) - 1)).astype(int)).tolist())
    columns = [x_T.float().cpu()]
    for step in sample_steps(model, schedule, rows, sampler=sampler, labels=labels, seed=seed, device=device,
                             precision=precision, x_T=x_T):
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
    """
    from .classifier import ensure_classifier, offline_metrics
    from .data import to_uint8
    from .device import describe, resolve_device, resolve_precision
    from .fid import INCEPTION_METRIC_NAME, find_inception_weights, pytorch_fid_version
    from .sample import SamplerConfig, SamplingStopped, sample

    config = config or EvaluationConfig()
    t_start = time.perf_counter()
    device = resolve_device(config.device) if isinstance(config.device, str) else torch.device(config.device)
    precision = resolve_precision(config.precision, device, mode="sample", model_config=loaded.model_config)
    sampler = SamplerConfig(kind=config.sampler, steps=config.steps, eta=config.eta, guidance=config.guidance)
    steps = sampler.num_steps(loaded.schedule.timesteps)
    errors: list[dict] = []
    warnings: list[str] = []

    # 1. the Inception weights, before spending minutes on sampling
    want_inception = config.metric in ("inception", "all")
    want_mnist = config.metric in ("mnist", "all")
    weights = None
    if want_inception and not config.random_inception:
        try:
            weights = find_inception_weights(config.inception_weights, allow_download=config.allow_download)
        except MetricError as exc:
            if config.metric == "inception":
                raise
            errors.append({"metric": INCEPTION_METRIC_NAME, "message": str(exc)})
            want_inception = False
    if config.random_inception and want_inception:
        warnings.append("FID (Inception, pytorch-fid) here uses a RANDOM-weight InceptionV3 (a test run): "
                        "the number is not an FID and is not comparable with anything.")

    # 2. checkpoint identity
    path = Path(checkpoint_path) if checkpoint_path is not None else getattr(loaded, "path", None)
    ckpt_sha = sha256_file(path) if path is not None and Path(path).is_file() else None
    ckpt_name = str(Path(path).resolve()) if path is not None else (checkpoint_label or "in-memory model (not saved)")

    # 3. sampling
    model_config = getattr(loaded, "model_config", None)
    conditional = bool(model_config is not None and model_config.conditional)
    labels = torch.arange(config.n) % 10 if conditional else None
    t0 = time.perf_counter()
    try:
        x = sample(
            loaded.model, loaded.schedule, config.n, sampler=sampler, labels=labels, seed=config.seed,
            device=device, precision=precision, batch_size=config.batch_size,
            progress=(lambda d, t: progress("sampling", d, t)) if progress else None, should_stop=should_stop,
        )
    except SamplingStopped:
        raise EvaluationStopped("cancelled") from None
    samples = to_uint8(x).numpy()
    sampling_seconds = time.perf_counter() - t0
    if progress:
        progress("x_T -> x_0 strip", 0, 1)
    strip_labels = (torch.arange(config.strip_rows) % 10).to(device) if conditional else None
    strip_img = _strip(loaded.model, loaded.schedule, sampler, config.seed, config.strip_rows, config.strip_columns,
                       strip_labels, device, precision, should_stop)

    generation = {
        "n": config.n,
        "sampler": config.sampler,
        "sampler_steps": steps,
        "eta": config.eta if config.sampler == "ddim" else None,
        "variance": sampler.variance if config.sampler == "ddpm" else None,
        "guidance": config.guidance if conditional else None,
        "labels": "balanced: image i has label i mod 10" if conditional else None,
        "seed": config.seed,
        "seed_note": "batch b of the sampler is seeded seed + b",
        "batch_size": config.batch_size,
        "device": describe(device),
        "precision": precision,
        "seconds": sampling_seconds,
    }
    common = {
        "sampler": config.sampler, "sampler_steps": steps, "seed": config.seed, "checkpoint": ckpt_name,
        "checkpoint_sha256": ckpt_sha, "app_version": __version__, "device": describe(device),
        "sampling_precision": precision, "sampling_seconds": sampling_seconds,
    }
    metrics: list[dict] = []

    # 4. offline metrics from the app's MNIST classifier
    if want_mnist:
        try:
            clf = ensure_classifier(data, config=config.classifier_config, device=device, progress=progress,
                                    should_stop=should_stop)
            entries, w = offline_metrics(samples, clf, data, split=config.split,
                                         labels=labels.numpy() if labels is not None else None,
                                         kid_subsets=config.kid_subsets, progress=progress, should_stop=should_stop)
            for e in entries:
                e["protocol"] = {**common, **e["protocol"],
                                 "classifier_trained_now": not clf.cached}
            metrics += entries
            warnings += w
            metrics.append(memorisation_entry(samples, data, clf, common, should_stop=should_stop))
        except MetricError as exc:
            errors.append({"metric": "MNIST classifier metrics", "message": str(exc)})

    # 5. Inception FID
    if want_inception:
        from .fid import InceptionExtractor, extract, reference_statistics

        try:
            t1 = time.perf_counter()
            extractor = InceptionExtractor(weights, device=device, batch_size=config.inception_batch_size,
                                           dims=config.inception_dims)
            ref, _, info = reference_statistics(extractor, data, config.split, progress=progress,
                                                should_stop=should_stop)
            gen, _ = extract(extractor, samples, progress=progress, should_stop=should_stop,
                             stage="Inception features")
            if progress:
                progress(f"Fréchet distance ({extractor.dims}x{extractor.dims} matrix square root)", 0, 1)
            fid, note = frechet_distance(gen, ref)
            details = {"note": note} if note else {}
            if not extractor.official_weights and weights is not None:
                warnings.append(
                    f"{INCEPTION_METRIC_NAME}: the weight file's sha256 ({extractor.weights_sha256[:8]}...) does not "
                    "start with 6726825d, so it is not pytorch-fid's official file: the value is not comparable "
                    "with published FIDs.")
            metrics.append({
                "key": "fid_inception", "name": INCEPTION_METRIC_NAME, "value": fid, "details": details,
                "protocol": {**common, "n_generated": config.n, "n_real": ref.n, "reference_split": config.split,
                             **extractor.describe(), "pytorch_fid_version": pytorch_fid_version(),
                             "reference_statistics_cached": info["cached"],
                             "reference_statistics_file": info["path"],
                             "seconds": time.perf_counter() - t1},
            })
            w = small_n_warning(INCEPTION_METRIC_NAME, config.n, ref.n, extractor.dims, SMALL_N_INCEPTION)
            if w:
                warnings.append(w)
            if extractor.dims != 2048:
                warnings.append(f"{INCEPTION_METRIC_NAME} was measured on {extractor.dims}-d features, not pool3's "
                                "2048: not comparable with standard FIDs.")
        except MetricError as exc:
            errors.append({"metric": INCEPTION_METRIC_NAME, "message": str(exc)})

    check_stop(should_stop)
    payload = getattr(loaded, "payload", {}) or {}
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
        "total_seconds": time.perf_counter() - t_start,
    }
    if not metrics:
        report["errors"].append({"metric": "all", "message": "no metric could be computed"})
    return Evaluation(report=_json_safe(report), samples=samples, strip=strip_img)


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
    from .checkpoint import load_model
    from .device import resolve_device

    config = config or EvaluationConfig()
    loaded = load_model(path, resolve_device(config.device))
    return evaluate_model(loaded, data, config, checkpoint_path=path, progress=progress, should_stop=should_stop)


def image_metrics(images, data, *, metric: str = "mnist", split: str = "test", inception_weights=None,
                  device: str = "auto", random_inception: bool = False, progress: ProgressFn | None = None,
                  should_stop: StopFn | None = None) -> tuple[list[dict], list[str]]:
    """Metrics of ready-made uint8 digits (N, 28, 28) (for benchmarks): (metric entries, warnings).

    Raises MetricError (e.g. InceptionWeightsMissing) when a requested metric cannot run.
    """
    from .classifier import ensure_classifier, offline_metrics
    from .device import resolve_device
    from .fid import INCEPTION_METRIC_NAME, InceptionExtractor, extract, find_inception_weights, reference_statistics

    images = as_uint8_images(images)
    dev = resolve_device(device)
    entries, warnings = [], []
    if metric in ("mnist", "all"):
        clf = ensure_classifier(data, device=dev, progress=progress, should_stop=should_stop)
        e, w = offline_metrics(images, clf, data, split=split, progress=progress, should_stop=should_stop)
        entries += e
        warnings += w
    if metric in ("inception", "all"):
        weights = None if random_inception else find_inception_weights(inception_weights)
        t = time.perf_counter()
        ex = InceptionExtractor(weights, device=dev)
        ref, _, info = reference_statistics(ex, data, split, progress=progress, should_stop=should_stop)
        gen, _ = extract(ex, images, progress=progress, should_stop=should_stop, stage="Inception features")
        fid, note = frechet_distance(gen, ref)
        entries.append({"key": "fid_inception", "name": INCEPTION_METRIC_NAME, "value": fid,
                        "details": {"note": note} if note else {},
                        "protocol": {"n_generated": len(images), "n_real": ref.n, "reference_split": split,
                                     **ex.describe(), "seconds": time.perf_counter() - t,
                                     "reference_statistics_cached": info["cached"]}})
        w = small_n_warning(INCEPTION_METRIC_NAME, len(images), ref.n, ex.dims, SMALL_N_INCEPTION)
        if w:
            warnings.append(w)
    return entries, warnings


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


# ------------------------------------------------------------------ writing
def format_value(entry: dict, short: bool = False) -> str:
    """A metric's value for people: 4 significant digits, percentages for shares.

    short: the label histogram as its summary (for narrow tables) instead of all ten counts.
    """
    v = entry.get("value")
    key = entry.get("key", "")
    if v is None:
        return "n/a"
    if key == "label_histogram":
        if short:
            d = entry.get("details") or {}
            top = int(np.argmax(v)) if sum(v) else 0
            return f"{d.get('classes_present', 0)}/10 digits, most: {top} ({d.get('largest_share', 0):.0%})"
        return " ".join(f"{d}:{c}" for d, c in enumerate(v))
    if key == "confident_share":
        real = next((x for k, x in (entry.get("details") or {}).items() if k.startswith("real_")), None)
        split = (entry.get("protocol") or {}).get("reference_split", "test")
        return f"{v:.1%}" + (f" (real {split} digits: {real:.1%})" if real is not None else "")
    if key == "class_accuracy":
        return f"{v:.1%}"
    if key == "memorisation":
        px = (entry.get("details") or {}).get("pixel") or {}
        return (f"{v:.1%} (median pixel distance to the nearest training digit: samples "
                f"{px.get('generated_median', float('nan')):.2f}, test digits {px.get('test_median', float('nan')):.2f})")
    if key == "kid_classifier":
        std = (entry.get("details") or {}).get("std")
        return f"{v:.4g} ± {std:.2g}" if std is not None else f"{v:.4g}"
    return f"{v:.4g}"


def samples_grid(samples: np.ndarray, limit: int = 100) -> np.ndarray:
    """The first ``limit`` digits as a near-square uint8 grid (white padding)."""
    from .data import to_model_range
    from .images import grid

    imgs = torch.from_numpy(np.ascontiguousarray(samples[:limit]))
    return grid(to_model_range(imgs))


def _png_b64(array: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def svg_line_chart(series: dict[str, tuple[list, list]], *, width: int = 560, height: int = 260,
                   xlabel: str = "epoch", ylabel: str = "loss") -> str:
    """Inline SVG of one or more (x, y) lines with axes, ticks and a legend."""
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    pts = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    if not pts:
        return "<p><em>No training history in this checkpoint.</em></p>"
    left, right, top, bottom = 64, 16, 16, 40
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = (y1 - y0) * 0.05 or abs(y1) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad

    def sx(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y):
        return top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
           'fill="#fff" stroke="#999"/>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
    xticks = sorted(set(int(round(x0 + (x1 - x0) * i / 5)) for i in range(6)))
    for xv in xticks:
        out.append(f'<text x="{sx(xv):.1f}" y="{height - bottom + 14}" text-anchor="middle">{xv}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">{html.escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{(top + height - bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {(top + height - bottom) / 2})">{html.escape(ylabel)}</text>')
    for i, (name, (xs, ys)) in enumerate(series.items()):
        c = colours[i % len(colours)]
        p = [(sx(x), sy(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if not p:
            continue
        out.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
            c, " ".join(f"{a:.1f},{b:.1f}" for a, b in p)))
        for a, b in p:
            out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{c}"/>')
        ly = top + 14 + 16 * i
        out.append(f'<line x1="{width - right - 130}" x2="{width - right - 110}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{width - right - 105}" y="{ly}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_histogram(counts: list[int], *, width: int = 360, height: int = 180) -> str:
    """Inline SVG bar chart of the predicted-label counts (digits 0..9)."""
    total = max(1, sum(counts))
    top = max(counts) or 1
    bw = (width - 40) / len(counts)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="11">']
    for d, c in enumerate(counts):
        h = (height - 40) * c / top
        x = 20 + d * bw
        out.append(f'<rect x="{x + 2:.1f}" y="{height - 20 - h:.1f}" width="{bw - 4:.1f}" height="{h:.1f}" '
                   'fill="#4c72b0"/>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{height - 6}" text-anchor="middle">{d}</text>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{height - 24 - h:.1f}" text-anchor="middle">{c / total:.0%}</text>')
    out.append("</svg>")
    return "".join(out)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:980px;margin:24px auto;padding:0 16px;
color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:0} h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;
vertical-align:top;font-size:.92em} th{background:#f4f4f4}
.value{font-weight:600;font-family:monospace;font-size:1.05em}
.warn{background:#fff7e0;border:1px solid #e8c860;padding:8px 12px;border-radius:4px;margin:6px 0}
.err{background:#fdecea;border:1px solid #e0a0a0;padding:8px 12px;border-radius:4px;margin:6px 0}
img.px{image-rendering:pixelated;image-rendering:crisp-edges;border:1px solid #ccc}
.muted{color:#666;font-size:.9em} code{font-size:.9em;word-break:break-all}
"""


def render_html(evaluation: Evaluation) -> str:
    """The report as one self-contained HTML page (images as base64 PNG, charts as inline SVG)."""
    r = evaluation.report
    e = html.escape
    gen = r["generation"]
    ck = r["checkpoint"]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Diffusion Studio evaluation</title>"
             f"<style>{_CSS}</style></head><body>",
             "<h1>Diffusion Studio evaluation</h1>",
             f"<p class='muted'>{e(r['created_utc'])} · app {e(r['app_version'])} · torch {e(r['torch_version'])} · "
             f"pytorch-fid {e(r['pytorch_fid_version'])} · {e(gen['device'])}</p>",
             f"<p>Checkpoint <code>{e(str(ck['path']))}</code><br><span class='muted'>sha256 "
             f"<code>{e(str(ck['sha256']))}</code> · epoch {e(str(ck['epoch']))}"
             f"{' · EMA weights' if ck.get('uses_ema') else ''}</span></p>",
             f"<p>{gen['n']:,} digits generated with the <b>{e(gen['sampler'].upper())}</b> sampler, "
             f"{gen['sampler_steps']} steps, seed {gen['seed']} ({e(gen['precision'])}, "
             f"{gen['seconds']:.1f} s).</p>"]
    for err in r.get("errors", []):
        parts.append(f"<div class='err'><b>{e(err['metric'])} was not computed.</b> {e(err['message'])}</div>")
    for w in r.get("warnings", []):
        parts.append(f"<div class='warn'>{e(w)}</div>")

    parts.append("<h2>Metrics</h2><table><tr><th>Metric</th><th>Value</th><th>n generated</th><th>n real</th>"
                 "<th>Reference</th><th>Features</th><th>Time</th></tr>")
    for m in r["metrics"]:
        p = m["protocol"]
        parts.append(
            f"<tr><td>{e(m['name'])}</td><td class='value'>{e(format_value(m))}</td><td>{p.get('n_generated', ''):,}"
            f"</td><td>{p.get('n_real', ''):,}</td><td>{e(str(p.get('reference_split', '')))}</td>"
            f"<td>{e(str(p.get('feature_extractor', '')))}</td><td>{p.get('seconds', 0):.1f} s</td></tr>")
    parts.append("</table>")
    hist = next((m for m in r["metrics"] if m["key"] == "label_histogram"), None)
    if hist:
        d = hist["details"]
        split = hist["protocol"].get("reference_split", "test")
        real_h = d.get(f"real_{split}_entropy_bits")
        parts.append(f"<h2>Predicted labels</h2><p class='muted'>{d['classes_present']} of 10 digits present; entropy "
                     f"{d['entropy_bits']:.2f} bits (3.32 = uniform"
                     + (f"; the real {split} digits: {real_h:.2f}" if real_h is not None else "")
                     + f"); largest share {d['largest_share']:.0%}.</p>")
        parts.append(svg_histogram(hist["value"]))
    cls = next((m for m in r["metrics"] if m["key"] == "class_accuracy"), None)
    if cls:
        row = "".join(f"<td>{'n/a' if v is None else f'{v:.0%}'}</td>" for v in cls["details"]["per_class"])
        parts.append("<h2>Class accuracy (conditional model)</h2><table><tr><th>label</th>"
                     + "".join(f"<th>{d}</th>" for d in range(10)) + f"</tr><tr><td>classified as label</td>{row}"
                     "</tr></table>")

    mem = next((m for m in r["metrics"] if m["key"] == "memorisation"), None)
    if mem:
        parts.append("<h2>Does the model copy its training digits?</h2><p class='muted'>Distance from each generated "
                     "digit to its nearest training digit, against the same distance for real test digits (which "
                     "the model never saw). A copying model's curve would pile up near 0, left of the test digits'."
                     "</p>")
        for space, title in (("pixel", "pixel distance (pixels in [0, 1])"),
                             ("feature", "distance in the classifier's features")):
            h = mem["details"]["histograms"].get(space)
            if h:
                centres = [(a + b) / 2 for a, b in zip(h["edges"][:-1], h["edges"][1:])]
                parts.append(svg_line_chart({"generated": (centres, h["generated"]), "test digits": (centres, h["test"])},
                                            ylabel=f"digits per bin: {title}"))
    parts.append("<h2>Samples</h2>")
    parts.append(f"<img class='px' width='{min(560, 6 * 28 * 10)}' alt='generated digits' "
                 f"src='data:image/png;base64,{_png_b64(samples_grid(evaluation.samples))}'>")
    parts.append(f"<p class='muted'>The first {min(100, len(evaluation.samples))} of {len(evaluation.samples):,} digits.</p>")
    parts.append("<h2>Reverse process x<sub>T</sub> → x<sub>0</sub></h2>")
    parts.append(f"<img class='px' width='{evaluation.strip.shape[1] * 3}' alt='x_T to x_0' "
                 f"src='data:image/png;base64,{_png_b64(evaluation.strip)}'>")
    parts.append("<p class='muted'>Each row is one chain from the same seed: x<sub>T</sub> (pure noise) on the left, "
                 "evenly spaced steps, x<sub>0</sub> on the right.</p>")
    h = r.get("history") or {}
    parts.append("<h2>Training and validation loss</h2>")
    parts.append(svg_line_chart({"train loss": (h.get("epoch", []), h.get("train_loss", [])),
                                 "validation loss": (h.get("epoch", []), h.get("val_loss", []))},
                                ylabel="mean ||eps - eps_theta||^2"))

    parts.append("<h2>Protocol</h2><p class='muted'>How each number was obtained; compare numbers only when "
                 "these match (FID depends strongly on n).</p>")
    for m in r["metrics"]:
        parts.append(f"<details><summary>{e(m['name'])}</summary><table>")
        for k, v in m["protocol"].items():
            parts.append(f"<tr><th>{e(k)}</th><td><code>{e(str(v))}</code></td></tr>")
        for k, v in (m.get("details") or {}).items():
            if k in ("counts", "shares", "per_class"):
                v = [round(x, 4) if isinstance(x, float) else x for x in v]
            parts.append(f"<tr><th>{e(k)}</th><td><code>{e(str(v))}</code></td></tr>")
        parts.append("</table></details>")
    parts.append("<details><summary>Model and schedule</summary><table>")
    for k in ("model", "schedule", "best"):
        parts.append(f"<tr><th>{k}</th><td><code>{e(json.dumps(ck.get(k)))}</code></td></tr>")
    parts.append("</table></details>")
    parts.append("<p class='muted'>FID (Inception, pytorch-fid): pytorch-fid's InceptionV3 pool3 features; digits "
                 "enter as three identical channels in [0, 1] (uint8 / 255) and pytorch-fid resizes them "
                 "bilinearly to 299x299. FD/KID (MNIST classifier features) use the penultimate layer of the app's "
                 "own MNIST classifier and are not comparable with Inception FIDs.</p></body></html>")
    return "\n".join(parts)


def write_report(evaluation: Evaluation, folder: str | os.PathLike) -> dict[str, Path]:
    """Write report.json, report.html and samples.png into ``folder`` (created if needed)."""
    from .images import save_png

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"json": folder / "report.json", "html": folder / "report.html", "samples": folder / "samples.png"}
    save_png(samples_grid(evaluation.samples), out["samples"])
    from .atomic import write_text_atomic

    for key, text in (("json", json.dumps(evaluation.report, indent=1, allow_nan=False)),
                      ("html", render_html(evaluation))):
        write_text_atomic(out[key], text)
    return out
