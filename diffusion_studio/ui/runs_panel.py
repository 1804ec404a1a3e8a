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
  step, epoch, wall time (training seconds) or images seen (step × batch size);
- buttons: Refresh (the folder and each run folder are watched, the folder above
  before the first run creates it; re-read when the tab is shown and every few
  seconds while a run trains), Open in sampler (``state.set_model(load_model(best.pt),
  "run: <name>")``), Resume, Rename, Tags, Verify (``engine.runs.verify_run`` in a
  TaskWorker: every file read in full, one line per file in the details, failures in
  red), Delete (``engine.runs.deletable_runs`` refuses the whole selection in one line
  when any of it is not a run or is training; else it asks first).

Signals:
    resume_requested(str run_dir)   the user asked to continue the run in
        ``run_dir``; the main window routes it to the train panel, which builds
        ``Trainer(..., run_dir=run_dir, resume=Path(run_dir) / "last.pt")``
        inside ``engine.runs.mark_running(run_dir)``.
    runs_changed()                  the list was re-read (after a refresh, rename, tag or delete).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..engine import runs as R
from .runs_view import STATUS_COLORS, RunsFilter, RunsPlot, RunsTableModel, details_html, verify_summary
from .state import AppState
from .workers import TaskWorker, WorkerRunner

REFRESH_WHILE_RUNNING_MS = 5000
#: columns that a long value must not widen past this many pixels
MAX_COLUMN_WIDTH = {0: 250, 2: 235, 3: 120, 9: 240}


