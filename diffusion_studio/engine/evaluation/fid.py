"""Inception FID through pytorch-fid, offline, plus cached reference statistics.

What is measured ("FID (Inception, pytorch-fid)"):

- the network is pytorch-fid 0.3.0's ``InceptionV3`` (the TensorFlow FID
  Inception, pool3 block, 2048-d features), built from pytorch-fid's own
  classes (``fid_inception_v3``, ``FIDInceptionA/C/E_1/E_2``) with the weights in
  ``pt_inception-2015-12-05-6726825d.pth`` read from a local file: the app never
  downloads anything unless asked to (``allow_download=True``);
- digits go in as pytorch-fid's own image loader would give them from PNGs:
  the uint8 28x28 grey image is divided by 255 (``ToTensor``) and repeated into
  three identical channels, so the input is (B, 3, 28, 28) in [0, 1];
  ``InceptionV3(resize_input=True)`` then resizes it bilinearly
  (align_corners=False) to 299x299 and rescales to [-1, 1] itself;
- the distance is pytorch-fid's ``calculate_frechet_distance`` on the float64
  mean and covariance of the features (see ``metrics.frechet_distance``).

Weights are looked for at an explicit path, else in torch hub's cache,
``torch.hub.get_dir()/checkpoints/`` (``$TORCH_HOME/hub/checkpoints``), where
pytorch-fid itself would put them. When missing, ``InceptionWeightsMissing``
says which file, where to put it and the URL it comes from.

Reference statistics (mean, covariance of a real split) are cached as .npz
under ``paths.cache_dir()/fid_stats`` keyed by the split, the extractor, the
weight file's sha256 and the split's content; ``reference_statistics`` is
shared with the MNIST classifier metric (``classifier.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator
from unittest import mock

import numpy as np
import torch

from ..storage import paths
from ..text import first_line
from .metrics import (
    EvaluationStopped,
    FeatureStats,
    MetricError,
    ProgressFn,
    RunningStats,
    StopFn,
    array_identity,
    as_uint8_images,
    check_stop,
)
from ..storage.checkpoint import sha256_file

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_SHA256_PREFIX = "6726825d"  # torch hub's convention: the file name holds the sha256's start
INCEPTION_DIMS = 2048
INCEPTION_METRIC_NAME = "FID (Inception, pytorch-fid)"
PREPROCESS = "uint8/255 -> 3 identical channels in [0,1] -> pytorch-fid bilinear resize to 299x299 -> [-1,1]"
STATS_VERSION = 1


def fid_weights_url() -> str:
    from pytorch_fid.inception import FID_WEIGHTS_URL

    return FID_WEIGHTS_URL


def pytorch_fid_version() -> str:
    try:
        from importlib.metadata import version

        return version("pytorch-fid")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


class InceptionWeightsMissing(MetricError):
    """The pytorch-fid Inception weight file is not on this computer."""


def hub_weights_path() -> Path:
    """Where pytorch-fid (torch hub) keeps the weights: torch.hub.get_dir()/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


def missing_weights_message(looked_at: list[Path] | None = None) -> str:
    target = hub_weights_path()
    looked = ", ".join(str(p) for p in (looked_at or [target]))
    return (
        f"FID (Inception, pytorch-fid) needs the Inception weight file {FID_WEIGHTS_FILE} (about 92 MB), which "
        f"is not here (looked at: {looked}). Download it from {fid_weights_url()} and put it at {target} "
        f"(torch hub's cache, $TORCH_HOME/hub/checkpoints/), or pass its path with --inception-weights PATH "
        f"(in the app: the Evaluate panel's 'Inception weights' field)."
    )


def find_inception_weights(path: str | os.PathLike | None = None, *, allow_download: bool = False,
                           timeout: float = 20.0) -> Path:
    """The weight file to use: ``path`` when given (it must exist), else torch hub's cached copy.

    When neither exists: downloads it into torch hub's cache if ``allow_download``
    (``timeout`` seconds per network read), else raises InceptionWeightsMissing
    naming the file, where to put it and its URL. Never touches the network
    unless allowed.
    """
    if path is not None and str(path) != "":
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / FID_WEIGHTS_FILE
        if not p.is_file():
            raise InceptionWeightsMissing(missing_weights_message([p]))
        return p
    hub = hub_weights_path()
    if hub.is_file():
        return hub
    if allow_download:
        return download_inception_weights(hub, timeout=timeout)
    raise InceptionWeightsMissing(missing_weights_message([hub]))


