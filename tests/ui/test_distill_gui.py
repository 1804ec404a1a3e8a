"""Distillation in the GUI: the Training panel's "Distil a model" box, the learner's view of
the rounds, and the Sampler with a student loaded.

One tiny class-conditional teacher (T = 8, one epoch on 16 digits) and one distillation run
through the panel (steps 1 from 4: three rounds of one step each) serve the whole module; the
app's runs folder is the module's own.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication, QLabel

from diffusion_studio.engine.storage import paths
from diffusion_studio.tasks.distill import DistillRequest, student_checkpoints
from diffusion_studio.ui.distill_box import ROUND_LOSS_FORMULAS
from diffusion_studio.ui.state import AppState
from diffusion_studio.ui.train_panel import TrainPanel
from diffusion_studio.ui.train_view import LOSS_LABEL

TINY_TRAIN = dict(epochs=1, batch_size=16, precision="fp32")


def wait_for(condition, timeout_s: float = 120.0) -> None:
    """Process Qt events until ``condition()`` holds (a module fixture has no qtbot)."""
    app, end = QApplication.instance(), time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "timed out"
        app.processEvents()
        time.sleep(0.01)


@pytest.fixture(scope="module")
def world(tiny_data, tmp_path_factory):
    """(runs folder, the teacher's run folder, 16 training and 8 validation digits), with the
    app's runs folder pointing at it for the whole module."""
    from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
    from diffusion_studio.engine.diffusion.unet import UNetConfig
    from diffusion_studio.engine.training.config import TrainConfig
    from diffusion_studio.engine.training.plan import plan_new
    from diffusion_studio.engine.training.trainer import Trainer

    d = tiny_data
    data = dataclasses.replace(d, train_images=d.train_images[:16], train_labels=d.train_labels[:16],
                               train_index=d.train_index[:16], val_images=d.val_images[:8],
                               val_labels=d.val_labels[:8], val_index=d.val_index[:8])
    root = tmp_path_factory.mktemp("distill-gui") / "runs"
    teacher = root / "teacher"
    model = UNetConfig(arch="res", level_channels=(8, 16, 16), level_blocks=(1, 1, 1), norm_groups=4, num_classes=10)
    plan = plan_new(model, ScheduleConfig(timesteps=8), TrainConfig(**TINY_TRAIN, bn_recalibration=0))
    for _ in Trainer(plan, data, device="cpu", run_dir=teacher).run():
        pass
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "runs_dir", lambda: root)
        yield root, teacher, data


def tiny_panel(world) -> TrainPanel:
    state = AppState()
    state.device = "cpu"
    state.set_data(world[2], None)
    panel = TrainPanel(state)
    box = panel.distill
    box.train_changes, box.val_images, box.strip_digits = TINY_TRAIN, 8, 3
    panel.form.device_combo.setCurrentText("cpu")
    box.form.fill_teachers()
    box.form.set_teacher(str(world[1]))
    box.form.steps_combo.setCurrentIndex(box.form.steps_combo.findData(1))
    box.form.start_spin.setValue(4)
    panel.resize(1200, 900)
    panel.show()
    return panel


@pytest.fixture(scope="module")
def run(world, qapp):
    """A distillation started with the panel's Start and left to finish, and its learner's view."""
    panel = tiny_panel(world)
    out = world[0] / "distilled"
    panel.distill.form.set_out_dir(out)
    seen_titles = []
    assert panel.distill.start()
    item = panel.view.plot.getPlotItem()
    wait_for(lambda: (seen_titles.append((item.titleLabel.text, item.getAxis("left").toolTip()))
                      or not panel.is_training()))
    wait_for(lambda: panel.distill.dialog is not None and panel.distill.dialog.view.strip is not None)
    yield panel, out, seen_titles
    panel.shutdown(10000)
    panel.distill.dialog.close()
    panel.close()