class RunsPanel(QWidget):
    """See the module docstring. ``runs_dir`` defaults to ``engine.paths.runs_dir()``.
    Parts: ``plot_view`` (RunsPlot), ``table`` (over ``model`` through ``proxy``)."""

    resume_requested = Signal(str)
    runs_changed = Signal()

    def __init__(self, state: AppState, runs_dir: str | os.PathLike | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("runsPanel")
        self.state = state
        self.runs_dir = Path(runs_dir) if runs_dir is not None else R.default_runs_dir()
        self._curve_cache: dict[str, tuple[tuple, dict | None, str]] = {}
        # run folder -> (the state of its files when verified, the checks): shown while unchanged
        self._verified: dict[str, tuple[tuple, list[R.FileCheck]]] = {}
        self.verify_runner = WorkerRunner(self)
        self.verify_runner.stopped.connect(self._on_verify_stopped)
        self._verify_keys: dict[str, tuple] = {}
        self.model = RunsTableModel(self)
        self.proxy = RunsFilter(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.plot_view = RunsPlot()
        self._build()
        self._connect()
        self.refresh()

    # ------------------------------------------------------------ layout
    def _build(self) -> None:
        self.filter_edit = QLineEdit(objectName="runsFilter", clearButtonEnabled=True,
                                     placeholderText="Filter: words in the name, status, settings or tags")
        bar = QHBoxLayout()
        bar.addWidget(self.filter_edit, 1)
        for attr, text in (("refresh_button", "Refresh"), ("open_button", "Open in sampler"), ("resume_button", "Resume"),
                           ("rename_button", "Rename…"), ("tags_button", "Tags…"), ("verify_button", "Verify"),
                           ("delete_button", "Delete…")):
            setattr(self, attr, QPushButton(text))
            bar.addWidget(getattr(self, attr))
        self.open_button.setToolTip("Sample from this run's best checkpoint")
        self.resume_button.setToolTip("Continue training this run from its last.pt in the Train panel")
        self.verify_button.setToolTip("Read every file of the selected runs in full: the checkpoints (checksum, "
                                      "finite values, network size), history.json and run.json, and whether they agree")
        self.table = self._build_table()
        self.empty_label = QLabel(objectName="runsEmptyLabel", wordWrap=True, styleSheet="color: #666;")
        self.details = QLabel(objectName="runDetails", wordWrap=True, textFormat=Qt.TextFormat.RichText)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setMinimumWidth(240)
        self.details.setStyleSheet("QLabel { background: #fafbfc; border: 1px solid #dde; padding: 8px; }")
        self.folder_label = QLabel(styleSheet="color: #666;")
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_label = QLabel(objectName="runsMessage", styleSheet="color: #8a4b00;")
        self._listing_error = ""  # the footer's text when the last refresh could not list the folder
        foot = QHBoxLayout()
        foot.addWidget(self.folder_label, 1)
        foot.addWidget(self.message_label)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self._build_splitter(), 1)
        layout.addLayout(foot)

    def _build_table(self) -> QTableView:
        table = QTableView(objectName="runsTable")
        table.setModel(self.proxy)
        table.setSortingEnabled(True)
        table.sortByColumn(10, Qt.SortOrder.DescendingOrder)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setAlternatingRowColors(True)
        table.setWordWrap(False)
        table.verticalHeader().setVisible(False)
        table.verticalHeader().setDefaultSectionSize(24)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        table.horizontalHeader().setStretchLastSection(True)
        return table

    def _build_splitter(self) -> QSplitter:
        """The table above; the curves and the details below."""
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.plot_view)
        scroll = QScrollArea(objectName="runDetailsScroll", widgetResizable=True)  # a verification is long
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.details)
        scroll.setMinimumWidth(self.details.minimumWidth() + scroll.verticalScrollBar().sizeHint().width())
        bottom.addWidget(scroll)
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
        return split

    def _connect(self) -> None:
        """Refresh: the folder is watched (debounced), and re-read while a run trains."""
        self.watcher = QFileSystemWatcher(self)
        self._debounce = QTimer(self, singleShot=True, interval=400)
        self.running_timer = QTimer(self, interval=REFRESH_WHILE_RUNNING_MS)
        self.filter_edit.textChanged.connect(self.proxy.set_text)
        for button, slot in ((self.refresh_button, self.refresh), (self.open_button, self.open_in_sampler),
                             (self.resume_button, self.resume), (self.rename_button, self.rename_selected),
                             (self.tags_button, self.edit_tags), (self.verify_button, self.verify_selected),
                             (self.delete_button, self.delete_selected)):
            button.clicked.connect(slot)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self.plot_view.changed.connect(self.update_plot)
        self.watcher.directoryChanged.connect(self._debounce.start)
        self.watcher.fileChanged.connect(self._debounce.start)
        self._debounce.timeout.connect(self.refresh)
        self.running_timer.timeout.connect(self.refresh)

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
            infos, error = R.list_runs(self.runs_dir), ""
        except R.RunError as exc:
            infos, error = [], str(exc)
        # only a listing error of its own is cleared: a watcher's refresh (a training writing its
        # epoch) must not wipe a verification's result from the footer
        if error or self.message_label.text() == self._listing_error:
            self._message(error)
        self._listing_error = error
        self.model.set_runs(infos)
        self.folder_label.setText(f"{len(infos)} run{'s' if len(infos) != 1 else ''} in {self.runs_dir}")
        self.empty_label.setVisible(not infos)
        self.empty_label.setText(f"No runs yet in {self.runs_dir}. Every training (Train panel or "
                                 "`diffusion-studio train`) appears here." if not infos else "")
        self._watch()
        if any(r.status == "running" for r in infos):
            if not self.running_timer.isActive():
                self.running_timer.start()
        else:
            self.running_timer.stop()
        self.table.resizeColumnsToContents()
        for col, most in MAX_COLUMN_WIDTH.items():
            self.table.setColumnWidth(col, min(self.table.columnWidth(col), most))
        if keep:
            self.select_runs(sorted(keep))
        else:
            self._on_selection()
        self.runs_changed.emit()

    def _watch(self) -> None:
        """Watch the runs folder (a new run) and each run folder (new checkpoints, history); while
        the runs folder does not exist yet (before the first training), the nearest folder above it."""
        old = self.watcher.directories() + self.watcher.files()
        if old:
            self.watcher.removePaths(old)
        if self.runs_dir.is_dir():
            paths = [self.runs_dir] + [r.path for r in self.model.runs[:200]]
        else:
            paths = [next((p for p in self.runs_dir.parents if p.is_dir()), None)]
        self.watcher.addPaths([str(p) for p in paths if p is not None])

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        """Coming back to the tab re-reads the folder (debounced), in case a change was missed."""
        super().showEvent(event)
        self._debounce.start()

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
            if self.proxy.index(row, 0).data(RunsTableModel.RunRole).name in names:
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
        self.verify_button.setEnabled(bool(sel) and not self.verify_runner.is_running())
        self.delete_button.setEnabled(bool(sel))  # a refusal says why (a run training, a folder not a run)
        self._show_details(sel)
        self.update_plot()

    def _show_details(self, sel: list[R.RunInfo]) -> None:
        """The selected runs' details, with their verification while their files are as verified."""
        verified = {}
        for r in sel:
            key, checks = self._verified.get(str(r.path), (None, None))
            if checks is not None and key == _files_key(r.path):
                verified[str(r.path)] = checks
        self.details.setText(details_html(sel, verified))

    # -------------------------------------------------------------- plot
    def _curves(self, r: R.RunInfo) -> tuple[dict | None, str]:
        """load_curves(r), cached while the run's files are unchanged; (None, why) when unreadable."""
        key = _files_key(r.path)
        cached = self._curve_cache.get(str(r.path))
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        try:
            curves, why = R.load_curves(r), ""
        except R.RunError as exc:
            curves, why = None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a damaged run must not break the panel
            curves, why = None, f"cannot read the curves of {r.name}: {exc}"
        self._curve_cache[str(r.path)] = (key, curves, why)
        return curves, why

    def update_plot(self, *_args) -> None:
        """Redraw the selected runs' curves; a run whose curves cannot be read is named below."""
        drawn, problems = [], []
        for r in self.selected_runs():
            curves, why = self._curves(r)
            if curves is None:
                problems.append(f"{r.name}: {why or r.status}")
            else:
                drawn.append((r, curves))
        problems += [f"{name}: its settings give no batch size, so it cannot be drawn against images seen"
                     for name in self.plot_view.draw(drawn)]
        if problems:
            self._message("; ".join(problems))

    # ----------------------------------------------------------- actions
    def _message(self, text: str, failed: bool = False) -> None:
        """One line in the footer (and the status bar); ``failed``: in bold red (a verification's problems)."""
        self.message_label.setStyleSheet(f"color: {STATUS_COLORS['damaged']}; font-weight: bold;" if failed
                                         else "color: #8a4b00;")
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
        """The window closes: a verification stops, a run's model being opened is read to the end (bounded)."""
        return self.verify_runner.stop_and_wait(timeout_ms) and self.state.wait_for_model(timeout_ms)

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

    def verify_selected(self) -> bool:
        """Check every file of the selected runs in full (``engine.runs.verify_run``) in a
        TaskWorker: each run's lines appear in the details as it is done. False when it cannot start."""
        sel = self.selected_runs()
        if not sel or self.verify_runner.is_running():
            return False
        paths = [r.path for r in sel]
        self._verify_keys = {str(p): _files_key(p) for p in paths}  # a later change of the files hides the result
        worker = TaskWorker(_verify_job(paths), "verifying", thread_name="verify-runs", request=paths)
        worker.partial.connect(self._on_verified)
        worker.finished.connect(self._on_verify_finished)
        worker.failed.connect(self._message)
        self.verify_button.setEnabled(False)
        self.verify_runner.start(worker)
        self._message(f"verifying {len(paths)} run{'s' if len(paths) != 1 else ''}: reading every file in full…")
        return True

    def _on_verified(self, items: list) -> None:
        for path, checks in items:
            self._verified[str(path)] = (self._verify_keys[str(path)], checks)
        self._show_details(self.selected_runs())

    def _on_verify_finished(self, results: list) -> None:
        self._message(verify_summary(results), failed=any(not c.ok for _path, checks in results for c in checks))

    def _on_verify_stopped(self) -> None:
        self.verify_button.setEnabled(bool(self.selected_runs()))

    def delete_selected(self) -> None:
        """Delete the selected runs after a confirmation box (No is the default). The whole
        selection is checked first (``engine.runs.deletable_runs``): a folder that is not a run,
        or a run being trained, refuses it all in one line, before anything is asked or deleted."""
        sel = self.selected_runs()
        if not sel:
            self._message("select the runs to delete first")
            return
        if self.verify_runner.is_running():
            self._message("wait for the verification to finish before deleting runs; nothing deleted")
            return
        try:
            paths = R.deletable_runs([r.path for r in sel], self.runs_dir)
        except R.RunError as exc:
            text = str(exc)
            self._message(text if "nothing deleted" in text else f"{text}; nothing deleted")
            return
        if not _confirm_delete(self, paths):
            return
        errors = []
        for path in paths:
            try:
                R.delete_run(path)
            except (R.RunError, OSError) as exc:
                errors.append(str(exc))
            self._curve_cache.pop(str(path), None)
            self._verified.pop(str(path), None)
        self.table.clearSelection()
        self.refresh()
        if errors:
            self._message("; ".join(errors))


