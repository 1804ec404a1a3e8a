"""The training panel, driven as a user would: Start, live curves, Stop, Resume, close."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QFontMetricsF

from diffusion_studio.engine.defaults import DEFAULT_GUI_BUDGET_MINUTES, DEMO_BUDGET_MINUTES
from diffusion_studio.engine.storage.checkpoint import load_model
from diffusion_studio.engine.training.config import BaselineRecord, EpochRecord, FinishedRecord, StartedRecord
from diffusion_studio.engine.training.presets import Preset
from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
from diffusion_studio.engine.training.config import TrainConfig
from diffusion_studio.engine.diffusion.unet import UNetConfig
from diffusion_studio.ui.state import AppState
from diffusion_studio.ui.train_panel import TrainPanel


def tiny_preset(**train):
    cfg = dict(epochs=2, batch_size=32, precision="fp32", lr=3e-2)
    cfg.update(train)
    return Preset("tiny", "Tiny (tests)", "a tiny U-Net", UNetConfig(base_channels=4),
                  ScheduleConfig(timesteps=10), TrainConfig(**cfg))


@pytest.fixture
def panel(qtbot, tiny_data, tmp_path):
    state = AppState()
    state.set_data(tiny_data, None)
    p = TrainPanel(state)
    qtbot.addWidget(p)
    p.preview_every = 1
    p.resize(1000, 650)
    p.show()
    yield p
    p.shutdown(10000)


class LatencyProbe(QObject):
    """A 5 ms QTimer in the GUI thread; records the largest gap between its ticks
    until the panel has heard that the run ended (loading the trained model for the
    sampler afterwards is timed separately)."""

    def __init__(self, panel):
        super().__init__()
        self.panel = panel
        self.timer = QTimer(self)
        self.timer.setInterval(5)
        self.timer.timeout.connect(self.tick)
        self.last = None
        self.max_gap = 0.0
        self.ticks = 0

    def start(self):
        self.big = []
        self.last = self.t0 = time.perf_counter()
        self.timer.start()

    @Slot()
    def tick(self):
        now = time.perf_counter()
        if self.panel.last_reason:
            self.timer.stop()
            return
        self.max_gap = max(self.max_gap, now - self.last)
        if now - self.last > 0.05:
            self.big.append((round(now - self.t0, 3), round((now - self.last) * 1000)))
        self.last = now
        self.ticks += 1


def test_start_needs_data(qtbot):
    state = AppState()
    p = TrainPanel(state)
    qtbot.addWidget(p)
    start = p.findChild(type(p.start_button), "startTrainingButton")
    assert start is not None and not start.isEnabled()
    assert "data" in start.toolTip().lower()
    assert p.findChild(type(p.view.plot), "lossPlot") is p.view.plot
    assert not p.start_training()  # refuses, with a message instead of a crash
    assert "data" in p.view.stopping_label.text().lower()


def test_training_streams_curves_and_finishes(qtbot, panel, tmp_path):
    panel.add_preset(tiny_preset(epochs=6, patience=1))
    assert panel.form.epochs_spin.value() == 6 and panel.form.patience_spin.value() == 1
    run = tmp_path / "run"
    panel.set_run_dir(str(run))
    qtbot.waitExposed(panel)
    qtbot.wait(300)  # the window's first paint is not part of training
    probe = LatencyProbe(panel)
    with qtbot.waitSignal(panel.training_finished, timeout=120000) as blocker:
        probe.start()
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
        assert panel.is_training() and panel.stop_button.isEnabled() and not panel.start_button.isEnabled()
    probe.timer.stop()
    print(f"\nGUI event-loop latency during training: max gap {probe.max_gap * 1000:.1f} ms over {probe.ticks} ticks")
    print("gaps over 50 ms (s since start, ms):", probe.big)
    assert probe.ticks > 0  # the GUI thread kept running its timer (the latency itself: bench/gui_latency.py)
    reason, message = blocker.args
    assert reason in ("completed", "early_stopped")
    history = json.loads((run / "history.json").read_text())
    epochs = [e["epoch"] for e in history["epochs"]]
    # curves: every step (4 per epoch for 100 images in batches of 32), every epoch's validation loss
    x, y = panel.view.raw_curve.getData()
    assert len(x) == 4 * len(epochs) and np.allclose(x[-1], len(epochs))
    vx, vy = panel.view.val_curve.getData()
    assert vx.tolist() == epochs
    np.testing.assert_allclose(vy, [e["val_loss"] for e in history["epochs"]])
    sx, sy = panel.view.smooth_curve.getData()
    assert len(sx) == len(x) and np.isfinite(sy).all()
    # the best epoch is marked, and the label says how it ended
    bx, by = panel.view.best_marker.getData()
    assert bx.tolist() == [history["best_epoch"]]
    assert by[0] == pytest.approx(history["best_val_loss"])
    label = panel.view.stopping_label.text()
    if reason == "early_stopped":
        assert label.startswith(f"Stopped early at epoch {epochs[-1]}, best epoch {history['best_epoch']} restored")
    else:
        assert label.startswith(f"Finished {len(epochs)} epochs")
    assert panel.view.progress.value() == panel.view.progress.maximum()
    assert panel.preview.image.pixmap() is not None and not panel.preview.image.pixmap().isNull()
    # the trained model is offered to the sampler (read off the GUI thread)
    qtbot.waitUntil(lambda: panel.state.model is not None, timeout=20000)
    assert panel.state.model_source == f"trained: {run.name}"
    assert panel.state.model.payload["best"]["epoch"] == history["best_epoch"]
    assert not panel.is_training() and panel.start_button.isEnabled()
    # log scale keeps the marker on the (log) point
    panel.view.log_check.setChecked(True)
    assert panel.view.best_marker.getData()[1][0] == pytest.approx(np.log10(history["best_val_loss"]))


def test_stop_resume_and_close_during_run(qtbot, panel, tmp_path):
    panel.add_preset(tiny_preset(epochs=50, patience=50))
    run = tmp_path / "run"
    panel.set_run_dir(str(run))
    assert panel.start_training()
    qtbot.waitUntil(lambda: len(panel.view.val_epochs) >= 1, timeout=60000)
    t0 = time.perf_counter()
    with qtbot.waitSignal(panel.training_finished, timeout=10000) as blocker:
        panel.stop_button.click()
    stop_s = time.perf_counter() - t0
    print(f"\nstop took {stop_s:.2f} s")
    assert blocker.args[0] == "stopped"
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()
    stopped_at = load_model(run / "last.pt").epoch
    assert stopped_at >= 1
    qtbot.waitUntil(lambda: panel.state.model is not None, timeout=20000)  # best.pt opens for the sampler

    # Resume: the epoch count continues where it stopped, the old curve is kept, and the form
    # shows the run's own settings (a value typed before the resume would otherwise be ignored);
    # the patience, like the epochs, may be raised (a resume's warm restart can take a few epochs)
    run_lr, run_batch = panel.form.lr_spin.value(), panel.form.batch_spin.value()
    panel.form.lr_spin.setValue(0.05)
    panel.form.batch_spin.setValue(7)
    panel.form.patience_spin.setValue(60)
    assert panel.resume_training(run)
    qtbot.waitUntil(lambda: bool(panel.view.val_epochs) and panel.view.val_epochs[-1] > stopped_at, timeout=60000)
    assert panel.form.lr_spin.value() == pytest.approx(run_lr) and panel.form.batch_spin.value() == run_batch
    assert panel.form.patience_spin.value() == 60
    assert panel.view.val_epochs[: stopped_at] == list(range(1, stopped_at + 1))
    assert panel.view.val_epochs[stopped_at] == stopped_at + 1
    # closing the window during the run: the thread ends within the bound, nothing is lost
    t0 = time.perf_counter()
    assert panel.shutdown(10000)
    print(f"shutdown took {time.perf_counter() - t0:.2f} s")
    assert not panel.is_training()
    last = load_model(run / "last.pt")
    assert last.epoch >= stopped_at + 1 and last.payload["train"]["patience"] == 60
    assert load_model(run / "best.pt").model is not None


def test_refuses_to_overwrite_a_run_and_bad_resume(qtbot, panel, tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "last.pt").write_bytes(b"x")
    panel.set_run_dir(str(tmp_path / "old"))
    assert not panel.start_training()
    assert "Resume" in panel.view.stopping_label.text()
    assert not panel.resume_training(tmp_path / "empty")
    assert "no last.pt" in panel.view.stopping_label.text()
    # not a checkpoint: the worker reads it (off the GUI thread) and the panel says so in one line
    with qtbot.waitSignal(panel.training_finished, timeout=20000) as blocker:
        assert panel.resume_training(tmp_path / "old")
    assert blocker.args[0] == "failed"
    assert "Cannot resume" in panel.view.stopping_label.text() and "Traceback" not in panel.view.stopping_label.text()
    qtbot.waitUntil(lambda: not panel.is_training(), timeout=10000)


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast tier stays under 90 s
def test_continue_from_a_checkpoint_trains_a_new_run_on_from_its_epochs(qtbot, panel, tmp_path):
    """Continue from…: a new run from an exported checkpoint (no optimizer state, as the bundled
    models), with its settings shown in the form, its curve kept and its epochs counted on."""
    from diffusion_studio.engine.storage.checkpoint import export_for_sampling, load_checkpoint

    menu = [a.text() for a in panel.continue_button.menu().actions()]
    assert menu[-1] == "A checkpoint file…" and "Bundled unconditional model (300 steps)" in menu

    panel.add_preset(tiny_preset(epochs=1))
    panel.set_run_dir(str(tmp_path / "first"))
    with qtbot.waitSignal(panel.training_finished, timeout=60000):
        assert panel.start_training()
    qtbot.waitUntil(lambda: not panel.is_training(), timeout=10000)
    exported = export_for_sampling(tmp_path / "first" / "best.pt", tmp_path / "exported.pt")

    panel.set_run_dir(str(tmp_path / "first"))
    assert not panel.continue_training(exported)  # never over a run
    assert "already holds a run" in panel.view.stopping_label.text()
    assert not panel.continue_training(tmp_path / "missing.pt")
    assert panel.view.stopping_label.text().startswith("Cannot continue:") and "does not exist" in panel.view.stopping_label.text()

    new = tmp_path / "second"
    panel.set_run_dir(str(new))
    panel.form.lr_spin.setValue(0.05)  # a fresh Adam: an lr set in the form is the new run's (as the CLI's --lr)
    panel.form.epochs_spin.setValue(3)
    with qtbot.waitSignal(panel.training_finished, timeout=60000) as blocker:
        assert panel.continue_training(exported)
        qtbot.waitUntil(lambda: panel.view.stopping_label.text().startswith("Continuing"), timeout=30000)
        assert "Continuing exported (1 epochs) at epoch 2" in panel.view.stopping_label.text()
    assert blocker.args[0] == "completed"
    assert panel.form.lr_spin.value() == pytest.approx(0.05)
    assert panel.view.val_epochs == [1, 2, 3]
    last = load_checkpoint(new / "last.pt")
    assert last["epoch"] == 3 and last["meta"]["continued_from"]["source"] == str(exported)
    # the file's lr was 3e-2; the EMA the form showed was the preset's (and the file's), so only the lr changed
    assert last["train"]["lr"] == pytest.approx(0.05)
    assert last["meta"]["continued_from"]["changed"] == {"lr": pytest.approx(0.05)}
    assert (new / "best.pt").is_file() and json.loads((new / "run.json").read_text())


def test_continue_keeps_the_files_lr_and_ema_unless_the_form_changed_them(panel):
    """An untouched form (the preset's lr 1e-3, EMA 0.999) changes nothing, so a file fine-tuned at
    2e-4 / 0.9998 (the bundled default) goes on with its own; a value the user set is a change."""
    assert panel.form.current_preset().name == "default" and panel.continue_settings() == {}
    panel.form.lr_spin.setValue(2e-4)
    assert panel.continue_settings() == {"lr": pytest.approx(2e-4)}
    panel.form.ema_spin.setValue(0.9998)
    assert panel.continue_settings() == {"lr": pytest.approx(2e-4), "ema_decay": pytest.approx(0.9998)}
    panel.form.lr_spin.setValue(panel.form.current_preset().train.lr)  # back to the preset's: the file's own again
    assert set(panel.continue_settings()) == {"ema_decay"}


def test_the_baseline_of_a_continued_run_shows_as_the_loss_to_beat(panel):
    """Before a continued export's first epoch the panel shows what its weights scored."""
    panel._on_records([BaselineRecord(epoch=67, val_loss=0.0206891, seconds=72.4)])
    assert panel.view.epoch_label.text() == ("The weights it continues from: validation 0.02069 (1 min 12 s), "
                                        "the loss to beat")
    assert (panel.view.best_epoch, panel.view.best_val) == (67, pytest.approx(0.0206891))
    assert panel.validation_seconds == pytest.approx(72.4)  # the ETA counts validations at this cost


class FakeWorker(QObject):
    """Emits what the training task's worker would (batches of records), to check how the panel
    words early stopping."""

    partial = Signal(object)


def epoch_record(epoch, val, best_epoch, best, waited, patience=5):
    return EpochRecord(epoch=epoch, epochs=50, train_loss=val, val_loss=val, seconds=1.0, images_per_s=100.0,
                       best_val_loss=best, best_epoch=best_epoch, epochs_without_improvement=waited,
                       patience=patience, improved=waited == 0)


def started(info: dict) -> StartedRecord:
    """The StartedRecord the training task yields first, with these fields (a resume when it
    starts past epoch 0; the batch size and patience go into its train_config)."""
    resumed = bool(info.get("start_epoch") or info.get("start_step"))
    return StartedRecord(
        mode="resume" if resumed else "new", device=info["device"], precision=info["precision"],
        precision_detail=info.get("precision_detail", ""), train_images=100, val_images=20,
        validation_images=info.get("validation_images", 10000), epochs=info["epochs"],
        start_epoch=info["start_epoch"], start_step=info.get("start_step", 0), start_lr=info.get("start_lr", 1e-3),
        steps_per_epoch=info["steps_per_epoch"], timesteps=info["timesteps"],
        train_config={"batch_size": info["batch_size"], "patience": info["patience"]}, model_config={},
        schedule_config={}, preset="", run_dir="", max_seconds=info.get("max_seconds"),
        history=info.get("history", {}))


def test_early_stopping_state_is_worded_for_people(qtbot, panel):
    fake = FakeWorker()
    fake.partial.connect(panel._on_records)
    fake.partial.emit([epoch_record(34, 0.031, 34, 0.031, 0)])
    assert "new best" in panel.view.stopping_label.text()
    fake.partial.emit([epoch_record(37, 0.033, 34, 0.031, 3)])
    assert panel.view.stopping_label.text() == "3 of 5 epochs without improvement"
    panel.view.redraw()
    assert panel.view.best_marker.getData()[0].tolist() == [34.0]
    fake.partial.emit([FinishedRecord("early_stopped", 39, 34, 0.031,
                                      "stopped early at epoch 39, best epoch 34 restored (validation loss 0.03100)")])
    assert panel.view.stopping_label.text().startswith("Stopped early at epoch 39, best epoch 34 restored")


def test_class_conditional_checkbox_trains_a_conditional_network(qtbot, panel):
    check = panel.findChild(type(panel.form.conditional_check), "conditionalCheck")
    # the default recipe is class-conditional (README: Quality per CPU minute), and the box shows it
    assert check is panel.form.conditional_check and check.isChecked() and panel.form.current_preset().model.conditional
    assert panel.form.model_config().num_classes == 10
    auto_dir = panel.form.run_dir_edit.text()
    check.setChecked(False)
    assert panel.form.model_config().num_classes == 0
    assert panel.form.model_config().level_channels == panel.form.current_preset().model.level_channels
    assert "uncond" in panel.form.run_dir_edit.text() and panel.form.run_dir_edit.text() != auto_dir  # the run's name says so
    panel.form.preset_combo.setCurrentIndex(panel.form.preset_combo.findData("report"))
    assert not check.isChecked()  # the report's recipe is unconditional


def test_the_form_says_what_it_is_and_names_its_presets_plainly(panel):
    """Issue 32, item 11: a learner has no report; the first recipe is named after what it is, the
    paper in its tooltip, and a line above the form says what the form makes."""
    from PySide6.QtWidgets import QComboBox, QLabel, QStyle, QStyleOptionComboBox

    from diffusion_studio.engine.training.presets import PRESETS

    intro = panel.findChild(QLabel, "trainFormIntro")
    assert intro.isVisible() and "predict the noise" in intro.text()
    assert intro.height() >= intro.heightForWidth(intro.width())  # every line shown
    combo = panel.findChild(QComboBox, "presetCombo")
    titles = [combo.itemText(i) for i in range(combo.count())]
    assert "Original DDPM recipe" in titles
    assert not any("report" in t.lower() for t in titles)
    i = combo.findData("report")
    assert "Ho et al. 2020" in combo.itemData(i, Qt.ItemDataRole.ToolTipRole) == PRESETS["report"].description
    combo.setCurrentIndex(i)
    assert combo.toolTip() == PRESETS["report"].description
    opt = QStyleOptionComboBox()
    combo.initStyleOption(opt)
    field = combo.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                         QStyle.SubControl.SC_ComboBoxEditField, combo)
    assert combo.fontMetrics().horizontalAdvance(combo.currentText()) <= field.width()  # never cut off
    assert panel.form.preset_label.text() == "The first recipe, kept to compare against…"


