"""The run operations both front ends call: open a model, prepare a run folder, plan a resume."""

from __future__ import annotations

import pytest
import torch

from diffusion_studio.engine import operations as ops
from diffusion_studio.engine import runs as R
from diffusion_studio.engine.storage.checkpoint import CheckpointError
from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
from diffusion_studio.engine.training.config import TrainConfig
from diffusion_studio.engine.training.trainer import Trainer
from diffusion_studio.engine.diffusion.unet import UNetConfig


@pytest.fixture(scope="module")
def run_dir(tiny_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ops") / "run"
    trainer = Trainer(tiny_data, model_config=UNetConfig(base_channels=4), schedule_config=ScheduleConfig(timesteps=10),
                      train_config=TrainConfig(epochs=2, batch_size=50, precision="fp32", lr=1e-3),
                      device="cpu", run_dir=folder, extra_meta={"preset": "plain"})
    for _ in trainer.run():
        pass
    return folder


def test_a_source_names_one_checkpoint(run_dir, tmp_path):
    assert ops.checkpoint_of(run_dir) == run_dir / "best.pt"  # a run folder: its best
    assert ops.checkpoint_of(run_dir / "last.pt") == run_dir / "last.pt"
    assert ops.checkpoint_of("default").name == "default.pt"  # a bundled model by name
    (tmp_path / "fresh").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        ops.checkpoint_of(tmp_path / "fresh")
    with pytest.raises(CheckpointError, match="does not exist"):
        ops.checkpoint_of(tmp_path / "missing.pt")


def test_open_model_follows_one_device_policy(run_dir, monkeypatch):
    loaded = ops.open_model(run_dir, "cpu")
    assert loaded.path == run_dir / "best.pt" and next(loaded.model.parameters()).device.type == "cpu"
    # a GPU asked for on a machine without one: the CPU, not an error
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ops.model_device("cuda") == torch.device("cpu") and ops.model_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        ops.model_device("tpu")


def test_plan_resume_keeps_the_runs_settings_and_refuses_what_it_would_ignore(run_dir, tmp_path):
    plan = ops.plan_resume(run_dir)
    assert plan.last == run_dir / "last.pt" and plan.train.lr == 1e-3 and plan.preset == "plain"
    assert ops.plan_resume(run_dir, {("train", "lr"): 1e-3, ("train", "epochs"): 9}).last == plan.last
    with pytest.raises(ops.ResumeConflict, match=r"would ignore: lr 0.0001 \(the run uses 0.001\)"):
        ops.plan_resume(run_dir, {("train", "lr"): 1e-4})
    (tmp_path / "empty").mkdir()
    with pytest.raises(R.RunError, match="no last.pt"):
        ops.plan_resume(tmp_path / "empty")


def test_prepare_run_dir_never_trains_over_a_run(run_dir, tmp_path):
    with pytest.raises(R.RunError, match="already holds a run"):
        ops.prepare_run_dir(run_dir, "x")
    mine = ops.prepare_run_dir(tmp_path / "mine", "lr5e-4")
    assert (mine / R.RUN_FILE).is_file()
    new = ops.prepare_run_dir(None, "lr5e-4", runs_dir=tmp_path / "runs")
    assert new.parent == tmp_path / "runs" and "lr5e-4" in new.name


def test_plan_continue_names_the_checkpoint_it_continues_and_refuses_what_it_would_ignore(run_dir, tmp_path):
    plan = ops.plan_continue(run_dir)
    assert plan.checkpoint == run_dir / "last.pt"  # a run folder: its last.pt, with the Adam state
    assert plan.name == run_dir.name and plan.epochs == 2 and plan.preset == "plain" and plan.train.batch_size == 50
    assert ops.plan_continue(run_dir / "best.pt", {("train", "epochs"): 9}).checkpoint == run_dir / "best.pt"

    bundled = ops.plan_continue("default")  # the bundled unconditional model, an export
    assert bundled.name == "default" and bundled.checkpoint.name == "default.pt" and bundled.epochs > 60
    assert bundled.payload.get("optimizer") is None and bundled.payload["guide"] is not None

    with pytest.raises(ops.ResumeConflict, match=r"^continuing last.pt keeps its own settings.*batch_size 64"):
        ops.plan_continue(run_dir, {("train", "batch_size"): 64, ("train", "lr"): 0.1})
    # its Adam starts afresh: the rate, its schedule and the EMA are the new run's to change
    tuned = ops.plan_continue(run_dir, {("train", "lr"): 2e-4, ("train", "ema_decay"): 0.9998,
                                        ("train", "batch_size"): 50, ("train", "warmup_steps"): None})
    assert tuned.changes == {"lr": 2e-4, "ema_decay": 0.9998}  # the file's batch size is no change
    assert (tuned.train.lr, tuned.train.ema_decay, tuned.train.batch_size) == (2e-4, 0.9998, 50)
    assert ops.plan_continue(run_dir, {("train", "lr"): plan.train.lr}).changes == {}
    with pytest.raises(CheckpointError, match="does not exist"):
        ops.plan_continue(tmp_path / "missing.pt")
    torch.save({"format": "diffusion-studio-checkpoint", "version": 1, "weights": {}}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError):
        ops.plan_continue(tmp_path / "bare.pt")
