"""The training form remembers the learner's choices across a restart (issue 32, item 12): the
preset, the time budget, the class-conditional box and the device, in the app's settings store.
tests/ui/conftest.py points that store at the session's temporary folder and empties the form's
group before each test."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox

from diffusion_studio.engine.defaults import DEFAULT_GUI_BUDGET_MINUTES
from diffusion_studio.engine.training.presets import PRESETS
from diffusion_studio.ui import settings as S
from diffusion_studio.ui.state import AppState
from diffusion_studio.ui.train_form import TrainForm


_alive: list[TrainForm] = []  # qtbot closes them after the test; Python must not free them first


def new_form(qtbot) -> TrainForm:
    """A form as the app builds it at start-up (each call is a restart)."""
    form = TrainForm(AppState())
    qtbot.addWidget(form)
    _alive.append(form)
    return form


def widgets(form):
    return (form.findChild(QComboBox, "presetCombo"), form.findChild(QSpinBox, "timeBudgetSpin"),
            form.findChild(QCheckBox, "conditionalCheck"), form.findChild(QComboBox, "deviceCombo"),
            form.findChild(QLineEdit, "runDirEdit"))


def test_the_store_is_the_tests_own():
    store = Path(S.app_settings().fileName()).resolve()
    assert store.is_relative_to(Path(os.environ["DIFFUSION_STUDIO_HOME"]).resolve())  # a temporary folder


def test_a_first_start_shows_the_default_recipe(qtbot):
    preset, budget, conditional, device, _ = widgets(new_form(qtbot))
    assert preset.currentData() == "default" and budget.value() == DEFAULT_GUI_BUDGET_MINUTES
    assert conditional.isChecked() == PRESETS["default"].model.conditional
    assert device.currentText() == "auto"


def test_preset_budget_conditional_and_device_come_back_after_a_restart(qtbot):
    form = new_form(qtbot)
    preset, budget, conditional, device, run_dir = widgets(form)
    preset.setCurrentIndex(preset.findData("report"))
    budget.setValue(42)
    conditional.setChecked(True)  # the unconditional recipe, made conditional
    device.setCurrentText("cpu")
    form.set_run_dir("/tmp/the-last-run")

    preset2, budget2, conditional2, device2, run_dir2 = widgets(new_form(qtbot))
    assert preset2.currentData() == "report" and preset2.currentText() == PRESETS["report"].title
    assert budget2.value() == 42 and conditional2.isChecked() and device2.currentText() == "cpu"
    assert run_dir2.text() != "/tmp/the-last-run"  # a fresh run folder, never the last one
    # the preset's own fields come with it
    assert new_form(qtbot).schedule_config().kind == PRESETS["report"].schedule.kind


def test_no_budget_is_remembered_as_none(qtbot):
    _, budget, *_ = widgets(new_form(qtbot))
    budget.setValue(0)
    _, budget2, *_ = widgets(new_form(qtbot))
    assert budget2.value() == 0 and budget2.text() == "none"


@pytest.mark.parametrize("key, value", [(S.TRAIN_PRESET, "a-preset-since-renamed"), (S.TRAIN_BUDGET, "-7"),
                                        (S.TRAIN_BUDGET, "soon"), (S.TRAIN_DEVICE, "tpu")])
def test_a_remembered_value_the_form_no_longer_offers_is_skipped(qtbot, key, value):
    S.app_settings().setValue(key, value)
    preset, budget, _, device, _ = widgets(new_form(qtbot))
    assert preset.currentData() == "default" and budget.value() == DEFAULT_GUI_BUDGET_MINUTES
    assert device.currentText() == "auto"


def test_a_resumed_runs_settings_and_a_test_preset_are_not_remembered(qtbot):
    """The form shows a resumed run's own settings; they are that run's, not the learner's choice.
    A preset added at run time (no restart offers it) leaves the remembered one as it was."""
    from diffusion_studio.engine.training.config import StartedRecord

    form = new_form(qtbot)
    preset, _, conditional, _, _ = widgets(form)
    preset.setCurrentIndex(preset.findData("plain"))
    started = StartedRecord(
        mode="resume", device="cpu", precision="fp32", precision_detail="", train_images=100, val_images=20,
        validation_images=20, epochs=3, start_epoch=1, start_step=0, start_lr=1e-3, steps_per_epoch=1,
        timesteps=50, train_config=PRESETS["default"].train.to_dict(), model_config={"num_classes": 10},
        schedule_config={"kind": "cosine", "timesteps": 50}, preset="default", run_dir="/r", max_seconds=None,
        history={})
    form.show_run_settings(started)
    assert conditional.isChecked()  # the run's own, shown
    form.add_preset(replace(PRESETS["report"], name="tiny", title="Tiny (tests)"))
    assert form.current_preset().name == "tiny"
    preset2, _, conditional2, _, _ = widgets(new_form(qtbot))
    assert preset2.currentData() == "plain"
