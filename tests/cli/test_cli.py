"""The CLI end to end, in subprocesses, on tiny IDX files written by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--width", "4", "--timesteps", "10"]  # a tiny network and chain: seconds, not minutes


def run_cli(*args, cwd=None, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DISPLAY", None)
    return subprocess.run(
        [sys.executable, "-m", "diffusion_studio", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env,
    )


@pytest.fixture(scope="module")
def trained_run(tiny_mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    r = run_cli("train", "--data", tiny_mnist, "--out", out, "--epochs", "2", "--batch-size", "16",
                "--precision", "fp32", "--device", "cpu", *TINY)
    assert r.returncode == 0, r.stderr
    return out, r


def test_train_writes_best_last_and_history(trained_run):
    out, r = trained_run
    assert "epoch   1/2" in r.stdout and "epoch   2/2" in r.stdout
    assert "100 train / 20 val digits" in r.stdout
    import json

    from diffusion_studio.engine.storage.checkpoint import load_model

    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert all({"train_loss", "val_loss"} <= set(e) for e in history["epochs"])
    loaded = load_model(out / "best.pt")
    assert loaded.epoch >= 1 and (out / "last.pt").is_file()


def test_resume_and_refuse_to_overwrite(trained_run):
    out, _ = trained_run
    r = run_cli("train", "--data", out.parent.parent / "does-not-matter", "--out", out)
    assert r.returncode == 2 and "already holds a run" in r.stderr and "Traceback" not in r.stderr


def test_resume_continues_epochs(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "--data", tiny_mnist, "--out", out, "--epochs", "1", "--batch-size", "16",
                   "--precision", "fp32", "--device", "cpu", *TINY).returncode == 0
    r = run_cli("train", "--data", tiny_mnist, "--out", out, "--epochs", "2", "--resume", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "resuming at epoch 2" in r.stdout and "epoch   2/2" in r.stdout and "epoch   1/" not in r.stdout
    # the default preset's warm-up (100 steps) is 8 steps in, and the cosine half-way at epoch 1 of 2:
    # the restart's rate is 1e-3 x 8/100 x 1/2
    assert "resuming at epoch 2, lr 4e-05" in r.stdout


def test_continue_from_starts_a_new_run_from_a_checkpoint(trained_run, tiny_mnist, tmp_path):
    """--continue-from takes a run folder (its last.pt), a .pt file or a bundled model's name into a
    new run, with the checkpoint's settings; it refuses, in one line, settings it would ignore."""
    from diffusion_studio.engine.storage.checkpoint import load_checkpoint

    source, _ = trained_run
    out = tmp_path / "more"
    r = run_cli("train", "--data", tiny_mnist, "--out", out, "--continue-from", source, "--epochs", "3",
                "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert f"continuing {source.name} (2 epochs) at epoch 3" in r.stdout and "epoch   3/3" in r.stdout
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 3 and last["meta"]["continued_from"]["source"] == str(source / "last.pt")
    assert load_checkpoint(source / "last.pt")["epoch"] == 2  # the source is left as it was

    for args, message in [
        (["--batch-size", "7", "--lr", "0.5"], "continuing last.pt keeps its own settings, so it would ignore: "
                                                "batch_size 7"),
        (["--resume"], "choose one"),
        (["--patience", "1"], "patience 1 (the run uses 5; a resume may only raise it)"),
    ]:
        r = run_cli("train", "--data", tiny_mnist, "--out", tmp_path / "refused", "--continue-from", source, *args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "refused" / "last.pt").exists()
    r = run_cli("train", "--data", tiny_mnist, "--continue-from", tmp_path / "nothing.pt")
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr

    # a fresh Adam: its peak rate and the EMA may change, to fine-tune
    r = run_cli("train", "--data", tiny_mnist, "--out", tmp_path / "tuned", "--continue-from", source, "--epochs",
                "3", "--lr", "0.0002", "--ema", "0.9", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "lr 0.0002," in r.stdout and "EMA 0.9;" in r.stdout
    tuned = load_checkpoint(tmp_path / "tuned" / "last.pt")
    assert tuned["meta"]["continued_from"]["changed"] == {"lr": 2e-4, "ema_decay": 0.9}


def test_continuing_an_export_prints_the_loss_its_weights_bring_before_training(trained_run, tiny_mnist,
                                                                               tmp_path):
    """An export keeps no best weights: the run validates the ones it brings first and says so
    before its first epoch line."""
    from diffusion_studio.engine.storage.checkpoint import export_for_sampling

    source, _ = trained_run
    exported = export_for_sampling(source / "best.pt", tmp_path / "exported.pt")
    r = run_cli("train", "--data", tiny_mnist, "--out", tmp_path / "more", "--continue-from", exported,
                "--epochs", "3", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    baseline = next(i for i, line in enumerate(lines) if line.startswith("the weights it continues from: validation 0."))
    assert lines[baseline].endswith("the loss to beat")
    assert baseline < next(i for i, line in enumerate(lines) if line.startswith("epoch   3/3"))


def test_sample_png_and_npz(trained_run, tmp_path):
    out, _ = trained_run
    r = run_cli("sample", "--checkpoint", out / "best.pt", "--n", 6, "--out", tmp_path / "s.npz",
                "--sampler", "ddim", "--steps", 5, "--seed", 1)
    assert r.returncode == 0, r.stderr
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (6, 28, 28) and images.dtype == np.uint8
    r = run_cli("sample", "--checkpoint", out / "best.pt", "--n", 4, "--out", tmp_path / "s.png")
    assert r.returncode == 0, r.stderr
    grid = Image.open(tmp_path / "s.png")
    assert grid.size == (2 * 28 + 3 * 2, 2 * 28 + 3 * 2)  # make_grid: 2x2 with padding 2
    # the grid says what made it (issue 31, item 16), as the Sampler panel's exports do
    assert grid.text["model"] == f"{out.name}/best.pt" and grid.text["checkpoint"] == str(out / "best.pt")
    assert grid.text["sampler"].startswith("DDPM (Algorithm 2), all 10 steps")
    assert (grid.text["seed"], grid.text["n"]) == ("0", "4") and grid.text["app_version"]


def test_noise_strip(tiny_mnist, tmp_path):
    r = run_cli("noise", "--data", tiny_mnist, "--t", "20,50,100,300", "--out", tmp_path / "n.png", "--n", 3)
    assert r.returncode == 0, r.stderr
    assert "sqrt(alphabar_T) = 0.219" in r.stdout
    img = np.asarray(Image.open(tmp_path / "n.png"))
    assert img.shape[:2] == (3 * 30 + 2, 5 * 30 + 2)  # 3 rows; x_0 + 4 timesteps


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "--checkpoint", "missing.pt", "--n", "2", "--out", "x.png"], "does not exist"),
        (["sample", "--checkpoint", "junk.pt", "--n", "2", "--out", "x.png"], "not a readable Diffusion Studio checkpoint"),
        (["sample", "--checkpoint", "junk.pt", "--n", "2", "--out", "x.jpg"], "must end in .png or .npz"),
        (["sample", "--checkpoint", "junk.pt", "--n", "2", "--out", "x.png", "--autoguidance", "-1"],
         "autoguidance must be a number in 0..100"),
        (["sample", "--checkpoint", "junk.pt", "--n", "2", "--out", "x.png", "--autoguidance-min-t", "-5"],
         "autoguidance_min_t must be a whole timestep >= 0"),
        (["noise", "--data", "nowhere", "--out", "n.png"], "MNIST was not found"),
        (["noise", "--data", "nowhere", "--t", "5,x", "--out", "n.png"], "comma-separated integers"),
        (["train", "--data", "nowhere", "--out", "r"], "train-images-idx3-ubyte.gz"),
        (["train", "--data", "nowhere", "--out", "r", "--preset", "fast"], "default, plain, report"),
        (["train", "--data", "nowhere", "--out", "r", "--patience", "0"], "patience must be >= 1"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, args, message):
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_sample_from_the_bundled_default_model(tmp_path):
    r = run_cli("sample", "--checkpoint", "default", "--n", 2, "--sampler", "ddim", "--steps", 2,
                "--out", tmp_path / "d.npz")
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "d.npz")["images"].shape == (2, 28, 28)


