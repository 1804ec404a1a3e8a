"""The training panel: hyperparameters, Start / Stop / Resume, live loss curves.

Training runs in a ``TrainWorker`` on a QThread (see ``workers.py``); this panel
only draws what the worker reports. The per-step train loss (raw and smoothed)
and the per-epoch validation loss are plotted against the epoch (fractional for
steps), redrawn at most every 40 ms from arrays that keep every step.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QFont
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
    QMenu,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..engine.storage import paths
from ..engine import runs
from ..engine.text import format_duration as _format_duration
from ..engine.text import baseline_validated, continuing_from, resuming_at
from ..engine.training.presets import PRESETS, Preset
from ..engine.diffusion.schedule import MAX_TIMESTEPS, SCHEDULE_KINDS, ScheduleConfig
from ..engine.training.config import TrainConfig
from ..engine.diffusion.unet import UNetConfig
from .imaging import gray_pixmap, tile
from .state import AppState
from .workers import TrainJob, TrainWorker, WorkerRunner

SMOOTHING = 0.95  # EMA factor of the smoothed train-loss curve (debiased)
REDRAW_MS = 40


def format_duration(seconds: float) -> str:
    """12 s, 4 min 05 s, 1 h 02 min ("–" when unknown): the engine's formatter, in words."""
    if not math.isfinite(seconds) or seconds < 0:
        return "–"
    return _format_duration(seconds, words=True)


class _Series:
    """A growable float array (amortised appends, a view for plotting)."""

    def __init__(self) -> None:
        self._a = np.zeros(1024)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        need = self.n + len(values)
        if need > len(self._a):
            grown = np.zeros(max(need, 2 * len(self._a)))
            grown[: self.n] = self._a[: self.n]
            self._a = grown
        self._a[self.n : need] = values
        self.n = need

    def clear(self) -> None:
        self.n = 0

    @property
    def values(self) -> np.ndarray:
        return self._a[: self.n]


CONTINUE_TIP = ("Start a new run from a checkpoint's weights, settings and epoch count: a bundled model, "
                "or a .pt file (a run's last.pt keeps its optimizer state). Its Adam starts afresh with the "
                "file's learning rate and EMA, or this form's where you changed them from the preset's; "
                "a lower rate (2e-4) and a longer EMA (0.9998) fine-tune")