def test_time_budget_field_reaches_the_trainer_and_caps_the_eta(qtbot, panel, tmp_path, monkeypatch):
    budget = panel.findChild(type(panel.form.budget_spin), "timeBudgetSpin")
    assert budget is panel.form.budget_spin and budget.value() == DEFAULT_GUI_BUDGET_MINUTES  # the measured recipe
    budget.setValue(0)
    assert budget.text() == "none" and panel.form.max_minutes() is None
    jobs = []
    monkeypatch.setattr(panel.runner, "start", lambda worker: jobs.append(worker.request))  # no thread
    panel.add_preset(tiny_preset(epochs=3))
    budget.setValue(15)
    assert panel.start_training()
    assert jobs[-1].max_seconds == 15 * 60
    # ETA: steps left at the current rate plus one validation per epoch left, at most the budget left
    panel._on_records([started({"steps_per_epoch": 100, "epochs": 50, "patience": 5, "start_epoch": 0,
                                "start_step": 0, "device": "cpu", "precision": "fp32",
                                "precision_detail": "fp32 (measured: fp32 300 img/s, bf16 100 img/s)",
                                "batch_size": 128, "timesteps": 300, "max_seconds": 900.0,
                                "validation_images": 10000 + 40 * 128})])
    assert "fp32 300 img/s" in panel.view.stopping_label.text() and "budget 15 min" in panel.view.stopping_label.text()
    unlimited = 49 * 100 * 128 / 300 + 50 * (15120 / 900)  # steps + validations (forward = 1/3 of a step)
    panel.max_budget = 0.0
    assert panel.eta_seconds(1, 4900, 300.0) == pytest.approx(unlimited)
    panel.max_budget = 900.0
    assert panel.eta_seconds(1, 4900, 300.0) == pytest.approx(900.0, abs=5.0)
    panel.validation_seconds = 12.0  # measured after the first epoch
    panel.max_budget = 0.0
    assert panel.eta_seconds(2, 4800, 300.0) == pytest.approx(4800 * 128 / 300 + 49 * 12.0)
    # a resume says where its warm restart begins (half the peak at epoch 50 of 100), not the peak
    panel._on_records([started({"steps_per_epoch": 100, "epochs": 100, "patience": 15, "start_epoch": 49,
                                "start_step": 60, "start_lr": 5e-4, "device": "cpu", "precision": "bf16",
                                "batch_size": 32, "timesteps": 300, "max_seconds": 0.0,
                                "validation_images": 10000})])
    assert panel.view.stopping_label.text().startswith("Resuming at epoch 50, lr 0.0005 on cpu")


