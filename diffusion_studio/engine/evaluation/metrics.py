"""Shared helpers for the sample-quality metrics: feature statistics, the
Fréchet distance (pytorch-fid's), KID, and identities for caching.

Every metric here compares two sets of *features* (rows of an (N, D) array):
Inception pool3 activations (``fid.py``) or the MNIST classifier's penultimate
layer (``classifier.py``). Nothing in this module knows which.

- ``RunningStats``: mean and covariance accumulated batch by batch (float64,
  Chan et al.'s pairwise update), so 10,000 x 2048 features never need to sit in
  memory at once; ``sigma`` equals ``np.cov(features, rowvar=False)``.
- ``frechet_distance``: pytorch-fid's ``calculate_frechet_distance`` (not a
  rewrite), with its console message turned into a returned note.
- ``kid``: the unbiased squared MMD with the cubic polynomial kernel
  k(x, y) = (x.y / D + 1)^3 of Bińkowski et al. 2018 ("Demystifying MMD GANs"),
  averaged over random subsets.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..stopping import Stopped

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)
StopFn = Callable[[], bool]


class MetricError(RuntimeError):
    """A metric could not be computed; the message says why and what to do."""


class EvaluationStopped(Stopped):
    """Raised when the caller's ``should_stop()`` returned True (the user cancelled)."""


def check_stop(should_stop: StopFn | None) -> None:
    if should_stop is not None and should_stop():
        raise EvaluationStopped("cancelled")


# ----------------------------------------------------------------- statistics
@dataclass
class FeatureStats:
    """Mean (D,) and covariance (D, D) of N feature vectors, float64."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def save(self, path: str | os.PathLike, **meta: str) -> Path:
        """Atomically write an .npz with keys mu, sigma, n (and string metadata)."""
        from ..storage.atomic import write_atomic

        return write_atomic(path, lambda f: np.savez(
            f, mu=self.mu, sigma=self.sigma, n=np.int64(self.n),
            **{f"meta_{k}": np.array(str(v)) for k, v in meta.items()}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        with np.load(path, allow_pickle=False) as f:
            return cls(mu=f["mu"].astype(np.float64), sigma=f["sigma"].astype(np.float64), n=int(f["n"]))


class RunningStats:
    """Mean and covariance of feature rows added in batches (float64).

    ``update(batch)`` with (B, D) rows; ``result()`` -> FeatureStats whose sigma
    uses the N - 1 denominator, as ``np.cov(rowvar=False)`` (and pytorch-fid) do.
    Memory is O(D^2) whatever N is.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def update(self, batch: np.ndarray) -> None:
        b = np.asarray(batch, dtype=np.float64)
        if b.ndim != 2:
            raise ValueError(f"features must be (B, D), got shape {b.shape}")
        k = b.shape[0]
        if k == 0:
            return
        mb = b.mean(axis=0)
        centred = b - mb
        cb = centred.T @ centred
        if self.n == 0:
            self.n, self.mean, self.m2 = k, mb, cb
            return
        if b.shape[1] != self.mean.shape[0]:
            raise ValueError(f"feature size changed from {self.mean.shape[0]} to {b.shape[1]}")
        n_new = self.n + k
        delta = mb - self.mean
        self.mean = self.mean + delta * (k / n_new)
        self.m2 = self.m2 + cb + np.outer(delta, delta) * (self.n * k / n_new)
        self.n = n_new

    def result(self) -> FeatureStats:
        if self.n < 2:
            raise MetricError(f"need at least 2 images for a covariance, got {self.n}")
        return FeatureStats(mu=self.mean.copy(), sigma=self.m2 / (self.n - 1), n=self.n)


def feature_stats(features: np.ndarray) -> FeatureStats:
    """(N, D) features -> FeatureStats (mean and np.cov covariance)."""
    rs = RunningStats()
    rs.update(features)
    return rs.result()