def test_the_form_builds_the_request(qtbot, world):
    panel = tiny_panel(world)
    qtbot.addWidget(panel)
    form = panel.distill.form
    bundled = [form.teacher_combo.itemData(i) for i in range(form.teacher_combo.count())]
    assert str(world[1]) in bundled  # the run with a best.pt is offered beside the bundled models
    assert form.steps_combo.count() == 4 and form.steps_combo.itemData(0) == 8
    # the folder is a new one in the runs folder, named after the teacher and the steps
    assert form.out_dir().parent == world[0] and form.out_dir().name.endswith("distill-teacher-1step")
    form.minutes_spin.setValue(2.5)
    request = form.request("cpu", val_images=8)
    assert request == DistillRequest(teacher=str(world[1]), out=form.out_dir(), steps=1, start_steps=4,
                                     round_minutes=(2.5,), device="cpu", val_images=8)
    assert [r.folder.name for r in request.rounds] == ["guidance-4", "steps-2", "steps-1"]
    form.one_round_check.setChecked(True)  # the final student straight from the first
    request = form.request("cpu", val_images=8)
    assert request.skip == (2,) and [(r.folder.name, r.teacher_steps) for r in request.rounds] == [
        ("guidance-4", 4), ("steps-1", 4)]
    form.one_round_check.setChecked(False)
    form.start_spin.setValue(3)  # not 1 times a power of 2: refused in one line, nothing starts
    assert not panel.distill.start()
    assert "power of 2" in panel.view.stopping_label.text() and not panel.is_training()
    assert not form.out_dir().exists()


def test_the_form_defaults_come_from_the_engine(qtbot, world):
    from diffusion_studio.engine.defaults import DISTILL_ROUND_MINUTES, DISTILL_START_STEPS, DISTILL_STEPS
    from diffusion_studio.engine.storage.bundled import available_bundled

    state = AppState()
    panel = TrainPanel(state)
    qtbot.addWidget(panel)
    form = panel.distill.form
    assert form.steps() == DISTILL_STEPS and form.start_spin.value() == DISTILL_START_STEPS
    assert form.minutes_spin.value() == DISTILL_ROUND_MINUTES
    if "default-conditional" in [name for name, _, _ in available_bundled()]:
        assert form.teacher() == "default-conditional"
    assert not panel.distill.start_button.isEnabled()  # no data: nothing to distil with
    assert not panel.distill.isVisibleTo(panel)  # until "Distil a model…" is pressed
    panel.distill_button.setChecked(True)
    assert panel.distill.isVisibleTo(panel)


def test_a_run_through_the_panel_makes_every_round(run):
    panel, out, titles = run
    box = panel.distill
    assert box.outcome == "complete"
    assert [steps for steps, _ in student_checkpoints(out)] == [4, 2, 1]
    assert box.round_lines[:3] == ["Round 1 of 3: fold the guidance in, 4 steps: done",
                                   "Round 2 of 3: 4 steps -> 2: done", "Round 3 of 3: 2 steps -> 1: done"]
    assert "Round 3 of 3: 2 steps -> 1: done" in box.status_label.text()
    # each round's curves were drawn under its name, and the last round's are on the plot
    assert any("Round 2 of 3" in t for t, _ in titles) and "Round 3 of 3" in titles[-1][0]
    # each round's loss under its own formula: the guidance round's in eps, the halving rounds' in v
    assert all(ROUND_LOSS_FORMULAS["eps"] in tip for t, tip in titles if "Round 1 of 3" in t)
    assert any("Round 1 of 3" in t for t, _ in titles)
    assert all(ROUND_LOSS_FORMULAS["eps"] not in tip for t, tip in titles if "Round 3 of 3" in t)
    assert len(panel.view.steps.values.values) >= 1 and panel.view.val_losses
    assert box.start_button.isEnabled() and not box.stop_button.isEnabled()
    # the next Start makes a new folder; the run's training form kept its own settings
    assert box.form.out_dir() != out and panel.form.train_config().batch_size != 16
    # the caption says what a round's loss is, its formula in the tooltips (the y axis just says
    # "loss"); the next training's plot is a training's again
    left = panel.view.plot.getPlotItem().getAxis("left")
    caption = panel.findChild(QLabel, "lossCaption")
    formula = ROUND_LOSS_FORMULAS["v"]
    assert left.labelText == LOSS_LABEL and "student" in caption.text() and "‖" not in caption.text()
    assert formula in caption.toolTip() and formula in left.toolTip()
    box_caption = box.findChild(QLabel, "distillCaption")
    assert "‖" not in box_caption.text() and formula in box_caption.toolTip()
    panel.view.reset()
    assert left.labelText == LOSS_LABEL and not panel.view.plot.getPlotItem().titleLabel.isVisible()
    assert "student" not in caption.text() and "ε_θ" in caption.toolTip() and formula not in left.toolTip()