def test_the_schedule_you_see_is_the_schedule_you_train(qtbot, panel, monkeypatch):
    combo = panel.findChild(type(panel.form.schedule_combo), "trainScheduleCombo")
    spin = panel.findChild(type(panel.form.timesteps_spin), "trainTimestepsSpin")
    assert combo is panel.form.schedule_combo and spin is panel.form.timesteps_spin
    preset = panel.form.current_preset()
    assert (combo.currentData(), spin.value()) == (preset.schedule.kind, preset.schedule.timesteps)
    assert panel.state.schedule_config == preset.schedule and panel.state.schedule_source == "the training form"
    combo.setCurrentIndex(combo.findData("cosine"))
    spin.setValue(120)
    assert panel.state.schedule_config.kind == "cosine" and panel.state.schedule_config.timesteps == 120
    jobs = []
    monkeypatch.setattr(panel.runner, "start", lambda worker: jobs.append(worker.request))  # no thread
    assert panel.start_training()
    assert jobs[-1].schedule.kind == "cosine" and jobs[-1].schedule.timesteps == 120


def test_loss_by_timestep_draws_each_epoch_latest_strongest(qtbot, panel):
    plot = panel.findChild(type(panel.view.t_plot), "lossByTimestepPlot")
    assert plot is panel.view.t_plot
    edges = [1, 4, 7, 11]
    panel.view.add_loss_by_timestep(edges, [0.5, 0.1, 0.05])
    panel.view.add_loss_by_timestep(edges, [0.4, None, 0.04])
    assert len(panel.view.t_curves) == 2
    x, y = panel.view.t_curves[-1].xData, panel.view.t_curves[-1].yData  # (getData() gives log10 y on the log axis)
    assert list(y) == [0.4, 0.04] and list(x) == [2.0, 8.5]  # the empty bin is left out
    assert panel.view.t_curves[0].opts["pen"].color().alpha() < panel.view.t_curves[-1].opts["pen"].color().alpha()


