"""An MNIST classifier the app trains itself, and the offline metrics built on it.

No download is needed: the classifier trains on the training split (a few
minutes on a laptop CPU, fp32), is cached under ``paths.data_dir()/classifier/``
keyed by the data's identity and the recipe, and its measured test accuracy
(target >= 99%) is stored with it and reported with every metric.

The network (``MNISTClassifier``, w = ``ClassifierConfig.width`` = 16), about 1.7 MMAC per image:

    x (B,1,28,28) in [-1, 1]
      conv3x3 1->w, BN, ReLU, maxpool 2       -> 14x14
      conv3x3 w->2w, BN, ReLU, maxpool 2      ->  7x7
      conv3x3 2w->2w, BN, ReLU, flatten       -> 2w*49
      linear 2w*49->128, ReLU                 = the *penultimate features* (128-d)
      dropout 0.3, linear 128->10             = logits

Measured on the real MNIST (2-core AVX2 EPYC, fp32, one thread, shared machine):
the default recipe (3 epochs, AdamW + one-cycle, +-2 px shifts) trained in 105 s
to 99.22% test accuracy (99.20% validation); w = 32 reached 99.38%, ~4x the compute.

Metrics from it (``offline_metrics``), never called plain "FID":

- "FD (MNIST classifier features)": pytorch-fid's Fréchet distance between
  the penultimate features of the generated digits and of the test split;
- "KID (MNIST classifier features)": unbiased cubic-kernel MMD^2 on the same features;
- "Confident share (MNIST classifier, p >= 0.9)": share of generated digits
  whose top class probability is at least 0.9;
- "Predicted-label histogram (MNIST classifier)": counts per digit (a mode
  collapse shows as a few tall bars), with its entropy in bits (log2 10 = 3.32 is uniform);
- for class-conditional models, "Class accuracy (MNIST classifier)": the share
  of digits generated with label y that the classifier calls y (``class_accuracy``).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..storage import paths
from ..storage.atomic import write_serialized_atomic, write_text_atomic
from .metrics import (
    MetricError,
    ProgressFn,
    StopFn,
    array_identity,
    as_uint8_images,
    check_stop,
    feature_stats,
    frechet_distance,
    kid,
    small_n_warning,
    SMALL_N_CLASSIFIER,
)
from ..storage.checkpoint import sha256_file

CLASSIFIER_FORMAT = "diffusion-studio-mnist-classifier"
CLASSIFIER_VERSION = 1
FEATURE_DIMS = 128
CONFIDENCE = 0.9
TARGET_ACCURACY = 0.99

FD_NAME = "FD (MNIST classifier features)"
KID_NAME = "KID (MNIST classifier features)"
CONFIDENT_NAME = f"Confident share (MNIST classifier, p >= {CONFIDENCE})"
HISTOGRAM_NAME = "Predicted-label histogram (MNIST classifier)"
CLASS_ACCURACY_NAME = "Class accuracy (MNIST classifier: generated with label y, classified as y)"


class MNISTClassifier(nn.Module):
    """The small CNN above (``width`` = w). ``features(x)`` -> (B, 128); ``forward(x)`` -> (B, 10) logits.

    x: (B, 1, 28, 28) float32 in [-1, 1] (``to_input`` converts uint8 digits).
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(2 * w * 7 * 7, FEATURE_DIMS), nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIMS, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.body(x)))


def to_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float32 (B, 1, 28, 28) in [-1, 1]."""
    return images_uint8.unsqueeze(1).float().div(127.5).sub(1.0)


@dataclass(frozen=True)
class ClassifierConfig:
    """The training recipe: Adam with a one-cycle schedule, random shifts of up to
    ``shift`` pixels. The defaults reach >= 99% test accuracy on MNIST."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    shift: int = 2
    seed: int = 0
    width: int = 16  # conv channels: width, 2 width, 2 width (16: 99.2% test accuracy in ~2 min)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or not self.lr > 0 or self.shift < 0 or self.width < 1:
            raise ValueError(f"invalid classifier recipe {self}")


