"""The Training panel's form: a preset, the settings it may change, the run folder.

``TrainForm`` holds the widgets and turns them into what a run needs: the configs of a new
run (``model_config``, ``schedule_config``, ``train_config``), the settings a resume or a continuation asks for (``raised_settings``,
``continue_settings``), and the run folder. It shows a resumed run's own settings
(``show_run_settings``) and tells the shared state which schedule the next run trains. The
learner's choices (preset, time budget, class-conditional, device) are remembered in the app's
settings store and come back after a restart; the run folder is always a fresh one.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QWidget,
)

from ..engine import runs
from ..engine.defaults import (
    DEFAULT_EPOCH_SECONDS,
    DEFAULT_GUI_BUDGET_MINUTES,
    DEVICE_CHOICES,
    PRECISIONS,
    SCHEDULE_KINDS,
)
from ..engine.text import format_duration
from ..engine.diffusion.schedule import MAX_TIMESTEPS, ScheduleConfig
from ..engine.diffusion.unet import UNetConfig
from ..engine.storage import paths
from ..engine.training.config import TrainConfig
from ..engine.training.presets import PRESETS, Preset
from .settings import TRAIN_BUDGET, TRAIN_CONDITIONAL, TRAIN_DEVICE, TRAIN_PRESET, app_settings, stored_int
from .state import AppState, cuda_available
from .widgets import WrappingLabel

#: the form's fields of TrainConfig, with the widget that holds each
TRAIN_FIELDS = ("epochs", "batch_size", "lr", "patience", "seed", "ema_decay", "precision")
#: what the default budget gives (docs/quality.md, "Quality per CPU minute")
BUDGET_QUALITY = "about 95% of digits clearly recognisable, FD 1.5x real digits' (w = 0.1; Xeon CPU, fp32)"
EXPECTED_QUALITY = (f"{DEFAULT_GUI_BUDGET_MINUTES} minutes of the default recipe: {BUDGET_QUALITY}; "
                    "docs/quality.md has the measurements.")
#: what the form is, for a learner who has never trained a network
FORM_INTRO = ("What the next run trains: a network that learns to predict the noise added to a digit. "
              "A preset fills in every field; change any of them before Start.")


class TrainForm(QGroupBox):
    """The settings of the next run (a QGroupBox titled "Settings")."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__("Settings", parent)
        self.state = state
        self.presets: dict[str, Preset] = dict(PRESETS)
        self.run_dir_auto = True  # the folder is named after the settings until one is chosen
        self._build()
        self.preset_combo.currentIndexChanged.connect(self._on_preset_changed)
        self.schedule_combo.currentIndexChanged.connect(self._on_schedule_edited)
        self.timesteps_spin.valueChanged.connect(self._on_schedule_edited)
        self.conditional_check.toggled.connect(self._rename_run_dir)
        self.run_dir_edit.textEdited.connect(self._on_run_dir_edited)
        self.epoch_seconds: float | None = None  # measured by a run in this session
        self.epochs_spin.valueChanged.connect(self._update_estimate)
        self.budget_spin.valueChanged.connect(self._update_estimate)
        self._on_preset_changed()
        self._restore_choices()
        # remembered as they change (a resumed run's settings are shown with signals blocked, so
        # they never become the learner's choices)
        for signal in (self.preset_combo.currentIndexChanged, self.budget_spin.valueChanged,
                       self.conditional_check.toggled, self.device_combo.currentIndexChanged):
            signal.connect(self._remember_choices)

    # ------------------------------------------------------------ layout
    def _build(self) -> None:
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.intro_label = WrappingLabel(objectName="trainFormIntro")
        self.intro_label.setText(FORM_INTRO)
        self.intro_label.setStyleSheet("color: #555;")
        form.addRow(self.intro_label)
        self.preset_combo = QComboBox(objectName="presetCombo")
        for p in self.presets.values():
            self.preset_combo.addItem(p.title, p.name)
            self.preset_combo.setItemData(self.preset_combo.count() - 1, p.description, Qt.ItemDataRole.ToolTipRole)
        form.addRow("Preset", self.preset_combo)
        # the recipe's first words; the whole of it in the tooltip (in a form row, a long wrapped
        # text was squeezed and cut off)
        self.preset_label = QLabel(objectName="presetSummaryLabel")
        self.preset_label.setStyleSheet("color: #555; font-size: 11px;")
        form.addRow(self.preset_label)
        self._build_schedule_rows(form)
        self._build_training_rows(form)
        self._build_run_rows(form)

    def _build_schedule_rows(self, form: QFormLayout) -> None:
        self.schedule_combo = QComboBox(objectName="trainScheduleCombo")
        for kind in SCHEDULE_KINDS:
            self.schedule_combo.addItem(kind.replace("_", " "), kind)
        self.schedule_combo.setToolTip("The beta schedule the run trains with (the noise panel shows it)")
        form.addRow("Schedule", self.schedule_combo)
        self.timesteps_spin = QSpinBox(objectName="trainTimestepsSpin", minimum=2, maximum=MAX_TIMESTEPS, value=300)
        self.timesteps_spin.setToolTip("T, the number of diffusion steps")
        form.addRow("Steps T", self.timesteps_spin)

    def _build_training_rows(self, form: QFormLayout) -> None:
        self.epochs_spin = QSpinBox(objectName="epochsSpin", minimum=1, maximum=10000, value=50)
        self.epochs_spin.setToolTip("Most epochs to train (early stopping may end sooner)")
        form.addRow("Epochs", self.epochs_spin)
        self.batch_spin = QSpinBox(objectName="batchSizeSpin", minimum=2, maximum=8192, value=128)
        self.batch_spin.setToolTip("Images per optimiser step")
        form.addRow("Batch size", self.batch_spin)
        self.lr_spin = QDoubleSpinBox(objectName="lrSpin", decimals=5, minimum=0.00001, maximum=1.0)
        self.lr_spin.setSingleStep(0.0001)
        self.lr_spin.setToolTip("Adam learning rate")
        form.addRow("Learning rate", self.lr_spin)
        self.patience_spin = QSpinBox(objectName="patienceSpin", minimum=1, maximum=1000, value=5)
        self.patience_spin.setToolTip("Early stopping: stop after this many epochs without a better validation loss")
        form.addRow("Patience", self.patience_spin)
        self.seed_spin = QSpinBox(objectName="seedSpin", minimum=0, maximum=2**31 - 1, value=0)
        form.addRow("Seed", self.seed_spin)
        self.device_combo = QComboBox(objectName="deviceCombo")
        self.device_combo.addItems(list(DEVICE_CHOICES))
        if not cuda_available():
            item = self.device_combo.model().item(self.device_combo.findText("cuda"))
            if item is not None:
                item.setEnabled(False)
                item.setToolTip("No CUDA GPU was found")
        form.addRow("Device", self.device_combo)
        self.ema_spin = QDoubleSpinBox(objectName="emaSpin", decimals=4, minimum=0.0, maximum=0.9999)
        self.ema_spin.setSingleStep(0.001)
        self.ema_spin.setSpecialValueText("off")
        self.ema_spin.setToolTip("Exponential moving average of the weights (0 = off)")
        form.addRow("EMA decay", self.ema_spin)
        self.conditional_check = QCheckBox("Class-conditional (choose the digit)", objectName="conditionalCheck")
        self.conditional_check.setToolTip(
            "Train with the digit's label as an input (dropped 10% of the time), so the sampler can "
            "ask for a digit and use classifier-free guidance")
        form.addRow(self.conditional_check)
        self.precision_combo = QComboBox(objectName="precisionCombo")
        self.precision_combo.addItems(list(PRECISIONS))
        self.precision_combo.setToolTip(
            "auto: the faster of fp32 and bf16 for this network on this machine, timed once "
            "(about a second) and remembered")
        form.addRow("Precision", self.precision_combo)

    def _build_run_rows(self, form: QFormLayout) -> None:
        self.budget_spin = QSpinBox(objectName="timeBudgetSpin", minimum=0, maximum=7 * 24 * 60,
                                    value=DEFAULT_GUI_BUDGET_MINUTES)
        self.budget_spin.setSuffix(" min")
        self.budget_spin.setSpecialValueText("none")
        self.budget_spin.setToolTip(
            "Stop training after this many minutes (the model trained so far is validated and kept; "
            f"early stopping still applies). 0 = no time limit. {EXPECTED_QUALITY}")
        form.addRow("Time budget", self.budget_spin)
        # how long Start trains and what it gives; the panel lays it out under the form, where a
        # wrapped label gets the height it needs (a QFormLayout row squeezed it)
        self.estimate_label = WrappingLabel(objectName="trainEstimateLabel")
        self.estimate_label.setStyleSheet("color: #555; font-size: 11px;")
        self.run_dir_edit = QLineEdit(objectName="runDirEdit")
        self.run_dir_edit.textChanged.connect(self.run_dir_edit.setToolTip)  # the whole path
        browse = QToolButton(text="…", objectName="browseRunDirButton")
        browse.setToolTip("Choose the run folder")
        browse.clicked.connect(self._browse_run_dir)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.run_dir_edit, 1)
        row.addWidget(browse)
        form.addRow("Run folder", row)

    def fields(self) -> tuple[QWidget, ...]:
        """Every input, to disable while a run trains."""
        return (self.preset_combo, self.epochs_spin, self.batch_spin, self.lr_spin, self.patience_spin,
                self.seed_spin, self.device_combo, self.ema_spin, self.precision_combo, self.run_dir_edit,
                self.conditional_check, self.budget_spin, self.schedule_combo, self.timesteps_spin)

    # ------------------------------------------------------------ presets
    def add_preset(self, preset: Preset, select: bool = True) -> None:
        """Offer ``preset`` (an engine Preset) in the preset list."""
        if preset.name not in self.presets:
            self.preset_combo.addItem(preset.title, preset.name)
        self.presets[preset.name] = preset
        if select:
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(preset.name))
            self._on_preset_changed()

    def current_preset(self) -> Preset:
        return self.presets[self.preset_combo.currentData()]

    @Slot()
    def _on_preset_changed(self, *_args) -> None:
        p = self.current_preset()
        self.preset_label.setText(_summary(p.description))
        self.preset_label.setToolTip(p.description)
        self.preset_combo.setToolTip(p.description)
        self._set_train_values(p.train.to_dict())
        self._update_estimate()
        self.conditional_check.setChecked(p.model.conditional)
        with _signals_blocked(self.schedule_combo, self.timesteps_spin):
            self.schedule_combo.setCurrentIndex(self.schedule_combo.findData(p.schedule.kind))
            self.timesteps_spin.setValue(p.schedule.timesteps)
        self._on_schedule_edited()

    # ------------------------------------------------------------ remembered choices
    def _restore_choices(self) -> None:
        """The learner's last preset, budget, class-conditional box and device; a remembered value
        the form no longer offers (a preset renamed, a GPU gone) is skipped."""
        store = app_settings()
        i = self.preset_combo.findData(store.value(TRAIN_PRESET, "", str))
        if i >= 0 and i != self.preset_combo.currentIndex():
            self.preset_combo.setCurrentIndex(i)
        minutes = stored_int(store, TRAIN_BUDGET)
        if minutes is not None and self.budget_spin.minimum() <= minutes <= self.budget_spin.maximum():
            self.budget_spin.setValue(minutes)
        if store.contains(TRAIN_CONDITIONAL):
            self.conditional_check.setChecked(store.value(TRAIN_CONDITIONAL, False, bool))
        i = self.device_combo.findText(store.value(TRAIN_DEVICE, "", str))
        item = self.device_combo.model().item(i) if i >= 0 else None
        if item is not None and item.isEnabled():
            self.device_combo.setCurrentIndex(i)

    @Slot()
    def _remember_choices(self, *_args) -> None:
        store = app_settings()
        if self.preset_combo.currentData() in PRESETS:  # a preset added at run time is not offered after a restart
            store.setValue(TRAIN_PRESET, self.preset_combo.currentData())
        store.setValue(TRAIN_BUDGET, self.budget_spin.value())
        store.setValue(TRAIN_CONDITIONAL, self.conditional_check.isChecked())
        store.setValue(TRAIN_DEVICE, self.device_combo.currentText())

    def _set_train_values(self, values: dict) -> None:
        """Show these TrainConfig values (a dict; missing keys keep their field)."""
        for spin, key in ((self.epochs_spin, "epochs"), (self.batch_spin, "batch_size"),
                          (self.patience_spin, "patience"), (self.seed_spin, "seed")):
            if key in values:
                spin.setValue(int(values[key]))
        for spin, key in ((self.lr_spin, "lr"), (self.ema_spin, "ema_decay")):
            if key in values:
                spin.setValue(float(values[key]))
        if "precision" in values:
            self.precision_combo.setCurrentText(str(values["precision"]))

    # ------------------------------------------------------------ configs
    def train_config(self) -> TrainConfig:
        """The form's TrainConfig (ValueError with a clear message on bad values)."""
        return TrainConfig(**{**self.current_preset().train.to_dict(), **self.train_values()})

    def train_values(self) -> dict:
        return {"epochs": self.epochs_spin.value(), "batch_size": self.batch_spin.value(),
                "lr": self.lr_spin.value(), "patience": self.patience_spin.value(), "seed": self.seed_spin.value(),
                "ema_decay": self.ema_spin.value(), "precision": self.precision_combo.currentText()}

    def schedule_config(self) -> ScheduleConfig:
        """The preset's schedule with the form's kind and T (ValueError when invalid)."""
        base = self.current_preset().schedule
        return replace(base, kind=self.schedule_combo.currentData(), timesteps=self.timesteps_spin.value())

    def model_config(self) -> UNetConfig:
        """The preset's network, class-conditional when the form asks for it."""
        return replace(self.current_preset().model, num_classes=10 if self.conditional_check.isChecked() else 0)

    def max_minutes(self) -> float | None:
        """The form's time budget (None: no limit)."""
        return float(self.budget_spin.value()) or None

    def set_epoch_seconds(self, seconds: float) -> None:
        """An epoch's measured length on this machine (a run's EpochRecord), for the estimate."""
        self.epoch_seconds = float(seconds)
        self._update_estimate()

    def estimate_text(self) -> str:
        """How long Start trains and what it gives: the budget, else epochs x an epoch's time
        (measured here, or the default recipe's on the Xeon of docs/quality.md)."""
        minutes = self.budget_spin.value()
        if minutes:
            text = f"This run: {format_duration(60.0 * minutes, words=True)} (the time budget)."
            self.estimate_label.setToolTip(EXPECTED_QUALITY)
            if minutes == DEFAULT_GUI_BUDGET_MINUTES and self.current_preset().name == "default":
                text += f" Expected: {BUDGET_QUALITY}."
            return text
        per_epoch = self.epoch_seconds or DEFAULT_EPOCH_SECONDS
        where = "as measured here" if self.epoch_seconds else "at the default recipe's pace on a Xeon CPU"
        epochs = self.epochs_spin.value()
        return (f"This run: up to {epochs} epochs, about {format_duration(epochs * per_epoch, words=True)} "
                f"({format_duration(per_epoch, words=True)} per epoch {where}); early stopping may end it sooner.")

    @Slot()
    def _update_estimate(self, *_args) -> None:
        self.estimate_label.setText(self.estimate_text())

    def _changed(self, keys: tuple[str, ...]) -> dict:
        preset = self.current_preset().train
        values = self.train_values()
        return {k: values[k] for k in keys
                if not math.isclose(values[k], getattr(preset, k), rel_tol=1e-6, abs_tol=1e-12)}

    def raised_settings(self) -> dict:
        """What a resume or a continuation asks of the run's epochs and patience: the form's where
        they differ from the preset's (the user set them; a lower value than the run's is refused),
        else nothing, and the run keeps its own."""
        return self._changed(("epochs", "patience"))

    def continue_settings(self) -> dict[str, float]:
        """What a Continue changes of the file's own training settings: the form's learning rate and
        EMA decay where they differ from the preset's (the user changed them for this run), else
        nothing, and the run keeps the file's (a bundled model fine-tuned at 2e-4 goes on at 2e-4)."""
        return self._changed(("lr", "ema_decay"))

    @Slot()
    def _on_schedule_edited(self, *_args) -> None:
        """The noise panel follows the form: it shows the schedule the next run trains."""
        try:
            config = self.schedule_config()
        except ValueError as exc:
            self.state.report(f"That schedule is not valid: {exc}")
            return
        self.state.set_schedule_config(config, "the training form")
        self._rename_run_dir()

    def show_run_settings(self, started) -> None:
        """Fill the form with a resumed or continued run's own settings (a StartedRecord's): the
        form never shows a value the run ignores. The run folder stays as it is."""
        with _signals_blocked(*self.fields()):
            self._set_train_values({**started.train_config, "epochs": started.epochs})
            sched = started.schedule_config or {}
            if "kind" in sched:
                self.schedule_combo.setCurrentIndex(self.schedule_combo.findData(sched["kind"]))
            if "timesteps" in sched:
                self.timesteps_spin.setValue(int(sched["timesteps"]))
            self.conditional_check.setChecked(bool((started.model_config or {}).get("num_classes")))

    # ------------------------------------------------------------ run folder
    def run_dir(self) -> Path | None:
        """The chosen run folder, or None when the form names a new one after the settings.
        ValueError when the field was cleared."""
        if self.run_dir_auto:
            return None
        text = self.run_dir_edit.text().strip()
        if not text:
            raise ValueError("Choose a run folder for the checkpoints.")
        return Path(text).expanduser()

    def set_run_dir(self, folder: str | Path) -> None:
        """Train the next run into ``folder`` (as if typed in the field: the form no longer
        names the folder after the settings)."""
        self.run_dir_edit.setText(str(folder))
        self.run_dir_auto = False

    def use_new_run_dir(self) -> None:
        """After a run: the next Start trains into a new folder named after the settings (a folder
        the user chose was for the run that just used it)."""
        self.run_dir_auto = True
        self._rename_run_dir()

    def show_run_dir(self, folder: str | Path) -> None:
        """Show the folder a run trains in, keeping whether the next one is named after the settings."""
        self.run_dir_edit.setText(str(folder))

    @Slot()
    def _rename_run_dir(self, *_args) -> None:
        if self.run_dir_auto:
            self.run_dir_edit.setText(str(paths.runs_dir() / runs.suggest_run_name(self._run_description())))

    def _run_description(self) -> str:
        preset = self.current_preset()
        try:
            train = self.train_config()
        except ValueError:
            train = preset.train
        try:
            schedule = self.schedule_config()
        except ValueError:
            schedule = preset.schedule
        return runs.describe_differences(self.model_config(), schedule, train)

    @Slot(str)
    def _on_run_dir_edited(self, _text: str) -> None:
        self.run_dir_auto = False

    @Slot()
    def _browse_run_dir(self) -> None:
        """A save dialog, so a new folder's name can be typed (a directory picker only takes one
        that exists); the run makes the folder when it starts."""
        folder, _ = QFileDialog.getSaveFileName(
            self, "Run folder: type a new name, or choose an empty folder", self.run_dir_edit.text(),
            options=QFileDialog.Option.DontConfirmOverwrite | QFileDialog.Option.ShowDirsOnly)
        if folder:
            self.set_run_dir(folder)


def _summary(description: str, limit: int = 48) -> str:
    """A recipe's first words (its tooltip has the rest): up to its first " (", ";" or ":", else
    ``limit`` characters, with "…" when cut ("A class-conditional residual U-Net…")."""
    cuts = [i for i in (description.find(" ("), description.find(";"), description.find(":")) if i > 0]
    end = min(cuts + [limit, len(description)])
    head = description[:end].rstrip(" .,")
    return head if end >= len(description) else head + "…"


class _signals_blocked:
    """``with _signals_blocked(a, b):`` the widgets emit nothing inside."""

    def __init__(self, *widgets: QWidget) -> None:
        self.widgets = widgets

    def __enter__(self) -> None:
        for w in self.widgets:
            w.blockSignals(True)

    def __exit__(self, *_exc) -> None:
        for w in self.widgets:
            w.blockSignals(False)
