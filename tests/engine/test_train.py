import math
import threading

import pytest
import torch

from diffusion_studio.engine.storage.checkpoint import load_checkpoint, load_model
from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
from diffusion_studio.engine.training.config import (
    BaselineRecord,
    EpochRecord,
    FinishedRecord,
    StepRecord,
    TrainConfig,
)
from diffusion_studio.engine.training.plan import plan_continue, plan_new, plan_resume
from diffusion_studio.engine.training.trainer import Trainer
from diffusion_studio.engine.diffusion.unet import UNetConfig

TINY_NET = UNetConfig(base_channels=4, time_embed_dim=16)
TINY_SCHED = ScheduleConfig(timesteps=10)


def tiny_trainer(data, run_dir=None, **train):
    cfg = dict(epochs=2, batch_size=16, precision="fp32", channels_last=False)
    cfg.update(train)
    return Trainer(plan_new(TINY_NET, TINY_SCHED, TrainConfig(**cfg)), data, device="cpu", run_dir=run_dir)


def test_records_and_a_finite_falling_loss(tiny_data, tmp_path):
    trainer = tiny_trainer(tiny_data, tmp_path / "run", epochs=6, lr=3e-3)
    records = list(trainer.run())
    steps = [r for r in records if isinstance(r, StepRecord)]
    epochs = [r for r in records if isinstance(r, EpochRecord)]
    assert isinstance(records[-1], FinishedRecord) and records[-1].reason == "completed"
    assert len(steps) == 6 * trainer.steps_per_epoch == 6 * 7  # 100 images, batch 16
    assert [e.epoch for e in epochs] == list(range(1, 7))
    losses = [e.train_loss for e in epochs]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.85 * losses[0]
    assert all(s.images_per_s > 0 for s in steps)
    for name in ("best.pt", "last.pt", "history.json"):
        assert (tmp_path / "run" / name).is_file()


def test_validation_loss_uses_fixed_t_and_noise(tiny_data):
    trainer = tiny_trainer(tiny_data)
    assert trainer.validation_loss() == trainer.validation_loss()


def test_early_stopping_on_a_flat_curve_restores_best(tiny_data, tmp_path, monkeypatch):
    trainer = tiny_trainer(tiny_data, tmp_path / "run", epochs=20, patience=3)
    scripted = iter([1.0, 0.5, 0.5, 0.6, 0.7, 0.9, 0.1])
    monkeypatch.setattr(trainer, "validation_loss", lambda: next(scripted))
    snapshot = {}
    records = []
    for r in trainer.run():
        records.append(r)
        if isinstance(r, EpochRecord) and r.epoch == 2:
            snapshot = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    final = records[-1]
    assert final.reason == "early_stopped" and final.epoch == 5 and final.best_epoch == 2
    assert "stopped early at epoch 5, best epoch 2 restored" in final.message
    epochs = [r for r in records if isinstance(r, EpochRecord)]
    assert [e.epochs_without_improvement for e in epochs] == [0, 0, 1, 2, 3]
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, snapshot[k]), k
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["best"]["epoch"] == 2
    assert torch.equal(best["weights"]["out.weight"], snapshot["out.weight"])


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast tier stays under 90 s
def test_a_resume_may_wait_longer_than_the_run_did(tiny_data, tmp_path, monkeypatch):
    """A run that stopped early continues when resumed with a larger patience (the one setting
    besides epochs a resume may raise: its warm restart can keep validation above the old best
    for a few epochs); with its own patience it says what to do instead, and a lower one is refused."""
    from diffusion_studio.engine.training.config import resume_conflicts

    trainer = tiny_trainer(tiny_data, tmp_path / "run", epochs=10, patience=2)
    scripted = iter([1.0, 0.5, 0.6, 0.7])
    monkeypatch.setattr(trainer, "validation_loss", lambda: next(scripted))
    final = list(trainer.run())[-1]
    assert final.reason == "early_stopped" and final.epoch == 4 and final.best_epoch == 2
    last = tmp_path / "run" / "last.pt"
    assert resume_conflicts(load_checkpoint(last), {("train", "patience"): 6, ("train", "epochs"): 12}) == []
    assert resume_conflicts(load_checkpoint(last), {("train", "lr"): 1.0}) == ["lr 1.0 (the run uses 0.001)"]
    assert resume_conflicts(load_checkpoint(last), {("train", "patience"): 1}) == [
        "patience 1 (the run uses 2; a resume may only raise it)"]

    same = Trainer(plan_resume(last.parent), tiny_data, device="cpu", run_dir=tmp_path / "run")
    again = list(same.run())
    assert len(again) == 1 and again[0].reason == "early_stopped"
    assert "resume it with a patience above 2 to continue" in again[0].message

    longer = Trainer(plan_resume(last.parent, {("train", "patience"): 4}), tiny_data, device="cpu",
                     run_dir=tmp_path / "run")
    assert longer.config.patience == 4 and longer.config.epochs == 10 and longer.config.lr == 1e-3
    scripted = iter([0.8, 0.4, 0.9, 0.9, 0.9, 0.9])
    monkeypatch.setattr(longer, "validation_loss", lambda: next(scripted))
    records = list(longer.run())
    epochs = [r.epoch for r in records if isinstance(r, EpochRecord)]
    assert epochs == [5, 6, 7, 8, 9, 10] and records[-1].best_epoch == 6  # 0.4 beat the old best, 0.5
    assert load_checkpoint(last)["train"]["patience"] == 4  # a later resume keeps waiting as long


