"""What the Training panel draws: the loss curves, the validation loss by timestep, the
progress lines, and the preview digits.

``LossView`` keeps every step's loss (raw and smoothed by ``engine.runs.smooth``, streamed)
and every epoch's validation loss (and the early estimate of it after the first steps, a distinct
marker), plotted against the epoch (fractional for steps) and
redrawn by ``redraw()`` at most as often as the panel's timer asks (pyqtgraph's streaming
pattern: curves made once, fed with ``setData``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QColor, QFont, QFontMetricsF
from PySide6.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..engine.defaults import DEMO_BUDGET_MINUTES
from ..engine.storage.images import tile
from .widgets import ImageView, Series, StreamingSmoother, WrappingLabel, styled_plot

LOSS_LABEL = "loss"  # the y axis's plain word: the caption says what it measures, its tooltip the formula
LOSS_FORMULA = "‖ε − ε_θ‖²"  # a training run's loss (a distillation's round names its own)
#: the chart's "what am I looking at" line for a training run, and for a distillation's round
CHART_CAPTION = ("How wrong the network's guesses of the added noise are: lower is better. The thin line is "
                 "every step's loss, the thick one smooths it, and the dots are the loss on validation digits it "
                 "never trains on.")
ROUND_CAPTION = ("How far the student's one step lands from where its teacher's steps take the same digit: lower "
                 "is better. The thin line is every step of this round, the thick one smooths it, and the dots are "
                 "the loss on validation digits it never trains on.")
CHART_TIP = ("loss = {formula}: the squared error of the noise the network guesses, ε_θ(x_t, t), against the noise "
             "ε added to a digit x_0 at a random step t, averaged over the pixels. Thin line: each optimiser "
             "step's batch; thick: their debiased moving average (weight {smoothing}); dots: the validation "
             "split's loss at each epoch's end (a hollow diamond: an early estimate on fewer digits); star: the best "
             "epoch.")
ROUND_TIP = ("loss = {formula}: the student predicts v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0, and ṽ is the v that would land "
             "its one step where its teacher's two steps land (in the first round, where the teacher's one guided "
             "step lands), squared and averaged over the pixels. Thin line: each optimiser step's batch; thick: "
             "their debiased moving average (weight {smoothing}); dots: the loss on validation digits.")
SMOOTHING = 0.95  # weight of the smoothed train-loss curve (engine.runs.smooth, debiased)
Y_FIT_AFTER_STEPS = 500  # from here on the linear y axis fits where training is, not its first steps


class LossView(QWidget):
    """The loss plot, the loss-by-timestep plot and the lines under them.

    add_steps(global_steps, losses), add_epoch(epoch, val_loss, fraction=1.0), set_best(epoch, val_loss),
    show_early_estimate(record) -> its line, add_loss_by_timestep(edges, values), set_round(title,
    formula), reset(), redraw() (only when something changed).
    ``steps_per_epoch`` converts steps to epochs; ``epochs_total`` bounds the x axis.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps_per_epoch = 1
        self.epochs_total = 1
        self.t_curves: list = []  # one PlotDataItem per epoch of the loss-by-timestep plot
        self._build()
        self.reset()

    # ------------------------------------------------------------ layout
    def _build(self) -> None:
        self.log_check = QCheckBox("log scale", objectName="logScaleCheck")
        self.log_check.toggled.connect(self._on_log_toggled)
        # wrapped: an error or an end message is read whole, never cut at the panel's edge
        self.stopping_label = WrappingLabel(text="Not training", objectName="earlyStoppingLabel")
        self.stopping_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        bold = QFont(self.stopping_label.font())
        bold.setBold(True)
        self.stopping_label.setFont(bold)
        header = QHBoxLayout()
        header.addWidget(self.stopping_label, 1)
        header.addWidget(self.log_check)
        self.caption = QLabel(objectName="lossCaption", wordWrap=True)  # what the chart shows, in plain words
        self.caption.setStyleSheet("color: #444;")
        self._build_loss_plot()
        self._build_t_plot()
        self._build_lines()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.caption)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.t_plot)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.epoch_label)

    def _build_loss_plot(self) -> None:
        self.plot = styled_plot(left=LOSS_LABEL, bottom="epoch", grid=None, interactive=True)
        self.plot.setObjectName("lossPlot")
        self.plot.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        pi = self.plot.getPlotItem()
        pi.setClipToView(True)
        # x grows in a few nice steps (1, 2, 5, 10, ... epochs, up to the budget), so the axis is
        # not re-laid out on every redraw; y likewise, with some slack (_update_y_range)
        pi.disableAutoRange()
        pi.setXRange(0, 1, padding=0.02)
        pi.setDownsampling(auto=True, mode="peak")
        self.legend = pi.addLegend(offset=(-10, 10), labelTextColor="#333", brush=pg.mkBrush("w"),
                                   pen=pg.mkPen("#ccc"))
        self.raw_curve = pi.plot(pen=pg.mkPen("#b9cfe6", width=1), name="train (per step)")
        self.smooth_curve = pi.plot(pen=pg.mkPen("#1f6fb5", width=2), name="train (smoothed)")
        self.val_curve = pi.plot(pen=pg.mkPen("#e0701b", width=2), symbol="o", symbolSize=6,
                                 symbolBrush="#e0701b", symbolPen="w", name="validation")
        # the early estimate (EarlyValidationRecord): a hollow diamond, in the legend once it is drawn
        self.early_curve = pi.plot(pen=None, symbol="d", symbolSize=13, symbolBrush=pg.mkBrush("w"),
                                   symbolPen=pg.mkPen("#e0701b", width=2))
        self.early_curve.setZValue(5)  # over the train curves it sits on
        self.best_marker = pg.ScatterPlotItem(size=16, symbol="star", brush=pg.mkBrush("#2ca02c"),
                                              pen=pg.mkPen("#1b6e1b"), name="best epoch")
        pi.addItem(self.best_marker)  # (named, so the legend lists it)
        self.best_line = pg.InfiniteLine(angle=90, movable=False,
                                         pen=pg.mkPen("#2ca02c", width=1, style=Qt.PenStyle.DashLine))
        self.best_line.setVisible(False)
        pi.addItem(self.best_line, ignoreBounds=True)

    def _build_t_plot(self) -> None:
        """Validation loss by timestep, one curve per epoch (latest strong, earlier faded)."""
        self.t_plot = styled_plot(left="validation loss", bottom="timestep t", grid=None, interactive=True)
        self.t_plot.setObjectName("lossByTimestepPlot")
        tp = self.t_plot.getPlotItem()
        tp.setTitle("Validation loss by timestep (latest epoch strong, earlier ones faded)", size="9pt", color="#444")
        axis = LogTickAxis("left")  # its labels never overlap in the plot's 150-220 px
        axis.setPen(pg.mkPen("#444"))
        axis.setTextPen(pg.mkPen("#222"))
        tp.setAxisItems({"left": axis})
        tp.setLabel("left", "validation loss", color="#222")
        tp.setLogMode(y=True)
        self.t_plot.setMinimumHeight(150)
        self.t_plot.setMaximumHeight(220)

    def _build_lines(self) -> None:
        self.progress = QProgressBar(objectName="trainProgress", minimum=0, maximum=1000, value=0)
        self.progress.setFormat("%p%")
        self.progress_label = QLabel(" ", objectName="trainProgressLabel")
        self.progress_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.epoch_label = QLabel(objectName="epochLabel", wordWrap=True)
        self.epoch_label.setStyleSheet("color: #444;")
        # fixed heights: text changes must not re-layout (and so repaint) the plot
        self.epoch_label.setFixedHeight(2 * self.epoch_label.fontMetrics().lineSpacing() + 4)
        self.epoch_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.progress_label.setFixedHeight(self.progress_label.fontMetrics().lineSpacing() + 4)

    # ------------------------------------------------------------ data
    def reset(self) -> None:
        """Forget the run drawn so far (a new run starts)."""
        self.steps = StreamingSmoother(SMOOTHING)  # every step's loss, raw and smoothed
        self.step_x = Series()  # every step's fractional epoch
        self.val_epochs: list[float] = []  # where each validation is drawn: epoch - 1 + fraction trained
        self.epoch_x: dict[int, float] = {}
        self.val_losses: list[float] = []
        self.best_epoch = 0
        self.best_val = math.inf
        self.early: tuple[float, float] | None = None  # the early estimate: (epoch position, loss)
        self.legend.removeItem(self.early_curve)
        for curve in self.t_curves:
            self.t_plot.getPlotItem().removeItem(curve)
        self.t_curves = []
        for c in (self.raw_curve, self.smooth_curve, self.val_curve, self.early_curve):
            c.setData([], [])
        self.best_marker.setData([], [])
        self.best_line.setVisible(False)
        self._x_max = 1.0
        self._y_range: tuple[float, float] | None = None
        self.plot.getPlotItem().setXRange(0, 1, padding=0.02)
        self.set_round(None)
        self.progress.setValue(0)
        self._dirty = False

    def set_round(self, title: str | None, formula: str = LOSS_FORMULA) -> None:
        """Name the run drawn above the plot (a distillation's round; None: a training run, no
        title) and say in plain words what its loss measures, with its ``formula`` in the tooltips
        of the caption and the y axis, which reads just LOSS_LABEL."""
        item = self.plot.getPlotItem()
        item.setTitle(title, size="9pt", color="#444")
        item.setLabel("left", LOSS_LABEL, color="#222")
        self.caption.setText(CHART_CAPTION if title is None else ROUND_CAPTION)
        tip = (CHART_TIP if title is None else ROUND_TIP).format(formula=formula, smoothing=SMOOTHING)
        self.caption.setToolTip(tip)
        item.getAxis("left").setToolTip(tip)

    def add_steps(self, global_steps, losses) -> None:
        """Steps' losses (global step numbers, 1-based), in order."""
        self.step_x.extend(np.asarray(global_steps, dtype=np.float64) / self.steps_per_epoch)
        self.steps.extend(losses)
        self._dirty = True

    def add_epoch(self, epoch: int, val_loss: float, fraction: float = 1.0) -> None:
        """Epoch ``epoch``'s validation loss, drawn where the epoch ended: a time budget's
        partial epoch (``fraction`` < 1, EpochRecord.fraction) at epoch - 1 + fraction."""
        x = int(epoch) - 1 + min(1.0, max(0.0, float(fraction)))
        self.epoch_x[int(epoch)] = x
        self.val_epochs.append(x)
        self.val_losses.append(float(val_loss))
        self._dirty = True

    def add_early_estimate(self, position: float, val_loss: float, images: int) -> None:
        """The early estimate of the validation loss on ``images`` digits, drawn at ``position``
        (epochs, fractional) and named in the legend."""
        self.early = (float(position), float(val_loss))
        name = f"early estimate ({int(images):,} digits)"
        self.early_curve.setData([self.early[0]], [self.early[1]], name=name)
        self.legend.removeItem(self.early_curve)
        self.legend.addItem(self.early_curve, name)
        self._dirty = True

    def show_early_estimate(self, rec) -> str:
        """An EarlyValidationRecord: its marker, and its line under the plot; returns the line."""
        self.add_early_estimate(rec.position, rec.val_loss, rec.images)
        line = rec.describe()
        line = f"{line[:1].upper()}{line[1:]}; the full validation comes at the epoch's end"
        self.epoch_label.setText(line)
        return line

    def set_best(self, epoch: int, val_loss: float) -> None:
        self.best_epoch, self.best_val = int(epoch), float(val_loss)
        self._dirty = True

    def show_history(self, history: dict) -> None:
        """A resumed or continued run's curves so far: {"global_step", "loss", "epochs"} as a
        StartedRecord carries them."""
        if history.get("global_step"):
            self.add_steps(np.asarray(history["global_step"], float), np.asarray(history["loss"], float))
        for e in history.get("epochs", []):  # a partial epoch's "epoch" is where it ended (1.32)
            x = float(e["epoch"])
            self.add_epoch(math.ceil(x), float(e["val_loss"]), x - math.ceil(x) + 1)
        early = history.get("early_validation")
        if early:  # {"epoch": 0.13, "val_loss", "images", ...}: the run's early estimate
            self.add_early_estimate(float(early["epoch"]), float(early["val_loss"]), int(early.get("images", 0)))
        if history.get("epochs"):
            best = float(history["epochs"][-1].get("best_val_loss", math.inf))
            best_x = min(zip(self.val_losses, self.val_epochs))[1] if self.val_losses else 0
            self.set_best(math.ceil(best_x), best)

    def show_end(self, reason: str, epochs_total: int) -> None:
        """The progress bar at a run's end: 100% for a run that trained all it was asked; for one
        the time budget ended, how far it got (its epochs of those asked), never 100%."""
        progress = self.progress
        if reason in ("completed", "early_stopped"):
            progress.setValue(progress.maximum())
        elif reason == "budget":
            done = self.val_epochs[-1] if self.val_epochs else 0.0
            progress.setValue(min(progress.maximum() - 1, int(progress.maximum() * done / max(1, epochs_total))))
            progress.setFormat(f"the time budget ended it after {done:.2f} of {epochs_total} epochs")

    def add_loss_by_timestep(self, edges, values) -> None:
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

    # ------------------------------------------------------------ drawing
    @Slot(bool)
    def _on_log_toggled(self, on: bool) -> None:
        self.plot.getPlotItem().setLogMode(y=on)
        self._y_range = None
        self._dirty = True
        self.redraw()

    def _update_y_range(self) -> None:
        """Set the y range only when the data leaves it (or fills under half of it),
        with 10% slack, so most redraws keep the axes as they are."""
        val = np.asarray(self.val_losses + ([self.early[1]] if self.early else []), float)
        need = _y_needs(self.steps.values.values, val, self.log_check.isChecked())
        if need is None:
            return
        lo, hi = need
        span = max(hi - lo, 1e-6)
        cur = self._y_range
        if cur is None or lo < cur[0] or hi > cur[1] or span < 0.5 * (cur[1] - cur[0]):
            self._y_range = (lo - 0.1 * span, hi + 0.05 * span)
            self.plot.getPlotItem().setYRange(*self._y_range, padding=0)

    @Slot()
    def redraw(self) -> None:
        """Draw what arrived since the last redraw (nothing when nothing did)."""
        if not self._dirty:
            return
        self._dirty = False
        x = self.step_x.values
        last_x = max(float(x[-1]) if len(x) else 0.0, float(self.val_epochs[-1]) if self.val_epochs else 0.0)
        if last_x > self._x_max or self._x_max > max(1.0, self.epochs_total):
            self._x_max = _nice_ceiling(last_x, self.epochs_total)
            self.plot.getPlotItem().setXRange(0, self._x_max, padding=0.02)
        self._update_y_range()
        self.raw_curve.setData(x, self.steps.values.values)
        self.smooth_curve.setData(x, self.steps.smoothed.values)
        if self.val_epochs:
            self.val_curve.setData(np.asarray(self.val_epochs, float), np.asarray(self.val_losses, float))
        if self.best_epoch and math.isfinite(self.best_val):
            y = math.log10(self.best_val) if self.log_check.isChecked() and self.best_val > 0 else self.best_val
            x = self.epoch_x.get(self.best_epoch, float(self.best_epoch))
            self.best_marker.setData([x], [y])
            self.best_line.setPos(x)
            self.best_line.setVisible(True)


