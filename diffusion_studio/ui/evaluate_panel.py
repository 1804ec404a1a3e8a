"""The Evaluate panel: measure a model (FID, offline metrics) and export the report.

``EvaluatePanel(state)`` (objectName ``evaluatePanel``): choose the current
model or a checkpoint file, n, the metric and the seed (the reverse process is the
Sampler tab's) and optionally the Inception weight file; Run starts a ``TaskWorker``
on a ``WorkerRunner`` (progress bar, Cancel sets its threading.Event); the numbers appear with
their full names, the protocol below them; "Export report…" writes the same
report.json / report.html / samples.png as ``diffusion-studio evaluate``.
A missing Inception weight file is a message in the panel, never a traceback.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..engine.text import first_line
from .imaging import gray_pixmap, tile
from .workers import TaskWorker, WorkerRunner, on_gui_thread

METRIC_LABELS = [
    ("all", "All: Inception FID + MNIST-classifier metrics"),
    ("mnist", "MNIST-classifier metrics only (offline)"),
    ("inception", "FID (Inception, pytorch-fid) only"),
]


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False




class EvaluatePanel(QWidget):
    """See the module docstring. ``evaluation`` holds the last result (engine.report.Evaluation)."""

    evaluation_finished = Signal(str)  # "finished", "cancelled" or "failed"

    def __init__(self, state, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("evaluatePanel")
        self.state = state
        self.evaluation = None
        # the evaluation runs on the common worker scaffold (a TaskWorker on a WorkerRunner)
        self._runner = WorkerRunner(self)
        self._runner.stopped.connect(self._on_thread_finished)

        # --- what to evaluate
        self.source_combo = QComboBox()
        self.source_combo.addItem("Current model", "current")
        self.source_combo.addItem("Checkpoint file", "file")
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("a .pt checkpoint")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse_checkpoint)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.browse_button)
        self.n_spin = QSpinBox()
        self.n_spin.setRange(2, 100_000)
        self.n_spin.setSingleStep(500)
        self.n_spin.setValue(1000)
        self.n_spin.setToolTip("Generated digits. Comparable FIDs use 10,000; FID is biased upward at small n.")
        self.metric_combo = QComboBox()
        for key, text in METRIC_LABELS:
            self.metric_combo.addItem(text, key)
        # the reverse process is the sampler panel's (one SamplerConfig for both), so the
        # digits scored here are the digits the Sampler tab makes
        self.sampler_label = QLabel(objectName="evaluateSamplerLabel", wordWrap=True)
        self.sampler_label.setToolTip(
            "The Sampler tab's settings: an evaluation scores exactly the digits that sampler makes. "
            "Change them there. Class-conditional models are asked for the digits 0–9 in turn and also "
            "scored for class accuracy."
        )
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 999_999_999)
        self.seed_spin.setValue(1)  # Qt 6.11 leaves a fresh spin box at 0 blank until its value changes
        self.seed_spin.setValue(0)
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("default: torch hub cache (pt_inception-2015-12-05-6726825d.pth)")
        self.weights_button = QPushButton("Browse…")
        self.weights_button.clicked.connect(self._browse_weights)
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_edit, 1)
        weights_row.addWidget(self.weights_button)

        form = QFormLayout()
        form.addRow("Model", self.source_combo)
        form.addRow("Checkpoint", path_row)
        form.addRow("Digits (n)", self.n_spin)
        form.addRow("Metric", self.metric_combo)
        form.addRow("Sampler", self.sampler_label)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Inception weights", weights_row)
        from ..engine.evaluation.fid import FID_WEIGHTS_MB

        self.download_button = QPushButton(f"Download Inception weights (about {FID_WEIGHTS_MB} MB)…",
                                           objectName="downloadInceptionButton")
        self.download_button.setToolTip(
            "Fetch pytorch-fid's pt_inception-2015-12-05-6726825d.pth into torch hub's cache, checked by its "
            "sha256 (needs internet); on a machine without internet, copy the file there or choose it above"
        )
        self.download_button.clicked.connect(lambda: self.download_weights())
        form.addRow(self.download_button)
        self.estimate_label = QLabel(objectName="inceptionEstimateLabel", wordWrap=True)
        self.estimate_label.setStyleSheet("color: #555; font-size: 11px;")
        form.addRow(self.estimate_label)
        self._download_runner = WorkerRunner(self)
        self._download_runner.stopped.connect(self._update_enabled)
        self._estimate_runner = WorkerRunner(self)
        self.inception_rate: float | None = None
        settings = QGroupBox("Evaluate")
        settings.setLayout(form)

        # --- run
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("evaluateRun")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button = QPushButton("Export report…")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._export_clicked)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.stage_label = QLabel("Ready.")
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_scroll = QScrollArea()
        self.message_scroll.setWidget(self.message_label)
        self.message_scroll.setWidgetResizable(True)
        self.message_scroll.setMaximumHeight(140)
        self.message_scroll.setVisible(False)

        # --- results
        self.results_table = QTableWidget(0, 4)
        self.results_table.setHorizontalHeaderLabels(["Metric", "Value", "n generated / real", "Reference"])
        self.results_table.verticalHeader().setVisible(False)
        self.results_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        header = self.results_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in (1, 2, 3):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.results_table.setWordWrap(True)
        self.results_table.setMinimumHeight(170)
        self.results_table.currentCellChanged.connect(self._show_protocol)
        self.protocol_text = QPlainTextEdit()
        self.protocol_text.setReadOnly(True)
        self.protocol_text.setPlaceholderText("The protocol of the selected metric appears here.")
        self.samples_label = QLabel()
        self.samples_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.samples_label.setMinimumSize(200, 200)

        left = QVBoxLayout()
        left.addWidget(settings)
        left.addLayout(buttons)
        left.addWidget(self.progress_bar)
        left.addWidget(self.stage_label)
        left.addWidget(self.samples_label, 1)
        right = QVBoxLayout()
        right.addWidget(self.message_scroll)
        right.addWidget(self.results_table, 2)
        right.addWidget(QLabel("Protocol"))
        right.addWidget(self.protocol_text, 1)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 1)
        layout.addLayout(right, 1)

        self.source_combo.currentIndexChanged.connect(self._update_enabled)
        self.n_spin.valueChanged.connect(self._update_estimate)
        self.metric_combo.currentIndexChanged.connect(self._update_estimate)
        self.weights_edit.textChanged.connect(self._update_enabled)
        state.model_changed.connect(self._update_enabled)
        self._update_enabled()

    # ------------------------------------------------------------ settings
    @Slot()
    def _update_enabled(self) -> None:
        running = self._runner.is_running()
        from_file = self.source_combo.currentData() == "file"
        for w in (self.source_combo, self.n_spin, self.metric_combo, self.seed_spin,
                  self.weights_edit, self.weights_button):
            w.setEnabled(not running)
        self.path_edit.setEnabled(from_file and not running)
        self.browse_button.setEnabled(from_file and not running)
        self._show_sampler()
        downloading = self._download_runner.is_running()
        self.run_button.setEnabled(not running and not downloading)
        self.cancel_button.setEnabled(running or downloading)
        self.export_button.setEnabled(self.evaluation is not None and not running)
        missing = self.inception_weights_missing()
        self.download_button.setVisible(missing)
        self.download_button.setEnabled(missing and not downloading and not running)
        self._update_estimate()

    def inception_weights_missing(self) -> bool:
        """True when no Inception weight file is chosen and torch hub's cache has none."""
        from ..engine.evaluation.fid import hub_weights_path

        return not self.weights_edit.text().strip() and not hub_weights_path().is_file()

    # ------------------------------------------------------ the Inception weights
    def download_weights(self, *, ask: bool = True) -> bool:
        """Download the Inception weights after asking (``ask``); progress in the panel,
        Cancel stops it and leaves nothing behind."""
        from ..engine.evaluation.fid import FID_WEIGHTS_MB, download_inception_weights, fid_weights_url, hub_weights_path

        if self._download_runner.is_running() or self._runner.is_running():
            return False
        dest = hub_weights_path()
        if ask:
            answer = QMessageBox.question(
                self, "Download the Inception weights?",
                f"FID needs pytorch-fid's Inception weights (about {FID_WEIGHTS_MB} MB) from\n{fid_weights_url()}\n\n"
                f"They go to {dest} and are checked by their sha256. Download them now?")
            if answer != QMessageBox.StandardButton.Yes:
                return False

        def job(should_stop, report):
            return str(download_inception_weights(dest, should_stop=should_stop,
                                                  progress=lambda done, total: report((done, total))))

        worker = TaskWorker(job, "the download")
        worker.partial.connect(self._on_download_progress)
        worker.finished.connect(on_gui_thread(self, lambda path: self._show_message(
            f"Downloaded and verified {path}.", "info")))
        worker.failed.connect(on_gui_thread(self, lambda msg: self._show_message(msg[:1].upper() + msg[1:])))
        self.progress_bar.setRange(0, 0)
        self.stage_label.setText("Downloading the Inception weights…")
        self._download_runner.start(worker)
        self._update_enabled()
        return True

    def _on_download_progress(self, progress) -> None:
        done, total = progress
        if total:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)
        self.stage_label.setText(f"Downloading the Inception weights: {done / 1e6:.0f}"
                                 + (f" of {total / 1e6:.0f} MB" if total else " MB"))

    # -------------------------------------------------- how long will it take?
    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        self._show_sampler()  # the Sampler tab may have changed while this one was hidden
        self.measure_inception_rate()

    def _show_sampler(self) -> None:
        loaded = self.state.model
        T = loaded.schedule.timesteps if loaded is not None else None
        try:
            text = self.state.current_sampler_config().describe(T)
        except ValueError as exc:  # e.g. more DDIM steps than this model's T
            text = str(exc)
        self.sampler_label.setText(f"{text} — the Sampler tab's settings")

    def measure_inception_rate(self) -> None:
        """Know this machine's Inception speed (cached, else timed once in the background)."""
        from ..engine.device import resolve_device
        from ..engine.evaluation.fid import inception_images_per_second

        if self.inception_rate is not None or self._estimate_runner.is_running():
            return
        device = resolve_device(getattr(self.state, "device", "auto"))
        self.inception_rate = inception_images_per_second(device, measure=False)
        if self.inception_rate is not None:
            self._update_estimate()
            return
        worker = TaskWorker(lambda should_stop, report: inception_images_per_second(device), "timing Inception")
        worker.finished.connect(self._on_rate)
        self._estimate_runner.start(worker)
        self.estimate_label.setText("Timing the Inception network on this machine (a few seconds)…")

    def _on_rate(self, rate) -> None:
        self.inception_rate = float(rate)
        self._update_estimate()

    def _update_estimate(self, *_args) -> None:
        if self.metric_combo.currentData() == "mnist":
            self.estimate_label.setText("The offline metric's classifier scores thousands of digits per second.")
            return
        if self.inception_rate is None:
            return
        from ..engine.evaluation.fid import estimate_inception_seconds

        n = self.n_spin.value()
        seconds = estimate_inception_seconds(n, self.inception_rate)
        reference = estimate_inception_seconds(10_000, self.inception_rate)
        gpu = _cuda_available()
        self.estimate_label.setText(
            f"The Inception pass for n = {n:,} takes about {_minutes(seconds)} here "
            f"({self.inception_rate:.1f} images/s), plus {_minutes(reference)} once for the 10,000 reference digits "
            "when their statistics are not cached yet."
            + (" A CUDA GPU is available: the evaluation runs on it (device auto)." if gpu else
               " On a GPU it takes seconds.")
        )

    @Slot()
    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint to evaluate", "", "Checkpoints (*.pt);;All files (*)")
        if path:
            self.path_edit.setText(path)

    @Slot()
    def _browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Inception weights", "", "PyTorch weights (*.pth);;All files (*)")
        if path:
            self.weights_edit.setText(path)

    def config(self):
        from ..engine.evaluation.report import EvaluationConfig

        return EvaluationConfig(
            n=self.n_spin.value(), metric=self.metric_combo.currentData(),
            sampler=self.state.current_sampler_config(), seed=self.seed_spin.value(),
            inception_weights=self.weights_edit.text().strip() or None, device=getattr(self.state, "device", "auto"),
        )

    def _show_message(self, text: str, kind: str = "error") -> None:
        colour = {"error": "#b00020", "warning": "#8a6d00", "info": "#333"}[kind]
        self.message_label.setStyleSheet(f"color: {colour};")
        self.message_label.setText(text)
        self.message_scroll.setVisible(bool(text))

    # ------------------------------------------------------------------ run
    @Slot()
    def start(self) -> None:
        """Start an evaluation with the current settings (messages instead of errors)."""
        from ..engine.evaluation.report import evaluate_checkpoint, evaluate_model

        if self._runner.is_running():
            return
        data = self.state.data
        if data is None:
            self._show_message("No MNIST data is loaded: open the data folder first (the Data tab).")
            return
        try:
            config = self.config()
        except ValueError as exc:
            self._show_message(first_line(exc))
            return
        if self.source_combo.currentData() == "current":
            loaded = self.state.model
            if loaded is None:
                self._show_message("There is no current model: train one, open a checkpoint, or choose "
                                   "'Checkpoint file'.")
                return
            # a private copy: the sampler panel may use the shared model at the same time
            model = SimpleNamespace(
                model=copy.deepcopy(loaded.model), schedule=loaded.schedule, model_config=loaded.model_config,
                payload={k: v for k, v in (loaded.payload or {}).items()
                         if k in ("epoch", "best", "history", "meta")},
                history=loaded.history, uses_ema=getattr(loaded, "uses_ema", False), path=loaded.path,
            )
            from ..engine.device import resolve_device

            try:
                model.model.to(resolve_device(config.device))
            except ValueError as exc:
                self._show_message(first_line(exc))
                return
            label = self.state.model_source or "current model"

            def evaluate(**kw):
                return evaluate_model(model, data, config, checkpoint_label=label, **kw)
        else:
            path = self.path_edit.text().strip()
            if not path:
                self._show_message("Choose a checkpoint file (Browse…) or evaluate the current model.")
                return

            def evaluate(**kw):
                return evaluate_checkpoint(path, data, config, **kw)

        self._show_message("")
        self.results_table.setRowCount(0)
        self.protocol_text.clear()
        self.stage_label.setText("Starting…")
        self.progress_bar.setRange(0, 0)

        def job(should_stop, report):
            stage = [None]

            def progress(name, done, total):  # a new stage always gets through the throttle
                report((name, done, total), force=name != stage[0] or done >= total)
                stage[0] = name

            ev = evaluate(progress=progress, should_stop=should_stop)
            return ev.report, np.ascontiguousarray(ev.samples), np.ascontiguousarray(ev.strip)

        worker = TaskWorker(job, "evaluation")
        worker.partial.connect(on_gui_thread(self, lambda p: self._on_progress(*p)))
        worker.finished.connect(on_gui_thread(self, lambda result: self._on_finished(*result)))
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        self._runner.start(worker)
        self._update_enabled()

    @Slot()
    def cancel(self) -> None:
        if self._runner.is_running():
            self._runner.stop()
            self.stage_label.setText("Cancelling…")
        if self._download_runner.is_running():
            self._download_runner.stop()
            self.stage_label.setText("Cancelling the download…")

    def is_running(self) -> bool:
        return self._runner.is_running()

    def shutdown(self) -> bool:
        """Called by the main window on close: cancel a running evaluation or download and wait (bounded)."""
        done = self._download_runner.stop_and_wait(5000) and self._estimate_runner.stop_and_wait(15000)
        return self.stop_and_wait() and done

    def stop_and_wait(self, timeout_ms: int = 15000) -> bool:
        """For the main window's close: stop the worker and wait for its thread."""
        return self._runner.stop_and_wait(timeout_ms)

    @Slot(str, int, int)
    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(min(done, total))
        self.stage_label.setText(f"{stage}: {done:,} / {total:,}" if total > 1 else f"{stage}…")

    def _on_finished(self, report: dict, samples, strip) -> None:
        from ..engine.evaluation.report import Evaluation

        self.evaluation = Evaluation(report=report, samples=samples, strip=strip)
        self._show_results()
        self.stage_label.setText(f"Finished in {self.evaluation.report['total_seconds']:.1f} s.")
        self.evaluation_finished.emit("finished")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._show_message(message)
        self.stage_label.setText("Failed.")
        self.evaluation_finished.emit("failed")

    @Slot()
    def _on_cancelled(self) -> None:
        self.stage_label.setText("Cancelled.")
        self.evaluation_finished.emit("cancelled")

    @Slot()
    def _on_thread_finished(self) -> None:
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1 if self.evaluation is not None else 0)
        self._update_enabled()

    # -------------------------------------------------------------- results
    def _show_results(self) -> None:
        from ..engine.evaluation.report_files import format_value

        r = self.evaluation.report
        metrics = r["metrics"]
        self.results_table.setRowCount(len(metrics))
        for row, m in enumerate(metrics):
            p = m["protocol"]
            cells = [m["name"], format_value(m, short=True), f"{p['n_generated']:,} / {p['n_real']:,}", p["reference_split"]]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(m["name"] if col == 0 else text)
                self.results_table.setItem(row, col, item)
        notes = [f"{e['metric']} was not computed: {e['message']}" for e in r.get("errors", []) if e["metric"] != "all"]
        warnings = list(r.get("warnings", []))
        if notes or warnings:
            self._show_message("\n\n".join(notes + [f"Warning: {w}" for w in warnings]),
                               "error" if notes else "warning")
        self.results_table.resizeRowsToContents()
        if metrics:
            self.results_table.setCurrentCell(0, 0)
        samples = self.evaluation.samples[:64]
        self.samples_label.setPixmap(gray_pixmap(tile(samples, ncols=8), scale=2))

    @Slot(int, int, int, int)
    def _show_protocol(self, row: int, *_):
        if self.evaluation is None or not 0 <= row < len(self.evaluation.report["metrics"]):
            return
        m = self.evaluation.report["metrics"][row]
        lines = [m["name"], ""] + [f"{k}: {v}" for k, v in m["protocol"].items()]
        if m.get("details"):
            lines += [""] + [f"{k}: {v}" for k, v in m["details"].items() if k not in ("shares",)]
        self.protocol_text.setPlainText("\n".join(lines))

    # --------------------------------------------------------------- export
    @Slot()
    def _export_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for report.json, report.html and samples.png")
        if folder:
            self.export_report(folder)

    def export_report(self, folder: str | Path) -> dict | None:
        """Write the last evaluation's report files into ``folder``; returns their paths (None on failure)."""
        from ..engine.evaluation.report_files import write_report

        if self.evaluation is None:
            self._show_message("Run an evaluation first.")
            return None
        try:
            files = write_report(self.evaluation, folder)
        except OSError as exc:
            self._show_message(f"Could not write the report to {folder}: {first_line(exc)}")
            return None
        self.stage_label.setText(f"Wrote {files['html']}")
        if hasattr(self.state, "report"):
            self.state.report(f"Report written to {files['html']}")
        return files
