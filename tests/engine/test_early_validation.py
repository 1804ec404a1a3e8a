"""The early estimate of the validation loss (``Trainer.early_validation``): after the first steps,
on a subset of the validation split; never an epoch's validation, and a resume neither redoes
nor loses it."""

import json
import math
import threading

import torch

from diffusion_studio.engine.storage.checkpoint import load_checkpoint
from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
from diffusion_studio.engine.diffusion.unet import UNetConfig
from diffusion_studio.engine.training.config import (
    EarlyValidationRecord,
    EpochRecord,
    StepRecord,
    TrainConfig,
)
from diffusion_studio.engine.training.plan import plan_new, plan_resume
from diffusion_studio.engine.training.trainer import Trainer

TINY_NET = UNetConfig(base_channels=4, time_embed_dim=16)  # the plain U-Net: BatchNorm
TINY_SCHED = ScheduleConfig(timesteps=10)


def early_trainer(data, run_dir=None, steps=3, images=10, **train):
    cfg = dict(epochs=2, batch_size=16, precision="fp32", channels_last=False)  # 100 images: 7 steps an epoch
    cfg.update(train)
    return Trainer(plan_new(TINY_NET, TINY_SCHED, TrainConfig(**cfg)), data, device="cpu", run_dir=run_dir,
                   early_validation_steps=steps, early_validation_images=images)


def test_the_early_estimate_comes_once_after_its_steps_before_the_first_epoch(tiny_data, tmp_path):
    trainer = early_trainer(tiny_data, tmp_path / "run", epochs=1, ema_decay=0.9)  # BatchNorm recalibrated
    records = list(trainer.run())
    early = [r for r in records if isinstance(r, EarlyValidationRecord)]
    assert len(early) == 1
    i = records.index(early[0])
    assert isinstance(records[i - 1], StepRecord) and records[i - 1].global_step == 3
    assert i < next(j for j, r in enumerate(records) if isinstance(r, EpochRecord))
    rec = early[0]
    assert math.isfinite(rec.val_loss) and rec.val_loss > 0
    assert (rec.epoch, rec.step, rec.images, rec.val_images) == (1, 3, 10, 20)
    assert rec.position == 3 / trainer.steps_per_epoch
    assert "after 3 steps (0.43 epoch)" in rec.describe() and "first 10 of 20 validation digits" in rec.describe()
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1]  # not an epoch, not even a partial one
    assert history["early_validation"]["val_loss"] == rec.val_loss
    assert history["early_validation"]["global_step"] == 3


def test_the_early_estimate_is_the_epoch_validations_loss_on_fewer_digits(tiny_data):
    """Its digits keep their fixed (t, eps): on the whole split it is the epoch's validation loss."""
    trainer = early_trainer(tiny_data, images=20, bn_recalibration=0)
    assert trainer.early_validation(1).val_loss == trainer.validation_loss()
    trainer.early_validation_images = 10
    ten = trainer.early_validation(1).val_loss
    trainer.early_validation_images = 20
    assert ten != trainer.early_validation(1).val_loss  # fewer digits, another (noisier) estimate


def test_best_weights_early_stopping_and_the_budget_ignore_the_early_estimate(tiny_data, tmp_path, monkeypatch):
    """An early estimate lower than any epoch's loss neither becomes the best (best.pt) nor keeps an
    epoch from improving, nor stands in for the duration of an epoch's validation."""
    trainer = early_trainer(tiny_data, tmp_path / "run", epochs=5, patience=1)
    scripted = iter([0.5, 0.6, 0.7])
    monkeypatch.setattr(trainer, "validation_loss", lambda: next(scripted))
    real_pass = trainer._validation_pass
    monkeypatch.setattr(trainer, "_validation_pass",
                        lambda n, batch_size=1000: (1e-4, []) if n == 10 else real_pass(n, batch_size))
    seen = []
    for r in trainer.run():
        if isinstance(r, EarlyValidationRecord):
            seen.append((r.val_loss, trainer.state.best_val_loss, trainer._last_validation_seconds))
        last = r
    assert seen == [(1e-4, math.inf, None)]
    assert [e["improved"] for e in trainer.history["epochs"]] == [True, False]  # epoch 1 beat nothing but infinity
    assert last.reason == "early_stopped" and last.epoch == 2 and last.best_epoch == 1
    assert last.best_val_loss == 0.5
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["best"] == {"epoch": 1, "val_loss": 0.5}


def test_a_resume_neither_redoes_nor_loses_the_early_estimate(tiny_data, tmp_path):
    """Stopped after the estimate: the resumed run has it in its history and does not compute it
    again; stopped before it: the resumed run computes it once, at its step. Either way the weights
    and the estimate are the uninterrupted run's."""
    kw = dict(epochs=1, ema_decay=0.9)  # the EMA weights' BatchNorm is recalibrated for the estimate
    whole = early_trainer(tiny_data, tmp_path / "whole", **kw)
    list(whole.run())
    reference = load_checkpoint(tmp_path / "whole" / "last.pt")
    for stop_at in (2, 4):  # steps: before the estimate (after step 3), after it
        folder = tmp_path / f"stopped-{stop_at}"
        part = early_trainer(tiny_data, folder, **kw)
        part.stop_event = stop = threading.Event()
        before = []
        for r in part.run():
            before.append(r)
            if isinstance(r, StepRecord) and r.global_step == stop_at:
                stop.set()
        resumed = Trainer(plan_resume(folder), tiny_data, device="cpu", run_dir=folder, early_validation_steps=3,
                          early_validation_images=10)
        assert resumed.started().history["early_validation"] == part.history.get("early_validation")
        after = list(resumed.run())
        early = [r for r in before + after if isinstance(r, EarlyValidationRecord)]
        assert len(early) == 1 and early[0].global_step == 3
        assert (early[0] in after) == (stop_at < 3)
        final = load_checkpoint(folder / "last.pt")
        assert final["history"]["early_validation"]["val_loss"] == reference["history"]["early_validation"]["val_loss"]
        for key in ("weights", "ema_weights"):
            for name, tensor in reference[key].items():
                assert torch.equal(tensor, final[key][name]), (stop_at, key, name)


def test_no_early_estimate_where_the_first_epoch_is_no_longer_or_it_is_off(tiny_data):
    for steps, epochs in ((0, 1), (7, 1), (10, 2)):  # off; at the epoch's own validation; in the second epoch
        records = list(early_trainer(tiny_data, steps=steps, epochs=epochs, bn_recalibration=0).run())
        assert not [r for r in records if isinstance(r, EarlyValidationRecord)], steps


def test_the_time_budget_makes_room_for_the_early_estimate_unless_it_is_nearly_spent(tiny_data, monkeypatch):
    """The default recipe's case: a 15-minute budget, 10,000 validation digits, batch 32, 0.35 s a
    step, 60 s spent: the estimate runs (it and the epoch's validation take about 37 s each before
    any was measured); with 850 s spent, it would leave no time for the validation at the budget's end."""
    trainer = early_trainer(tiny_data, steps=2, batch_size=32, bn_recalibration=0)  # 4 steps an epoch
    trainer.val_x = trainer.val_x.repeat(500, 1, 1, 1)  # 10,000 digits, for the validation's estimate
    trainer.max_seconds = 900.0
    trainer.state.global_step = trainer.state.step_in_epoch = 2
    for spent, due in ((60.0, True), (850.0, False)):
        monkeypatch.setattr(trainer, "_budget_used", lambda spent=spent: spent)
        assert trainer._early_validation_due(0.35) == due, spent