def test_a_long_runs_linear_axis_fits_its_later_losses_not_its_first_steps(qtbot, panel):
    """A run resumed (or replayed) with 3,000 steps: the first steps' loss of about 1 used to set
    the top of the linear axis, flattening the curves of interest (0.02-0.05) against the bottom."""
    n = 3000
    rng = np.random.default_rng(0)
    loss = 0.03 + 0.005 * rng.standard_normal(n)
    loss[:50] = np.linspace(1.0, 0.05, 50)  # the first descent
    panel._on_records([started({
        "steps_per_epoch": 1000, "epochs": 10, "patience": 5, "start_epoch": 3, "start_lr": 1e-3,
        "device": "cpu", "precision": "fp32", "batch_size": 32, "timesteps": 10,
        "history": {"epochs": [{"epoch": e, "train_loss": 0.03, "val_loss": v, "best_val_loss": v}
                               for e, v in ((1, 0.028), (2, 0.026), (3, 0.025))],
                    "global_step": list(range(1, n + 1)), "loss": loss.tolist()}})])
    panel.view._dirty = True
    panel.view.redraw()
    lo, hi = panel.view._y_range
    assert hi < 0.1 and lo < 0.025  # the steps' spread and every validation loss, not the first steps
    assert hi >= np.quantile(loss[n // 10:], 0.99)
    panel.view.log_check.setChecked(True)  # the log axis still shows everything, the first steps included
    lo, hi = panel.view._y_range
    assert hi >= np.log10(0.99) and lo <= np.log10(0.025)


# ---------------------------------------------------------------- issue 32: a learner's first hour
def test_the_form_says_how_long_start_trains_and_what_the_default_gives(panel):
    estimate = panel.findChild(type(panel.form.estimate_label), "trainEstimateLabel")
    assert estimate is panel.form.estimate_label
    text = estimate.text()
    assert f"{DEFAULT_GUI_BUDGET_MINUTES} min 00 s (the time budget)" in text
    assert "95%" in text and "1.5x" in text and "w = 0.1" in text  # docs/quality.md's 15-minute row
    panel.form.budget_spin.setValue(0)  # no budget: epochs x an epoch's time
    assert "up to 50 epochs" in estimate.text() and "per epoch at the default recipe's pace" in estimate.text()
    panel.form.set_epoch_seconds(60.0)  # a run here measured one
    assert "about 50 min 00 s (1 min 00 s per epoch as measured here)" in estimate.text()
    panel.form.budget_spin.setValue(5)
    assert estimate.text().startswith("This run: 5 min 00 s (the time budget).") and "95%" not in estimate.text()


def test_watch_it_learn_starts_a_two_minute_run_with_an_early_preview(qtbot, panel, monkeypatch):
    jobs = []
    monkeypatch.setattr(panel.runner, "start", lambda worker: jobs.append(worker.request))  # no thread
    panel.add_preset(tiny_preset(epochs=3))
    watch = panel.findChild(type(panel.start_button), "watchItLearnButton")
    assert watch is not None and watch.isEnabled() and f"{DEMO_BUDGET_MINUTES} min" in watch.text()
    qtbot.mouseClick(watch, Qt.MouseButton.LeftButton)
    assert jobs[-1].max_minutes == DEMO_BUDGET_MINUTES and jobs[-1].preview_every
    assert jobs[-1].preview_first_steps == panel.preview_first_steps > 0
    assert panel.form.budget_spin.value() == DEFAULT_GUI_BUDGET_MINUTES  # the form's own budget is kept
    from diffusion_studio.tasks.train import PreviewRecord

    panel._on_records([PreviewRecord(1, np.zeros((8, 28, 28), np.uint8), step=200)])
    assert panel.preview.has_digits() and "after 200 steps (EMA weights" in panel.preview.caption.text()


def test_after_a_run_start_and_resume_go_on_without_touching_the_folder(qtbot, panel, tmp_path, monkeypatch):
    """Item 5: the Run-folder field no longer names the run just trained, Resume offers that run,
    and the status line says the Sampler now uses it; the run showed digits before its epoch ended."""
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path / "home"))
    captions = []
    monkeypatch.setattr(panel.preview, "show_digits",
                        lambda images, caption: captions.append(caption))
    panel.preview_first_steps = 2  # of 4 steps per epoch
    panel.add_preset(tiny_preset(epochs=1))
    mine = tmp_path / "mine"
    panel.set_run_dir(str(mine))
    with qtbot.waitSignal(panel.training_finished, timeout=60000) as blocker:
        assert panel.start_training()
    qtbot.waitUntil(lambda: not panel.is_training(), timeout=10000)
    assert blocker.args[0] == "completed"
    assert captions and "after 2 steps" in captions[0]
    assert "The Sampler now uses its best weights (epoch 1)" in panel.view.stopping_label.text()
    assert panel.form.run_dir() is None and str(mine) != panel.form.run_dir_edit.text()  # a fresh one next
    panel.fill_resume_menu()
    menu = panel.findChild(type(panel.resume_menu), "resumeMenu")
    actions = menu.actions()
    assert actions[0].data() == str(mine) and "just trained" in actions[0].text()
    assert actions[-1].text() == "A run folder…"
    with qtbot.waitSignal(panel.training_finished, timeout=60000) as blocker:  # Start again: a new folder
        assert panel.start_training()
    qtbot.waitUntil(lambda: not panel.is_training(), timeout=10000)
    second = panel.run_dir
    assert blocker.args[0] == "completed" and second != mine and second.parent == tmp_path / "home" / "data" / "runs"
    panel.fill_resume_menu()
    offered = [a.data() for a in panel.resume_menu.actions() if a.data()]
    assert offered[0] == str(second) and str(mine) not in offered  # (mine is outside the runs folder)
    monkeypatch.setattr(panel, "resume_training", lambda run_dir=None: captions.append(("resume", run_dir)))
    panel.fill_resume_menu()
    panel.resume_menu.actions()[0].trigger()
    assert captions[-1] == ("resume", second)