FID_WEIGHTS_MB = 92  # the size of pt_inception-2015-12-05-6726825d.pth, for the user's consent


class DownloadCancelled(MetricError):
    """The user stopped the download; nothing was written."""


def download_inception_weights(dest: str | os.PathLike | None = None, *, url: str | None = None,
                               timeout: float = 20.0, progress=None, should_stop=None) -> Path:
    """Fetch the weights to ``dest`` (default: torch hub's cache), checking the sha256 prefix.

    progress(done_bytes, total_bytes or 0) is called after every MiB; should_stop()
    is checked as often and ends the download with DownloadCancelled. Raises
    InceptionWeightsMissing (with the manual instructions) when the download fails;
    a stalled connection gives up after ``timeout`` seconds. The file appears only
    when complete and verified (a temporary file is renamed; it is removed on failure).
    """
    import urllib.request

    dest = Path(dest) if dest is not None else hub_weights_path()
    url = url or fid_weights_url()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        h = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=timeout) as resp, os.fdopen(fd, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                if should_stop is not None and should_stop():
                    raise DownloadCancelled("the download of the Inception weights was cancelled")
                h.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if not h.hexdigest().startswith(FID_WEIGHTS_SHA256_PREFIX):
            raise InceptionWeightsMissing(
                f"the downloaded {FID_WEIGHTS_FILE} has sha256 {h.hexdigest()[:8]}..., not "
                f"{FID_WEIGHTS_SHA256_PREFIX}...: the download is damaged. " + missing_weights_message([dest])
            )
        os.replace(tmp, dest)
        return dest
    except (InceptionWeightsMissing, DownloadCancelled):
        raise
    except Exception as exc:
        raise InceptionWeightsMissing(
            f"downloading {url} failed ({type(exc).__name__}: {exc}). " + missing_weights_message([dest])
        ) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# -------------------------------------------------------------- the network
_BUILD_LOCK = threading.Lock()


def _random_fid_inception(seed: int):
    """pytorch-fid's FID Inception structure with random weights (tests, speed checks)."""
    from pytorch_fid import inception as pfi

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
        net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = pfi.FIDInceptionE_1(1280)
        net.Mixed_7c = pfi.FIDInceptionE_2(2048)
        # He initialisation keeps the activations' scale through the ReLUs (torch's default
        # init, which pytorch-fid leaves in place, makes the pool3 features vanish, ~1e-8).
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, torch.nn.BatchNorm2d):
                torch.nn.init.constant_(m.weight, 1)
                torch.nn.init.constant_(m.bias, 0)
    return net


def build_inception(weights: str | os.PathLike | None, *, random_seed: int = 0, dims: int = INCEPTION_DIMS):
    """pytorch-fid's ``InceptionV3([pool3], resize_input=True, normalize_input=True)`` in eval mode.

    weights: the local ``pt_inception-2015-12-05-6726825d.pth``; pytorch-fid's
    ``fid_inception_v3`` builds the network and its weight fetch is pointed at
    this file, so nothing is downloaded. ``None`` gives random weights (seeded
    by ``random_seed``), for tests and speed measurements only. dims: 2048 (pool3,
    the FID standard) or pytorch-fid's smaller blocks 64/192/768 (``--dims``).
    Raises MetricError when the file is not a matching state dict.
    """
    from pytorch_fid import inception as pfi

    if weights is None:
        net = _random_fid_inception(random_seed)
        patch = mock.patch.object(pfi, "fid_inception_v3", lambda: net)
    else:
        weights = Path(weights)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise MetricError(
                f"{weights} is not a readable weight file ({type(exc).__name__}); replace it with a fresh copy of "
                f"{FID_WEIGHTS_FILE} from {fid_weights_url()}"
            ) from exc

        def local_weights(url, *args, **kwargs):
            if url != pfi.FID_WEIGHTS_URL:  # pragma: no cover - a pytorch-fid change
                raise MetricError(f"pytorch-fid asked for unexpected weights {url}")
            return state

        patch = mock.patch.object(pfi, "load_state_dict_from_url", local_weights)
    with _BUILD_LOCK, patch:
        try:
            model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[dims]],
                                    resize_input=True, normalize_input=True)
        except RuntimeError as exc:
            raise MetricError(
                f"{weights} does not hold pytorch-fid's Inception weights ({first_line(exc)}); use "
                f"{FID_WEIGHTS_FILE} from {fid_weights_url()}"
            ) from exc
    return model.eval()


