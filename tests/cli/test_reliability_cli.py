"""Bad sizes, numbers and outputs end in one line and exit status 2, before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from diffusion_studio.engine.storage.checkpoint import load_checkpoint
from test_cli import ROOT, TINY, run_cli


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "--checkpoint", "default", "--n", "2", "--batch-size", "0", "--out", "x.png"],
         "--batch-size must be at least 1"),
        (["sample", "--checkpoint", "default", "--n", "2", "--batch-size", "-1", "--out", "x.png"],
         "--batch-size must be at least 1"),
        (["sample", "--checkpoint", "default", "--n", "2", "--guidance", "nan", "--out", "x.png"],
         "guidance must be a number"),
        (["sample", "--checkpoint", "default", "--n", "2", "--out", "blocker/x.png"],
         "choose another output location"),
        (["evaluate", "--checkpoint", "default", "--n", "10", "--report", "blocker/rep"],
         "choose another output location"),
        (["train", "--data", "nowhere", "--out", "r", "--timesteps", "100000000"], "at most 10000"),
        (["train", "--data", "nowhere", "--out", "r", "--width", "100000"], "1..1024"),
        (["train", "--data", "nowhere", "--out", "r", "--batch-size", "100000000"], "at most 8192"),
        (["train", "--data", "nowhere", "--out", "r", "--max-minutes", "0"], "positive number of minutes"),
        (["train", "--data", "nowhere", "--out", "r", "--max-minutes", "nan"], "positive number of minutes"),
        # issue 31, items 12 and 13: numbers that overflowed in a traceback, settings silently ignored
        (["train", "--data", "nowhere", "--out", "r", "--lr", "1e308"], "learning rate must be a number in (0, 1]"),
        (["train", "--data", "nowhere", "--out", "r", "--min-snr", "1e308"], "min_snr_gamma must be a number in"),
        (["train", "--data", "nowhere", "--out", "r", "--seed", "99999999999999999999"], "seed must be a whole number"),
        (["train", "--data", "nowhere", "--out", "r", "--warmup-steps", "100000000000000000000"],
         "warmup_steps must be at most 1,000,000"),
        (["sample", "--checkpoint", "default", "--n", "99999999999999999999", "--out", "x.png"],
         "the number of images must lie in 1..1,000,000"),
        (["sample", "--checkpoint", "default", "--n", "2", "--seed", "99999999999999999999", "--out", "x.png"],
         "the seed must be a whole number"),
        (["sample", "--checkpoint", "default", "--n", "2", "--sampler", "ddim", "--steps", "2",
          "--autoguidance-min-t", "400", "--out", "x.png"], "guides no step of a T = 300 model"),
    ],
)
def test_refused_before_any_work(tmp_path, args, message):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len([line for line in r.stderr.splitlines() if "error" in line]) == 1


def test_train_with_a_time_budget_keeps_a_loadable_best_and_records_why(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", "--data", tiny_mnist, "--out", out, "--epochs", "100000", "--batch-size", "16",
                "--precision", "fp32", "--device", "cpu", "--max-minutes", "0.1", *TINY)
    assert r.returncode == 0, r.stderr
    assert "time budget 0.1 min" in r.stdout and "the time budget of 0.1 min ended training" in r.stdout
    history = json.loads((out / "history.json").read_text())
    assert history["finished_reason"] == "budget"
    r = run_cli("sample", "--checkpoint", out / "best.pt", "--n", "2", "--sampler", "ddim", "--steps", "2",
                "--out", tmp_path / "s.npz")
    assert r.returncode == 0, r.stderr
    r = run_cli("runs", "list", "--runs-dir", tmp_path)
    assert "time budget" in r.stdout


@pytest.mark.parametrize("stop_signal", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_ctrl_c_or_a_logout_or_a_kill_stops_keeps_last_and_exits_128_plus_the_signal(tiny_mnist, tmp_path,
                                                                                      stop_signal):
    """Issue 31, item 5: SIGTERM (a process manager's kill) and SIGHUP (a logout) stop a training
    the way Ctrl-C does: after the current batch, with last.pt for an exact resume."""
    sig = getattr(signal, stop_signal)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = tmp_path / "run"
    p = subprocess.Popen(
        [sys.executable, "-m", "diffusion_studio", "train", "--data", str(tiny_mnist), "--out", str(out),
         "--epochs", "100000", "--batch-size", "16", "--precision", "fp32", "--device", "cpu", *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err
    assert "wrote" in err and "last.pt" in err
    assert load_checkpoint(out / "last.pt")["meta"]["finished_reason"] == "stopped"


def test_resume_refuses_settings_it_would_ignore(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "--data", tiny_mnist, "--out", out, "--epochs", "1", "--batch-size", "16",
                   "--precision", "fp32", "--device", "cpu", *TINY).returncode == 0
    r = run_cli("train", "--data", tiny_mnist, "--out", out, "--resume", "--lr", "1e-4", "--timesteps", "100")
    assert r.returncode == 2
    assert "would ignore: lr 0.0001 (the run uses" in r.stderr and "timesteps 100 (the run uses 10)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # the run's own values, more epochs and another patience are fine
    r = run_cli("train", "--data", tiny_mnist, "--out", out, "--resume", "--timesteps", "10", "--epochs", "2",
                "--patience", "7", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "patience 7" in r.stdout and "resuming at epoch 2" in r.stdout
    # issue 31, item 13: fewer epochs than the run has is refused, not silently trained past
    r = run_cli("train", "--data", tiny_mnist, "--out", out, "--resume", "--epochs", "1")
    assert r.returncode == 2 and "epochs 1 (the run uses 2; a resume may only raise it)" in r.stderr, r.stderr


def test_help_lists_the_apps_own_options():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "the app (no COMMAND)" in r.stdout and "--data DIR" in r.stdout and "--checkpoint MODEL" in r.stdout


# ------------------------- issue 31: wrong checkpoints and data, refused in one line
def _tiny_payload():
    from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
    from diffusion_studio.engine.diffusion.unet import UNet, UNetConfig

    net = UNet(UNetConfig(base_channels=4, time_embed_dim=16))
    return {"model": net.config.to_dict(), "schedule": ScheduleConfig(timesteps=10).to_dict(), "train": {},
            "weights": net.state_dict(), "ema_weights": None, "history": {"epochs": [{"epoch": 1, "val_loss": 0.5}]}}


def _nan_weights(path):
    from diffusion_studio.engine.storage.checkpoint import save_checkpoint

    p = _tiny_payload()
    p["weights"] = {k: v.clone().fill_(float("nan")) if v.is_floating_point() else v for k, v in p["weights"].items()}
    save_checkpoint(path, p)


def _flipped_bytes(path):
    from diffusion_studio.engine.storage.checkpoint import save_checkpoint

    p = _tiny_payload()
    save_checkpoint(path, p)
    big = max(p["weights"].values(), key=lambda t: t.numel())
    data = bytearray(path.read_bytes())
    at = data.find(big.numpy().tobytes())
    for i in range(1, 5):
        data[at + 4 * i] ^= 0x01
    path.write_bytes(bytes(data))


def _weights_as_a_list(path):
    import torch

    from diffusion_studio.engine.storage import checkpoint as ck

    torch.save({"format": ck.FORMAT, "version": 1, "kind": ck.KIND, **_tiny_payload(), "weights": [1, 2]}, path)


@pytest.mark.parametrize("make, words", [
    (_nan_weights, "NaN or infinite values"),
    (_flipped_bytes, "is corrupted"),
    (_weights_as_a_list, "'weights' is a list"),
])
def test_sample_and_evaluate_refuse_a_wrong_checkpoint_before_any_work(tmp_path, tiny_mnist, make, words):
    """Items 7-9: such files gave tracebacks, or all-black digits (and a report of them) with rc 0."""
    bad = tmp_path / "bad.pt"
    make(bad)
    r = run_cli("sample", "--checkpoint", bad, "--n", "2", "--sampler", "ddim", "--steps", "2", "--out",
                tmp_path / "s.png")
    assert r.returncode == 2 and words in r.stderr and str(bad) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "s.png").exists()
    if make is _nan_weights:
        r = run_cli("evaluate", "--checkpoint", bad, "--n", "4", "--report", tmp_path / "report", "--data", tiny_mnist)
        assert r.returncode == 2 and words in r.stderr
        assert not (tmp_path / "report").exists()


def test_training_on_one_digit_is_refused_in_one_line(tmp_path):
    """Item 11: one training image trained, with "1 train / 0 val digits" and a best loss of 0.00000."""
    from conftest import write_mnist_folder

    folder = write_mnist_folder(tmp_path / "one", n_train=1, n_test=1)
    r = run_cli("train", "--data", folder, "--out", tmp_path / "run", "--epochs", "1", "--device", "cpu", *TINY)
    assert r.returncode == 2, r.stdout
    assert "hold 1 digit: 1 to train and 0 to validate" in r.stderr and "needs at least 4" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "best.pt").exists()