def _confirm_delete(parent: QWidget, paths: list[Path]) -> bool:
    """Ask before deleting ``paths`` (No is the default); True for Yes."""
    names = "\n".join(f"  {p.name}" for p in paths[:10]) + ("\n  …" if len(paths) > 10 else "")
    answer = QMessageBox.question(
        parent,
        "Delete runs",
        f"Delete {len(paths)} run{'s' if len(paths) != 1 else ''} and all their files "
        f"(checkpoints, history, reports)?\n\n{names}\n\nThis cannot be undone.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


def _files_key(run_dir: Path) -> tuple:
    """The state (mtime, size) of a run's history.json, last.pt and best.pt: a cached reading
    of them (curves, a verification) holds while this is unchanged."""
    key = []
    for name in (R.HISTORY_FILE, "last.pt", "best.pt"):
        try:
            st = (run_dir / name).stat()
            key.append((st.st_mtime_ns, st.st_size))
        except OSError:
            key.append(None)
    return tuple(key)


def _verify_job(paths: list[Path]):
    """fn(ctx) for a TaskWorker: ``engine.runs.verify_run`` on each run in turn, each result
    handed over as a partial (path, checks) as it is done; returns them all."""

    def run(ctx):
        results = []
        for i, path in enumerate(paths):
            ctx.check()
            ctx.progress("verifying", i, len(paths))
            results.append((path, R.verify_run(path)))
            ctx.partial(results[-1])
        return results

    return run