class LogTickAxis(pg.AxisItem):
    """A log axis whose tick labels never overlap: pyqtgraph labels 2-9 of every decade when the
    labels' total height fits, so 8, 9 and 10 collide. Here the decades are labelled (every k-th,
    when they are close), then 5, 2, 3, 4, 6, 7, 8, 9 in that order, each only where it is a
    label's height and a half from every label kept."""

    def logTickValues(self, minVal, maxVal, size, stdTicks):  # noqa: N802, N803 (pyqtgraph's names)
        if not (maxVal > minVal and size > 0):
            return super().logTickValues(minVal, maxVal, size, stdTicks)
        per_decade = size / (maxVal - minVal)  # pixels
        gap = 1.5 * QFontMetricsF(self.style.get("tickFont") or self.font()).height()
        every = max(1, math.ceil(gap / per_decade))
        decades = [float(v) for v in range(math.ceil(minVal), math.floor(maxVal) + 1) if v % every == 0]
        kept = list(decades)
        minors = []
        if every == 1:
            for m in (5, 2, 3, 4, 6, 7, 8, 9):
                for v in range(math.floor(minVal), math.ceil(maxVal)):
                    x = v + math.log10(m)
                    if minVal < x < maxVal and all(abs(x - k) * per_decade >= gap for k in kept):
                        kept.append(x)
                        minors.append(x)
        return [(1.0, decades), (None, sorted(minors))]


