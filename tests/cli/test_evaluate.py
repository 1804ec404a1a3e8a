"""``diffusion-studio evaluate`` end to end in a subprocess, on a tiny checkpoint and tiny MNIST files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(args, env_extra, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(REPO), **env_extra}
    return subprocess.run([sys.executable, "-m", "diffusion_studio", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_data, tmp_path_factory):
    from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
    from diffusion_studio.engine.training.config import TrainConfig
    from diffusion_studio.engine.training.plan import plan_new
    from diffusion_studio.engine.training.trainer import Trainer
    from diffusion_studio.engine.diffusion.unet import UNetConfig

    folder = tmp_path_factory.mktemp("cli-run")
    trainer = Trainer(plan_new(UNetConfig(base_channels=4), ScheduleConfig(timesteps=10), TrainConfig(epochs=1, batch_size=50, precision="fp32")), tiny_data, device="cpu", run_dir=folder)
    for _ in trainer.run():
        pass
    return folder / "best.pt"


def test_evaluate_all_without_inception_weights_still_reports(tiny_checkpoint, tiny_mnist, tmp_path):
    out = tmp_path / "report"
    r = _run(["evaluate", "--checkpoint", str(tiny_checkpoint), "--n", "16", "--report", str(out), "--metric", "all",
              "--sampler", "ddim", "--steps", "3", "--seed", "1", "--data", str(tiny_mnist), "--device", "cpu"],
             {"TORCH_HOME": str(tmp_path / "torch")})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "FD (MNIST classifier features):" in r.stdout and "n = 16 generated" in r.stdout
    assert "note: FID (Inception, pytorch-fid) was not computed" in r.stderr
    assert "pt_inception-2015-12-05-6726825d.pth" in r.stderr and str(tmp_path / "torch") in r.stderr
    for name in ("report.json", "report.html", "samples.png"):
        assert (out / name).is_file()
    rep = json.loads((out / "report.json").read_text())
    assert {m["key"] for m in rep["metrics"]} >= {"fd_classifier", "kid_classifier", "confident_share"}
    assert rep["generation"]["sampler"] == "ddim" and rep["generation"]["sampler_steps"] == 3
    assert rep["errors"][0]["metric"] == "FID (Inception, pytorch-fid)"


def test_evaluate_inception_only_without_weights_fails_in_one_line(tiny_checkpoint, tiny_mnist, tmp_path):
    r = _run(["evaluate", "--checkpoint", str(tiny_checkpoint), "--n", "8", "--report", str(tmp_path / "r"),
              "--metric", "inception", "--data", str(tiny_mnist), "--inception-weights", str(tmp_path / "none.pth")],
             {"TORCH_HOME": str(tmp_path / "torch")}, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffusion-studio evaluate: error:")
    assert str(tmp_path / "none.pth") in lines[0] and "mseitzer/pytorch-fid" in lines[0]
    assert not (tmp_path / "r").exists()  # nothing sampled, nothing written


def test_evaluate_help_lists_the_options():
    from diffusion_studio.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = sub.choices["evaluate"].format_help()
    for opt in ("--checkpoint", "--n", "--report", "--metric", "--sampler", "--steps", "--seed", "--data",
                "--inception-weights", "--device", "--guidance", "exit status"):
        assert opt in text


def test_guidance_defaults_to_the_samplers_and_its_help_says_which():
    from diffusion_studio.cli import build_parser
    from diffusion_studio.engine.diffusion.scheduling import DEFAULT_GUIDANCE

    from diffusion_studio.commands._sampler_args import sampler_from_args

    args = build_parser().parse_args(["evaluate", "--checkpoint", "x.pt", "--guidance", "0.5"])
    assert sampler_from_args(args).guidance == 0.5
    assert sampler_from_args(build_parser().parse_args(["evaluate", "--checkpoint", "x.pt"])).guidance == DEFAULT_GUIDANCE
    text = build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help()
    assert f"default {DEFAULT_GUIDANCE:g}" in text


def test_the_autoguidance_interval_defaults_to_the_samplers_in_both_commands():
    from diffusion_studio.cli import build_parser
    from diffusion_studio.commands._sampler_args import sampler_from_args
    from diffusion_studio.engine.diffusion.scheduling import DEFAULT_AUTOGUIDANCE_MIN_T

    for command in ("evaluate", "sample"):
        base = [command, "--checkpoint", "x.pt"] + (["--out", "x.png"] if command == "sample" else [])
        assert sampler_from_args(build_parser().parse_args(base)).autoguidance_min_t == DEFAULT_AUTOGUIDANCE_MIN_T
        args = build_parser().parse_args(base + ["--autoguidance", "2", "--autoguidance-min-t", "40"])
        assert (sampler_from_args(args).autoguidance, sampler_from_args(args).autoguidance_min_t) == (2.0, 40)
        text = build_parser()._subparsers._group_actions[0].choices[command].format_help()
        assert f"default {DEFAULT_AUTOGUIDANCE_MIN_T}" in text


def test_bad_checkpoint_is_one_line(tmp_path, tiny_mnist):
    from diffusion_studio.cli import main

    bad = tmp_path / "x.pt"
    bad.write_bytes(b"nope")
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["evaluate", "--checkpoint", str(bad), "--n", "4", "--report", str(tmp_path / "r"),
                     "--data", str(tiny_mnist)])
    assert code == 2 and "not a readable Diffusion Studio checkpoint" in err.getvalue()


def test_report_goes_into_the_run_folder_and_the_runs_list_shows_it(tiny_checkpoint, tiny_mnist, tmp_path):
    from diffusion_studio.engine.runs import read_run

    r = _run(["evaluate", "--checkpoint", str(tiny_checkpoint), "--n", "12", "--metric", "mnist",
              "--sampler", "ddim", "--steps", "2", "--data", str(tiny_mnist), "--device", "cpu"], {})
    assert r.returncode == 0, r.stderr
    reports = list((tiny_checkpoint.parent / "reports").glob("*_mnist_n12/report.json"))
    assert len(reports) == 1
    info = read_run(tiny_checkpoint.parent)
    assert "FD (MNIST classifier features)" in info.metrics
    fd = next(m for m in json.loads(reports[0].read_text())["metrics"] if m["key"] == "fd_classifier")
    assert info.metrics["FD (MNIST classifier features)"] == pytest.approx(fd["value"])