def test_a_resume_restarts_the_decay_where_the_epoch_schedule_is(tiny_data, tmp_path):
    """The cosine's progress is the larger of the epochs' and the time budget's: a resumed run
    with a new budget begins at peak x (1 + cos(pi x epoch / epochs)) / 2, not at the peak."""
    run = tmp_path / "run"
    first = tiny_trainer(tiny_data, run, epochs=1, lr=2e-3, lr_schedule="cosine", warmup_steps=2)
    list(first.run())
    longer = TrainConfig(epochs=3, batch_size=16, precision="fp32", channels_last=False)
    resumed = Trainer(plan_resume(run, {("train", "epochs"): longer.epochs}), tiny_data, device="cpu", run_dir=run,
                      max_seconds=3600.0)
    assert resumed.config.epochs == 3 and resumed.global_step == 7  # one epoch of 7 steps done
    expected = 2e-3 * 0.5 * (1 + math.cos(math.pi / 3))  # 7 of 21 steps; the budget not started
    assert resumed.next_lr() == pytest.approx(expected)
    steps = [r for r in resumed.run() if isinstance(r, StepRecord)]
    assert steps[0].lr == pytest.approx(expected, rel=1e-3)  # the budget's share is still ~0
    assert steps[-1].lr < steps[0].lr


def test_stop_flag_ends_within_one_batch_and_keeps_best(tiny_data, tmp_path):
    stop = threading.Event()
    trainer = tiny_trainer(tiny_data, tmp_path / "run", epochs=5)
    trainer.stop_event = stop
    seen_after_stop = 0
    final = None
    for r in trainer.run():
        if isinstance(r, StepRecord):
            if stop.is_set():
                seen_after_stop += 1
            if r.epoch == 2 and r.step == 3:
                stop.set()
        final = r
    assert seen_after_stop == 0
    assert final.reason == "stopped" and final.best_epoch == 1
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["position"] == {"epoch": 1, "step": 3}
    assert load_checkpoint(tmp_path / "run" / "best.pt")["best"]["epoch"] == 1


def test_interrupted_then_resumed_equals_uninterrupted(tiny_data, tmp_path):
    full = tiny_trainer(tiny_data, tmp_path / "a", epochs=3, ema_decay=0.9)
    list(full.run())
    stop = threading.Event()
    part = tiny_trainer(tiny_data, tmp_path / "b", epochs=3, ema_decay=0.9)
    part.stop_event = stop
    for r in part.run():
        if isinstance(r, StepRecord) and r.epoch == 2 and r.step == 4:
            stop.set()
    resumed = Trainer(plan_resume(tmp_path / "b"), tiny_data, device="cpu", run_dir=tmp_path / "b")
    assert resumed.epoch == 1 and resumed.step_in_epoch == 4
    records = list(resumed.run())
    assert records[-1].reason == "completed"
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    for key in ("weights", "ema_weights"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    va = [e["val_loss"] for e in a["history"]["epochs"]]
    vb = [e["val_loss"] for e in b["history"]["epochs"]]
    ta = [e["train_loss"] for e in a["history"]["epochs"]]
    tb = [e["train_loss"] for e in b["history"]["epochs"]]
    assert va == vb and ta == pytest.approx(tb, rel=1e-12)
    assert a["history"]["steps"]["loss"] == b["history"]["steps"]["loss"]


def test_non_finite_loss_stops_and_keeps_best(tiny_data, tmp_path, monkeypatch):
    trainer = tiny_trainer(tiny_data, tmp_path / "run", epochs=4)
    real_step = trainer.train_step
    calls = {"n": 0}

    def poisoned(idx):
        calls["n"] += 1
        loss = real_step(idx)
        return loss * float("nan") if calls["n"] > 2 * trainer.steps_per_epoch + 2 else loss

    monkeypatch.setattr(trainer, "train_step", poisoned)
    final = list(trainer.run())[-1]
    assert final.reason == "diverged" and "nan" in final.message.lower()
    assert final.best_epoch >= 1 and f"best checkpoint (epoch {final.best_epoch})" in final.message
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert all(torch.isfinite(v).all() for v in best["weights"].values() if v.is_floating_point())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_ema_and_conditional_training_round_trip(tiny_data, tmp_path):
    plan = plan_new(UNetConfig(base_channels=4, time_embed_dim=16, num_classes=10), TINY_SCHED,
                    TrainConfig(epochs=1, batch_size=16, precision="fp32", ema_decay=0.5))
    trainer = Trainer(plan, tiny_data, device="cpu", run_dir=tmp_path / "run")
    list(trainer.run())
    loaded = load_model(tmp_path / "run" / "best.pt")
    assert loaded.uses_ema and loaded.model_config.num_classes == 10
    ema = trainer.ema.model.state_dict()
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, ema[k])