def test_a_stopped_run_before_any_validation_says_the_sampler_keeps_its_model(panel):
    panel._on_records([FinishedRecord("stopped", 0, 0, float("inf"), "stopped at epoch 1, step 3")])
    assert panel.view.stopping_label.text() == ("Stopped at epoch 1, step 3. No epoch was validated, so the "
                                           "Sampler keeps its model; Resume goes on from here.")


def test_an_error_is_wrapped_never_cut_off(qtbot, panel):
    message = "Cannot train in that folder: " + "a very long reason that goes on " * 12
    panel._show_error(message)
    label = panel.findChild(type(panel.view.stopping_label), "earlyStoppingLabel")
    qtbot.waitUntil(lambda: label.height() >= label.heightForWidth(label.width()), timeout=2000)
    assert label.wordWrap() and label.text() == message
    assert label.heightForWidth(label.width()) > 2 * label.fontMetrics().lineSpacing()  # several lines, all shown
    assert label.width() <= panel.view.width()


def test_a_budget_ended_partial_epoch_is_drawn_where_it_ended(panel):
    """Item 7: a 1-minute budget ended at 0.32 of an epoch: its validation point and best star sit
    at 0.32, and the progress does not read 100%."""
    panel._on_records([started({"steps_per_epoch": 100, "epochs": 50, "patience": 5, "start_epoch": 0,
                                "device": "cpu", "precision": "fp32", "batch_size": 32, "timesteps": 300,
                                "max_seconds": 60.0})])
    rec = EpochRecord(epoch=1, epochs=50, train_loss=0.1, val_loss=0.08, seconds=60.0, images_per_s=50.0,
                      best_val_loss=0.08, best_epoch=1, epochs_without_improvement=0, patience=5, improved=True,
                      fraction=0.32)
    panel._on_records([rec, FinishedRecord("budget", 0, 1, 0.08, "the time budget ended the run at epoch 0.32")])
    panel.view.redraw()
    assert panel.view.val_curve.getData()[0].tolist() == [pytest.approx(0.32)]
    assert panel.view.best_marker.getData()[0].tolist() == [pytest.approx(0.32)]
    assert panel.view.best_line.value() == pytest.approx(0.32)
    progress = panel.findChild(type(panel.view.progress), "trainProgress")
    assert progress.value() < progress.maximum() and "after 0.32 of 50 epochs" in progress.format()
    panel.view.reset()  # a resume's history: the partial epoch is where it ended too
    panel.view.show_history({"epochs": [{"epoch": 1.0, "val_loss": 0.09, "best_val_loss": 0.09},
                                        {"epoch": 1.32, "val_loss": 0.07, "best_val_loss": 0.07}]})
    panel.view.redraw()
    assert panel.view.val_curve.getData()[0].tolist() == [1.0, pytest.approx(1.32)]
    assert panel.view.best_marker.getData()[0].tolist() == [pytest.approx(1.32)]