class PreviewBox(QGroupBox):
    """Digits sampled from the model being trained, with a caption."""

    PLACEHOLDER = "Samples from the model appear here during training"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Preview", parent)
        self.image = ImageView(self.PLACEHOLDER, min_side=130)
        self.image.setObjectName("trainPreview")
        self.image.setStyleSheet("color: palette(mid);")  # on the panel's background, as the digits' white gaps
        self.image.setWordWrap(True)
        self.caption = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.caption.setStyleSheet("color: palette(mid); font-size: 11px;")
        layout = QVBoxLayout(self)
        layout.addWidget(self.image)
        layout.addWidget(self.caption)

    def clear(self) -> None:
        self.image.set_array(None)
        self.caption.setText("")

    def show_digits(self, images: np.ndarray, caption: str) -> None:
        """images: (K, 28, 28) uint8, shown in rows of four."""
        images = np.asarray(images, dtype=np.uint8)
        self.image.set_array(tile(images, ncols=min(len(images), 4), pad=2, pad_value=255))
        self.caption.setText(caption)

    def has_digits(self) -> bool:
        return self.image.array is not None


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


def build_panel(panel) -> None:
    """The Training panel's layout (``TrainPanel``): its form; Start / Stop and the 2-minute
    "Watch it learn" run; Resume (a menu of runs) / Continue from (a menu of models); "Distil a
    model…", which shows the distillation box; the data hint and the preview; the view beside
    them. Sets the buttons and ``data_hint`` on ``panel``."""
    panel.start_button = QPushButton("Start", objectName="startTrainingButton")
    panel.start_button.setShortcut("Ctrl+T")
    panel.start_button.clicked.connect(lambda: panel.start_training())  # not clicked(bool) as a budget
    panel.stop_button = QPushButton("Stop", objectName="stopTrainingButton", enabled=False)
    panel.stop_button.setShortcut("Ctrl+Shift+T")
    panel.stop_button.setToolTip("Stop after the current batch; the best checkpoint is kept (Ctrl+Shift+T)")
    panel.stop_button.clicked.connect(panel.stop_training)
    panel.watch_button = QPushButton(f"Watch it learn ({DEMO_BUDGET_MINUTES} min)", objectName="watchItLearnButton")
    panel.watch_button.clicked.connect(panel.watch_training)
    panel.resume_button = QPushButton("Resume…", objectName="resumeTrainingButton")
    panel.resume_menu = QMenu(panel, objectName="resumeMenu")
    panel.resume_menu.aboutToShow.connect(panel.fill_resume_menu)
    panel.resume_button.setMenu(panel.resume_menu)
    panel.continue_button = QPushButton("Continue from…", objectName="continueTrainingButton")
    panel.continue_button.setMenu(_continue_menu(panel))
    panel.distill_button = QPushButton("Distil a model…", objectName="distillToggle", checkable=True)
    panel.distill_button.setToolTip("Few-step students of a trained model: the same digits in 8, 4, 2 or 1 steps")
    panel.distill_button.toggled.connect(panel.distill.setVisible)
    panel.distill_button.toggled.connect(lambda on: on and _scroll_into_view(panel.distill))
    panel.distill.setVisible(False)
    panel.data_hint = QLabel(wordWrap=True, objectName="trainDataHint")
    panel.data_hint.setStyleSheet("color: #b35900;")
    left = QVBoxLayout()
    left.addWidget(panel.form)
    left.addWidget(panel.form.estimate_label)
    rows = ((panel.start_button, panel.stop_button), (panel.watch_button,),
            (panel.resume_button, panel.continue_button), (panel.distill_button,))
    for pair in rows:  # a new run and its stop; a short demo; going on from earlier training
        row = QHBoxLayout()
        for button in pair:
            row.addWidget(button)
        left.addLayout(row)
    left.addWidget(panel.distill)
    left.addWidget(panel.data_hint)
    left.addWidget(panel.preview)
    left.addStretch(1)
    left_w = QWidget()
    left_w.setLayout(left)
    left_w.setFixedWidth(340)
    layout = QHBoxLayout(panel)
    layout.addWidget(left_w)
    layout.addWidget(panel.view, 1)


