"""What the Runs panel shows: the runs as a sortable, filterable table, their loss curves
overlaid, and the details of the selected ones.

- ``RunsTableModel`` / ``RunsFilter``: one row per ``engine.runs.RunInfo`` (numbers sort as
  numbers, unknown values last); the filter keeps rows holding every word typed.
- ``RunsPlot``: training loss per step (smoothed by ``engine.runs.smooth``) and validation
  loss per epoch, one colour per run (a hash of its name), against step, epoch, wall time or
  images seen (step × the run's batch size).
- ``details_html``: the selected runs' settings, results and notes.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from ..engine import runs as R
from .widgets import styled_plot

STATUS_COLORS = {
    "running": "#1f5fbf",
    "completed": "#1e7b34",
    "early stopped": "#1e7b34",
    "stopped": "#8a6d00",
    "diverged": "#b3261e",
    "empty": "#777777",
    "damaged": "#b3261e",
    "old version": "#8a6d00",
}

class RunsTableModel(QAbstractTableModel):
    """The runs as table rows. Qt.UserRole gives a sort key (numbers sort as numbers,
    unknown values last); Qt.UserRole + 1 gives the RunInfo."""

    COLUMNS = (
        "Name", "Status", "Settings", "Tags", "Epochs", "Best val", "Best ep.",
        "Early stop", "Time", "Latest metrics", "Created",
    )
    RunRole = Qt.ItemDataRole.UserRole + 1

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.runs: list[R.RunInfo] = []

    def set_runs(self, runs: list[R.RunInfo]) -> None:
        self.beginResetModel()
        self.runs = list(runs)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self.runs)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.COLUMNS)

    TIPS = {
        "Settings": "noise schedule and number of steps T · network width (ch) · weight averaging (EMA) · "
                    "learning rate · batch size (bs)",
        "Epochs": "passes over the training digits: done / planned",
        "Best val": "the lowest loss on held-out digits the network never trained on: how well it predicts the "
                    "noise it must remove (lower is better). Formula: the mean of ‖ε − ε_θ(x_t, t)‖² over the "
                    "validation split (DDPM's ε-prediction MSE)",
        "Best ep.": "the epoch with the lowest validation loss (its weights are best.pt)",
        "Early stop": "the epoch at which early stopping ended the run",
        "Time": "training time (h:mm:ss), pauses excluded",
        "Latest metrics": "metrics of the newest evaluation report (reports/*/report.json)",
    }

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal:
            if role == Qt.ItemDataRole.DisplayRole:
                return self.COLUMNS[section]
            if role == Qt.ItemDataRole.ToolTipRole:
                return self.TIPS.get(self.COLUMNS[section])
        return None

    def _text(self, r: R.RunInfo, col: int) -> str:
        return [
            r.name,
            r.status,
            r.key_settings() or (r.reason if r.status in ("damaged", "old version") else ""),
            ", ".join(r.tags),
            r.epochs_text(),
            f"{r.best_val_loss:.5f}" if r.best_val_loss is not None else "",
            str(r.best_epoch or ""),
            str(r.early_stop_epoch or ""),
            R.format_duration(r.train_seconds),
            r.metrics_text(),
            r.created.replace("T", " ").rstrip("Z"),
        ][col]

    def _sort_key(self, r: R.RunInfo, col: int):
        num = {
            4: r.epochs_done,
            5: r.best_val_loss,
            6: r.best_epoch,
            7: r.early_stop_epoch,
            8: r.train_seconds,
            9: next(iter(r.metrics.values()), None),
        }
        if col in num:
            v = num[col]
            return float(v) if v is not None else math.inf
        if col == 1:
            return R.STATUSES.index(r.status) if r.status in R.STATUSES else 99
        return self._text(r, col).lower()

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.runs):
            return None
        r, col = self.runs[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(r, col)
        if role == Qt.ItemDataRole.UserRole:
            return self._sort_key(r, col)
        if role == self.RunRole:
            return r
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            return QColor(r.color)
        if role == Qt.ItemDataRole.ForegroundRole and col == 1:
            return QColor(STATUS_COLORS.get(r.status, "#222222"))
        if role == Qt.ItemDataRole.ForegroundRole and col == 2 and not r.key_settings():
            return QColor("#8a4b00")
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [r.name, f"status: {r.status}" + (f" — {r.reason}" if r.reason else "")]
            if col == 9 and r.metrics:
                lines += [f"{k}: {v:.5g}" for k, v in r.metrics.items()]
            return "\n".join(lines)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (4, 5, 6, 7, 8):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class RunsFilter(QSortFilterProxyModel):
    """Keeps rows where every word of the filter text appears in some column."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.words: list[str] = []

    def set_text(self, text: str) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.10 (invalidateFilter is deprecated there)
            self.beginFilterChange()
            self.words = text.lower().split()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:  # pragma: no cover - older Qt
            self.words = text.lower().split()
            self.invalidateFilter()

    def filterAcceptsRow(self, row, parent) -> bool:  # noqa: N802
        if not self.words:
            return True
        m = self.sourceModel()
        hay = " ".join(str(m.data(m.index(row, c, parent)) or "") for c in range(m.columnCount())).lower()
        return all(w in hay for w in self.words)


