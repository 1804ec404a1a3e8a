"""The Evaluate panel: measure a model (FID, offline metrics) and export the report.

``EvaluatePanel(state)`` (objectName ``evaluatePanel``): a form (``evaluate_view.EvaluateForm``)
chooses the current model or a checkpoint file, n, the metric and the seed (the reverse
process is the Sampler tab's) and optionally the Inception weight file; Run starts
``tasks.evaluate.evaluate`` in a ``TaskWorker`` (progress bar; Cancel sets its stop event).
The current model is evaluated with its guide network, on a private copy
(``LoadedModel.copy_to``). The numbers appear with their full names, the protocol below
them (``evaluate_view.ResultsView``); "Export report…" writes the same report.json /
report.html / samples.png as ``diffusion-studio evaluate``. A missing Inception weight file
is a message in the panel, never a traceback; so is a failed download (no network: one line
that says what to do, and the panel is usable again). The metric starts as what works on this
machine (``default_metric``: the offline MNIST metric without the Inception weights, "All"
with them) until the user picks one.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QMessageBox, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..engine.text import first_line
from .evaluate_view import EvaluateForm, ResultsView, samples_picture, samples_view
from .state import cuda_available
from .workers import TaskWorker, WorkerRunner, on_gui_thread


def default_metric(weights_missing: bool) -> str:
    """What works on this machine: every metric with the Inception weights, else the offline one."""
    return "mnist" if weights_missing else "all"


def download_failure_line(exc: Exception, dest: Path) -> str:
    """Why a download of the Inception weights failed and what to do, in one line: no network
    (a URLError, a timeout) reads as such, not as a raw exception."""
    from ..engine.evaluation.fid import FID_WEIGHTS_FILE

    cause = exc.__cause__
    if cause is None:  # a damaged download: the engine's message says so
        return first_line(exc)
    why = getattr(cause, "reason", None) or cause
    return (f"no connection ({first_line(str(why))}). Connect to the "
            f"internet and press Download again, or copy {FID_WEIGHTS_FILE} into {dest.parent} or choose it under "
            "'Inception weights'. Until then the MNIST-classifier metric works offline.")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class EvaluatePanel(QWidget):
    """See the module docstring. ``evaluation`` holds the last result (engine.report.Evaluation).
    Parts: ``form`` (EvaluateForm), ``results`` (ResultsView)."""

    evaluation_finished = Signal(str)  # "finished", "cancelled" or "failed"

    def __init__(self, state, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("evaluatePanel")
        self.state = state
        self.evaluation = None
        self.inception_rate: float | None = None
        self._runner = WorkerRunner(self)
        self._runner.stopped.connect(self._on_thread_finished)
        self._download_runner = WorkerRunner(self)
        self._download_runner.stopped.connect(self._on_download_stopped)
        self._estimate_runner = WorkerRunner(self)
        self.form = EvaluateForm()
        self.results = ResultsView()
        self._build()
        form = self.form
        form.download_button.clicked.connect(lambda: self.download_weights())
        form.source_combo.currentIndexChanged.connect(self._update_enabled)
        form.n_spin.valueChanged.connect(self._update_estimate)
        form.metric_combo.currentIndexChanged.connect(self._update_estimate)
        self._metric_chosen = False  # until the user picks a metric, it follows what works here
        form.metric_combo.activated.connect(self._on_metric_chosen)
        form.weights_edit.textChanged.connect(self._update_enabled)
        state.model_changed.connect(self._update_enabled)
        state.sampler_config_changed.connect(self._show_sampler)
        self._update_enabled()

    def _build(self) -> None:
        self.run_button = QPushButton("Run", objectName="evaluateRun")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button = QPushButton("Export report…", enabled=False)
        self.export_button.clicked.connect(self._export_clicked)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        self.progress_bar = QProgressBar(minimum=0, maximum=1, value=0)
        self.stage_label = QLabel("Ready.")
        self.samples_view = samples_view()
        left = QVBoxLayout()
        left.addWidget(self.form)
        left.addLayout(buttons)
        left.addWidget(self.progress_bar)
        left.addWidget(self.stage_label)
        left.addWidget(self.samples_view, 1)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 1)
        layout.addWidget(self.results, 1)

    @Slot()
    def _update_enabled(self, *_args) -> None:
        running, downloading = self._runner.is_running(), self._download_runner.is_running()
        self.form.set_running(running)
        self._show_sampler()
        self.run_button.setEnabled(not running and not downloading)
        self.cancel_button.setEnabled(running or downloading)
        self.export_button.setEnabled(self.evaluation is not None and not running)
        missing = self.inception_weights_missing()
        if not self._metric_chosen and not running:
            self.form.metric_combo.setCurrentIndex(self.form.metric_combo.findData(default_metric(missing)))
        self.form.download_button.setVisible(missing)
        self.form.download_button.setEnabled(missing and not downloading and not running)
        self._update_estimate()

    @Slot()
    def _on_metric_chosen(self, *_args) -> None:
        self._metric_chosen = True

    def inception_weights_missing(self) -> bool:
        """True when no Inception weight file is chosen and torch hub's cache has none."""
        from ..engine.evaluation.fid import hub_weights_path

        return self.form.weights() is None and not hub_weights_path().is_file()

    @Slot()
    def _show_sampler(self) -> None:
        loaded = self.state.model
        try:
            text = self.state.current_sampler_config().describe(loaded.schedule.timesteps if loaded else None)
        except ValueError as exc:  # e.g. more DDIM steps than this model's T
            text = str(exc)
        self.form.sampler_label.setText(f"{text} — the Sampler tab's settings")

    def _show_message(self, text: str, kind: str = "error") -> None:
        self.results.show_message(text, kind)

    # ------------------------------------------------------ the Inception weights
    def download_weights(self, *, ask: bool = True) -> bool:
        """Download the Inception weights after asking (``ask``); progress in the panel,
        Cancel stops it and leaves nothing behind."""
        from ..engine.evaluation.fid import (
            FID_WEIGHTS_MB,
            DownloadCancelled,
            InceptionWeightsMissing,
            download_inception_weights,
            fid_weights_url,
            hub_weights_path,
        )
        from ..engine.stopping import Stopped

        if self._download_runner.is_running() or self._runner.is_running():
            return False
        dest = hub_weights_path()
        if ask and QMessageBox.question(
                self, "Download the Inception weights?",
                f"FID needs pytorch-fid's Inception weights (about {FID_WEIGHTS_MB} MB) from\n{fid_weights_url()}\n\n"
                f"They go to {dest} and are checked by their sha256. Download them now?"
        ) != QMessageBox.StandardButton.Yes:
            return False

        def job(ctx):
            try:
                return str(download_inception_weights(
                    dest, should_stop=ctx.should_stop, progress=lambda done, total: ctx.progress("download", done, total)))
            except DownloadCancelled as exc:
                raise Stopped(str(exc)) from exc
            except InceptionWeightsMissing as exc:
                raise RuntimeError(download_failure_line(exc, dest)) from exc

        worker = TaskWorker(job, "downloading the Inception weights")
        worker.progress.connect(self._on_download_progress)
        worker.finished.connect(on_gui_thread(self, lambda path: self._on_download_ended(
            f"Downloaded and verified {path}.", "info")))
        worker.failed.connect(on_gui_thread(self, lambda msg: self._on_download_ended(msg[:1].upper() + msg[1:])))
        worker.cancelled.connect(on_gui_thread(self, lambda: self._on_download_ended(
            "The download was cancelled; nothing was kept.", "warning")))
        self.progress_bar.setRange(0, 0)
        self.stage_label.setText("Downloading the Inception weights…")
        self._download_runner.start(worker)
        self._update_enabled()
        return True

    def _on_download_ended(self, text: str, kind: str = "error") -> None:
        self._show_message(text, kind)
        self.stage_label.setText({"info": "Inception weights ready.", "warning": "Download cancelled."}.get(
            kind, "Download failed (see the message)."))

    @Slot()
    def _on_download_stopped(self) -> None:
        """The download's thread ended, however: the busy bar stops, Run and Cancel are as before."""
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self._update_enabled()

    @Slot(str, int, int)
    def _on_download_progress(self, _stage: str, done: int, total: int) -> None:
        if total:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)
        self.stage_label.setText(f"Downloading the Inception weights: {done / 1e6:.0f}"
                                 + (f" of {total / 1e6:.0f} MB" if total else " MB"))

    # -------------------------------------------------- how long will it take?
    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        self._show_sampler()
        self.measure_inception_rate()

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
        worker = TaskWorker(lambda ctx: inception_images_per_second(device), "timing Inception")
        worker.finished.connect(self._on_rate)
        worker.failed.connect(on_gui_thread(self, lambda msg: self.form.estimate_label.setText(
            f"{msg[:1].upper() + msg[1:]}; no time estimate for the Inception pass.")))
        self._estimate_runner.start(worker)
        if self.form.metric_combo.currentData() != "mnist":
            self.form.estimate_label.setText("Timing the Inception network on this machine (a few seconds)…")

    @Slot(object)
    def _on_rate(self, rate) -> None:
        self.inception_rate = float(rate)
        self._update_estimate()

    def _update_estimate(self, *_args) -> None:
        from ..engine.evaluation.fid import estimate_inception_seconds

        label = self.form.estimate_label
        if self.form.metric_combo.currentData() == "mnist":
            label.setText("The offline metric's classifier scores thousands of digits per second.")
            return
        if self.inception_rate is None:
            return
        n = self.form.n_spin.value()
        seconds = estimate_inception_seconds(n, self.inception_rate)
        reference = estimate_inception_seconds(10_000, self.inception_rate)
        label.setText(
            f"The Inception pass for n = {n:,} takes about {_minutes(seconds)} here "
            f"({self.inception_rate:.1f} images/s), plus {_minutes(reference)} once for the 10,000 reference digits "
            "when their statistics are not cached yet."
            + (" A CUDA GPU is available: the evaluation runs on it (device auto)." if cuda_available() else
               " On a GPU it takes seconds."))

    # ------------------------------------------------------------------ run
    def config(self):
        from ..engine.evaluation.report import EvaluationConfig

        form = self.form
        return EvaluationConfig(n=form.n_spin.value(), metric=form.metric_combo.currentData(),
                                sampler=self.state.current_sampler_config(), seed=form.seed_spin.value(),
                                inception_weights=form.weights(), device=getattr(self.state, "device", "auto"))

    def request(self):
        """The ``tasks.evaluate.EvaluateRequest`` the form describes; ValueError (one line, for the
        user) when it cannot be made."""
        from ..tasks.evaluate import EvaluateRequest
        from ..tasks.models import ModelRef

        if self.state.data is None:
            raise ValueError("No MNIST data is loaded: open the data folder first (the Data tab).")
        config = self.config()
        if self.form.source_combo.currentData() == "current":
            if self.state.model is None:
                raise ValueError("There is no current model: train one, open a checkpoint, or choose "
                                 "'Checkpoint file'.")
            # the handle itself: the task evaluates a private copy with its guide network
            return EvaluateRequest(self.state.model, config, label=self.state.model_source or "current model")
        path = self.form.path_edit.text().strip()
        if not path:
            raise ValueError("Choose a checkpoint file (Browse…) or evaluate the current model.")
        return EvaluateRequest(ModelRef.of(path), config)

    @Slot()
    def start(self) -> None:
        """Start an evaluation with the current settings (messages instead of errors)."""
        from ..tasks.evaluate import evaluate

        if self._runner.is_running():
            return
        try:
            request = self.request()
        except ValueError as exc:
            self._show_message(first_line(exc))
            return
        data = self.state.data
        self.results.clear()
        self.stage_label.setText("Starting…")
        self.progress_bar.setRange(0, 0)
        worker = TaskWorker(lambda ctx: evaluate(request, data, ctx), "evaluation", request=request)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
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

    @Slot(object)
    def _on_finished(self, result) -> None:
        self.evaluation = result.evaluation
        self.results.show(self.evaluation)
        self.samples_view.set_array(samples_picture(self.evaluation.samples))
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
        self.state.report(f"Report written to {files['html']}")
        return files