def _continue_menu(panel) -> QMenu:
    from ..engine.storage.bundled import available_bundled

    menu = QMenu(panel, objectName="continueMenu")
    for name, title, _path in available_bundled():
        menu.addAction(title, lambda name=name: panel.continue_training(name))
    menu.addAction("A checkpoint file…", lambda: panel.continue_training())
    return menu


def fill_resume_menu(menu: QMenu, last_run, runs_dir, resume, report) -> None:
    """Offer the run just trained (``last_run``, a folder or None) first, then the other runs of
    ``runs_dir`` that hold last.pt (newest first, at most 12), then a folder picker.
    ``resume(folder_or_None)`` is called with the choice; ``report(line)`` hears a runs folder
    that cannot be read."""
    from ..engine.runs import RunError, list_runs

    try:
        runs = [r for r in reversed(list_runs(runs_dir))
                if r.status not in ("damaged", "running") and (r.path / "last.pt").is_file()]
    except RunError as exc:
        runs = []
        report(str(exc))
    menu.clear()
    if last_run is not None and (Path(last_run) / "last.pt").is_file():
        action = menu.addAction(f"The run just trained: {Path(last_run).name}", lambda: resume(Path(last_run)))
        action.setData(str(last_run))
        menu.addSeparator()
    for info in runs[:12]:
        if last_run is not None and Path(info.path) == Path(last_run):
            continue
        action = menu.addAction(info.name, lambda p=Path(info.path): resume(p))
        action.setData(str(info.path))
    if menu.actions():
        menu.addSeparator()
    menu.addAction("A run folder…", lambda: resume(None))


def _scroll_into_view(widget) -> None:
    """Scroll the tab that holds ``widget`` until it shows (a box opened below the fold of a
    laptop screen), once the layout has placed it."""
    from PySide6.QtWidgets import QScrollArea

    area = widget.parentWidget()
    while area is not None and not isinstance(area, QScrollArea):
        area = area.parentWidget()
    if area is not None:
        QTimer.singleShot(0, lambda: area.ensureWidgetVisible(widget, 0, 0))