@pytest.mark.parametrize("low, high", [(0.02, 0.09), (0.02, 0.3), (1e-4, 1.0), (1e-6, 10.0)])
def test_log_tick_labels_of_the_loss_by_timestep_plot_never_overlap(panel, low, high):
    axis = panel.findChild(type(panel.view.t_plot), "lossByTimestepPlot").getPlotItem().getAxis("left")
    lo, hi = np.log10(low), np.log10(high)
    for size in (120.0, 150.0, 220.0):
        levels = axis.tickValues(lo, hi, size)
        values = sorted(v for _spacing, vs in levels for v in vs)
        assert len(values) >= 2, (low, high, size)  # something to read the scale by
        pixels = np.diff(values) * size / (hi - lo)  # between neighbouring labels
        height = QFontMetricsF(axis.style.get("tickFont") or axis.font()).height()
        assert pixels.min() >= height, (low, high, size, values)


def test_the_run_folder_dialog_takes_a_new_name(qtbot, panel, tmp_path, monkeypatch):
    """Item 5: a folder that does not exist yet can be typed in the dialog (the run makes it)."""
    from PySide6.QtWidgets import QFileDialog, QToolButton

    new = tmp_path / "a-new-name"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(new), "")))
    qtbot.mouseClick(panel.findChild(QToolButton, "browseRunDirButton"), Qt.MouseButton.LeftButton)
    assert panel.form.run_dir() == new and not new.exists()


