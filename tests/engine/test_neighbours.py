"""Nearest training neighbours: exact, and a copied digit is found at distance 0."""

import numpy as np
import torch

from diffusion_studio.engine.evaluation.neighbours import memorisation_check, nearest, pixel_vectors


def test_nearest_is_exact_against_brute_force():
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(7, 5)), rng.normal(size=(50, 5))
    got = nearest(q, r, chunk=8)
    d = np.linalg.norm(q[:, None, :] - r[None, :, :], axis=2)
    assert (got.index == d.argmin(1)).all()
    np.testing.assert_allclose(got.distance, d.min(1), rtol=1e-9, atol=1e-9)


def test_a_copied_training_digit_is_found_at_distance_zero(tiny_data):
    train = tiny_data.train_images.numpy()
    generated = np.stack([train[5], 255 - train[9]]).astype(np.uint8)  # one copy, one not
    check = memorisation_check(generated, tiny_data)
    assert check.generated_pixel.index[0] == 5 and check.generated_pixel.distance[0] == 0.0
    assert check.generated_pixel.distance[1] > 1.0
    summary = check.summary()["pixel"]
    assert 0 < summary["generated_share_below_test_1st_percentile"] <= 0.5
    assert pixel_vectors(generated).max() <= 1.0


def test_feature_space_uses_the_classifier(tiny_data):
    class FakeClassifier:  # features = mean brightness per image row (28 numbers)
        def predict(self, images, should_stop=None):
            x = torch.as_tensor(np.asarray(images, dtype=np.float32))
            return x.mean(dim=2).numpy(), None

    train = tiny_data.train_images.numpy()
    check = memorisation_check(train[:3], tiny_data, classifier=FakeClassifier())
    assert (check.generated_feature.index == [0, 1, 2]).all() or (check.generated_feature.distance == 0).all()
    assert "feature" in check.summary()