def test_the_learners_view_shows_the_rounds(run, tmp_path):
    from PIL import Image

    panel, out, _ = run
    view = panel.distill.dialog.view
    assert panel.distill.dialog.isVisible()
    labels = [label for label, _ in view.strip.rows]
    assert labels[0].startswith("teacher, DDPM 8 steps") and labels[-1].startswith("student, 1 step")
    assert len(labels) == 5 and all(images.shape == (3, 28, 28) for _, images in view.strip.rows)
    assert view.image.array is not None and view.image.scale >= 1  # whole pixels
    assert np.array_equal(view.image.array, view.strip.picture(1))
    assert view.caption.text() == ("The same starting noise through the teacher (8 steps) and each student: "
                                   "the digits keep their shape while the steps fall to 1.")
    saved = view.export_png(tmp_path / "rounds")
    assert saved == tmp_path / "rounds.png"
    with Image.open(saved) as png:
        assert png.size == view.picture(2).shape[::-1] and png.text["Teacher"] == str(panel.distill.request.teacher)


def test_stop_stops_and_start_goes_on(qtbot, world):
    panel = tiny_panel(world)
    qtbot.addWidget(panel)
    box = panel.distill
    out = world[0] / "stopped"
    box.form.set_out_dir(out)
    box.train_changes = dict(TINY_TRAIN, epochs=50)  # far more than the test lets it train
    assert box.start()
    assert box.stop_button.isEnabled() and not panel.start_button.isEnabled()
    qtbot.waitUntil(lambda: len(panel.view.steps.values.values) > 0, timeout=60000)
    box.stop_button.click()
    qtbot.waitUntil(lambda: not panel.is_training(), timeout=30000)
    assert box.outcome == "stopped" and box.round_lines[0].endswith(": stopped")
    assert "Start with the same folder goes on" in box.status_label.text()
    assert (out / "guidance-4" / "last.pt").is_file() and not (out / "steps-2").exists()
    assert box.form.out_dir() == out  # kept, so that Start goes on
    assert box.start()
    qtbot.waitUntil(lambda: box.round_lines[0].endswith("resuming…"), timeout=60000)
    box.stop()
    qtbot.waitUntil(lambda: not panel.is_training(), timeout=30000)
    assert box.outcome == "stopped" and box.dialog is None  # no learner's view of an unfinished distillation


def test_show_rounds_of_a_folder_finds_its_teacher(qtbot, world, run):
    panel = tiny_panel(world)
    qtbot.addWidget(panel)
    box = panel.distill
    assert not box.show_rounds(world[1])  # a run, not a distillation: one line says so
    assert "No student in" in panel.view.stopping_label.text()
    assert box.show_rounds(run[1])  # the teacher is read from the first student's checkpoint
    qtbot.waitUntil(lambda: box.dialog.view.strip is not None, timeout=60000)
    assert box.dialog.view.teacher == str(world[1])
    assert np.array_equal(box.dialog.view.strip.picture(1), run[0].distill.dialog.view.strip.picture(1))
    qtbot.waitUntil(lambda: box.rounds_button.isEnabled(), timeout=5000)
    box.dialog.close()