def test_train_config_validation():
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(patience=0)
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        TrainConfig(precision="fp16")
    c = TrainConfig(lr=5e-4, ema_decay=0.99)
    assert TrainConfig.from_dict(c.to_dict()) == c


def test_stop_during_validation_is_prompt_and_resumes_exactly(tiny_data, tmp_path):
    full = tiny_trainer(tiny_data, tmp_path / "a", epochs=2)
    list(full.run())
    part = tiny_trainer(tiny_data, tmp_path / "b", epochs=2)
    real_val = part.validation_loss
    calls = {"n": 0}

    def val_with_stop(batch_size=1000):
        calls["n"] += 1
        if calls["n"] == 2:  # a stop arrives while epoch 2 is being validated
            part.stop_event.set()
        return real_val(batch_size=batch_size)

    part.validation_loss = val_with_stop
    final = list(part.run())[-1]
    assert final.reason == "stopped" and "before its validation" in final.message
    assert load_checkpoint(tmp_path / "b" / "last.pt")["position"] == {"epoch": 1, "step": 7}
    list(Trainer(plan_resume(tmp_path / "b"), tiny_data, device="cpu", run_dir=tmp_path / "b").run())
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert [e["val_loss"] for e in a["history"]["epochs"]] == [e["val_loss"] for e in b["history"]["epochs"]]
    for name, tensor in a["weights"].items():
        assert torch.equal(tensor, b["weights"][name])


def test_ema_warms_up_instead_of_averaging_in_the_initial_weights():
    from diffusion_studio.engine.training.algorithm import EMA

    live = torch.nn.Linear(2, 2)
    ema = EMA(live, decay=0.999)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(390) == pytest.approx(391 / 400)
    assert ema.decay_at(100_000) == 0.999
    w0 = ema.model.weight.clone()
    with torch.no_grad():
        live.weight.fill_(1.0)
    ema.update(live, 0)  # the first update takes 90% of the live weights
    assert torch.allclose(ema.model.weight, 0.1 * w0 + 0.9)
    before = ema.model.weight.clone()
    ema.update(live, 1)
    assert torch.all((ema.model.weight - 1).abs() < (before - 1).abs())