class InceptionExtractor:
    """Inception pool3 features of uint8 digits (see the module docstring).

    weights: path of the weight file, or None for *random* weights (tests only).
    device: where the network runs (CUDA when the caller resolved it so).
    batch_size: images per forward pass; memory grows with it (each image is
    3x299x299 inside the network): 50 on a CPU is ~0.5 GB.
    """

    dims = INCEPTION_DIMS
    metric_name = INCEPTION_METRIC_NAME

    def __init__(self, weights: str | os.PathLike | None, *, device: str | torch.device = "cpu",
                 batch_size: int | None = None, random_seed: int = 0, dims: int = INCEPTION_DIMS) -> None:
        from pytorch_fid.inception import InceptionV3

        if dims not in InceptionV3.BLOCK_INDEX_BY_DIM:
            raise ValueError(f"Inception feature size must be one of {sorted(InceptionV3.BLOCK_INDEX_BY_DIM)}")
        self.device = torch.device(device)
        self.dims = dims
        self.batch_size = batch_size or (200 if self.device.type == "cuda" else 50)
        self.weights_file = str(Path(weights).resolve()) if weights is not None else None
        self.weights_sha256 = sha256_file(weights) if weights is not None else f"random-seed-{random_seed}"
        self.official_weights = self.weights_sha256.startswith(FID_WEIGHTS_SHA256_PREFIX)
        self.model = build_inception(weights, random_seed=random_seed, dims=dims).to(self.device)
        if self.device.type == "cpu":  # the same features (to 4e-7), 13% faster here (docs/benchmarks.md)
            self.model = self.model.to(memory_format=torch.channels_last)
        block = {64: "first max pool", 192: "second max pool", 768: "pre-aux", 2048: "pool3"}[dims]
        self.name = f"InceptionV3 {block} {dims}-d (pytorch-fid {pytorch_fid_version()})" + (
            "" if weights is not None else " with RANDOM weights")
        self.key = f"inception-{dims}"
        self.preprocess = PREPROCESS

    def describe(self) -> dict:
        return {
            "feature_extractor": self.name,
            "feature_key": self.key,
            "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256,
            "official_weights": self.official_weights,
            "preprocessing": self.preprocess,
            "feature_dims": self.dims,
        }

    def batches(self, images: np.ndarray) -> Iterator[np.ndarray]:
        """Yield (B, dims) float64 feature rows for (N, 28, 28) uint8 images, in order."""
        with torch.inference_mode():
            for s in range(0, len(images), self.batch_size):
                x = torch.from_numpy(images[s : s + self.batch_size]).to(self.device)
                x = x.float().div_(255.0).unsqueeze(1).expand(-1, 3, -1, -1)
                f = self.model(x)[0]  # (B, 2048, 1, 1) from the final average pool
                if f.shape[2] != 1 or f.shape[3] != 1:  # smaller blocks: pooled as pytorch-fid does
                    f = torch.nn.functional.adaptive_avg_pool2d(f, output_size=(1, 1))
                yield f.reshape(f.shape[0], -1).double().cpu().numpy()


def extract(extractor, images, *, keep_features: bool = False, progress: ProgressFn | None = None,
            should_stop: StopFn | None = None, stage: str = "features") -> tuple[FeatureStats, np.ndarray | None]:
    """Run ``extractor`` over uint8 images (N, 28, 28) in batches.

    Returns their FeatureStats and, when ``keep_features``, the (N, D) float32
    features (else None: memory stays O(D^2)). progress(stage, done, N) after
    each batch; should_stop() before each (raises EvaluationStopped).
    """
    images = as_uint8_images(images)
    rs = RunningStats()
    kept: list[np.ndarray] = []
    done = 0
    if progress is not None:
        progress(stage, 0, len(images))
    it = extractor.batches(images)
    while True:
        check_stop(should_stop)
        try:
            f = next(it)
        except StopIteration:
            break
        rs.update(f)
        if keep_features:
            kept.append(f.astype(np.float32))
        done += len(f)
        if progress is not None:
            progress(stage, done, len(images))
    return rs.result(), (np.concatenate(kept) if keep_features else None)


