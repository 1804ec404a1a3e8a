"""The Runs panel: every training run in a table, their loss curves overlaid.

``RunsPanel(state, runs_dir=None)`` (object name ``runsPanel``):

- a sortable, filterable table of the runs in the runs folder (default
  ``engine.paths.runs_dir()``): name, status, key settings, tags, epochs,
  best validation loss and epoch, epoch of early stop, training time, the
  latest evaluation metrics. Damaged runs and runs from older versions are
  listed with their status and the reason in the tooltip and details box;
  they never stop the others from loading;
- select several rows to overlay their training loss (per step) and
  validation loss (per epoch) in one pyqtgraph plot, one colour per run
  (stable: a hash of the run's name), with a legend, a smoothing slider
  (TensorBoard-style EMA of the training loss), log scale and the x axis as
  step, epoch or wall time (training seconds);
- buttons: Refresh (the folder is also watched, and re-read every few seconds
  while a run trains), Open in sampler (``state.set_model(load_model(best.pt),
  "run: <name>")``), Resume, Rename, Tags, Delete (asks first).

Signals:
    resume_requested(str run_dir)   the user asked to continue the run in
        ``run_dir``; the main window routes it to the train panel, which builds
        ``Trainer(..., run_dir=run_dir, resume=Path(run_dir) / "last.pt")``
        inside ``engine.runs.mark_running(run_dir)``.
    runs_changed()                  the list was re-read (after a refresh, rename, tag or delete).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QFileSystemWatcher,
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSlider,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..engine import runs as R
from .state import AppState

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
REFRESH_WHILE_RUNNING_MS = 5000


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
        "Best val": "lowest validation loss (ε-prediction MSE on the validation split)",
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


class _Filter(QSortFilterProxyModel):
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


def _styled_plot() -> pg.PlotWidget:
    plot = pg.PlotWidget(background="w")
    item = plot.getPlotItem()
    for name in ("left", "bottom"):
        ax = item.getAxis(name)
        ax.setPen(pg.mkPen("#555"))
        ax.setTextPen(pg.mkPen("#333"))
    item.showGrid(x=True, y=True, alpha=0.15)
    item.setLabel("left", "loss")
    return plot


class RunsPanel(QWidget):
    """See the module docstring. ``runs_dir`` defaults to ``engine.paths.runs_dir()``."""

    resume_requested = Signal(str)
    runs_changed = Signal()

    def __init__(self, state: AppState, runs_dir: str | os.PathLike | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("runsPanel")
        self.state = state
        self.runs_dir = Path(runs_dir) if runs_dir is not None else R.default_runs_dir()
        self._curve_cache: dict[str, tuple[tuple, dict | None, str]] = {}
        self.curve_items: dict[str, list[pg.PlotDataItem]] = {"train": [], "val": []}

        # ---- toolbar
        self.filter_edit = QLineEdit()
        self.filter_edit.setObjectName("runsFilter")
        self.filter_edit.setPlaceholderText("Filter: words in the name, status, settings or tags")
        self.filter_edit.setClearButtonEnabled(True)
        self.refresh_button = QPushButton("Refresh")
        self.open_button = QPushButton("Open in sampler")
        self.resume_button = QPushButton("Resume")
        self.rename_button = QPushButton("Rename…")
        self.tags_button = QPushButton("Tags…")
        self.delete_button = QPushButton("Delete…")
        self.open_button.setToolTip("Sample from this run's best checkpoint")
        self.resume_button.setToolTip("Continue training this run from its last.pt in the Train panel")
        bar = QHBoxLayout()
        bar.addWidget(self.filter_edit, 1)
        for b in (self.refresh_button, self.open_button, self.resume_button, self.rename_button,
                  self.tags_button, self.delete_button):
            bar.addWidget(b)

        # ---- table
        self.model = RunsTableModel(self)
        self.proxy = _Filter(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.table = QTableView()
        self.table.setObjectName("runsTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(10, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.empty_label = QLabel()
        self.empty_label.setObjectName("runsEmptyLabel")
        self.empty_label.setStyleSheet("color: #666;")
        self.empty_label.setWordWrap(True)

        # ---- plot and its controls
        self.plot = _styled_plot()
        self.plot.setObjectName("runsPlot")
        # bottom left: loss curves fall from the top left, so that corner stays free
        self.legend = self.plot.addLegend(offset=(10, -10), labelTextColor="#222",
                                          brush=pg.mkBrush(255, 255, 255, 215), pen=pg.mkPen("#ccd"))
        self.x_axis_combo = QComboBox()
        self.x_axis_combo.setObjectName("runsXAxis")
        self.x_axis_combo.addItems(list(R.X_AXES))
        self.smoothing_slider = QSlider(Qt.Orientation.Horizontal)
        self.smoothing_slider.setObjectName("runsSmoothing")
        self.smoothing_slider.setRange(0, 99)
        self.smoothing_slider.setValue(60)
        self.smoothing_slider.setFixedWidth(140)
        self.smoothing_label = QLabel()
        self.smoothing_label.setMinimumWidth(32)
        self.log_check = QCheckBox("log scale")
        self.log_check.setObjectName("runsLogScale")
        self.log_check.setChecked(True)
        self.train_check = QCheckBox("train")
        self.train_check.setChecked(True)
        self.val_check = QCheckBox("validation")
        self.val_check.setChecked(True)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("x axis"))
        controls.addWidget(self.x_axis_combo)
        controls.addSpacing(12)
        controls.addWidget(QLabel("smoothing"))
        controls.addWidget(self.smoothing_slider)
        controls.addWidget(self.smoothing_label)
        controls.addSpacing(12)
        controls.addWidget(self.log_check)
        controls.addWidget(self.train_check)
        controls.addWidget(self.val_check)
        controls.addStretch(1)
        plot_box = QWidget()
        pl = QVBoxLayout(plot_box)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addLayout(controls)
        pl.addWidget(self.plot, 1)

        self.details = QLabel()
        self.details.setObjectName("runDetails")
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setMinimumWidth(240)
        self.details.setStyleSheet("QLabel { background: #fafbfc; border: 1px solid #dde; padding: 8px; }")

        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(plot_box)
        bottom.addWidget(self.details)
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 1)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.table, 1)
        tl.addWidget(self.empty_label)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(bottom)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([260, 520])

        self.folder_label = QLabel()
        self.folder_label.setStyleSheet("color: #666;")
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_label = QLabel()
        self.message_label.setObjectName("runsMessage")
        self.message_label.setStyleSheet("color: #8a4b00;")
        foot = QHBoxLayout()
        foot.addWidget(self.folder_label, 1)
        foot.addWidget(self.message_label)

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        layout.addLayout(foot)

        # ---- refresh: watch the folder, re-read while a run trains
        self.watcher = QFileSystemWatcher(self)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(400)
        self.running_timer = QTimer(self)
        self.running_timer.setInterval(REFRESH_WHILE_RUNNING_MS)

        # ---- connections (all to methods of this GUI-thread object)
        self.filter_edit.textChanged.connect(self._on_filter)
        self.refresh_button.clicked.connect(self.refresh)
        self.open_button.clicked.connect(self.open_in_sampler)
        self.resume_button.clicked.connect(self.resume)
        self.rename_button.clicked.connect(self.rename_selected)
        self.tags_button.clicked.connect(self.edit_tags)
        self.delete_button.clicked.connect(self.delete_selected)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self.x_axis_combo.currentIndexChanged.connect(self.update_plot)
        self.smoothing_slider.valueChanged.connect(self._on_smoothing)
        self.log_check.toggled.connect(self.update_plot)
        self.train_check.toggled.connect(self.update_plot)
        self.val_check.toggled.connect(self.update_plot)
        self.watcher.directoryChanged.connect(self._schedule_refresh)
        self.watcher.fileChanged.connect(self._schedule_refresh)
        self._debounce.timeout.connect(self.refresh)
        self.running_timer.timeout.connect(self.refresh)

        self._on_smoothing(self.smoothing_slider.value(), replot=False)
        self.refresh()

    # ------------------------------------------------------------ listing
    def set_runs_dir(self, runs_dir: str | os.PathLike) -> None:
        """Show the runs of another folder."""
        self.runs_dir = Path(runs_dir)
        self._curve_cache.clear()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the runs folder, keeping the selection (by run name)."""
        keep = {r.name for r in self.selected_runs()}
        try:
            infos = R.list_runs(self.runs_dir)
            self._message("")
        except R.RunError as exc:
            infos = []
            self._message(str(exc))
        self.model.set_runs(infos)
        self.folder_label.setText(f"{len(infos)} run{'s' if len(infos) != 1 else ''} in {self.runs_dir}")
        self.empty_label.setVisible(not infos)
        self.empty_label.setText(
            f"No runs yet in {self.runs_dir}. Every training (Train panel or `diffusion-studio train`) "
            "appears here." if not infos else ""
        )
        self._watch()
        if any(r.status == "running" for r in infos):
            if not self.running_timer.isActive():
                self.running_timer.start()
        else:
            self.running_timer.stop()
        self.table.resizeColumnsToContents()
        for col, most in ((0, 250), (2, 235), (3, 120), (9, 240)):
            if self.table.columnWidth(col) > most:
                self.table.setColumnWidth(col, most)
        if keep:
            self.select_runs(sorted(keep))
        else:
            self._on_selection()
        self.runs_changed.emit()

    def _watch(self) -> None:
        old = self.watcher.directories() + self.watcher.files()
        if old:
            self.watcher.removePaths(old)
        if self.runs_dir.is_dir():
            paths = [str(self.runs_dir)] + [str(r.path) for r in self.model.runs[:200]]
            self.watcher.addPaths(paths)

    def _schedule_refresh(self, *_args) -> None:
        self._debounce.start()

    def _on_filter(self, text: str) -> None:
        self.proxy.set_text(text)

    def runs(self) -> list[R.RunInfo]:
        """All listed runs (unfiltered)."""
        return list(self.model.runs)

    def selected_runs(self) -> list[R.RunInfo]:
        """The selected runs, in table order."""
        sm = self.table.selectionModel()
        if sm is None:
            return []
        rows = sorted({i.row() for i in sm.selectedRows()})
        return [self.proxy.index(r, 0).data(RunsTableModel.RunRole) for r in rows]

    def select_runs(self, names: list[str]) -> None:
        """Select the runs with these names (others are deselected)."""
        from PySide6.QtCore import QItemSelection, QItemSelectionModel

        sel = QItemSelection()
        for row in range(self.proxy.rowCount()):
            r = self.proxy.index(row, 0).data(RunsTableModel.RunRole)
            if r.name in names:
                sel.select(self.proxy.index(row, 0), self.proxy.index(row, self.proxy.columnCount() - 1))
        self.table.selectionModel().select(sel, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self._on_selection()

    def _on_selection(self, *_args) -> None:
        sel = self.selected_runs()
        one = sel[0] if len(sel) == 1 else None
        self.open_button.setEnabled(one is not None and one.checkpoint is not None and one.status != "damaged")
        self.resume_button.setEnabled(one is not None and one.resumable)
        self.rename_button.setEnabled(one is not None and one.status != "running")
        self.tags_button.setEnabled(one is not None)
        self.delete_button.setEnabled(bool(sel) and all(r.status != "running" for r in sel))
        self._show_details(sel)
        self.update_plot()

    def _show_details(self, sel: list[R.RunInfo]) -> None:
        import html

        if not sel:
            self.details.setText("<i>Select a run for its details; select several to compare their curves.</i>")
            return
        parts = []
        for r in sel[:4]:
            color = STATUS_COLORS.get(r.status, "#222")
            lines = [
                f'<b><span style="color:{r.color}">■</span> {html.escape(r.name).replace("_", "_&#8203;")}</b>',
                f'<span style="color:{color}">{html.escape(r.status)}</span>'
                + (f" — {html.escape(r.reason)}" if r.reason else ""),
            ]
            if r.key_settings():
                lines.append(html.escape(r.key_settings()))
            if r.best_val_loss is not None:
                lines.append(f"best val loss <b>{r.best_val_loss:.5f}</b> at epoch {r.best_epoch}"
                             + (f", stopped early at epoch {r.early_stop_epoch}" if r.early_stop_epoch else ""))
            if r.train_seconds is not None:
                lines.append(f"{r.epochs_text()} epochs in {R.format_duration(r.train_seconds)}")
            for k, v in r.metrics.items():
                lines.append(f"{html.escape(k)}: <b>{v:.4g}</b>")
            if r.tags:
                lines.append("tags: " + html.escape(", ".join(r.tags)))
            if r.notes:
                lines.append("notes: " + html.escape(r.notes))
            parts.append("<br>".join(lines))
        if len(sel) > 4:
            parts.append(f"<i>… and {len(sel) - 4} more</i>")
        self.details.setText("<hr>".join(parts))

    # -------------------------------------------------------------- plot
    def _on_smoothing(self, value: int, replot: bool = True) -> None:
        self.smoothing_label.setText(f"{value / 100:.2f}")
        if replot:
            self.update_plot()

    def smoothing(self) -> float:
        return self.smoothing_slider.value() / 100.0

    def _curves(self, r: R.RunInfo) -> tuple[dict | None, str]:
        """load_curves(r), cached while the run's files are unchanged; (None, why) when unreadable."""
        key = []
        for name in (R.HISTORY_FILE, "last.pt", "best.pt"):
            try:
                st = (r.path / name).stat()
                key.append((st.st_mtime_ns, st.st_size))
            except OSError:
                key.append(None)
        cached = self._curve_cache.get(str(r.path))
        if cached is not None and cached[0] == tuple(key):
            return cached[1], cached[2]
        try:
            curves, why = R.load_curves(r), ""
        except R.RunError as exc:
            curves, why = None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a damaged run must not break the panel
            curves, why = None, f"cannot read the curves of {r.name}: {exc}"
        self._curve_cache[str(r.path)] = (tuple(key), curves, why)
        return curves, why

    def update_plot(self, *_args) -> None:
        """Redraw the selected runs' curves with the current axis, smoothing and scale."""
        item = self.plot.getPlotItem()
        item.clear()
        self.legend.clear()
        self.curve_items = {"train": [], "val": []}
        sel = self.selected_runs()
        axis = self.x_axis_combo.currentText()
        step_key, epoch_key = R.X_AXES[axis]
        item.setLogMode(x=False, y=self.log_check.isChecked())
        item.setLabel("bottom", {"step": "optimiser step", "epoch": "epoch", "wall time": "training time (s)"}[axis])
        item.setLabel("left", "loss (ε-prediction MSE)")
        if not sel:
            item.setTitle('<span style="color:#666">Select runs in the table to overlay their loss curves</span>')
            return
        item.setTitle(
            '<span style="color:#444">solid: training loss per step (smoothed) · dashed with dots: validation loss</span>'
        )
        w = self.smoothing()
        problems = []
        for r in sel:
            curves, why = self._curves(r)
            if curves is None:
                problems.append(f"{r.name}: {why or r.status}")
                continue
            color = QColor(r.color)
            if self.train_check.isChecked() and curves["train_loss"].size:
                x = curves[step_key]
                y = curves["train_loss"]
                if w > 0:
                    faint = QColor(color)
                    faint.setAlpha(55)
                    item.addItem(pg.PlotDataItem(x, y, pen=pg.mkPen(faint, width=1), connect="finite"))
                train = pg.PlotDataItem(x, R.smooth(y, w), pen=pg.mkPen(color, width=2), name=r.name,
                                        connect="finite")
                item.addItem(train)
                self.curve_items["train"].append(train)
            if self.val_check.isChecked() and curves["val_loss"].size:
                if not self.curve_items["train"] or self.curve_items["train"][-1].name() != r.name:
                    self.legend.addItem(pg.PlotDataItem(pen=pg.mkPen(color, width=2)), r.name)
                x = curves[epoch_key]
                val = pg.PlotDataItem(
                    x, curves["val_loss"], pen=pg.mkPen(color, width=2.5, style=Qt.PenStyle.DashLine),
                    symbol="o", symbolSize=6, symbolBrush=color, symbolPen=pg.mkPen(color),
                    connect="finite",  # one legend entry per run (the train curve's); the title explains
                )
                item.addItem(val)
                self.curve_items["val"].append(val)
        if problems:
            self._message("; ".join(problems))
        item.enableAutoRange()

    # ----------------------------------------------------------- actions
    def _message(self, text: str) -> None:
        self.message_label.setText(text)
        self.message_label.setToolTip(text)
        if text:
            self.state.report(text)

    def _one(self) -> R.RunInfo | None:
        sel = self.selected_runs()
        if len(sel) != 1:
            self._message("select one run first")
            return None
        return sel[0]

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """The window closes: a run's model being opened is read to the end (bounded)."""
        return self.state.wait_for_model(timeout_ms)

    def open_in_sampler(self) -> None:
        """Open the selected run's best checkpoint (else last.pt) as the app's model, off the GUI thread."""
        r = self._one()
        if r is None:
            return
        if r.checkpoint is None:
            self._message(f"{r.name} has no checkpoint yet")
            return
        self._message("")
        self.state.open_model(r.checkpoint, f"run: {r.name}")
        self.state.report(f"opening {r.checkpoint.name} of run {r.name} in the sampler…")

    def resume(self) -> None:
        """Ask (via resume_requested) for the selected run to be trained further."""
        r = self._one()
        if r is None:
            return
        if not r.resumable:
            self._message(f"{r.name} cannot be resumed ({r.status}; it needs a last.pt)")
            return
        self.resume_requested.emit(str(r.path))

    def rename_selected(self) -> None:
        r = self._one()
        if r is None:
            return
        name, ok = QInputDialog.getText(self, "Rename run", "New name for the run:", QLineEdit.EchoMode.Normal, r.name)
        if not ok or not name.strip() or name.strip() == r.name:
            return
        try:
            new = R.rename_run(r.path, name.strip())
        except (R.RunError, OSError) as exc:
            self._message(str(exc))
            return
        self._curve_cache.pop(str(r.path), None)
        self.refresh()
        self.select_runs([new.name])

    def edit_tags(self) -> None:
        r = self._one()
        if r is None:
            return
        text, ok = QInputDialog.getText(
            self, "Tags", "Tags for the run, separated by commas:", QLineEdit.EchoMode.Normal, ", ".join(r.tags)
        )
        if not ok:
            return
        try:
            R.set_tags(r.path, [t for t in text.split(",")])
        except (R.RunError, OSError) as exc:
            self._message(str(exc))
            return
        self.refresh()

    def delete_selected(self) -> None:
        """Delete the selected runs after a confirmation box (No is the default)."""
        sel = self.selected_runs()
        if not sel:
            self._message("select the runs to delete first")
            return
        names = "\n".join(f"  {r.name}" for r in sel[:10]) + ("\n  …" if len(sel) > 10 else "")
        answer = QMessageBox.question(
            self,
            "Delete runs",
            f"Delete {len(sel)} run{'s' if len(sel) != 1 else ''} and all their files "
            f"(checkpoints, history, reports)?\n\n{names}\n\nThis cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        errors = []
        for r in sel:
            try:
                R.delete_run(r.path)
                self._curve_cache.pop(str(r.path), None)
            except (R.RunError, OSError) as exc:
                errors.append(str(exc))
        self.table.clearSelection()
        self.refresh()
        if errors:
            self._message("; ".join(errors))