# ---------------------------------------------------------- Fréchet distance
def frechet_distance(a: FeatureStats, b: FeatureStats) -> tuple[float, str]:
    """Fréchet distance between N(a.mu, a.sigma) and N(b.mu, b.sigma):

        ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))

    computed by pytorch-fid's ``calculate_frechet_distance`` (scipy's sqrtm,
    with eps = 1e-6 added to the diagonals when the product is singular).
    Returns (distance, note); the note is pytorch-fid's message when it had to
    add the offset, else "".
    """
    from pytorch_fid.fid_score import calculate_frechet_distance

    if a.mu.shape != b.mu.shape:
        raise MetricError(f"feature sizes differ ({a.mu.shape[0]} vs {b.mu.shape[0]}); were both sets "
                          "measured with the same feature extractor?")
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            d = calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
        for w in caught:  # scipy's "Matrix is singular" LinAlgWarning: a note, not console noise
            if issubclass(w.category, DeprecationWarning):
                continue
            buf.write(("; " if buf.getvalue() else "") + str(w.message).splitlines()[0])
    except ValueError as exc:  # "Imaginary component ..."
        raise MetricError(
            f"the Fréchet distance is numerically unstable here ({exc}); use more images (n well above the "
            f"feature dimension, {a.mu.shape[0]})"
        ) from exc
    return float(d), buf.getvalue().strip()


# ------------------------------------------------------------------------ KID
def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between samples x (m, D) and y (n, D) with the cubic kernel."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise MetricError("KID needs at least 2 images in each set")
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2.0 * kxy.mean()
    )


def kid(
    generated: np.ndarray,
    real: np.ndarray,
    *,
    subset_size: int = 1000,
    subsets: int = 100,
    seed: int = 0,
) -> tuple[float, float, int]:
    """Kernel Inception Distance (Bińkowski et al. 2018) on any features.

    Draws ``subsets`` pairs of random subsets (without replacement inside a
    subset) of size m = min(subset_size, len(generated), len(real)) and averages
    the unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3.
    Returns (mean, standard deviation over subsets, m). Unbiased: its
    expectation does not depend on n, unlike FID's.
    """
    g = np.asarray(generated, dtype=np.float64)
    r = np.asarray(real, dtype=np.float64)
    m = min(subset_size, len(g), len(r))
    if m < 2:
        raise MetricError("KID needs at least 2 generated and 2 real images")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        xi = g[rng.choice(len(g), m, replace=False)]
        yi = r[rng.choice(len(r), m, replace=False)]
        values[i] = mmd2_unbiased(xi, yi)
    return float(values.mean()), float(values.std()), m


# ------------------------------------------------------------------ identity
def array_identity(*arrays) -> str:
    """sha256 over the shapes, dtypes and bytes of tensors/arrays (the data's identity)."""
    h = hashlib.sha256()
    for a in arrays:
        arr = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.shape}|{arr.dtype}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def as_uint8_images(images) -> np.ndarray:
    """Accept (N, 28, 28) or (N, 1, 28, 28) uint8 arrays/tensors -> (N, 28, 28) uint8 numpy.

    Float input is refused: convert model-range images with ``data.to_uint8`` first.
    """
    arr = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 images in 0..255 (got {arr.dtype}); convert [-1, 1] model output with "
            "diffusion_studio.engine.storage.data.to_uint8"
        )
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W) or (N, 1, H, W), got {arr.shape}")
    return np.ascontiguousarray(arr)


SMALL_N_INCEPTION = 10_000
SMALL_N_CLASSIFIER = 10_000


def small_n_warning(metric_name: str, n_generated: int, n_real: int, dims: int, recommended: int) -> str | None:
    """A warning for a Fréchet distance measured on too few images, or None."""
    n = min(n_generated, n_real)
    if n <= dims:
        return (
            f"{metric_name}: n = {n_generated} generated / {n_real} real images is not more than the feature "
            f"dimension ({dims}), so the covariance is singular and the number is not meaningful; use more than "
            f"{dims} (ideally {recommended:,}) images."
        )
    if n_generated < recommended:
        return (
            f"{metric_name}: n = {n_generated:,} generated images is below the {recommended:,} usually used; "
            "Fréchet distances are biased upward at small n, so this value is larger than the n = "
            f"{recommended:,} value and only comparable with runs that used the same n."
        )
    return None