def _shift(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by a random whole number of pixels in [-shift, shift] (zeros fill in -1)."""
    if shift == 0:
        return x
    b = x.shape[0]
    d = torch.randint(-shift, shift + 1, (b, 2), generator=gen, device=x.device).float()
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = -2.0 * d / x.shape[-1]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, mode="nearest", padding_mode="zeros", align_corners=False) - 1


class TrainedClassifier:
    """A trained MNISTClassifier with what was measured about it.

    Also a feature extractor for ``fid.reference_statistics`` / ``fid.extract``:
    ``key``, ``name``, ``dims``, ``weights_sha256``, ``weights_file``, ``batches()``.
    """

    dims = FEATURE_DIMS
    key = f"mnist-classifier-penultimate-{FEATURE_DIMS}"
    preprocess = "uint8/127.5 - 1 -> (B,1,28,28), no resizing"

    def __init__(self, model: MNISTClassifier, meta: dict, path: Path | None = None,
                 device: str | torch.device = "cpu", batch_size: int = 500) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.meta = dict(meta)
        self.path = Path(path) if path is not None else None
        self.batch_size = batch_size
        self.test_accuracy = float(meta.get("test_accuracy", float("nan")))
        self.per_class_accuracy = list(meta.get("per_class_test_accuracy", []))
        self.train_seconds = float(meta.get("train_seconds", 0.0))
        self.cached = False
        if path is not None and Path(path).is_file():
            self.weights_sha256 = sha256_file(path)
        else:
            self.weights_sha256 = array_identity(*[v for v in model.state_dict().values()])
        self.weights_file = str(self.path) if self.path is not None else None
        self.name = f"MNIST classifier, penultimate layer ({FEATURE_DIMS}-d; test accuracy {self.test_accuracy:.2%})"

    def describe(self) -> dict:
        return {
            "feature_extractor": self.name,
            "feature_key": self.key,
            "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256,
            "classifier_test_accuracy": self.test_accuracy,
            "classifier_train_seconds": self.train_seconds,
            "preprocessing": self.preprocess,
            "feature_dims": self.dims,
        }

    def _forward_batches(self, images: np.ndarray):
        with torch.inference_mode():
            for s in range(0, len(images), self.batch_size):
                x = to_input(torch.from_numpy(images[s : s + self.batch_size]).to(self.device))
                f = self.model.features(x)
                yield f, self.model.head(f)

    def batches(self, images: np.ndarray):
        """(N, 28, 28) uint8 -> yields (B, 128) float64 penultimate features."""
        for f, _ in self._forward_batches(images):
            yield f.double().cpu().numpy()

    def probabilities_from_features(self, features: np.ndarray) -> np.ndarray:
        """(N, 128) penultimate features -> (N, 10) class probabilities (the head is linear)."""
        with torch.inference_mode():
            f = torch.as_tensor(np.asarray(features), dtype=torch.float32, device=self.device)
            return torch.softmax(self.model.head(f).double(), dim=1).cpu().numpy()

    def predict(self, images, *, progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                stage: str = "classifier") -> tuple[np.ndarray, np.ndarray]:
        """uint8 digits (N, 28, 28) -> (features (N, 128) float32, probabilities (N, 10) float64)."""
        images = as_uint8_images(images)
        feats, probs, done = [], [], 0
        it = self._forward_batches(images)
        while True:
            check_stop(should_stop)
            try:
                f, logits = next(it)
            except StopIteration:
                break
            feats.append(f.float().cpu().numpy())
            probs.append(torch.softmax(logits.double(), dim=1).cpu().numpy())
            done += len(f)
            if progress is not None:
                progress(stage, done, len(images))
        if not feats:
            return np.zeros((0, FEATURE_DIMS), np.float32), np.zeros((0, 10))
        return np.concatenate(feats), np.concatenate(probs)


# ------------------------------------------------------------------ training
def _accuracy(model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor, device) -> tuple[float, list]:
    model.eval()
    preds = []
    with torch.inference_mode():
        for s in range(0, len(images), 1000):
            preds.append(model(to_input(images[s : s + 1000].to(device))).argmax(1).cpu())
    pred = torch.cat(preds)
    correct = pred == labels
    per_class = [float(correct[labels == c].float().mean()) if (labels == c).any() else float("nan")
                 for c in range(10)]
    return float(correct.float().mean()), per_class


def data_identity(data) -> str:
    """Identity of the splits a classifier trains and is tested on (their bytes)."""
    return array_identity(data.images("train"), data.labels("train"), data.images("test"), data.labels("test"))


def train_classifier(data, config: ClassifierConfig | None = None, *, device: str | torch.device = "cpu",
                     progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> TrainedClassifier:
    """Train on ``data``'s train split (fp32) and measure accuracy on its val and test splits.

    progress("training classifier", done_steps, total_steps) after every step;
    should_stop() before every step (raises EvaluationStopped).
    """
    config = config or ClassifierConfig()
    device = torch.device(device)
    torch.manual_seed(config.seed)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    perm_gen = torch.Generator().manual_seed(config.seed + 1)
    model = MNISTClassifier(config.width).to(device)
    x_all = data.images("train").to(device)
    y_all = data.labels("train").to(device)
    n = len(x_all)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total)
    t0 = time.perf_counter()
    step = 0
    for epoch in range(config.epochs):
        model.train()
        perm = torch.randperm(n, generator=perm_gen).to(device)
        for s in range(steps_per_epoch):
            check_stop(should_stop)
            idx = perm[s * config.batch_size : (s + 1) * config.batch_size]
            if len(idx) < 2:
                continue
            x = _shift(to_input(x_all[idx]), config.shift, gen)
            loss = F.cross_entropy(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if progress is not None:
                progress("training classifier", step, total)
    seconds = time.perf_counter() - t0
    val_acc, _ = _accuracy(model, data.images("val"), data.labels("val"), device)
    test_acc, per_class = _accuracy(model, data.images("test"), data.labels("test"), device)
    meta = {
        "format": CLASSIFIER_FORMAT,
        "version": CLASSIFIER_VERSION,
        "config": asdict(config),
        "train_seconds": seconds,
        "train_images": n,
        "val_accuracy": val_acc,
        "test_accuracy": test_acc,
        "per_class_test_accuracy": per_class,
        "test_images": int(len(data.labels("test"))),
        "device": str(device),
        "torch": str(torch.__version__),
        "data_identity": data_identity(data),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return TrainedClassifier(model.cpu(), meta, device=device)


def classifier_dir() -> Path:
    return paths.data_dir() / "classifier"


def bundled_classifier_dir() -> Path:
    """The classifiers that ship with the app (package data): the default recipe trained on the
    official MNIST, so that no first use waits minutes for it (docs/quality.md)."""
    from importlib import resources

    return Path(str(resources.files("diffusion_studio") / "resources" / "classifier"))


def classifier_path(data, config: ClassifierConfig | None = None) -> Path:
    """The cache file for a classifier trained with ``config`` on these splits."""
    import hashlib

    config = config or ClassifierConfig()
    key = json.dumps({"version": CLASSIFIER_VERSION, "config": asdict(config), "data": data_identity(data)},
                     sort_keys=True)
    return classifier_dir() / f"mnist-classifier-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def save_classifier(clf: TrainedClassifier, path: str | os.PathLike) -> Path:
    """Write weights + measurements atomically (a .pt readable with weights_only) and a .json beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": clf.meta, "state_dict": {k: v.cpu() for k, v in clf.model.state_dict().items()}}
    write_serialized_atomic(path, lambda f: torch.save(payload, f))
    write_text_atomic(path.with_suffix(".json"), json.dumps(clf.meta, indent=1))
    clf.path = path
    clf.weights_file = str(path)
    clf.weights_sha256 = sha256_file(path)
    return path


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedClassifier:
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        meta = payload["meta"]
        if meta.get("format") != CLASSIFIER_FORMAT:
            raise ValueError("not a Diffusion Studio classifier")
        model = MNISTClassifier(int((meta.get("config") or {}).get("width", 16)))
        model.load_state_dict(payload["state_dict"])
    except Exception as exc:
        raise MetricError(f"{path} is not a usable classifier file ({exc}); delete it and the app trains a new one") \
            from exc
    return TrainedClassifier(model, meta, path=path, device=device)


def ensure_classifier(data, *, config: ClassifierConfig | None = None, device: str | torch.device = "cpu",
                      train: bool = True, progress: ProgressFn | None = None,
                      should_stop: StopFn | None = None) -> TrainedClassifier:
    """The classifier for these splits: the user's cached one, else the one shipped for the
    official MNIST with the default recipe, else trained (a few minutes) and cached.

    train=False: raise MetricError instead of training.
    """
    config = config or ClassifierConfig()
    path = classifier_path(data, config)
    for found in (path, bundled_classifier_dir() / path.name):  # this user's, then the app's
        if not found.is_file():
            continue
        try:
            clf = load_classifier(found, device)
            clf.cached = True
            return clf
        except MetricError:
            if not train:
                raise
    if not train:
        raise MetricError(f"no MNIST classifier is cached for this data ({path}); train it first")
    clf = train_classifier(data, config, device=device, progress=progress, should_stop=should_stop)
    save_classifier(clf, path)
    return clf


# ------------------------------------------------------------------- metrics
def class_accuracy(probs: np.ndarray, labels) -> dict:
    """Conditional models: share of digits generated with label y that are classified as y.

    probs: (N, 10) class probabilities (``TrainedClassifier.predict``); labels: (N,) ints.
    Returns {"overall": float, "per_class": [10 floats, NaN where no digit had that label]}.
    """
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(probs):
        raise ValueError(f"{len(labels)} labels for {len(probs)} images")
    pred = np.asarray(probs).argmax(1)
    ok = pred == labels
    per = [float(ok[labels == c].mean()) if np.any(labels == c) else float("nan") for c in range(10)]
    return {"overall": float(ok.mean()) if len(ok) else float("nan"), "per_class": per}


def label_histogram(probs: np.ndarray) -> dict:
    """Counts of predicted labels, their shares and the histogram's entropy in bits."""
    pred = np.asarray(probs).argmax(1)
    counts = np.bincount(pred, minlength=10)[:10]
    share = counts / max(1, counts.sum())
    nz = share[share > 0]
    return {
        "counts": counts.astype(int).tolist(),
        "shares": share.tolist(),
        "entropy_bits": float(-(nz * np.log2(nz)).sum()),
        "classes_present": int((counts > 0).sum()),
        "largest_share": float(share.max()) if counts.sum() else 0.0,
    }


def offline_metrics(images, classifier: TrainedClassifier, data, *, split: str = "test", labels=None,
                    kid_subsets: int = 100, kid_subset_size: int = 1000, progress: ProgressFn | None = None,
                    should_stop: StopFn | None = None) -> tuple[list[dict], list[str]]:
    """All classifier-based metrics of generated uint8 digits (N, 28, 28) against ``data``'s ``split``.

    labels: the (N,) labels the digits were generated with (conditional models) or None.
    Returns (metric entries, warnings). Each entry: {"key", "name", "value", "details", "protocol"}
    where protocol holds n_generated, n_real, reference_split, feature extractor, weights, seconds.
    """
    from .fid import reference_statistics

    t0 = time.perf_counter()
    images = as_uint8_images(images)
    ref_stats, ref_feats, ref_info = reference_statistics(
        classifier, data, split, keep_features=True, progress=progress, should_stop=should_stop)
    feats, probs = classifier.predict(images, progress=progress, should_stop=should_stop,
                                      stage="classifier features")
    check_stop(should_stop)
    warnings: list[str] = []
    base = {
        "n_generated": int(len(images)),
        "n_real": int(ref_stats.n),
        "reference_split": split,
        **classifier.describe(),
        "reference_statistics_cached": ref_info["cached"],
        "reference_statistics_file": ref_info["path"],
    }
    if classifier.test_accuracy < TARGET_ACCURACY:
        warnings.append(
            f"the MNIST classifier's test accuracy is {classifier.test_accuracy:.2%}, below the {TARGET_ACCURACY:.0%} "
            "target: its metrics are less trustworthy"
        )
    entries = _distance_entries(feats, ref_stats, ref_feats, ref_info, base, warnings,
                                kid_subsets=kid_subsets, kid_subset_size=kid_subset_size)
    # the same numbers on the real reference digits, for scale (their probabilities follow from
    # the cached penultimate features: the head is one linear layer)
    ref_probs = classifier.probabilities_from_features(ref_feats)
    entries += _prediction_entries(probs, ref_probs, labels, split, base, t0, warnings)
    return entries, warnings


def _distance_entries(feats: np.ndarray, ref_stats, ref_feats: np.ndarray, ref_info: dict, base: dict,
                      warnings: list[str], *, kid_subsets: int, kid_subset_size: int) -> list[dict]:
    """The FD and KID entries of the generated features (N, 128) against the reference's; none,
    and a warning, below 2 generated digits. Warnings are appended to ``warnings``."""
    t = time.perf_counter()
    gen_stats = feature_stats(feats.astype(np.float64)) if len(feats) >= 2 else None
    if gen_stats is None:
        warnings.append(f"{FD_NAME} and {KID_NAME} need at least 2 generated images")
        return []
    entries = []
    fd, note = frechet_distance(gen_stats, ref_stats)
    entries.append({"key": "fd_classifier", "name": FD_NAME, "value": fd,
                    "details": {"note": note} if note else {},
                    "protocol": {**base, "seconds": time.perf_counter() - t + ref_info["seconds"]}})
    w = small_n_warning(FD_NAME, len(feats), ref_stats.n, FEATURE_DIMS, SMALL_N_CLASSIFIER)
    if w:
        warnings.append(w)
    t = time.perf_counter()
    mean, std, m = kid(feats, ref_feats, subset_size=kid_subset_size, subsets=kid_subsets)
    entries.append({"key": "kid_classifier", "name": KID_NAME, "value": mean,
                    "details": {"std": std, "subset_size": m, "subsets": kid_subsets,
                                "kernel": "(x.y/d + 1)^3, unbiased MMD^2"},
                    "protocol": {**base, "seconds": time.perf_counter() - t}})
    return entries


def _prediction_entries(probs: np.ndarray, ref_probs: np.ndarray, labels, split: str, base: dict, t0: float,
                        warnings: list[str]) -> list[dict]:
    """The entries read from the predicted classes (N, 10): the confident share and the label
    histogram (each beside the real digits' value), and the class accuracy when the digits
    had labels. A possible mode collapse is appended to ``warnings``."""
    conf = probs.max(1) if len(probs) else np.zeros(0)
    entries = [{"key": "confident_share", "name": CONFIDENT_NAME,
                "value": float((conf >= CONFIDENCE).mean()) if len(conf) else float("nan"),
                "details": {"threshold": CONFIDENCE, "mean_top_probability": float(conf.mean()) if len(conf) else None,
                            f"real_{split}_value": float((ref_probs.max(1) >= CONFIDENCE).mean())},
                "protocol": {**base, "seconds": time.perf_counter() - t0}}]
    hist = label_histogram(probs)
    ref_hist = label_histogram(ref_probs)
    hist[f"real_{split}_entropy_bits"] = ref_hist["entropy_bits"]
    hist[f"real_{split}_largest_share"] = ref_hist["largest_share"]
    entries.append({"key": "label_histogram", "name": HISTOGRAM_NAME, "value": hist["counts"],
                    "details": hist, "protocol": {**base, "seconds": time.perf_counter() - t0}})
    if hist["largest_share"] > 0.3 and len(probs) >= 50:
        warnings.append(
            f"possible mode collapse: {hist['largest_share']:.0%} of the generated digits are classified as "
            f"{int(np.argmax(hist['counts']))} (a balanced model gives about 10% each)"
        )
    if labels is not None:
        acc = class_accuracy(probs, labels)
        entries.append({"key": "class_accuracy", "name": CLASS_ACCURACY_NAME, "value": acc["overall"],
                        "details": acc, "protocol": {**base, "seconds": time.perf_counter() - t0}})
    return entries


ClassifierProgress = Callable[[str, int, int], None]