class _ConvBN(torch.nn.Module):
    """x -> BN(conv(x)) + 0*t: one BatchNorm whose input we can recompute by hand."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(3)

    def forward(self, x, t):
        return self.bn(self.conv(x)) + 0 * t.view(-1, 1, 1, 1)


def test_recalibrated_statistics_are_the_average_of_the_calibration_batches():
    from diffusion_studio.engine.diffusion.schedule import NoiseSchedule
    from diffusion_studio.engine.training.algorithm import recalibrate_batchnorm

    sched = NoiseSchedule(TINY_SCHED)
    images = torch.rand(50, 1, 28, 28) * 2 - 1
    model = _ConvBN()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "tracked" not in k}
    model.eval()
    assert recalibrate_batchnorm(model, sched, images, batches=3, batch_size=8, seed=5)
    # the same draws by hand: mean of batch means, mean of unbiased batch variances
    gen = torch.Generator().manual_seed(5)
    means, variances = [], []
    for _ in range(3):
        idx = torch.randint(0, 50, (8,), generator=gen)
        t = torch.randint(1, sched.timesteps + 1, (8,), generator=gen)
        eps = torch.randn((8, 1, 28, 28), generator=gen)
        with torch.no_grad():
            h = model.conv(sched.q_sample(images[idx], t, eps))
        means.append(h.mean(dim=(0, 2, 3)))
        variances.append(h.var(dim=(0, 2, 3), unbiased=True))
    assert torch.allclose(model.bn.running_mean, torch.stack(means).mean(0), atol=1e-6)
    assert torch.allclose(model.bn.running_var, torch.stack(variances).mean(0), atol=1e-5)
    assert model.bn.momentum == 0.1 and not model.training  # settings and mode put back
    for k, v in weights.items():
        assert torch.equal(model.state_dict()[k], v)  # weights untouched


def test_recalibration_makes_eval_mode_agree_with_batch_statistics(tiny_data):
    """Stale running statistics (here: a fresh network's mean 0, var 1 after the
    weights were scaled) make eval-mode outputs wrong; recalibrated ones match
    what BatchNorm computes from a large batch of the same distribution."""
    from diffusion_studio.engine.storage.data import to_model_range
    from diffusion_studio.engine.diffusion.schedule import NoiseSchedule
    from diffusion_studio.engine.training.algorithm import recalibrate_batchnorm
    from diffusion_studio.engine.diffusion.unet import UNet

    torch.manual_seed(0)
    model = UNet(TINY_NET)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(3.0)
    sched = NoiseSchedule(TINY_SCHED)
    images = to_model_range(tiny_data.train_images)
    g = torch.Generator().manual_seed(9)
    idx = torch.randint(0, len(images), (400,), generator=g)
    t = torch.randint(1, sched.timesteps + 1, (400,), generator=g)
    x_t = sched.q_sample(images[idx], t, torch.randn((400, 1, 28, 28), generator=g))

    def gap():
        with torch.no_grad():
            model.train()
            batch_stats = model(x_t, t)
            model.eval()
            running = model(x_t, t)
        return float((batch_stats - running).pow(2).mean() / batch_stats.pow(2).mean())

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
    stale = gap()
    assert recalibrate_batchnorm(model, sched, images, batches=20, batch_size=64, seed=1)
    assert gap() < 0.05 < stale


def test_stopped_recalibration_puts_the_old_statistics_back():
    from diffusion_studio.engine.diffusion.schedule import NoiseSchedule
    from diffusion_studio.engine.training.algorithm import recalibrate_batchnorm

    model = _ConvBN()
    with torch.no_grad():
        model.bn.running_mean.fill_(0.25)
    calls = iter([False, False, True])
    done = recalibrate_batchnorm(model, NoiseSchedule(TINY_SCHED), torch.zeros(4, 1, 28, 28),
                                 batches=10, batch_size=2, should_stop=lambda: next(calls))
    assert done is False
    assert torch.all(model.bn.running_mean == 0.25) and model.bn.momentum == 0.1


def test_trainer_validates_ema_weights_with_their_own_statistics(tiny_data):
    from diffusion_studio.engine.training.algorithm import recalibrate_batchnorm

    trainer = tiny_trainer(tiny_data, epochs=1, ema_decay=0.9, bn_recalibration=3)
    list(trainer.run())
    ema_stats = {k: v.clone() for k, v in trainer.ema.model.state_dict().items() if "running" in k}
    live_stats = {k: v for k, v in trainer.model.state_dict().items() if "running" in k}
    assert any(not torch.equal(v, live_stats[k]) for k, v in ema_stats.items())  # not copied from live
    # they are exactly the recalibration of the EMA weights with the epoch's seed
    recalibrate_batchnorm(trainer.ema.model, trainer.schedule, trainer.train_x, batches=3,
                          batch_size=16, seed=0 * 1000 + 31 + 1)
    for k, v in trainer.ema.model.state_dict().items():
        if "running" in k:
            assert torch.equal(v, ema_stats[k])


def test_report_recipe_keeps_the_running_statistics_training_left():
    from diffusion_studio.engine.training.presets import get_preset

    assert get_preset("report").train.bn_recalibration == 0
    assert get_preset("plain").train.bn_recalibration > 0  # the BatchNorm U-Net outside the report
    # the default network has GroupNorm: there is nothing to recalibrate
    from diffusion_studio.engine.training.algorithm import _batchnorms
    from diffusion_studio.engine.diffusion.unet import build_model

    assert get_preset("default").train.bn_recalibration == 0 and not _batchnorms(build_model(get_preset("default").model))
    with pytest.raises(ValueError, match="bn_recalibration"):
        TrainConfig(bn_recalibration=-1)


def test_recalibrating_a_finished_model_uses_the_training_split(tiny_data):
    from diffusion_studio.engine.storage.data import to_model_range
    from diffusion_studio.engine.diffusion.schedule import NoiseSchedule
    from diffusion_studio.engine.training.algorithm import (
        recalibrate_batchnorm,
        recalibrate_on_training_split,
    )
    from diffusion_studio.engine.diffusion.unet import UNet

    sched = NoiseSchedule(TINY_SCHED)
    cond = UNetConfig(base_channels=4, time_embed_dim=16, num_classes=10)
    a, b = UNet(cond), UNet(cond)
    b.load_state_dict(a.state_dict())
    assert recalibrate_on_training_split(a, sched, tiny_data, label_dropout=0.2, batches=3, batch_size=8, seed=4)
    recalibrate_batchnorm(b, sched, to_model_range(tiny_data.train_images), labels=tiny_data.train_labels,
                          label_dropout=0.2, batches=3, batch_size=8, seed=4)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert any("running_mean" in k and v.abs().sum() > 0 for k, v in a.state_dict().items())


# ---------------------------------------------------------------- time budget
@pytest.mark.slow  # a few seconds: the full suite runs it, the fast tier stays under 90 s
def test_time_budget_validates_what_it_has_and_keeps_best(tiny_data, tmp_path, monkeypatch):
    """A budget that ends mid-epoch: the partial epoch is validated, best.pt is written and
    loadable, and history.json says the budget ended the run."""
    import json

    from diffusion_studio.engine.training import trainer as T

    clock = [0.0]
    monkeypatch.setattr(T.time, "perf_counter", lambda: clock[0])
    plan = plan_new(TINY_NET, TINY_SCHED, TrainConfig(epochs=50, batch_size=16, precision="fp32", channels_last=False))
    trainer = Trainer(plan, tiny_data, device="cpu", run_dir=tmp_path / "run", max_seconds=100.0)
    real_step = trainer.train_step

    def one_second_step(idx):  # every step takes 1 s of the patched clock
        clock[0] += 1.0
        return real_step(idx)

    monkeypatch.setattr(trainer, "train_step", one_second_step)
    records = list(trainer.run())
    final = records[-1]
    assert isinstance(final, FinishedRecord) and final.reason == "budget"
    assert "time budget of 1.66667 min" in final.message
    steps = [r for r in records if isinstance(r, StepRecord)]
    # 7 steps per epoch; validation is estimated from the step time, so training ends
    # before 100 s with room for it, never after
    assert 90 <= len(steps) < 100
    epochs = [r for r in records if isinstance(r, EpochRecord)]
    assert len(epochs) == len(steps) // 7 + (1 if len(steps) % 7 else 0)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["finished_reason"] == "budget"
    last = history["epochs"][-1]
    if len(steps) % 7:
        assert last["partial"] and last["epoch"] == pytest.approx(len(steps) / 7)
    loaded = load_model(tmp_path / "run" / "best.pt")
    assert loaded.payload["best"]["epoch"] == final.best_epoch >= 1
    # last.pt resumes mid-epoch, exactly where the budget stopped
    resumed = Trainer(plan_resume(tmp_path / "run"), tiny_data, device="cpu")
    assert resumed.global_step == len(steps)


def test_budget_zero_or_negative_is_refused(tiny_data):
    with pytest.raises(ValueError, match="time budget must be a positive number"):
        Trainer(plan_new(TINY_NET, TINY_SCHED, TrainConfig(precision="fp32")), tiny_data, device="cpu", max_seconds=0)


def test_real_clock_budget_ends_an_otherwise_endless_run(tiny_data, tmp_path):
    trainer = tiny_trainer(tiny_data, tmp_path / "run", epochs=10_000)
    trainer.max_seconds = 1.0
    final = list(trainer.run())[-1]
    assert final.reason == "budget" and trainer.epoch < 10_000
    assert (tmp_path / "run" / "best.pt").is_file()


def test_lr_warmup_and_cosine_decay():
    from diffusion_studio.engine.training.config import lr_factor

    assert lr_factor("constant", 0, 0, 0.5) == 1.0
    assert lr_factor("constant", 4, 10, 0.0) == pytest.approx(0.5)
    assert lr_factor("cosine", 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor("cosine", 100, 10, 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 100, 10, 1.0) == pytest.approx(0.0)
    assert lr_factor("cosine", 100, 10, 2.0) == pytest.approx(0.0)


def test_cosine_schedule_reaches_zero_at_the_epoch_budget(tiny_data):
    trainer = tiny_trainer(tiny_data, epochs=2, lr=1e-2, lr_schedule="cosine", warmup_steps=3)
    lrs = [r.lr for r in trainer.run() if isinstance(r, StepRecord)]  # each step's learning rate
    assert lrs[0] == pytest.approx(1e-2 / 3) and lrs[2] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 2 / 14)))
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] < 1e-3


def test_min_snr_weights_are_min_snr_gamma_over_snr(tiny_data):
    trainer = tiny_trainer(tiny_data, min_snr_gamma=5.0)
    snr = trainer.schedule.snr
    expected = torch.clamp(snr[1:], max=5.0) / snr[1:]
    assert torch.allclose(trainer._snr_weight[1:], expected)
    # nearly clean timesteps (high SNR) are down-weighted, noisy ones keep (close to) 1
    assert trainer._snr_weight[1] < 0.01 < trainer._snr_weight[-1] <= 1.0
    records = list(trainer.run())
    assert math.isfinite(records[-1].best_val_loss)


def test_validation_loss_by_timestep_is_stored_per_epoch(tiny_data, tmp_path):
    import json

    from diffusion_studio.engine.training.config import loss_bins

    assert loss_bins(300) == [1 + 15 * i for i in range(20)] + [301]
    assert loss_bins(10) == list(range(1, 12))
    trainer = tiny_trainer(tiny_data, tmp_path / "run", epochs=2)
    records = list(trainer.run())
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["loss_bins"] == loss_bins(10)
    for entry, record in zip(history["epochs"], [r for r in records if isinstance(r, EpochRecord)]):
        by_t = entry["val_loss_by_t"]
        assert len(by_t) == 10
        # the bins' weighted mean is the validation loss
        counts = torch.bincount(trainer.val_t - 1, minlength=10).double()
        got = sum(c * v for c, v in zip(counts.tolist(), by_t) if v is not None) / counts.sum()
        assert float(got) == pytest.approx(record.val_loss, rel=1e-6)


def _exported_run(tiny_data, tmp_path, epochs=2):
    """A tiny run of ``epochs`` epochs, its best.pt given an earlier copy as its guide and
    exported for sampling as the bundled models are (EMA weights only, no optimizer)."""
    from diffusion_studio.engine.storage import checkpoint as C

    run = tmp_path / "source"
    list(tiny_trainer(tiny_data, run, epochs=epochs, ema_decay=0.9, warmup_steps=4, lr_schedule="cosine",
                      patience=2).run())
    best = load_checkpoint(run / "best.pt")
    C.save_checkpoint(run / "guided.pt", C.attach_guide(best, best, "source/best.pt"))
    return C.export_for_sampling(run / "guided.pt", tmp_path / "exported.pt")


def test_continuing_an_export_starts_from_its_weights_and_epochs_in_a_new_run(tiny_data, tmp_path):
    """The bundled models keep no optimizer state: a new run continues one from its EMA weights
    (both copies), its epoch count, history and guide, with a fresh Adam that warms up again."""
    exported = _exported_run(tiny_data, tmp_path)
    source = load_checkpoint(exported)
    assert source.get("optimizer") is None and source["meta"]["weights_are_ema"]
    more = TrainConfig(epochs=4, batch_size=16, precision="fp32", channels_last=False)
    trainer = Trainer(plan_continue(exported, {("train", "epochs"): more.epochs}), tiny_data, device="cpu",
                      run_dir=tmp_path / "new")
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, source["weights"][name])
        assert torch.equal(trainer.ema.model.state_dict()[name], source["weights"][name])
    assert trainer.epoch == 2 and trainer.global_step == 14  # two epochs of 7 steps
    assert trainer.config.epochs == 4 and trainer.config.ema_decay == 0.9 and trainer.config.warmup_steps == 4
    assert not trainer.optimizer.state  # a fresh Adam...
    assert trainer.next_lr() == pytest.approx(1e-3 * 0.25 * 0.5 * (1 + math.cos(math.pi * 14 / 28)))  # ...warms up

    records = list(trainer.run())
    epochs = [r for r in records if isinstance(r, EpochRecord)]
    assert [e.epoch for e in epochs] == [3, 4] and records[-1].reason == "completed"
    steps = [r for r in records if isinstance(r, StepRecord)]
    assert steps[0].global_step == 15 and steps[0].lr < steps[3].lr  # warm-up over this run's first 4 steps
    last = load_checkpoint(tmp_path / "new" / "last.pt")
    assert last["epoch"] == 4 and last["guide"]["source"] == "source/best.pt"
    assert last["meta"]["continued_from"] == {"source": str(exported), "epochs": 2.0}
    assert "exported_from" not in last["meta"] and "weights_are_ema" not in last["meta"]
    assert [e["epoch"] for e in last["history"]["epochs"]] == [1, 2, 3, 4]
    assert load_model(tmp_path / "new" / "best.pt").guide is not None  # the run samples with autoguidance


def test_a_continued_run_keeps_the_weights_it_started_from_until_an_epoch_beats_them(tiny_data, tmp_path,
                                                                                     monkeypatch):
    """Without best weights in the file, its own are validated first and are the run's best.pt;
    early stopping then counts from them, and a stop during that validation is a clean stop."""
    exported = _exported_run(tiny_data, tmp_path)
    start = load_checkpoint(exported)["weights"]
    more = TrainConfig(epochs=10, batch_size=16, precision="fp32", channels_last=False)
    trainer = Trainer(plan_continue(exported, {("train", "epochs"): more.epochs}), tiny_data, device="cpu",
                      run_dir=tmp_path / "new")
    scripted = iter([0.5, 0.6, 0.7])  # the baseline, then two worse epochs
    monkeypatch.setattr(trainer, "validation_loss", lambda: next(scripted))
    records = list(trainer.run())
    baseline = records[0]
    assert isinstance(baseline, BaselineRecord) and (baseline.epoch, baseline.val_loss) == (2, 0.5)
    assert baseline.seconds >= 0 and sum(isinstance(r, BaselineRecord) for r in records) == 1
    assert isinstance(records[1], StepRecord) and records[1].epoch == 3  # training starts after it
    final = records[-1]
    assert final.reason == "early_stopped" and final.epoch == 4 and final.best_epoch == 2
    assert final.best_val_loss == 0.5
    best = load_checkpoint(tmp_path / "new" / "best.pt")
    assert all(torch.equal(best["ema_weights"][k], v) for k, v in start.items())

    stop = threading.Event()
    stop.set()
    stopped = Trainer(plan_continue(exported, {("train", "epochs"): more.epochs}), tiny_data, device="cpu",
                      run_dir=tmp_path / "stopped", stop_event=stop)
    records = list(stopped.run())
    final = records[-1]
    assert len(records) == 1 and final.reason == "stopped" and "before training" in final.message
    owed = load_checkpoint(tmp_path / "stopped" / "last.pt")
    assert owed["baseline_pending"] is True  # a resume of it validates the start first
    assert Trainer(plan_resume(tmp_path / "stopped"), tiny_data, device="cpu")._baseline_pending


def test_a_continued_run_may_change_its_rate_and_ema_and_records_the_change(tiny_data, tmp_path):
    """A lower peak rate and a longer EMA fine-tune settled weights: the fresh Adam takes them, the
    EMA decays at the new rate from the file's step count, and meta says what changed."""
    exported = _exported_run(tiny_data, tmp_path)
    more = TrainConfig(epochs=3, batch_size=16, precision="fp32", channels_last=False)
    plan = plan_continue(exported, {("train", "epochs"): more.epochs, ("train", "lr"): 2e-4, ("train", "ema_decay"): 0.5,
                                    ("train", "warmup_steps"): 0})
    trainer = Trainer(plan, tiny_data, device="cpu", run_dir=tmp_path / "new")
    c = trainer.config
    assert (c.lr, c.ema_decay, c.warmup_steps, c.batch_size) == (2e-4, 0.5, 0, 16)
    assert trainer.ema.decay == 0.5 and trainer.optimizer.param_groups[0]["lr"] == 2e-4
    assert trainer.next_lr() == pytest.approx(2e-4 * 0.5 * (1 + math.cos(math.pi * 14 / 21)))
    records = list(trainer.run())
    assert records[-1].reason == "completed"
    last = load_checkpoint(tmp_path / "new" / "last.pt")
    assert last["train"]["lr"] == 2e-4 and last["train"]["ema_decay"] == 0.5  # a resume keeps them
    assert last["meta"]["continued_from"]["changed"] == {"lr": 2e-4, "ema_decay": 0.5, "warmup_steps": 0}

    # a front end may pass its form whole: values equal to the file's own are no change
    saved = load_checkpoint(exported)["train"]
    same = Trainer(plan_continue(exported, {("train", "lr"): saved["lr"], ("train", "ema_decay"): 0.5}), tiny_data,
                   device="cpu")
    assert same.extra_meta["continued_from"]["changed"] == {"ema_decay": 0.5}
    assert same.config.lr == saved["lr"]

    # only those settings: the rest are the file's, and a resume keeps its own rate
    with pytest.raises(ValueError, match=r"would ignore: batch_size 8 \(the run uses 16\)"):
        plan_continue(exported, {("train", "batch_size"): 8})
    with pytest.raises(ValueError, match=r"would ignore: lr 0.0001 \(the run uses 0.0002\)"):
        plan_resume(tmp_path / "new", {("train", "lr"): 1e-4})


