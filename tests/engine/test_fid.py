"""Fréchet distance, KID, Inception feature pipeline (random weights: no download), weights and stats cache."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from diffusion_studio.engine.evaluation import fid, metrics
from diffusion_studio.engine.evaluation.metrics import FeatureStats, MetricError, feature_stats, frechet_distance, kid


class _Split:
    """Just enough of MNISTSplits for reference_statistics: images(split)."""

    def __init__(self, images: torch.Tensor) -> None:
        self._images = images

    def images(self, split):
        return self._images


def _digits(n, seed):
    from conftest import make_digits

    return make_digits(n, seed=seed)[0]


# ----------------------------------------------------------- Fréchet distance
def test_frechet_distance_of_identical_statistics_is_zero():
    rng = np.random.default_rng(0)
    stats = feature_stats(rng.normal(size=(200, 16)))
    d, _ = frechet_distance(stats, stats)
    assert abs(d) < 1e-6


def test_frechet_distance_of_diagonal_gaussians_matches_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.2, 3.0, 6), rng.uniform(0.2, 3.0, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    d, note = frechet_distance(FeatureStats(mu1, np.diag(s1), 10), FeatureStats(mu2, np.diag(s2), 10))
    assert d == pytest.approx(expected, rel=1e-9)
    assert note == ""


def test_frechet_distance_refuses_mismatched_features():
    a = FeatureStats(np.zeros(3), np.eye(3), 5)
    b = FeatureStats(np.zeros(4), np.eye(4), 5)
    with pytest.raises(MetricError, match="feature sizes differ"):
        frechet_distance(a, b)


def test_running_stats_equal_numpy_cov_batch_by_batch():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(103, 7)) * 5 + 100  # offset: the pairwise update must stay exact
    rs = metrics.RunningStats()
    for s in range(0, 103, 10):
        rs.update(x[s : s + 10])
    st = rs.result()
    assert st.n == 103
    np.testing.assert_allclose(st.mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(st.sigma, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    c = rng.normal(size=(300, 8)) + 1.0
    same, same_std, m = kid(a, b, subset_size=100, subsets=20)
    diff, _, _ = kid(a, c, subset_size=100, subsets=20)
    assert m == 100
    assert abs(same) < 3 * same_std + 1e-3
    assert diff > 10 * abs(same)


def test_small_n_warning_names_n_and_bias():
    w = metrics.small_n_warning("FID (Inception, pytorch-fid)", 5000, 10000, 2048, 10000)
    assert "5,000" in w and "biased upward" in w
    assert "not meaningful" in metrics.small_n_warning("X", 100, 10000, 2048, 10000)
    assert metrics.small_n_warning("X", 10000, 10000, 2048, 10000) is None


# ----------------------------------------------------- Inception, no download
# pytorch-fid's 64-d block (its --dims 64) keeps these tests fast: the full network at 299x299 costs
# ~0.1-1 s per image on a small CPU and scipy's sqrtm of a 2048x2048 matrix takes minutes on 2 cores.
@pytest.fixture(scope="module")
def random_inception():
    return fid.InceptionExtractor(None, batch_size=8, random_seed=0, dims=64)


def _save_pngs(images, folder):
    from PIL import Image

    files = []
    for i, a in enumerate(images):
        files.append(str(folder / f"{i:02d}.png"))
        Image.fromarray(a).save(files[-1])
    return files


def test_pool3_features_equal_pytorch_fid_on_pngs(tmp_path):
    """The real extractor (pool3, 2048-d): our uint8 -> 3 x [0,1] path gives pytorch-fid's own features
    for the same digits saved as PNG files (which its loader reads as RGB / 255)."""
    from pytorch_fid.fid_score import get_activations

    ex = fid.InceptionExtractor(None, batch_size=2, random_seed=0)
    gen = _digits(2, seed=7).numpy()
    _, feats = fid.extract(ex, gen, keep_features=True)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all() and feats.std() > 0
    theirs = get_activations(_save_pngs(gen, tmp_path), ex.model, batch_size=2, dims=2048, device="cpu",
                             num_workers=0)
    np.testing.assert_allclose(feats, theirs, rtol=1e-5, atol=1e-6)


def test_inception_pipeline_end_to_end(random_inception, tmp_path):
    """uint8 digits -> features in batches -> cached reference statistics -> pytorch-fid's distance."""
    from pytorch_fid.fid_score import get_activations

    gen = _digits(24, seed=7).numpy()
    real = _digits(24, seed=8)
    gen_stats, gen_feats = fid.extract(random_inception, gen, keep_features=True)
    assert gen_feats.shape == (24, 64)
    theirs = get_activations(_save_pngs(gen, tmp_path), random_inception.model, batch_size=8, dims=64,
                             device="cpu", num_workers=0)
    np.testing.assert_allclose(gen_feats, theirs, rtol=1e-5, atol=1e-6)

    seen = []
    ref_stats, _, info = fid.reference_statistics(random_inception, _Split(real), "test",
                                                  progress=lambda s, d, t: seen.append((s, d, t)))
    assert info["cached"] is False and seen[-1][1:] == (24, 24)
    d_gen, _ = frechet_distance(gen_stats, ref_stats)
    d_self, _ = frechet_distance(ref_stats, ref_stats)
    assert d_gen > 0 and abs(d_self) < 1e-3 * d_gen