class TrainPanel(QWidget):
    """Train a DDPM on ``state.data`` and stream its losses (objectName ``trainPanel``).

    Public API
      start_training(): start a new run with the form's settings (Start button).
      stop_training(): ask the run to stop after the current batch (Stop button).
      resume_training(run_dir=None): continue the run in ``run_dir`` (its last.pt);
          None asks with a folder dialog (Resume button).
      continue_training(source=None): a new run from a checkpoint's weights, settings and
          epoch count: a bundled model's name, a .pt file or a run folder; None asks with a
          file dialog (Continue from… button, whose menu also lists the bundled models).
      add_preset(preset, select=True): offer another engine Preset in the form.
      shutdown(timeout_ms=15000) -> bool: stop and wait (bounded) for the worker;
          called when the window closes. last.pt / best.pt are written by the engine.
      is_training() -> bool.
    Signals
      training_finished(reason, message): after a run ends ("completed",
          "early_stopped", "budget", "stopped", "diverged", or "failed").
    """

    training_finished = Signal(str, str)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainPanel")
        self.state = state
        self.presets: dict[str, Preset] = dict(PRESETS)
        self.runner = WorkerRunner(self)
        self.runner.stopped.connect(self._on_thread_stopped)
        self.run_dir: Path | None = None
        self._run_dir_auto = True
        self._resuming = False  # a resume started and its worker has not reported "started" yet
        self._continuing: str | None = None  # what a new run continues, until its worker has started
        self._reset_run_data()
        self._build()
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setInterval(REDRAW_MS)
        self._redraw_timer.timeout.connect(self._redraw)
        state.data_changed.connect(self._update_enabled)
        self._update_enabled()

    # ------------------------------------------------------------ layout
    def _build(self) -> None:
        form_box = QGroupBox("Settings")
        form = QFormLayout(form_box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        self.preset_combo = QComboBox(objectName="presetCombo")
        for p in self.presets.values():
            self.preset_combo.addItem(p.title, p.name)
        self.preset_combo.currentIndexChanged.connect(self._on_preset_changed)
        form.addRow("Preset", self.preset_combo)
        self.preset_label = QLabel(wordWrap=True)
        self.preset_label.setStyleSheet("color: palette(mid); font-size: 11px;")
        form.addRow(self.preset_label)

        self.schedule_combo = QComboBox(objectName="trainScheduleCombo")
        for kind in SCHEDULE_KINDS:
            self.schedule_combo.addItem(kind.replace("_", " "), kind)
        self.schedule_combo.setToolTip("The beta schedule the run trains with (the noise panel shows it)")
        form.addRow("Schedule", self.schedule_combo)
        self.timesteps_spin = QSpinBox(objectName="trainTimestepsSpin", minimum=2, maximum=MAX_TIMESTEPS, value=300)
        self.timesteps_spin.setToolTip("T, the number of diffusion steps")
        form.addRow("Steps T", self.timesteps_spin)
        self.schedule_combo.currentIndexChanged.connect(self._on_schedule_edited)
        self.timesteps_spin.valueChanged.connect(self._on_schedule_edited)
        self.epochs_spin = QSpinBox(objectName="epochsSpin", minimum=1, maximum=10000, value=50)
        self.epochs_spin.setToolTip("Most epochs to train (early stopping may end sooner)")
        form.addRow("Epochs", self.epochs_spin)
        self.batch_spin = QSpinBox(objectName="batchSizeSpin", minimum=2, maximum=8192, value=128)
        self.batch_spin.setToolTip("Images per optimiser step")
        form.addRow("Batch size", self.batch_spin)
        self.lr_spin = QDoubleSpinBox(objectName="lrSpin", decimals=5, minimum=0.00001, maximum=1.0)
        self.lr_spin.setSingleStep(0.0001)
        self.lr_spin.setValue(1e-3)
        self.lr_spin.setToolTip("Adam learning rate")
        form.addRow("Learning rate", self.lr_spin)
        self.patience_spin = QSpinBox(objectName="patienceSpin", minimum=1, maximum=1000, value=5)
        self.patience_spin.setToolTip("Early stopping: stop after this many epochs without a better validation loss")
        form.addRow("Patience", self.patience_spin)
        self.seed_spin = QSpinBox(objectName="seedSpin", minimum=0, maximum=2**31 - 1, value=0)
        form.addRow("Seed", self.seed_spin)
        self.device_combo = QComboBox(objectName="deviceCombo")
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self._cuda_available = _cuda_available()
        if not self._cuda_available:
            item = self.device_combo.model().item(2)
            item.setEnabled(False)
            item.setToolTip("No CUDA GPU was found")
        form.addRow("Device", self.device_combo)
        self.ema_spin = QDoubleSpinBox(objectName="emaSpin", decimals=4, minimum=0.0, maximum=0.9999)
        self.ema_spin.setSingleStep(0.001)
        self.ema_spin.setSpecialValueText("off")
        self.ema_spin.setToolTip("Exponential moving average of the weights (0 = off)")
        form.addRow("EMA decay", self.ema_spin)
        self.conditional_check = QCheckBox("Class-conditional (choose the digit)",
                                           objectName="conditionalCheck")
        self.conditional_check.setToolTip(
            "Train with the digit's label as an input (dropped 10% of the time), so the sampler can "
            "ask for a digit and use classifier-free guidance"
        )
        self.conditional_check.toggled.connect(self._on_conditional_toggled)
        form.addRow(self.conditional_check)
        self.precision_combo = QComboBox(objectName="precisionCombo")
        self.precision_combo.addItems(["auto", "fp32", "bf16"])
        self.precision_combo.setToolTip(
            "auto: the faster of fp32 and bf16 for this network on this machine, timed once "
            "(about a second) and remembered"
        )
        form.addRow("Precision", self.precision_combo)
        self.budget_spin = QSpinBox(objectName="timeBudgetSpin", minimum=0, maximum=7 * 24 * 60, value=0)
        self.budget_spin.setSuffix(" min")
        self.budget_spin.setSpecialValueText("none")
        self.budget_spin.setToolTip(
            "Stop training after this many minutes (the model trained so far is validated and kept; "
            "early stopping still applies). 0 = no time limit"
        )
        form.addRow("Time budget", self.budget_spin)

        self.run_dir_edit = QLineEdit(objectName="runDirEdit")
        self.run_dir_edit.textEdited.connect(self._on_run_dir_edited)
        self.run_dir_edit.textChanged.connect(self.run_dir_edit.setToolTip)  # the whole path
        browse = QToolButton(text="…")
        browse.setToolTip("Choose the run folder")
        browse.clicked.connect(self._browse_run_dir)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.run_dir_edit, 1)
        row.addWidget(browse)
        form.addRow("Run folder", row)

        self.start_button = QPushButton("Start", objectName="startTrainingButton")
        self.start_button.setShortcut("Ctrl+T")
        self.start_button.clicked.connect(self.start_training)
        self.stop_button = QPushButton("Stop", objectName="stopTrainingButton", enabled=False)
        self.stop_button.setShortcut("Ctrl+Shift+T")
        self.stop_button.setToolTip("Stop after the current batch; the best checkpoint is kept (Ctrl+Shift+T)")
        self.stop_button.clicked.connect(self.stop_training)
        self.resume_button = QPushButton("Resume…", objectName="resumeTrainingButton")
        self.resume_button.setToolTip("Continue a run from its folder (it must hold last.pt)")
        self.resume_button.clicked.connect(lambda: self.resume_training())
        self.continue_button = QPushButton("Continue from…", objectName="continueTrainingButton")
        self.continue_button.setToolTip(CONTINUE_TIP)
        continue_menu = QMenu(self.continue_button)
        from ..engine.storage.bundled import available_bundled

        for name, title, _path in available_bundled():
            continue_menu.addAction(title, lambda name=name: self.continue_training(name))
        continue_menu.addAction("A checkpoint file…", lambda: self.continue_training())
        self.continue_button.setMenu(continue_menu)
        buttons = QVBoxLayout()  # two rows: a new run and its stop; going on from earlier training
        for row_buttons in ((self.start_button, self.stop_button), (self.resume_button, self.continue_button)):
            row = QHBoxLayout()
            for b in row_buttons:
                row.addWidget(b)
            buttons.addLayout(row)
        self.data_hint = QLabel(wordWrap=True, objectName="trainDataHint")
        self.data_hint.setStyleSheet("color: #b35900;")

        self.preview_label = QLabel(objectName="trainPreview", alignment=Qt.AlignmentFlag.AlignCenter)
        self.preview_label.setMinimumHeight(130)
        self.preview_label.setText("Samples from the model appear here during training")
        self.preview_label.setStyleSheet("color: palette(mid);")
        self.preview_label.setWordWrap(True)
        self.preview_caption = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.preview_caption.setStyleSheet("color: palette(mid); font-size: 11px;")
        preview_box = QGroupBox("Preview")
        pv = QVBoxLayout(preview_box)
        pv.addWidget(self.preview_label)
        pv.addWidget(self.preview_caption)

        left = QVBoxLayout()
        left.addWidget(form_box)
        left.addLayout(buttons)
        left.addWidget(self.data_hint)
        left.addWidget(preview_box)
        left.addStretch(1)
        left_w = QWidget()
        left_w.setLayout(left)
        left_w.setFixedWidth(340)

        # ---- plot
        self.plot = pg.PlotWidget(background="w")
        self.plot.setObjectName("lossPlot")
        pi = self.plot.getPlotItem()
        # (no grid: on a software-rendered view it doubles the cost of every redraw)
        pi.setLabel("bottom", "epoch")
        pi.setLabel("left", "loss  ‖ε − ε_θ‖²")
        for name in ("left", "bottom"):
            ax = pi.getAxis(name)
            ax.setPen(pg.mkPen("#555"))
            ax.setTextPen(pg.mkPen("#333"))
            ax.enableAutoSIPrefix(False)
        pi.setClipToView(True)
        # x grows in a few nice steps (1, 2, 5, 10, ... epochs, up to the budget), so the
        # axis is not re-laid out on every redraw
        pi.disableAutoRange()
        pi.setXRange(0, 1, padding=0.02)
        self._x_max = 1.0
        self._y_range: tuple[float, float] | None = None  # likewise for y, with some slack
        pi.setDownsampling(auto=True, mode="peak")
        self.legend = pi.addLegend(offset=(-10, 10), labelTextColor="#333", brush=pg.mkBrush("w"), pen=pg.mkPen("#ccc"))
        self.raw_curve = pi.plot(pen=pg.mkPen("#b9cfe6", width=1), name="train (per step)")
        self.smooth_curve = pi.plot(pen=pg.mkPen("#1f6fb5", width=2), name="train (smoothed)")
        self.val_curve = pi.plot(
            pen=pg.mkPen("#e0701b", width=2), symbol="o", symbolSize=6,
            symbolBrush="#e0701b", symbolPen="w", name="validation",
        )
        self.best_marker = pg.ScatterPlotItem(
            size=16, symbol="star", brush=pg.mkBrush("#2ca02c"), pen=pg.mkPen("#1b6e1b"), name="best epoch"
        )
        pi.addItem(self.best_marker)  # (named, so the legend lists it)
        self.best_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#2ca02c", width=1, style=Qt.PenStyle.DashLine))
        self.best_line.setVisible(False)
        pi.addItem(self.best_line, ignoreBounds=True)

        self.log_check = QCheckBox("log scale", objectName="logScaleCheck")
        self.log_check.toggled.connect(self._on_log_toggled)
        self.stopping_label = QLabel(objectName="earlyStoppingLabel")
        self.stopping_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bold = QFont(self.stopping_label.font())
        bold.setBold(True)
        self.stopping_label.setFont(bold)
        self.stopping_label.setText("Not training")
        plot_header = QHBoxLayout()
        plot_header.addWidget(self.stopping_label, 1)
        plot_header.addWidget(self.log_check)

        self.progress = QProgressBar(objectName="trainProgress", minimum=0, maximum=1000, value=0)
        self.progress.setFormat("%p%")
        self.progress_label = QLabel(objectName="trainProgressLabel")
        self.progress_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.progress_label.setText(" ")
        self.epoch_label = QLabel(objectName="epochLabel", wordWrap=True)
        self.epoch_label.setStyleSheet("color: #444;")
        # fixed heights: text changes must not re-layout (and so repaint) the plot
        self.epoch_label.setFixedHeight(2 * self.epoch_label.fontMetrics().lineSpacing() + 4)
        self.epoch_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.progress_label.setFixedHeight(self.progress_label.fontMetrics().lineSpacing() + 4)

        # ---- validation loss by timestep, one curve per epoch (latest strong, earlier faded)
        self.t_plot = pg.PlotWidget(background="w")
        self.t_plot.setObjectName("lossByTimestepPlot")
        tp = self.t_plot.getPlotItem()
        tp.setLabel("bottom", "timestep t")
        tp.setLabel("left", "validation loss")
        tp.setTitle("Validation loss by timestep (latest epoch strong, earlier ones faded)", size="9pt", color="#444")
        for name in ("left", "bottom"):
            ax = tp.getAxis(name)
            ax.setPen(pg.mkPen("#555"))
            ax.setTextPen(pg.mkPen("#333"))
            ax.enableAutoSIPrefix(False)
        tp.setLogMode(y=True)
        self.t_plot.setMinimumHeight(150)
        self.t_plot.setMaximumHeight(220)
        self.t_curves: list = []  # one PlotDataItem per epoch

        right = QVBoxLayout()
        right.addLayout(plot_header)
        right.addWidget(self.plot, 1)
        right.addWidget(self.t_plot)
        right.addWidget(self.progress)
        right.addWidget(self.progress_label)
        right.addWidget(self.epoch_label)

        layout = QHBoxLayout(self)
        layout.addWidget(left_w)
        layout.addLayout(right, 1)
        self.plot.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._on_preset_changed()

    # ------------------------------------------------------------ form
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
    def _on_preset_changed(self) -> None:
        p = self.current_preset()
        self.preset_label.setText(p.description)
        t = p.train
        self.epochs_spin.setValue(t.epochs)
        self.batch_spin.setValue(t.batch_size)
        self.lr_spin.setValue(t.lr)
        self.patience_spin.setValue(t.patience)
        self.seed_spin.setValue(t.seed)
        self.ema_spin.setValue(t.ema_decay)
        self.precision_combo.setCurrentText(t.precision)
        self.conditional_check.setChecked(p.model.conditional)
        for w in (self.schedule_combo, self.timesteps_spin):
            w.blockSignals(True)
        self.schedule_combo.setCurrentIndex(self.schedule_combo.findData(p.schedule.kind))
        self.timesteps_spin.setValue(p.schedule.timesteps)
        for w in (self.schedule_combo, self.timesteps_spin):
            w.blockSignals(False)
        self._on_schedule_edited()
        if self._run_dir_auto:
            self.run_dir_edit.setText(str(self._new_run_dir()))

    @Slot(bool)
    def _on_conditional_toggled(self, _checked: bool) -> None:
        if self._run_dir_auto:
            self.run_dir_edit.setText(str(self._new_run_dir()))

    def schedule_config(self) -> ScheduleConfig:
        """The preset's schedule with the form's kind and T (ValueError when invalid)."""
        base = self.current_preset().schedule
        return replace(base, kind=self.schedule_combo.currentData(), timesteps=self.timesteps_spin.value())

    @Slot()
    def _on_schedule_edited(self, *_args) -> None:
        """The noise panel follows the form: it shows the schedule the next run trains."""
        try:
            config = self.schedule_config()
        except ValueError as exc:
            self.state.report(f"That schedule is not valid: {exc}")
            return
        self.state.set_schedule_config(config, "the training form")
        if self._run_dir_auto:
            self.run_dir_edit.setText(str(self._new_run_dir()))

    def model_config(self) -> UNetConfig:
        """The preset's network, class-conditional when the form asks for it."""
        model = self.current_preset().model
        return replace(model, num_classes=10 if self.conditional_check.isChecked() else 0)

    def _new_run_dir(self) -> Path:
        """Where the next run goes: named like the CLI's (time + what differs from the default)."""
        return paths.runs_dir() / runs.suggest_run_name(self._run_description())

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
        self._run_dir_auto = False

    def _show_run_settings(self, info: dict) -> None:
        """Fill the form with a resumed run's own settings (the ones it trains with), so the
        form never shows a value the run ignores. The run folder stays as it is."""
        t = info.get("train_config") or {}
        widgets = (self.epochs_spin, self.batch_spin, self.lr_spin, self.patience_spin, self.seed_spin,
                   self.ema_spin, self.precision_combo, self.schedule_combo, self.timesteps_spin,
                   self.conditional_check)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.epochs_spin.setValue(int(info.get("epochs", t.get("epochs", self.epochs_spin.value()))))
            for spin, key in ((self.batch_spin, "batch_size"), (self.patience_spin, "patience"),
                              (self.seed_spin, "seed")):
                if key in t:
                    spin.setValue(int(t[key]))
            for spin, key in ((self.lr_spin, "lr"), (self.ema_spin, "ema_decay")):
                if key in t:
                    spin.setValue(float(t[key]))
            if "precision" in t:
                self.precision_combo.setCurrentText(str(t["precision"]))
            sched = info.get("schedule_config") or {}
            if "kind" in sched:
                self.schedule_combo.setCurrentIndex(self.schedule_combo.findData(sched["kind"]))
            if "timesteps" in sched:
                self.timesteps_spin.setValue(int(sched["timesteps"]))
            self.conditional_check.setChecked(bool((info.get("model_config") or {}).get("num_classes")))
        finally:
            for w in widgets:
                w.blockSignals(False)
        self.state.report(f"continuing {self._continuing} with its own settings (shown in the form)" if self._continuing
                          else "resuming with the run's own settings (shown in the form)")

    def set_run_dir(self, folder: str | Path) -> None:
        """Train the next run into ``folder`` (as if typed in the field: the form no longer
        names the folder after the settings)."""
        self.run_dir_edit.setText(str(folder))
        self._run_dir_auto = False

    @Slot()
    def _browse_run_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Run folder", str(paths.runs_dir()))
        if folder:
            self.run_dir_edit.setText(folder)
            self._run_dir_auto = False

    def train_config(self) -> TrainConfig:
        """The form's TrainConfig (ValueError with a clear message on bad values)."""
        base = self.current_preset().train
        return TrainConfig(
            **{
                **base.to_dict(),
                "epochs": self.epochs_spin.value(),
                "batch_size": self.batch_spin.value(),
                "lr": self.lr_spin.value(),
                "patience": self.patience_spin.value(),
                "seed": self.seed_spin.value(),
                "ema_decay": self.ema_spin.value(),
                "precision": self.precision_combo.currentText(),
            }
        )

    def is_training(self) -> bool:
        return self.runner.is_running()

    @Slot()
    def _update_enabled(self) -> None:
        running = self.is_training()
        has_data = self.state.data is not None
        why = ""
        if not has_data:
            why = "No MNIST data is loaded: open a data folder first (File ▸ Open data folder)."
            if self.state.data_error:
                why = f"No MNIST data: {self.state.data_error}"
        self.start_button.setEnabled(has_data and not running)
        self.resume_button.setEnabled(has_data and not running)
        self.continue_button.setEnabled(has_data and not running)
        self.continue_button.setToolTip(why or CONTINUE_TIP)
        self.start_button.setToolTip(why or "Train a new model with these settings (Ctrl+T)")
        self.resume_button.setToolTip(why or "Continue a run from its folder (it must hold last.pt)")
        self.stop_button.setEnabled(running)
        self.data_hint.setText(why)
        self.data_hint.setVisible(bool(why))
        for w in (self.preset_combo, self.epochs_spin, self.batch_spin, self.lr_spin, self.patience_spin,
                  self.seed_spin, self.device_combo, self.ema_spin, self.precision_combo, self.run_dir_edit,
                  self.conditional_check, self.budget_spin, self.schedule_combo, self.timesteps_spin):
            w.setEnabled(not running)

    def _show_error(self, message: str) -> None:
        self.stopping_label.setText(message)
        self.stopping_label.setStyleSheet("color: #b00020;")
        self.state.report(message)

    # ------------------------------------------------------------ actions
    def _can_train(self) -> bool:
        """Whether a run may start now: none is running and data is loaded (else it says so)."""
        if self.is_training():
            return False
        if self.state.data is None:
            self._show_error("No MNIST data is loaded: open a data folder first.")
            return False
        return True

    @Slot()
    def start_training(self) -> bool:
        """Start a new run with the form's settings; False (and a message) when it cannot."""
        if not self._can_train():
            return False
        if self._run_dir_auto:
            self.run_dir_edit.setText(str(self._new_run_dir()))
        text = self.run_dir_edit.text().strip()
        if not text:
            self._show_error("Choose a run folder for the checkpoints.")
            return False
        run_dir = Path(text).expanduser()
        if (run_dir / "last.pt").exists():
            self._show_error(f"{run_dir} already holds a run: use Resume to continue it, or choose another folder.")
            return False
        try:
            config = self.train_config()
        except ValueError as exc:
            self._show_error(f"Cannot train: {exc}")
            return False
        preset = self.current_preset()
        try:
            if self._run_dir_auto:  # a fresh, unique folder with its run.json
                run_dir = runs.new_run_dir(paths.runs_dir(), self._run_description())
                self.run_dir_edit.setText(str(run_dir))
                self._run_dir_auto = True
            else:
                runs.init_run(run_dir, self._run_description())
        except (OSError, runs.RunError) as exc:
            self._show_error(f"Cannot create the run folder {run_dir}: {exc}")
            return False
        try:
            schedule = self.schedule_config()
        except ValueError as exc:
            self._show_error(f"Cannot train: {exc}")
            return False
        return self._start(TrainJob(
            data=self.state.data, model=self.model_config(), schedule=schedule, train=config,
            device=self.device_combo.currentText(), run_dir=run_dir, extra_meta={"preset": preset.name},
            preview_every=self.preview_every, max_seconds=self.max_seconds(),
        ))

    def max_seconds(self) -> float | None:
        """The form's time budget in seconds (None: no limit)."""
        minutes = self.budget_spin.value()
        return 60.0 * minutes if minutes > 0 else None

    preview_every = 5  # epochs between previews (tests lower it)

    def resume_training(self, run_dir: str | Path | None = None) -> bool:
        """Continue the run in ``run_dir`` (a folder with last.pt). The form's epoch
        count may raise the run's budget. None asks with a folder dialog."""
        if not self._can_train():
            return False
        if run_dir is None:
            folder = QFileDialog.getExistingDirectory(self, "Resume which run?", str(paths.runs_dir()))
            if not folder:
                return False
            run_dir = folder
        run_dir = Path(run_dir)
        last = run_dir / "last.pt"
        if not last.is_file():
            self._show_error(f"{run_dir} has no last.pt to resume from; choose a run folder made by training.")
            return False
        self.run_dir_edit.setText(str(run_dir))
        self._run_dir_auto = False
        self._resuming = True
        return self._start(self._checkpoint_job(run_dir, resume=last))

    def continue_training(self, source: str | Path | None = None) -> bool:
        """A new run from a checkpoint (``Trainer(continue_from=...)``): its weights, settings,
        epoch count, history and guide network; the form's epoch count and patience may raise
        its own, as with a resume, and its fresh Adam trains with the file's learning rate and EMA
        decay, or the form's where they differ from the preset's (``continue_settings``;
        ``engine.train.CONTINUE_CHANGEABLE``; the CLI's ``--lr`` and ``--ema``). ``source``: a bundled model's name ("default"), a .pt file
        or a run folder (its last.pt); None asks with a file dialog. The run goes into the Run
        folder field's folder when one was chosen, else a new one in the runs folder."""
        if not self._can_train():
            return False
        if source is None:
            chosen, _ = QFileDialog.getOpenFileName(self, "Continue which checkpoint?", str(paths.runs_dir()),
                                                    "Checkpoints (*.pt)")
            if not chosen:
                return False
            source = chosen
        from ..engine.storage.checkpoint import CheckpointError
        from ..engine.training.plan import checkpoint_to_continue, continued_name
        from ..tasks.train import prepare_run_dir

        try:
            checkpoint = checkpoint_to_continue(source)
        except CheckpointError as exc:
            self._show_error(f"Cannot continue: {exc}")
            return False
        name = continued_name(checkpoint)
        text = self.run_dir_edit.text().strip()
        if not self._run_dir_auto and not text:
            self._show_error("Choose a run folder for the checkpoints.")
            return False
        folder = None if self._run_dir_auto else Path(text).expanduser()
        try:
            run_dir = prepare_run_dir(folder, f"continues-{name}", runs_dir=paths.runs_dir())
        except (OSError, runs.RunError) as exc:
            self._show_error(f"Cannot continue in that folder: {exc}")
            return False
        self.run_dir_edit.setText(str(run_dir))
        self._resuming, self._continuing = True, name
        return self._start(self._checkpoint_job(
            run_dir, continue_from=checkpoint,
            continue_settings=self.continue_settings()))

    def continue_settings(self) -> dict[str, float]:
        """What a Continue changes of the file's own training settings: the form's learning rate and
        EMA decay where they differ from the preset's (the user changed them for this run), else
        nothing, and the run keeps the file's (a bundled model fine-tuned at 2e-4 goes on at 2e-4)."""
        preset = self.current_preset().train
        return {key: spin.value() for key, spin in (("lr", self.lr_spin), ("ema_decay", self.ema_spin))
                if not math.isclose(spin.value(), getattr(preset, key), rel_tol=1e-6, abs_tol=1e-12)}

    def _checkpoint_job(self, run_dir: Path, **source) -> TrainJob:
        """The job that resumes a run or continues a checkpoint (``source``: ``resume=`` or
        ``continue_from=``). The worker reads the file (not the GUI thread): the run keeps its own
        model, schedule, training settings and preset; the form's epoch count and patience may
        raise its own (the Trainer takes the larger), and a damaged file is a "failed" line."""
        preset = self.current_preset()
        return TrainJob(
            data=self.state.data, model=preset.model, schedule=preset.schedule,
            train=TrainConfig(epochs=self.epochs_spin.value(), patience=self.patience_spin.value()),
            device=self.device_combo.currentText(), run_dir=run_dir,
            preview_every=self.preview_every, max_seconds=self.max_seconds(), **source,
        )

    def _start(self, job: TrainJob) -> bool:
        self.run_dir = job.run_dir
        self._reset_run_data()
        self._clear_plot()
        self.stopping_label.setStyleSheet("")
        self.stopping_label.setText("Starting…")
        self.progress_label.setText("Preparing the data and the network…")
        self.preview_label.setText("Samples from the model appear here during training")
        self.preview_caption.setText("")
        # A full cyclic-GC pass over the app's millions of long-lived objects (torch,
        # Qt wrappers) holds the GIL for ~1 s on a slow CPU and freezes the window;
        # it was measured in the latency test. Freezing them exempts them from
        # future passes (instant, and nothing reachable is leaked).
        gc.freeze()
        worker = TrainWorker(job)
        worker.started.connect(self._on_started)
        worker.step_done.connect(self._on_step)
        worker.step_losses.connect(self._on_step_losses)
        worker.epoch_done.connect(self._on_epoch)
        worker.baseline_done.connect(self._on_baseline)
        worker.preview_ready.connect(self._on_preview)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self.runner.start(worker)
        self._redraw_timer.start()
        self._update_enabled()
        self.state.report(f"training started: {job.run_dir}")
        return True

    @Slot()
    def stop_training(self) -> None:
        if self.is_training():
            self.runner.stop()
            self.stop_button.setEnabled(False)
            self.stopping_label.setText("Stopping after this batch…")

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """Stop the run and wait at most ``timeout_ms``; True when no thread is left.
        The engine has already written last.pt / best.pt, so nothing is lost."""
        self._redraw_timer.stop()
        return self.runner.stop_and_wait(timeout_ms) and self.state.wait_for_model(timeout_ms)

    # ------------------------------------------------------------ worker slots
    def _reset_run_data(self) -> None:
        self.step_x = _Series()  # fractional epoch of every step
        self.step_loss = _Series()
        self.step_smooth = _Series()
        self._ema_value, self._ema_weight = 0.0, 0.0
        self.val_epochs: list[int] = []
        self.val_losses: list[float] = []
        self.best_epoch = 0
        self.best_val = math.inf
        self.steps_per_epoch = 1
        self.epochs_total = 1
        self.patience = 5
        self.start_epoch = 0
        self.start_step = 0
        self._t0 = None
        self.max_budget = 0.0
        self.batch_size = 128
        self.validation_images = 10000
        self.validation_seconds: float | None = None  # measured at the last epoch's end
        self._dirty = False
        self.last_reason = ""
        self.last_message = ""

    def _clear_plot(self) -> None:
        for curve in self.t_curves:
            self.t_plot.getPlotItem().removeItem(curve)
        self.t_curves = []
        for c in (self.raw_curve, self.smooth_curve, self.val_curve):
            c.setData([], [])
        self.best_marker.setData([], [])
        self.best_line.setVisible(False)
        self._x_max = 1.0
        self._y_range = None
        self.plot.getPlotItem().setXRange(0, 1, padding=0.02)
        self.progress.setValue(0)

    @Slot(dict)
    def _on_started(self, info: dict) -> None:
        self.steps_per_epoch = max(1, int(info["steps_per_epoch"]))
        self.epochs_total = int(info["epochs"])
        if self._resuming:  # the run trains with its own settings: the form shows them, nothing is ignored
            self._resuming = False
            self._show_run_settings(info)
        self.patience = int(info["patience"])
        self.start_epoch = int(info["start_epoch"])
        self.start_step = int(info.get("start_step", 0))
        self.max_budget = float(info.get("max_seconds") or 0.0)
        self.batch_size = int(info.get("batch_size", 128))
        self.validation_images = int(info.get("validation_images", 10000))
        self._t0 = time.monotonic()
        hist = info.get("history") or {}
        if hist.get("global_step"):
            self._add_steps(np.asarray(hist["global_step"], float), np.asarray(hist["loss"], float))
        for e in hist.get("epochs", []):
            self._add_epoch(int(e["epoch"]), float(e["val_loss"]))
        if hist.get("epochs"):
            last = hist["epochs"][-1]
            self.best_val = float(last.get("best_val_loss", self.best_val))
            self.best_epoch = min(zip(self.val_losses, self.val_epochs))[1] if self.val_losses else 0
        source = info.get("continued_from")
        if source and self._continuing:
            what = continuing_from(self._continuing, float(source["epochs"]), self.start_epoch + 1,
                                   float(info["start_lr"]))
        elif self.start_epoch or self.start_step:
            what = resuming_at(self.start_epoch + 1, float(info["start_lr"]))
        else:
            what = "training"
        self._continuing = None
        self.stopping_label.setText(
            f"{what.capitalize()} on {info['device']} ({info.get('precision_detail') or info['precision']}), "
            f"{self.steps_per_epoch} steps per epoch"
            + (f", budget {format_duration(self.max_budget)}" if self.max_budget else "")
        )
        self.state.report(f"{what} on {info['device']}, T={info['timesteps']}, batch {info['batch_size']}")
        self._dirty = True

    def _add_steps(self, gsteps: np.ndarray, losses: np.ndarray) -> None:
        self.step_x.extend(gsteps / self.steps_per_epoch)
        self.step_loss.extend(losses)
        smooth = np.empty_like(losses)
        v, w = self._ema_value, self._ema_weight
        for i, loss in enumerate(losses):
            v = SMOOTHING * v + (1 - SMOOTHING) * loss
            w = SMOOTHING * w + (1 - SMOOTHING)
            smooth[i] = v / w
        self._ema_value, self._ema_weight = v, w
        self.step_smooth.extend(smooth)

    def _add_epoch(self, epoch: int, val_loss: float) -> None:
        self.val_epochs.append(epoch)
        self.val_losses.append(val_loss)

    @Slot(object)
    def _on_step_losses(self, arr) -> None:
        arr = np.asarray(arr, dtype=np.float64).reshape(-1, 2)
        self._add_steps(arr[:, 0], arr[:, 1])
        self._dirty = True

    @Slot(int, int, int, float, float)
    def _on_step(self, epoch: int, step: int, steps: int, loss: float, images_per_s: float) -> None:
        self.steps_per_epoch = steps
        done_total = (epoch - 1) * steps + step
        total = self.epochs_total * steps
        self.progress.setValue(int(1000 * done_total / max(1, total)))
        eta = "–"
        if self._t0 is not None and images_per_s > 0:
            eta = format_duration(self.eta_seconds(epoch, total - done_total, images_per_s))
        self.progress.setFormat(f"epoch {epoch}/{self.epochs_total} · %p%")
        self.progress_label.setText(
            f"step {step}/{steps} · loss {loss:.4f} · {images_per_s:,.0f} images/s · ETA {eta}"
        )

    def eta_seconds(self, epoch: int, steps_left: int, images_per_s: float) -> float:
        """Time to the end of the run: the steps left at the current rate, plus one
        validation per epoch left (measured at the last epoch's end, or before any
        from the step rate: a forward pass costs about a third of a training step),
        and never beyond the time budget."""
        per_step = self.batch_size / images_per_s
        validation = self.validation_seconds
        if validation is None:
            validation = self.validation_images / (3.0 * images_per_s)
        eta = steps_left * per_step + (self.epochs_total - epoch + 1) * validation
        if self.max_budget and self._t0 is not None:
            eta = min(eta, max(0.0, self.max_budget - (time.monotonic() - self._t0)))
        return eta

    def add_loss_by_timestep(self, edges: list, values: list) -> None:
        """Draw one epoch's validation loss per t bin; earlier epochs fade."""
        edges = np.asarray(edges, float)
        if len(edges) < 2 or len(values) != len(edges) - 1:
            return
        centres = (edges[:-1] + edges[1:] - 1) / 2
        y = np.asarray([np.nan if v is None else float(v) for v in values])
        ok = np.isfinite(y) & (y > 0)
        for i, curve in enumerate(reversed(self.t_curves)):  # older = fainter
            alpha = max(25, int(140 * 0.7 ** i))
            curve.setPen(pg.mkPen(QColor(224, 112, 27, alpha), width=1))
        curve = self.t_plot.getPlotItem().plot(centres[ok], y[ok], pen=pg.mkPen("#e0701b", width=2.5),
                                               symbol="o", symbolSize=4, symbolBrush="#e0701b", symbolPen=None)
        self.t_curves.append(curve)

    @Slot(dict)
    def _on_epoch(self, rec: dict) -> None:
        epoch = int(rec["epoch"])
        if rec.get("val_loss_by_t"):
            self.add_loss_by_timestep(rec.get("loss_bins") or [], rec["val_loss_by_t"])
        if rec.get("validation_seconds"):
            self.validation_seconds = float(rec["validation_seconds"])
        self._add_epoch(epoch, float(rec["val_loss"]))
        self.best_epoch = int(rec["best_epoch"])
        self.best_val = float(rec["best_val_loss"])
        waited, patience = int(rec["epochs_without_improvement"]), int(rec["patience"])
        self.patience = patience
        if rec.get("improved"):
            state = f"epoch {epoch}: new best validation loss"
        else:
            state = f"{waited} of {patience} epochs without improvement"
        self.stopping_label.setText(state)
        self.epoch_label.setText(
            f"epoch {epoch}/{int(rec['epochs'])}: train {rec['train_loss']:.5f} · validation {rec['val_loss']:.5f} · "
            f"best {self.best_val:.5f} at epoch {self.best_epoch} · {format_duration(rec['seconds'])} · "
            f"{rec['images_per_s']:,.0f} images/s"
        )
        self._dirty = True

    @Slot(dict)
    def _on_baseline(self, rec: dict) -> None:
        """A continued run validated the weights it brought: the loss its epochs must beat."""
        if rec.get("seconds"):
            self.validation_seconds = float(rec["seconds"])
        self.best_epoch, self.best_val = int(rec["epoch"]), float(rec["val_loss"])
        line = baseline_validated(self.best_val, rec.get("seconds"))
        self.epoch_label.setText(line[:1].upper() + line[1:])
        self._dirty = True

    @Slot(object)
    def _on_preview(self, images) -> None:
        images = np.asarray(images, dtype=np.uint8)
        cols = min(len(images), 4)
        self.preview_label.setPixmap(gray_pixmap(tile(images, ncols=cols, pad=2, pad_value=255), scale=2))
        done = self.val_epochs[-1] if self.val_epochs else 0
        self.preview_caption.setText(f"{len(images)} samples after epoch {done} (DDIM, 20 steps)")

    @Slot(str, str)
    def _on_finished(self, reason: str, message: str) -> None:
        self.last_reason, self.last_message = reason, message
        self.stopping_label.setStyleSheet("color: #1b6e1b;" if reason != "diverged" else "color: #b00020;")
        self.stopping_label.setText(message[:1].upper() + message[1:])
        if reason in ("completed", "early_stopped", "budget"):
            self.progress.setValue(self.progress.maximum())
            if self.best_epoch and self.preview_label.pixmap() is not None and not self.preview_label.pixmap().isNull():
                self.preview_caption.setText(f"samples from the restored best model (epoch {self.best_epoch})")
        self.progress_label.setText(f"{self.progress_label.text().split(' · ETA')[0]}")
        self._dirty = True
        self._redraw()
        self._load_trained_model()
        self.state.report(message)

    def _load_trained_model(self) -> None:
        """Make the run's best.pt the app's model (read off the GUI thread)."""
        if self.run_dir is None:
            return
        best = self.run_dir / "best.pt"
        if best.is_file():
            self.state.open_model(best, f"trained: {self.run_dir.name}")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.last_reason, self.last_message = "failed", message
        if self._resuming:  # last.pt could not be read or continued: say so in the resume's words
            self._resuming = False
            message = f"Cannot {'continue' if self._continuing else 'resume'}: {message.split(': ', 1)[-1]}"
            self._continuing = None
        self._show_error(message[:1].upper() + message[1:])

    @Slot()
    def _on_thread_stopped(self) -> None:
        self._redraw_timer.stop()
        self._redraw()
        self._update_enabled()
        self.training_finished.emit(self.last_reason, self.last_message)

    # ------------------------------------------------------------ drawing
    @Slot(bool)
    def _on_log_toggled(self, on: bool) -> None:
        self.plot.getPlotItem().setLogMode(y=on)
        self._y_range = None
        self._dirty = True
        self._redraw()

    def _update_y_range(self) -> None:
        """Set the y range only when the data leaves it (or fills under half of it),
        with 10% slack, so most redraws keep the axes as they are."""
        need = _y_needs(self.step_loss.values, np.asarray(self.val_losses, float), self.log_check.isChecked())
        if need is None:
            return
        lo, hi = need
        span = max(hi - lo, 1e-6)
        cur = self._y_range
        if cur is None or lo < cur[0] or hi > cur[1] or span < 0.5 * (cur[1] - cur[0]):
            self._y_range = (lo - 0.1 * span, hi + 0.05 * span)
            self.plot.getPlotItem().setYRange(*self._y_range, padding=0)

    @Slot()
    def _redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        x = self.step_x.values
        last_x = max(float(x[-1]) if len(x) else 0.0, float(self.val_epochs[-1]) if self.val_epochs else 0.0)
        if last_x > self._x_max or self._x_max > max(1.0, self.epochs_total):
            self._x_max = _nice_ceiling(last_x, self.epochs_total)
            self.plot.getPlotItem().setXRange(0, self._x_max, padding=0.02)
        self._update_y_range()
        self.raw_curve.setData(x, self.step_loss.values)
        self.smooth_curve.setData(x, self.step_smooth.values)
        if self.val_epochs:
            self.val_curve.setData(np.asarray(self.val_epochs, float), np.asarray(self.val_losses, float))
        if self.best_epoch and math.isfinite(self.best_val):
            y = math.log10(self.best_val) if self.log_check.isChecked() and self.best_val > 0 else self.best_val
            self.best_marker.setData([float(self.best_epoch)], [y])
            self.best_line.setPos(float(self.best_epoch))
            self.best_line.setVisible(True)


Y_FIT_AFTER_STEPS = 500  # from here on the linear y axis fits where training is, not its first steps


def _y_needs(steps: np.ndarray, val: np.ndarray, log: bool) -> tuple[float, float] | None:
    """The loss range the y axis must show. On a log axis: every loss. On a linear one, once a
    run has Y_FIT_AFTER_STEPS steps, its first tenth and its highest 0.5% of per-step losses
    may leave the top: the first steps' loss (about 1) would otherwise flatten a long run's
    curves (0.02-0.05) against the bottom. Validation losses always fit."""
    steps, val = steps[np.isfinite(steps)], val[np.isfinite(val)]
    if not log and len(steps) >= Y_FIT_AFTER_STEPS:
        later = steps[len(steps) // 10:]
        steps = later[later <= np.quantile(later, 0.995)]
    v = np.concatenate([steps, val])
    if log:
        v = np.log10(v[v > 0])
    return (float(v.min()), float(v.max())) if len(v) else None


def _nice_ceiling(x: float, limit: int) -> float:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is >= x, but at most max(limit, x)."""
    nice = 1.0
    while nice < x:
        for m in (2, 2.5, 2):
            nice *= m
            if nice >= x:
                break
    return float(min(nice, max(limit, math.ceil(x))))


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False