# ------------------------------------------------------- reference statistics
def stats_cache_dir() -> Path:
    return paths.cache_dir() / "fid_stats"


def reference_cache_path(extractor, images, split: str) -> Path:
    """The .npz for these reference images under this extractor and weight file."""
    key = json.dumps({
        "version": STATS_VERSION,
        "split": split,
        "extractor": extractor.key,
        "weights_sha256": extractor.weights_sha256,
        "preprocessing": getattr(extractor, "preprocess", ""),
        "data": array_identity(as_uint8_images(images)),
    }, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return stats_cache_dir() / f"{split}-{extractor.key}-{digest}.npz"


def reference_statistics(extractor, data, split: str = "test", *, keep_features: bool = False,
                         progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                         use_cache: bool = True) -> tuple[FeatureStats, np.ndarray | None, dict]:
    """Statistics of the real ``split`` of ``data`` (MNISTSplits), computed once and cached.

    The cache file is keyed by split, extractor, weight sha256, preprocessing and
    the split's bytes, so new weights or other data give a new file. With
    ``keep_features`` the (N, D) float32 features are stored too (for KID).
    Returns (stats, features or None, info) with info = {"cached": bool,
    "path": str, "seconds": float}.
    """
    images = as_uint8_images(data.images(split))
    path = reference_cache_path(extractor, images, split)
    t0 = time.perf_counter()
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                if not keep_features or "features" in f.files:
                    stats = FeatureStats(mu=f["mu"], sigma=f["sigma"], n=int(f["n"]))
                    feats = f["features"] if keep_features else None
                    return stats, feats, {"cached": True, "path": str(path), "seconds": time.perf_counter() - t0}
        except (OSError, ValueError, KeyError):
            pass  # damaged cache: recompute below
    stats, feats = extract(extractor, images, keep_features=keep_features, progress=progress,
                           should_stop=should_stop, stage=f"reference statistics ({split})")
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        extra = {"features": feats} if feats is not None else {}
        np.savez(tmp, mu=stats.mu, sigma=stats.sigma, n=np.int64(stats.n),
                 extractor=np.array(extractor.key), weights_sha256=np.array(extractor.weights_sha256),
                 split=np.array(split), **extra)
        os.replace(tmp, path)
    return stats, feats, {"cached": False, "path": str(path), "seconds": time.perf_counter() - t0}


__all__ = [
    "FID_WEIGHTS_FILE", "INCEPTION_METRIC_NAME", "InceptionExtractor", "InceptionWeightsMissing",
    "build_inception", "download_inception_weights", "extract", "find_inception_weights", "hub_weights_path",
    "missing_weights_message", "reference_statistics", "EvaluationStopped",
]


# ------------------------------------------------------------ how long will it take?
def _rate_cache_file() -> Path:
    from ..storage.paths import cache_dir

    return cache_dir() / "inception_rate.json"


def inception_images_per_second(device: str | torch.device = "cpu", *, measure: bool = True) -> float | None:
    """Images/s of the Inception pass on this machine (its speed does not depend on the
    weights, so random ones are timed): measured once with one batch of 8 after a
    warm-up (a few seconds on a CPU), then cached per CPU, torch version, threads and
    device. None when not cached and ``measure`` is False."""
    from ..device import machine_key, read_measurements, record_measurement

    device = torch.device(device)
    key = machine_key(str(device))
    cached = read_measurements(_rate_cache_file()).get(key)
    if isinstance(cached, (int, float)):
        return float(cached)
    if not measure:
        return None
    import numpy as np

    extractor = InceptionExtractor(None, device=device, batch_size=8)
    images = np.random.default_rng(0).integers(0, 256, size=(8, 28, 28), dtype=np.uint8)
    for _ in extractor.batches(images):  # warm-up
        pass
    start = time.perf_counter()
    for _ in extractor.batches(images):
        pass
    rate = 8 / max(time.perf_counter() - start, 1e-9)
    record_measurement(_rate_cache_file(), key, rate)
    return rate


def estimate_inception_seconds(n_generated: int, rate: float, *, n_reference: int = 0) -> float:
    """Seconds for the Inception features of ``n_generated`` digits, plus ``n_reference``
    real ones when their statistics are not cached yet, at ``rate`` images/s."""
    return (n_generated + n_reference) / max(rate, 1e-9)
