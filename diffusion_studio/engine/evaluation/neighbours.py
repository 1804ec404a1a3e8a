"""Does the model copy its training digits? Nearest training neighbours of generated digits.

A model that memorised its data would put generated digits much closer to some
training digit than a fresh real digit is: so each generated digit's distance
to its nearest training digit is read against the same distance for real test
digits (which the model never saw). Two spaces: raw pixels (in [0, 1], so a
distance of 1 is one fully flipped pixel) and the features of the app's MNIST
classifier (the offline metric's), where "the same digit drawn the same way"
is near even when a stroke is shifted by a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Neighbours:
    """index: (N,) index of each query's nearest reference; distance: (N,) its Euclidean distance."""

    index: np.ndarray
    distance: np.ndarray


def nearest(queries: np.ndarray, reference: np.ndarray, *, chunk: int = 4096, should_stop=None) -> Neighbours:
    """Nearest reference row of every query row, by Euclidean distance.

    queries: (N, D) float; reference: (M, D) float. Exact (no approximation):
    |q - r|^2 = |q|^2 + |r|^2 - 2 q.r over chunks of the reference, in float64.
    """
    q = torch.as_tensor(np.asarray(queries, dtype=np.float64).reshape(len(queries), -1))
    r_all = torch.as_tensor(np.asarray(reference, dtype=np.float64).reshape(len(reference), -1))
    if len(r_all) == 0:
        raise ValueError("the reference set is empty")
    best_d = torch.full((len(q),), float("inf"), dtype=torch.float64)
    best_i = torch.zeros(len(q), dtype=torch.long)
    q2 = (q * q).sum(1, keepdim=True)
    for start in range(0, len(r_all), chunk):
        if should_stop is not None and should_stop():
            from ..diffusion.sampling import SamplingStopped

            raise SamplingStopped()
        r = r_all[start : start + chunk]
        d2 = (q2 + (r * r).sum(1)[None, :] - 2 * q @ r.T).clamp(min=0)
        d, i = d2.min(dim=1)
        better = d < best_d
        best_d[better], best_i[better] = d[better], i[better] + start
    return Neighbours(best_i.numpy(), best_d.sqrt().numpy())


def pixel_vectors(images_uint8: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 784) float in [0, 1]."""
    return np.asarray(images_uint8, dtype=np.float64).reshape(len(images_uint8), -1) / 255.0


@dataclass(frozen=True)
class MemorisationCheck:
    """For generated digits and, for scale, as many real test digits:
    pixel and feature-space nearest training neighbours."""

    generated_pixel: Neighbours
    generated_feature: Neighbours | None
    test_pixel: Neighbours
    test_feature: Neighbours | None

    def summary(self) -> dict:
        """Medians and the share of generated digits nearer than the nearest 1% of test digits."""
        out = {}
        for space, gen, test in (("pixel", self.generated_pixel, self.test_pixel),
                                 ("feature", self.generated_feature, self.test_feature)):
            if gen is None or test is None:
                continue
            p1 = float(np.percentile(test.distance, 1))
            out[space] = {
                "generated_median": float(np.median(gen.distance)),
                "test_median": float(np.median(test.distance)),
                "test_1st_percentile": p1,
                "generated_share_below_test_1st_percentile": float((gen.distance < p1).mean()),
            }
        return out


def memorisation_check(generated_uint8: np.ndarray, data, *, classifier=None, n_test: int | None = None,
                       should_stop=None) -> MemorisationCheck:
    """Nearest training digits (pixels, and classifier features when ``classifier`` is
    given) of ``generated_uint8`` (N, 28, 28), and of ``n_test`` (default N) real test
    digits for comparison. ``data``: MNISTSplits."""
    train = data.train_images.numpy()
    n_test = len(generated_uint8) if n_test is None else n_test
    test = data.test_images[: max(1, n_test)].numpy()
    train_px = pixel_vectors(train)
    gen_px = nearest(pixel_vectors(generated_uint8), train_px, should_stop=should_stop)
    test_px = nearest(pixel_vectors(test), train_px, should_stop=should_stop)
    gen_f = test_f = None
    if classifier is not None:
        train_f, _ = classifier.predict(train, should_stop=should_stop)
        g_f, _ = classifier.predict(generated_uint8, should_stop=should_stop)
        t_f, _ = classifier.predict(test, should_stop=should_stop)
        gen_f = nearest(g_f, train_f, should_stop=should_stop)
        test_f = nearest(t_f, train_f, should_stop=should_stop)
    return MemorisationCheck(gen_px, gen_f, test_px, test_f)
