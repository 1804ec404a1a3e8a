"""Bad sizes, numbers and outputs end in one line and exit status 2, before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

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


def test_ctrl_c_stops_keeps_last_and_exits_130(tiny_mnist, tmp_path):
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
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "wrote" in err and "last.pt" in err
    assert (out / "last.pt").is_file()


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


def test_help_lists_the_apps_own_options():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "the app (no COMMAND)" in r.stdout and "--data DIR" in r.stdout and "--checkpoint FILE" in r.stdout