def test_a_training_request_is_one_of_new_resume_and_continue(tiny_data, tmp_path):
    from diffusion_studio.tasks.train import TrainRequest

    exported = _exported_run(tiny_data, tmp_path, epochs=1)
    with pytest.raises(ValueError, match="unknown training mode 'both'"):
        TrainRequest(mode="both", source=exported)
    with pytest.raises(ValueError, match="a resume needs the run"):
        TrainRequest(mode="resume")
    plan = plan_continue(exported)
    assert plan.mode == "continue" and plan.run_dir is None and plan.payload["epoch"] == 1


# ---------------------------------------------------------------- issue 31: the last saves
def test_the_last_saves_write_best_and_history_before_last_so_a_full_disk_keeps_the_best(tiny_data, tmp_path,
                                                                                       monkeypatch):
    """Item 6: a 1-epoch run on a nearly full disk kept no checkpoint, because last.pt (the
    larger file) was written first. Now best.pt and history.json come first and last.pt last."""
    import errno
    import json

    from diffusion_studio.engine.training import files as F

    written, real = [], F.save_checkpoint

    def disk_fills_at_last_pt(path, payload):
        if path.name == "last.pt":
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path.name)
        return real(path, payload)

    monkeypatch.setattr(F, "save_checkpoint", disk_fills_at_last_pt)
    run = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        list(tiny_trainer(tiny_data, run, epochs=1).run())
    assert written == ["best.pt"] and load_model(run / "best.pt").epochs_trained == 1
    assert json.loads((run / "history.json").read_text())["finished_reason"] == "completed"