def test_the_sampler_runs_a_student_on_its_own_steps(qtbot, world, run):
    from diffusion_studio.tasks.models import open_model
    from diffusion_studio.ui.sampler_panel import SamplerPanel

    state = AppState()
    panel = SamplerPanel(state)
    qtbot.addWidget(panel)
    form = panel.form
    titles = [form.model_combo.itemText(i) for i in range(form.model_combo.count())]
    assert [t for t in titles if t.endswith(": distilled")] == [
        "Student, 1 step: distilled", "Student, 2 steps: distilled", "Student, 4 steps: distilled"]
    form.sampler_combo.setCurrentIndex(form.sampler_combo.findData("ddpm"))
    form.guidance_spin.setValue(3.0)
    student = open_model(run[1] / "steps-2" / "best.pt", "cpu")
    state.set_model(student, "student")
    for w in (form.sampler_combo, form.steps_spin, form.eta_spin):
        assert not w.isEnabled()
    assert form.student_info.isVisibleTo(panel)
    assert form.student_info.text().startswith("2-step student: its own 2 deterministic steps, one network call each")
    lo, hi = student.payload["distill"]["weight_min"], student.payload["distill"]["weight_max"]
    assert (form.guidance_spin.minimum(), form.guidance_spin.maximum()) == (lo, hi) and form.guidance_spin.isEnabled()
    assert form.guidance_spin.value() == hi  # the 3.0 asked is brought into the range it learnt
    config = panel.sampler_config()
    assert (config.kind, config.steps, config.eta, config.spacing, config.guidance) == ("ddim", 2, 0.0, "trailing", hi)
    assert state.sampler_config == config
    teacher = open_model(world[1], "cpu")
    state.set_model(teacher, "teacher")  # not a student: the user's settings come back
    assert form.sampler_combo.isEnabled() and form.sampler_combo.currentData() == "ddpm"
    assert form.guidance_spin.maximum() == 20.0 and form.guidance_spin.value() == 3.0
    assert not form.student_info.isVisibleTo(panel)


@pytest.mark.parametrize("screen", ["1280x720"])
def test_the_open_distillation_box_fits_a_laptop_screen(qtbot, screen):
    from test_window_fit import SCREENS, overlapping_widgets, settle, squeezed_widgets

    from diffusion_studio.ui.main_window import MainWindow

    window = MainWindow(AppState())
    qtbot.addWidget(window)
    window.show()
    window.resize(MainWindow.default_size(SCREENS[screen]))
    panel = window.panels["trainPanel"]
    window.show_panel("trainPanel")
    panel.distill_button.click()
    panel.distill.round_lines = ["Round 1 of 3: fold the guidance in, 16 steps: done"] * 4
    panel.distill._show_rounds_status()
    settle()
    assert panel.distill.isVisible() and panel.distill.form.out_edit.width() > 100
    assert overlapping_widgets(panel) + squeezed_widgets(panel) == []
    # the box opened below the fold is scrolled into view
    area = window.scroll_areas["trainPanel"]
    top = panel.distill.mapTo(area.viewport(), panel.distill.rect().topLeft()).y()
    assert 0 <= top < area.viewport().height()


def test_an_autoguidance_student_limits_the_autoguidance_weight(qtbot, run):
    from diffusion_studio.engine.storage.checkpoint import LoadedModel, load_checkpoint
    from diffusion_studio.ui.sampler_panel import SamplerPanel

    payload = load_checkpoint(run[1] / "steps-1" / "best.pt")
    payload = {**payload, "model": {**payload["model"], "weight_input": "autoguidance"},
               "distill": {**payload["distill"], "weight_kind": "autoguidance", "weight_min": 0.5, "weight_max": 3.0}}
    student = LoadedModel(payload, None, "cpu")  # a student that takes g (a guide folded in), as a file has it
    assert student.guide is None and student.model_config.weight_input == "autoguidance"
    state = AppState()
    panel = SamplerPanel(state)
    qtbot.addWidget(panel)
    form = panel.form
    form.autoguidance_min_t_spin.setValue(100)
    state.set_model(student, "student")
    assert form.autoguidance_spin.isEnabled() and not form.autoguidance_min_t_spin.isEnabled()
    assert (form.autoguidance_spin.minimum(), form.autoguidance_spin.maximum()) == (0.5, 3.0)
    assert form.guidance_spin.maximum() == 20.0  # the weight it does not take keeps its range
    assert "1-step student: its own single deterministic step" in form.student_info.text()
    assert "autoguidance g from 0.5 to 3" in form.student_info.text()
    config = panel.sampler_config()
    assert (config.steps, config.autoguidance_min_t, config.autoguidance) == (1, 0, form.autoguidance_spin.value())