def test_extraction_can_be_cancelled(random_inception):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 1  # let one batch through, then stop

    with pytest.raises(metrics.EvaluationStopped):
        fid.extract(random_inception, _digits(20, seed=1).numpy(), should_stop=stop)


def test_uint8_is_required():
    with pytest.raises(ValueError, match="uint8"):
        metrics.as_uint8_images(np.zeros((2, 28, 28), dtype=np.float32))


# ---------------------------------------------------------------- weights
def test_missing_weights_message_names_file_place_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    t = time.perf_counter()
    with pytest.raises(fid.InceptionWeightsMissing) as err:
        fid.find_inception_weights()
    assert time.perf_counter() - t < 1.0  # no network attempt, no hang
    msg = str(err.value)
    assert fid.FID_WEIGHTS_FILE in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / fid.FID_WEIGHTS_FILE) in msg
    assert "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" in msg
    assert "--inception-weights" in msg

    with pytest.raises(fid.InceptionWeightsMissing) as err2:
        fid.find_inception_weights(tmp_path / "nowhere.pth")
    assert str(tmp_path / "nowhere.pth") in str(err2.value)


def test_weights_are_found_in_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = tmp_path / "hub" / "checkpoints" / fid.FID_WEIGHTS_FILE
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert fid.find_inception_weights() == target
    assert fid.find_inception_weights(target.parent) == target  # a folder holding the file works too


def test_failed_download_says_what_to_do_quickly(tmp_path):
    t = time.perf_counter()
    with pytest.raises(fid.InceptionWeightsMissing, match="downloading .* failed"):
        fid.download_inception_weights(tmp_path / fid.FID_WEIGHTS_FILE, url="http://127.0.0.1:9/none.pth", timeout=2)
    assert time.perf_counter() - t < 10
    assert not any(tmp_path.iterdir())  # no partial file left behind


def test_damaged_weight_file_is_a_clear_error(tmp_path):
    bad = tmp_path / fid.FID_WEIGHTS_FILE
    bad.write_bytes(b"not a state dict")
    with pytest.raises(MetricError, match="not a readable weight file"):
        fid.build_inception(bad)


def test_reference_statistics_are_cached_and_invalidated_by_new_weights(tmp_path):
    """Weights loaded from a file (as the real ones are); the cache is keyed by the file's sha256."""
    w0, w1 = tmp_path / "w0.pth", tmp_path / "w1.pth"
    torch.save(fid._random_fid_inception(0).state_dict(), w0)
    torch.save(fid._random_fid_inception(1).state_dict(), w1)
    data = _Split(_digits(6, seed=3))

    ex0 = fid.InceptionExtractor(w0, batch_size=6, dims=64)
    first, _, info1 = fid.reference_statistics(ex0, data, "test")
    assert info1["cached"] is False and os.path.isfile(info1["path"])

    def no_batches(images):  # a cache hit must not run the network
        raise AssertionError("the network ran although the statistics were cached")
        yield

    ex0.batches = no_batches
    again, _, info2 = fid.reference_statistics(ex0, data, "test")
    assert info2["cached"] is True and info2["path"] == info1["path"]
    np.testing.assert_array_equal(again.sigma, first.sigma)

    ex1 = fid.InceptionExtractor(w1, batch_size=6, dims=64)
    assert ex1.weights_sha256 != ex0.weights_sha256
    other, _, info3 = fid.reference_statistics(ex1, data, "test")
    assert info3["cached"] is False and info3["path"] != info1["path"]
    assert not np.allclose(other.mu, first.mu)
    # and other data (a different split's content) is another entry too
    _, _, info4 = fid.reference_statistics(ex1, _Split(_digits(6, seed=4)), "test")
    assert info4["cached"] is False and info4["path"] != info3["path"]