def test_a_finished_run_whose_best_and_history_lag_behind_last_is_repaired_by_its_resume(tiny_data, tmp_path):
    """Item 3: a kill during the final best.pt or history.json write (as runs were saved before)
    left last.pt finished at epoch 2 with best.pt and history.json at epoch 1; the resume said
    "already finished" and left the best weights unreachable. It now rewrites both from last.pt."""
    import json
    import shutil

    run, early = tmp_path / "run", tmp_path / "early"
    list(tiny_trainer(tiny_data, run, epochs=1).run())
    shutil.copytree(run, early)
    list(Trainer(plan_resume(run, {("train", "epochs"): 2}), tiny_data, device="cpu", run_dir=run).run())
    last = load_checkpoint(run / "last.pt")
    for name in ("best.pt", "history.json"):  # the state a kill during the final saves left
        shutil.copy(early / name, run / name)
    assert len(json.loads((run / "history.json").read_text())["epochs"]) == 1

    records = list(Trainer(plan_resume(run), tiny_data, device="cpu", run_dir=run).run())
    assert len(records) == 1 and "rewritten from it" in records[0].message
    history = json.loads((run / "history.json").read_text())
    assert len(history["epochs"]) == 2 and history["best_epoch"] == last["best"]["epoch"]
    best = load_checkpoint(run / "best.pt")
    assert best["best"] == last["best"] and all(torch.equal(best["weights"][k], v)
                                                for k, v in last["best_weights"]["weights"].items())
    again = list(Trainer(plan_resume(run), tiny_data, device="cpu", run_dir=run).run())
    assert "rewritten" not in again[0].message  # a consistent run is left as it is


@pytest.mark.parametrize("field, value, message", [
    ("lr", 1e308, r"learning rate must be a number in \(0, 1\]"),
    ("min_snr_gamma", 1e308, "min_snr_gamma must be a number in 0..1e"),
    ("seed", 10**20, "seed must be a whole number in 0..1099511627776"),
    ("warmup_steps", 10**20, "warmup_steps must be at most 1,000,000"),
])
def test_settings_that_would_overflow_or_do_nothing_are_refused_in_one_line(field, value, message):
    """Item 12 and 13: --lr 1e308 and --min-snr 1e308 ended in an overflow traceback, a huge
    seed in an OverflowError, and a warm-up of 1e20 steps left the rate at zero."""
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})