def test_the_preset_line_is_short_and_its_tooltip_has_the_recipe(panel):
    label = panel.findChild(type(panel.form.preset_label), "presetSummaryLabel")
    recipe = panel.form.current_preset().description
    assert label.toolTip() == recipe and len(label.text()) < 80 and label.text() != recipe
    assert label.sizeHint().width() <= label.width()  # one line, never cut off


def test_the_early_estimate_is_drawn_apart_at_its_fractional_epoch_and_said(qtbot, panel):
    """Item 4: after the first 200 steps an estimate of the validation loss on 1,000 digits is drawn
    at 200 / 1563 of the first epoch as a marker of its own, named in the legend and in the line
    under the plot; it is no epoch's validation point and no best epoch."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QLabel

    from diffusion_studio.engine.training.config import EarlyValidationRecord

    panel._on_records([started({"steps_per_epoch": 1563, "epochs": 50, "patience": 5, "start_epoch": 0,
                                "device": "cpu", "precision": "bf16", "batch_size": 32, "timesteps": 300})])
    reported = []
    panel.state.status_message.connect(reported.append)
    panel._on_records([EarlyValidationRecord(epoch=1, step=200, global_step=200, position=200 / 1563,
                                             val_loss=0.0812, images=1000, val_images=10000, seconds=2.1)])
    panel.view.redraw()
    plot = panel.findChild(pg.PlotWidget, "lossPlot").getPlotItem()
    early = [item for item in plot.listDataItems() if item.name() == "early estimate (1,000 digits)"]
    assert len(early) == 1
    assert early[0].getData()[0].tolist() == [pytest.approx(200 / 1563)]
    assert early[0].getData()[1].tolist() == [pytest.approx(0.0812)]
    assert "early estimate (1,000 digits)" in [label.text for _, label in plot.legend.items]
    line = panel.findChild(QLabel, "epochLabel").text()
    assert line.startswith("Early estimate after 200 steps (0.13 epoch): validation loss 0.08120 on the first "
                           "1,000 of 10,000 validation digits") and reported == [line]
    assert panel.view.val_curve.getData()[0] is None and not panel.view.best_marker.getData()[0].size
    panel._on_records([epoch_record(1, 0.0611, 1, 0.0611, 0)])  # the epoch's own point comes beside it
    panel.view.redraw()
    assert panel.view.val_curve.getData()[0].tolist() == [1.0]
    assert early[0].getData()[0].tolist() == [pytest.approx(200 / 1563)]
    panel.view.reset()  # a new run: no estimate yet, none in the legend
    assert "early estimate (1,000 digits)" not in [label.text for _, label in plot.legend.items]
    panel.view.show_history({"early_validation": {"epoch": 0.128, "val_loss": 0.0812, "images": 1000}})
    assert early[0].getData()[0].tolist() == [pytest.approx(0.128)]  # a resumed run's, from its history