class NoOverlapAxis(pg.AxisItem):
    """An axis whose tick labels never overlap. On a log scale pyqtgraph labels every minor
    tick of a decade (0.02, 0.03, … 0.09), and on a short axis they are drawn over each other.
    Labels are kept in order of importance (a power of ten, then 2 and 5, then the rest), each
    only where it stays clear of those kept; the ticks themselves are all drawn."""

    GAP = 2  # pixels between two labels

    def generateDrawSpecs(self, p):  # noqa: N802 (pyqtgraph name)
        specs = super().generateDrawSpecs(p)
        if specs is None:
            return None
        axis_spec, tick_specs, text_specs = specs
        kept = []
        for spec in sorted(text_specs, key=lambda spec: _label_rank(spec[2])):
            rect = spec[0].adjusted(-self.GAP, -self.GAP, self.GAP, self.GAP)
            if not any(rect.intersects(other[0]) for other in kept):
                kept.append(spec)
        return axis_spec, tick_specs, kept


def _label_rank(text: str) -> int:
    """0 for a label whose first significant digit is 1 (a power of ten on a log axis), 1 for 2 or 5, else 2."""
    digit = next((c for c in text if c in "123456789"), "1")
    return 0 if digit == "1" else 1 if digit in "25" else 2


CAPTION = ("The loss is how badly the network guesses the noise added to a digit: lower is better. Solid lines: "
           "the training loss; dashed: the loss on held-out digits. When the dashed line stops falling, more "
           "training no longer helps.")
CAPTION_TIP = ("loss = mean of ‖ε − ε_θ(x_t, t)‖²: the squared error of the predicted noise ε_θ against the true "
               "noise ε added to x_0 at a random step t (DDPM's simplified objective, Ho et al. 2020, Eq. 14). "
               "Training loss: per optimiser step, on the batch just trained on; validation loss: per epoch, on "
               "the held-out validation split.")

X_AXES = (*R.X_AXES, "images seen")
X_LABELS = {"step": "optimiser step", "epoch": "epoch", "wall time": "training time (s)",
            "images seen": "images seen (optimiser step × batch size)"}


