"""``diffusion-studio explore``: the panels' explorations from the command line, through the same tasks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from test_cli import TINY, run_cli


@pytest.fixture(scope="module")
def conditional_run(tiny_mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("explore") / "run"
    r = run_cli("train", "--data", tiny_mnist, "--out", out, "--epochs", "1", "--batch-size", "16",
                "--precision", "fp32", "--device", "cpu", *TINY)
    assert r.returncode == 0, r.stderr
    return out


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_interpolate_and_sweep_write_strips_and_say_what_they_show(conditional_run, tmp_path):
    r = run_cli("explore", "interpolate", "--checkpoint", conditional_run, "--seed", "3", "--to-seed", "4",
                "--digit", "2", "--ddim-steps", "3", "--out", tmp_path / "i.png")
    assert r.returncode == 0, r.stderr
    assert "seed 3 → seed 4: 9 points on the great circle" in r.stdout and "digit 2" in r.stdout
    assert _png(tmp_path / "i.png").shape == (32, 2 + 9 * 30)  # 9 digits of 28 px, 2 px apart
    r = run_cli("explore", "sweep", "--checkpoint", conditional_run, "--ddim-steps", "3", "--out", tmp_path / "s.png")
    assert r.returncode == 0, r.stderr
    # a class-conditional model's sweep is the panel's grid: digits 0-9 in rows, the weights in labelled columns
    assert "digits 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 (rows), seed 0: classifier-free guidance w = 0, 0.5, 1, 2, 4" in r.stdout
    height, width = _png(tmp_path / "s.png").shape[:2]
    assert height > 10 * 28 and width > 5 * 28 and height > width


def test_denoise_identity_and_neighbours_use_the_real_digits_and_the_metric_classifier(conditional_run, tiny_mnist,
                                                                                      tmp_path):
    r = run_cli("explore", "denoise", "--checkpoint", conditional_run, "--data", tiny_mnist, "--t", "5", "--n", "4",
                "--out", tmp_path / "d.png", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "From t = 5" in r.stdout and "still the same digit:" in r.stdout
    assert _png(tmp_path / "d.png").shape == (2 + 3 * 30, 2 + 4 * 30)  # originals, x_t, results
    r = run_cli("explore", "identity", "--checkpoint", conditional_run, "--data", tiny_mnist, "--t", "2,8",
                "--n", "4", "--out", tmp_path / "c.svg")
    assert r.returncode == 0, r.stderr
    assert "after denoising from t: t=2: " in r.stdout and ", t=8: " in r.stdout
    assert (tmp_path / "c.svg").read_text().startswith("<svg")
    r = run_cli("explore", "neighbours", "--checkpoint", conditional_run, "--data", tiny_mnist, "--n", "3",
                "--sampler", "ddim", "--steps", "2", "--out", tmp_path / "n.png")
    assert r.returncode == 0, r.stderr
    assert "Rows: the 3 samples; their nearest training digits" in r.stdout
    assert _png(tmp_path / "n.png").shape == (2 + 3 * 30, 2 + 3 * 30)


def test_explore_refuses_a_wrong_output_before_reading_the_model(tmp_path):
    r = run_cli("explore", "identity", "--checkpoint", "default", "--out", tmp_path / "c.png")
    assert r.returncode == 2 and "--out must end in .svg" in r.stderr
