"""The offline MNIST-classifier metrics on tiny synthetic digits (a classifier trained for seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_digits

from diffusion_studio.engine.evaluation import classifier as C
from diffusion_studio.engine.evaluation.metrics import EvaluationStopped, MetricError

TINY = C.ClassifierConfig(epochs=8, batch_size=25, shift=1, lr=3e-3)


@pytest.fixture(scope="module")
def clf(tiny_data):
    return C.ensure_classifier(tiny_data, config=TINY)


def _metrics(clf, data, images, labels=None):
    entries, warnings = C.offline_metrics(images, clf, data, labels=labels, kid_subsets=20)
    return {e["key"]: e for e in entries}, warnings


def test_classifier_learns_the_tiny_digits_and_records_its_accuracy(clf):
    assert clf.test_accuracy >= 0.9
    assert len(clf.per_class_accuracy) == 10
    assert clf.meta["train_seconds"] > 0 and clf.meta["config"]["epochs"] == TINY.epochs
    assert clf.path is not None and clf.path.is_file() and clf.path.with_suffix(".json").is_file()
    feats, probs = clf.predict(make_digits(5, seed=9)[0])
    assert feats.shape == (5, C.FEATURE_DIMS) and probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-9)


def test_classifier_is_cached_by_data_and_recipe(clf, tiny_data):
    again = C.ensure_classifier(tiny_data, config=TINY, train=False)
    assert again.cached and again.weights_sha256 == clf.weights_sha256
    assert again.test_accuracy == clf.test_accuracy
    with pytest.raises(MetricError, match="no MNIST classifier is cached"):
        C.ensure_classifier(tiny_data, config=C.ClassifierConfig(epochs=1, seed=5), train=False)


def test_a_classifier_shipped_with_the_app_is_used_before_any_training(clf, tiny_data, tmp_path, monkeypatch):
    """The app ships the classifier for the official MNIST (issue 32: a first "denoise from here"
    waited silently while it trained): a file under its cache name in the package's folder is
    used as it is, and a user's own cache still comes first."""
    import shutil

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    name = C.classifier_path(tiny_data, TINY).name
    shutil.copyfile(clf.path, shipped / name)
    monkeypatch.setattr(C, "bundled_classifier_dir", lambda: shipped)
    monkeypatch.setattr(C, "classifier_dir", lambda: tmp_path / "empty-user-cache")
    found = C.ensure_classifier(tiny_data, config=TINY, train=False)
    assert found.path == shipped / name and found.cached and found.test_accuracy == clf.test_accuracy
    assert not (tmp_path / "empty-user-cache").exists()  # nothing trained, nothing copied


@pytest.mark.slow
def test_the_shipped_classifier_is_the_one_the_official_mnist_asks_for():
    """Its file name is the cache key of the official MNIST's bytes, the default recipe and the
    classifier version: a change to any of them needs scripts/bundle_classifier.py again."""
    from pathlib import Path

    from diffusion_studio.engine.storage.data import load_mnist

    official = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
    if not official.is_dir():
        pytest.skip("the official MNIST files are not beside the checkout (../shared/data/mnist)")
    name = C.classifier_path(load_mnist(official), C.ClassifierConfig()).name
    shipped = C.bundled_classifier_dir() / name
    assert shipped.is_file(), f"no shipped classifier {name}: run scripts/bundle_classifier.py"
    assert C.load_classifier(shipped).test_accuracy >= C.TARGET_ACCURACY


def test_metrics_separate_real_digits_from_noise_and_from_one_class(clf, tiny_data):
    real = make_digits(200, seed=11)[0]
    noise = torch.from_numpy((np.random.default_rng(0).random((200, 28, 28)) * 255).astype(np.uint8))
    x, y = make_digits(400, seed=12)
    one = x[y == 3]

    m_real, _ = _metrics(clf, tiny_data, real)
    m_noise, _ = _metrics(clf, tiny_data, noise)
    m_one, w_one = _metrics(clf, tiny_data, one)
    for m in (m_real, m_noise, m_one):  # names are never plain "FID"
        assert m["fd_classifier"]["name"] == "FD (MNIST classifier features)"
        assert all(e["name"] != "FID" for e in m.values())

    fd = {k: m["fd_classifier"]["value"] for k, m in (("real", m_real), ("noise", m_noise), ("one", m_one))}
    kid = {k: m["kid_classifier"]["value"] for k, m in (("real", m_real), ("noise", m_noise), ("one", m_one))}
    assert fd["noise"] > 5 * fd["real"] and fd["one"] > 5 * fd["real"]
    assert kid["noise"] > kid["real"] and kid["one"] > kid["real"]
    assert m_real["confident_share"]["value"] > 0.9
    assert m_real["confident_share"]["details"]["real_test_value"] > 0.9  # the reference digits, for scale
    assert m_noise["confident_share"]["value"] < m_real["confident_share"]["value"]

    # the collapse shows in the histogram
    h_real, h_one = m_real["label_histogram"]["details"], m_one["label_histogram"]["details"]
    assert h_real["classes_present"] == 10 and h_real["entropy_bits"] > 3.0
    assert h_one["largest_share"] > 0.9 and int(np.argmax(h_one["counts"])) == 3 and h_one["entropy_bits"] < 0.5
    assert sum(m_one["label_histogram"]["value"]) == len(one)


def test_protocol_and_small_n_warning(clf, tiny_data):
    m, warnings = _metrics(clf, tiny_data, make_digits(40, seed=13)[0])
    p = m["fd_classifier"]["protocol"]
    assert p["n_generated"] == 40 and p["n_real"] == len(tiny_data.test_labels) and p["reference_split"] == "test"
    assert p["weights_sha256"] == clf.weights_sha256 and "MNIST classifier" in p["feature_extractor"]
    assert any("n = 40 generated" in w for w in warnings)


def test_class_accuracy_for_conditional_models(clf, tiny_data):
    x, y = make_digits(60, seed=14)
    _, probs = clf.predict(x)
    acc = C.class_accuracy(probs, y.numpy())
    assert acc["overall"] > 0.9 and len(acc["per_class"]) == 10
    wrong = C.class_accuracy(probs, (y.numpy() + 1) % 10)  # labels the digits were *not* drawn with
    assert wrong["overall"] < 0.2
    m, _ = _metrics(clf, tiny_data, x, labels=y.numpy())
    assert m["class_accuracy"]["value"] == pytest.approx(acc["overall"])
    with pytest.raises(ValueError, match="labels for"):
        C.class_accuracy(probs, y.numpy()[:5])


def test_training_can_be_cancelled(tiny_data):
    calls = []
    with pytest.raises(EvaluationStopped):
        C.train_classifier(tiny_data, C.ClassifierConfig(epochs=5, batch_size=20),
                           should_stop=lambda: len(calls) > 2 or calls.append(1))