def test_train_help_quotes_the_default_presets_own_settings():
    """The defaults --help names are the ones a run gets: the default preset's, not TrainConfig's
    (the report's batch 128, no EMA); and --preset lists the presets there are."""
    import re

    from diffusion_studio.cli import build_parser
    from diffusion_studio.engine import defaults
    from diffusion_studio.engine.training.presets import PRESETS, get_preset

    assert defaults.PRESET_NAMES == tuple(PRESETS)
    preset = get_preset("default")
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    train = sub.choices["train"]
    helps = {a.option_strings[0]: a.help or "" for a in train._actions if a.option_strings}
    quoted = {opt: m.group(1) for opt, h in helps.items() if (m := re.search(r"\(default ([^);:]+)", h))}
    assert quoted["--batch-size"] == str(preset.train.batch_size)
    assert float(quoted["--lr"]) == preset.train.lr
    assert float(quoted["--ema"]) == preset.train.ema_decay
    assert int(quoted["--epochs"]) == preset.train.epochs and int(quoted["--patience"]) == preset.train.patience
    assert int(quoted["--warmup-steps"]) == preset.train.warmup_steps
    assert quoted["--lr-schedule"].startswith(preset.train.lr_schedule)
    assert quoted["--schedule"] == preset.schedule.kind and int(quoted["--timesteps"]) == preset.schedule.timesteps
    assert "res or report" not in helps["--preset"] and "plain" in helps["--preset"]  # presets that exist


def test_train_prints_one_line_for_the_early_estimate(capsys):
    """In-process: the train command's printer gives the early estimate one line of stdout, also
    while an epoch's progress bar is open."""
    from diffusion_studio.commands.train import _Printer
    from diffusion_studio.engine.training.config import EarlyValidationRecord, StepRecord

    early = EarlyValidationRecord(epoch=1, step=200, global_step=200, position=200 / 1563, val_loss=0.0812,
                                  images=1000, val_images=10000, seconds=2.1)
    printer = _Printer()
    printer(StepRecord(1, 200, 1563, 200, 0.09, 90.0, 70.0))
    printer(early)
    printer.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["early estimate after 200 steps (0.13 epoch): validation loss 0.08120 on the first 1,000 of "
                     "10,000 validation digits, 2.1 s"]
    _Printer()(early)  # no bar open
    assert capsys.readouterr().out.splitlines() == lines
