"""What both front ends call before they work: open a model, plan a resume or a continuation, prepare a run folder."""

from __future__ import annotations

import pytest
import torch

from diffusion_studio.engine import runs as R
from diffusion_studio.engine.training import plan as P
from diffusion_studio.tasks import models as M
from diffusion_studio.tasks.train import prepare_run_dir
from diffusion_studio.engine.storage.checkpoint import CheckpointError
from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
from diffusion_studio.engine.training.config import TrainConfig
from diffusion_studio.engine.training.trainer import Trainer
from diffusion_studio.engine.diffusion.unet import UNetConfig


@pytest.fixture(scope="module")
def run_dir(tiny_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ops") / "run"
    plan = P.plan_new(UNetConfig(base_channels=4), ScheduleConfig(timesteps=10),
                      TrainConfig(epochs=2, batch_size=50, precision="fp32", lr=1e-3), preset="plain")
    trainer = Trainer(plan, tiny_data, device="cpu", run_dir=folder)
    for _ in trainer.run():
        pass
    return folder


def test_a_source_names_one_checkpoint(run_dir, tmp_path):
    assert M.checkpoint_of(run_dir) == run_dir / "best.pt"  # a run folder: its best
    assert M.checkpoint_of(run_dir / "last.pt") == run_dir / "last.pt"
    assert M.checkpoint_of("default").name == "default.pt"  # a bundled model by name
    (tmp_path / "fresh").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        M.checkpoint_of(tmp_path / "fresh")
    with pytest.raises(CheckpointError, match="does not exist"):
        M.checkpoint_of(tmp_path / "missing.pt")


def test_open_model_follows_one_device_policy(run_dir, monkeypatch):
    loaded = M.open_model(run_dir, "cpu")
    assert loaded.path == run_dir / "best.pt" and next(loaded.model.parameters()).device.type == "cpu"
    # a GPU asked for on a machine without one: the CPU, not an error
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert M.model_device("cuda") == torch.device("cpu") and M.model_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        M.model_device("tpu")


def test_plan_resume_keeps_the_runs_settings_and_refuses_what_it_would_ignore(run_dir, tmp_path):
    plan = P.plan_resume(run_dir)
    assert plan.source == run_dir / "last.pt" and plan.train.lr == 1e-3 and plan.preset == "plain"
    assert plan.mode == "resume" and plan.run_dir == run_dir and plan.payload["epoch"] == 2  # read once, kept
    assert P.plan_resume(run_dir, {("train", "lr"): 1e-3, ("train", "epochs"): 9}).train.epochs == 9
    with pytest.raises(P.ResumeConflict, match=r"would ignore: lr 0.0001 \(the run uses 0.001\)"):
        P.plan_resume(run_dir, {("train", "lr"): 1e-4})
    (tmp_path / "empty").mkdir()
    with pytest.raises(R.RunError, match="holds no run to resume"):
        P.plan_resume(tmp_path / "empty")


def test_prepare_run_dir_never_trains_over_a_run(run_dir, tmp_path):
    with pytest.raises(R.RunError, match="already holds a run"):
        prepare_run_dir(run_dir, "x")
    mine = prepare_run_dir(tmp_path / "mine", "lr5e-4")
    assert (mine / R.RUN_FILE).is_file()
    new = prepare_run_dir(None, "lr5e-4", runs_dir=tmp_path / "runs")
    assert new.parent == tmp_path / "runs" and "lr5e-4" in new.name


def test_plan_continue_names_the_checkpoint_it_continues_and_refuses_what_it_would_ignore(run_dir, tmp_path):
    plan = P.plan_continue(run_dir)
    assert plan.source == run_dir / "last.pt"  # a run folder: its last.pt, with the Adam state
    assert plan.source_name == run_dir.name and plan.source_epochs == 2 and plan.preset == "plain" and plan.train.batch_size == 50
    assert P.plan_continue(run_dir / "best.pt", {("train", "epochs"): 9}).source == run_dir / "best.pt"

    bundled = P.plan_continue("default")  # the bundled unconditional model, an export
    assert bundled.source_name == "default" and bundled.source.name == "default.pt" and bundled.source_epochs > 60
    assert bundled.meta["continued_from"]["source"] == "default"
    assert bundled.payload.get("optimizer") is None and bundled.payload["guide"] is not None

    with pytest.raises(P.ResumeConflict, match=r"^continuing last.pt keeps its own settings.*batch_size 64"):
        P.plan_continue(run_dir, {("train", "batch_size"): 64, ("train", "lr"): 0.1})
    # its Adam starts afresh: the rate, its schedule and the EMA are the new run's to change
    tuned = P.plan_continue(run_dir, {("train", "lr"): 2e-4, ("train", "ema_decay"): 0.9998,
                                        ("train", "batch_size"): 50, ("train", "warmup_steps"): None})
    assert tuned.changes == {"lr": 2e-4, "ema_decay": 0.9998}  # the file's batch size is no change
    assert (tuned.train.lr, tuned.train.ema_decay, tuned.train.batch_size) == (2e-4, 0.9998, 50)
    assert P.plan_continue(run_dir, {("train", "lr"): plan.train.lr}).changes == {}
    with pytest.raises(CheckpointError, match="does not exist"):
        P.plan_continue(tmp_path / "missing.pt")
    torch.save({"format": "diffusion-studio-checkpoint", "version": 1, "weights": {}}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError):
        P.plan_continue(tmp_path / "bare.pt")