def x_values(run, curves: dict, axis: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The (per-step, per-epoch) x values of a run's ``engine.runs.load_curves`` curves on
    ``axis``. "images seen" is the global step × the run's batch size (from its settings), so
    runs with different batch sizes line up by the data they have seen; None without a batch size."""
    if axis != "images seen":
        step_key, epoch_key = R.X_AXES[axis]
        return curves[step_key], curves[epoch_key]
    batch = run.train.get("batch_size")
    if isinstance(batch, bool) or not isinstance(batch, (int, float)) or batch <= 0:
        return None
    return curves["step"] * batch, curves["epoch_step"] * batch


class RunsPlot(QWidget):
    """The selected runs' curves and the controls that shape them.

    draw(runs): [(RunInfo, curves)] as ``engine.runs.load_curves`` gives them.
    ``curve_items``: {"train": [...], "val": [...]}, the PlotDataItems drawn.
    Signal ``changed()``: a control changed (the panel redraws).
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.curve_items: dict[str, list] = {"train": [], "val": []}
        self.plot = styled_plot(left="loss", grid=0.15, interactive=True)
        self.plot.setObjectName("runsPlot")
        self._use_axis(NoOverlapAxis("left"))
        # bottom left: loss curves fall from the top left, so that corner stays free
        self.legend = self.plot.addLegend(offset=(10, -10), labelTextColor="#222",
                                          brush=pg.mkBrush(255, 255, 255, 215), pen=pg.mkPen("#ccd"))
        self.x_axis_combo = QComboBox(objectName="runsXAxis")
        self.caption = QLabel(CAPTION, objectName="runsCaption", wordWrap=True, styleSheet="color: #444;")
        self.caption.setToolTip(CAPTION_TIP)
        self.x_axis_combo.addItems(list(X_AXES))
        self.x_axis_combo.setToolTip("What the curves are drawn against. \"images seen\" (optimiser step × the "
                                     "run's batch size) compares runs trained with different batch sizes.")
        self.smoothing_slider = QSlider(Qt.Orientation.Horizontal, objectName="runsSmoothing")
        self.smoothing_slider.setRange(0, 99)
        self.smoothing_slider.setValue(60)
        self.smoothing_slider.setFixedWidth(140)
        self.smoothing_slider.setToolTip(
            "Evens out the step-to-step jitter of the training loss (the faint line is the raw loss). Formula: a "
            "debiased exponential moving average, s_i = w·s_(i−1) + (1 − w)·x_i, as TensorBoard's")
        self.smoothing_label = QLabel(f"{self.smoothing():.2f}")
        self.smoothing_label.setMinimumWidth(32)
        self.log_check = QCheckBox("log scale", objectName="runsLogScale", checked=True)
        self.log_check.setToolTip("Equal steps for equal ratios (1 → 0.1 is as far as 0.1 → 0.01), so the slow "
                                  "late improvements stay visible")
        self.train_check = QCheckBox("train", checked=True)
        self.val_check = QCheckBox("validation", checked=True)
        controls = QHBoxLayout()
        for w, space in ((QLabel("x axis"), 0), (self.x_axis_combo, 12), (QLabel("smoothing"), 0),
                         (self.smoothing_slider, 0), (self.smoothing_label, 12), (self.log_check, 0),
                         (self.train_check, 0), (self.val_check, 0)):
            controls.addWidget(w)
            controls.addSpacing(space)
        controls.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(self.caption)
        layout.addWidget(self.plot, 1)
        self.x_axis_combo.currentIndexChanged.connect(self.changed)
        self.smoothing_slider.valueChanged.connect(self._on_smoothing)
        for check in (self.log_check, self.train_check, self.val_check):
            check.toggled.connect(self.changed)

    def _use_axis(self, axis: pg.AxisItem) -> None:
        """Put ``axis`` on the left, styled as ``widgets.styled_plot`` styles its axes."""
        old = self.plot.getPlotItem().getAxis("left")
        axis.setPen(old.pen())
        axis.setTextPen(old.textPen())
        axis.enableAutoSIPrefix(False)
        axis.setCacheMode(old.cacheMode())
        self.plot.getPlotItem().setAxisItems({"left": axis})

    def smoothing(self) -> float:
        return self.smoothing_slider.value() / 100.0

    def _on_smoothing(self, value: int) -> None:
        self.smoothing_label.setText(f"{value / 100:.2f}")
        self.changed.emit()

    def draw(self, runs: list) -> list[str]:
        """Redraw these runs' curves with the current axis, smoothing and scale; returns the names
        of the runs that cannot be drawn on this x axis (no batch size in their settings)."""
        item = self.plot.getPlotItem()
        item.clear()
        self.legend.clear()
        self.curve_items = {"train": [], "val": []}
        axis = self.x_axis_combo.currentText()
        item.setLabel("bottom", X_LABELS[axis])
        item.setLabel("left", "loss (lower is better)")
        # an empty chart shows no made-up numbers: no legend box, no ticks of an empty log axis
        self.legend.setVisible(bool(runs))
        for side in ("left", "bottom"):
            item.getAxis(side).setStyle(showValues=bool(runs))
        item.setLogMode(x=False, y=bool(runs) and self.log_check.isChecked())
        if not runs:
            item.setTitle('<span style="color:#666">Select runs in the table to overlay their loss curves</span>')
            return []
        item.setTitle('<span style="color:#444">solid: training loss per step (smoothed) · '
                      'dashed with dots: validation loss</span>')
        skipped = []
        for run, curves in runs:
            xs = x_values(run, curves, axis)
            if xs is None:
                skipped.append(run.name)
                continue
            color = QColor(run.color)
            if self.train_check.isChecked() and curves["train_loss"].size:
                self._draw_train(run.name, color, xs[0], curves["train_loss"])
            if self.val_check.isChecked() and curves["val_loss"].size:
                self._draw_val(run.name, color, xs[1], curves["val_loss"])
        item.enableAutoRange()
        return skipped

    def _draw_train(self, name: str, color: QColor, x, y) -> None:
        item = self.plot.getPlotItem()
        w = self.smoothing()
        if w > 0:
            faint = QColor(color)
            faint.setAlpha(55)
            item.addItem(pg.PlotDataItem(x, y, pen=pg.mkPen(faint, width=1), connect="finite"))
        train = pg.PlotDataItem(x, R.smooth(y, w), pen=pg.mkPen(color, width=2), name=name, connect="finite")
        item.addItem(train)
        self.curve_items["train"].append(train)

    def _draw_val(self, name: str, color: QColor, x, y) -> None:
        if not self.curve_items["train"] or self.curve_items["train"][-1].name() != name:
            self.legend.addItem(pg.PlotDataItem(pen=pg.mkPen(color, width=2)), name)  # one entry per run
        val = pg.PlotDataItem(x, y, pen=pg.mkPen(color, width=2.5, style=Qt.PenStyle.DashLine), symbol="o",
                              symbolSize=6, symbolBrush=color, symbolPen=pg.mkPen(color), connect="finite")
        self.plot.getPlotItem().addItem(val)
        self.curve_items["val"].append(val)


def details_html(sel: list, verified: dict | None = None) -> str:
    """The selected runs (at most four) as rich text: status, settings, results, tags, notes,
    and, for a run in ``verified`` ({str(run path): [FileCheck]}), its verification."""
    if not sel:
        return "<i>Select a run for its details; select several to compare their curves.</i>"
    verified = verified or {}
    parts = [_run_html(r) + _verify_html(verified.get(str(r.path))) for r in sel[:4]]
    if len(sel) > 4:
        parts.append(f"<i>… and {len(sel) - 4} more</i>")
    return "<hr>".join(parts)


def verify_lines(checks: list) -> list[str]:
    """One line per ``engine.runs.FileCheck``: "best.pt: FAILED — <why>"."""
    return [f"{c.name}: {'ok' if c.ok else 'FAILED'} — {c.message}" for c in checks]


def _verify_html(checks: list | None) -> str:
    """A run's verification below its details: a failed file in bold red, the others grey."""
    if checks is None:
        return ""
    bad = sum(not c.ok for c in checks)
    head = (f'<b style="color:{STATUS_COLORS["damaged"]}">Verify: {bad} problem{"s" if bad != 1 else ""}</b>' if bad
            else f'<b style="color:{STATUS_COLORS["completed"]}">Verify: every file ok</b>')
    rows = [f'<span style="color:{STATUS_COLORS["damaged"]}"><b>✗ {_breakable(line)}</b></span>' if not c.ok
            else f'<span style="color:#555">✓ {_breakable(line)}</span>'
            for c, line in zip(checks, verify_lines(checks))]
    return "<br><br>" + "<br>".join([head, *rows])


def _breakable(text: str) -> str:
    """Escaped, with a zero-width space after each _ and / so that run names and paths wrap."""
    return html.escape(text).replace("_", "_&#8203;").replace("/", "/&#8203;")


def verify_summary(results: list) -> str:
    """One line for [(run path, [FileCheck])]: how many runs were verified, and which failed."""
    bad = [path.name for path, checks in results if any(not c.ok for c in checks)]
    runs = f"{len(results)} run{'s' if len(results) != 1 else ''}"
    if not bad:
        return f"verified {runs}: every file ok"
    return f"verified {runs}: problems in {', '.join(bad)} (see the details)"


def _run_html(r) -> str:
    color = STATUS_COLORS.get(r.status, "#222")
    lines = [
        f'<b><span style="color:{r.color}">■</span> {_breakable(r.name)}</b>',
        f'<span style="color:{color}">{html.escape(r.status)}</span>' + (f" — {html.escape(r.reason)}" if r.reason else ""),
    ]
    if r.key_settings():
        lines.append(html.escape(r.key_settings()))
    if r.best_val_loss is not None:
        lines.append(f"best val loss <b>{r.best_val_loss:.5f}</b> at epoch {r.best_epoch}"
                     + (f", stopped early at epoch {r.early_stop_epoch}" if r.early_stop_epoch else ""))
    if r.train_seconds is not None:
        lines.append(f"{r.epochs_text()} epochs in {R.format_duration(r.train_seconds)}")
    lines += [f"{html.escape(k)}: <b>{v:.4g}</b>" for k, v in r.metrics.items()]
    if r.tags:
        lines.append("tags: " + html.escape(", ".join(r.tags)))
    if r.notes:
        lines.append("notes: " + html.escape(r.notes))
    return "<br>".join(lines)
