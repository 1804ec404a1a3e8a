"""The training panel: hyperparameters, Start / Stop / Resume / Continue, live loss curves.

A form (``train_form.TrainForm``) builds the request, this panel starts and stops it, and
a view (``train_view.LossView``) draws what comes back. The run is one call of the task
layer, ``tasks.train.train``, in a ``TaskWorker``: its records (started, step, early
validation, epoch, baseline, preview, finished) arrive in batches and are drawn at most every 40 ms.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QWidget

from ..engine.defaults import DEFAULT_EARLY_STEPS, DEMO_BUDGET_MINUTES
from ..engine.storage import paths
from ..engine.text import baseline_validated, continuing_from, resuming_at
from ..engine.text import format_duration as _format_duration
from ..engine.training.config import loss_bins
from ..engine.training.presets import Preset
from .distill_box import DistillBox
from .state import AppState
from .train_form import TrainForm
from .train_view import LossView, PreviewBox, build_panel, fill_resume_menu
from .workers import TaskWorker, WorkerRunner

REDRAW_MS = 40

CONTINUE_TIP = ("Start a new run from a checkpoint's weights, settings and epoch count: a bundled model, "
                "or a .pt file (a run's last.pt keeps its optimizer state). Its Adam starts afresh with the "
                "file's learning rate and EMA, or this form's where you changed them from the preset's; "
                "a lower rate (2e-4) and a longer EMA (0.9998) fine-tune")


def format_duration(seconds: float) -> str:
    """12 s, 4 min 05 s, 1 h 02 min ("–" when unknown): the engine's formatter, in words."""
    if not math.isfinite(seconds) or seconds < 0:
        return "–"
    return _format_duration(seconds, words=True)


class TrainPanel(QWidget):
    """Train a DDPM on ``state.data`` and stream its losses (objectName ``trainPanel``).

    Public API
      start_training(max_minutes=None): start a new run with the form's settings (Start button);
          max_minutes overrides the form's budget (watch_training: the 2-minute "Watch it learn").
      stop_training(): ask the run to stop after the current batch (Stop button).
      resume_training(run_dir=None): continue the run in ``run_dir`` (its last.pt);
          None asks with a folder dialog (Resume button's last entry; its menu, filled by
          fill_resume_menu(), offers the run just trained first, then the other runs).
      continue_training(source=None): a new run from a checkpoint's weights, settings and
          epoch count: a bundled model's name, a .pt file or a run folder; None asks with a
          file dialog (Continue from… button, whose menu also lists the bundled models).
      add_preset(preset, select=True), set_run_dir(folder): the form's (``form``).
      shutdown(timeout_ms=15000) -> bool: stop and wait (bounded) for the worker;
          called when the window closes. last.pt / best.pt are written by the engine.
      is_training() -> bool.
    Parts: ``form`` (TrainForm), ``view`` (LossView), ``preview`` (PreviewBox), ``distill`` (DistillBox).
    Signals
      training_finished(reason, message): after a run ends ("completed",
          "early_stopped", "budget", "stopped", "diverged", or "failed").
    """

    training_finished = Signal(str, str)
    preview_every = 5  # epochs between previews (tests lower it)
    preview_first_steps = DEFAULT_EARLY_STEPS  # the early preview's step (the early validation's: the task's)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainPanel")
        self.state = state
        self.runner = WorkerRunner(self)
        self.runner.stopped.connect(self._on_thread_stopped)
        self.run_dir: Path | None = None
        self._opening: str | None = None  # "resume" / "continue" until the run's StartedRecord arrives
        self.form = TrainForm(state)
        self.view = LossView()
        self.preview = PreviewBox()
        self.distill = DistillBox(self)  # "Distil a model": its rounds run as this panel's run
        build_panel(self)
        self._reset_run()
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setInterval(REDRAW_MS)
        self._redraw_timer.timeout.connect(self.view.redraw)
        state.data_changed.connect(self._update_enabled)
        self._update_enabled()

    # ------------------------------------------------------------ the form's API
    def add_preset(self, preset: Preset, select: bool = True) -> None:
        """Offer ``preset`` (an engine Preset) in the preset list."""
        self.form.add_preset(preset, select)

    def set_run_dir(self, folder: str | Path) -> None:
        """Train the next run into ``folder``."""
        self.form.set_run_dir(folder)

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
        watch = (f"Train a new model with these settings for {DEMO_BUDGET_MINUTES} minutes, whatever the "
                 "time budget says: the preview shows its first digits within a minute")
        for button, tip in ((self.start_button, "Train a new model with these settings (Ctrl+T)"),
                            (self.watch_button, watch),
                            (self.resume_button, "Continue a run where it stopped: the run just trained, another run, or a folder"),
                            (self.continue_button, CONTINUE_TIP)):
            button.setEnabled(has_data and not running)
            button.setToolTip(why or tip)
        self.stop_button.setEnabled(running)
        self.data_hint.setText(why)
        self.data_hint.setVisible(bool(why))
        for w in self.form.fields():
            w.setEnabled(not running)
        self.distill.update_enabled()

    def _show_error(self, message: str) -> None:
        self.view.stopping_label.setText(message)
        self.view.stopping_label.setStyleSheet("color: #b00020;")
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

    def _new_folder(self, verb: str) -> tuple[bool, Path | None]:
        """(ok, the run folder: None for a new one named after the run); refuses a folder
        that holds a run already, before anything starts."""
        try:
            folder = self.form.run_dir()
        except ValueError as exc:
            self._show_error(str(exc))
            return False, None
        from ..engine.runs import RunError, check_new_run_folder

        try:
            if folder is not None:
                check_new_run_folder(folder)  # any run file: a run without last.pt is a run too
        except RunError as exc:
            resume = " Use Resume to continue it." if (folder / "last.pt").exists() else ""
            self._show_error(f"Cannot {verb} in that folder: {exc}.{resume}")
            return False, None
        return True, folder

    @Slot()
    def watch_training(self) -> bool:
        """A new run with the form's settings and a DEMO_BUDGET_MINUTES budget ("Watch it learn")."""
        return self.start_training(max_minutes=DEMO_BUDGET_MINUTES)

    def start_training(self, max_minutes: float | None = None) -> bool:
        """Start a new run with the form's settings (and ``max_minutes`` instead of the form's
        budget, when given); False (and a message) when it cannot."""
        if not self._can_train():
            return False
        ok, folder = self._new_folder("train")
        if not ok:
            return False
        from ..engine.runs import RunError
        from ..tasks.train import plan_train

        try:  # validated before any folder is made
            form = self.form
            request = self._request("new", max_minutes=max_minutes, out=folder, preset=form.current_preset().name, model=form.model_config(),
                                    schedule=form.schedule_config(), train=form.train_config())
            plan = plan_train(request)
        except (ValueError, RunError) as exc:
            self._show_error(f"Cannot train: {exc}")
            return False
        return self._start(request, plan)

    def resume_training(self, run_dir: str | Path | None = None) -> bool:
        """Continue the run in ``run_dir`` (a folder with last.pt) with its own settings; the
        form's epochs and patience, where set, may raise its own. None asks with a folder dialog."""
        if not self._can_train():
            return False
        if not run_dir:
            run_dir = QFileDialog.getExistingDirectory(self, "Resume which run?", str(paths.runs_dir()))
            if not run_dir:
                return False
        run_dir = Path(run_dir)
        if not (run_dir / "last.pt").is_file():
            self._show_error(f"{run_dir} has no last.pt to resume from; choose a run folder made by training.")
            return False
        self.form.show_run_dir(run_dir)
        self._opening = "resume"
        return self._start(self._request("resume", source=run_dir, settings=self.form.raised_settings()))

    def continue_training(self, source: str | Path | None = None) -> bool:
        """A new run from a checkpoint (``tasks.train``, mode "continue"): its weights, settings, epoch
        count, history and guide network. The form's epochs and patience, where set, may raise its own;
        its fresh Adam takes the form's lr and EMA where they differ from the preset's
        (``TrainForm.continue_settings``; the CLI's ``--lr``, ``--ema``), else the file's. ``source``: a
        bundled model's name, a .pt file or a run folder (its last.pt); None asks with a file dialog."""
        from ..engine.storage.checkpoint import CheckpointError
        from ..engine.training.plan import checkpoint_to_continue

        if not self._can_train():
            return False
        if source is None:
            source, _ = QFileDialog.getOpenFileName(self, "Continue which checkpoint?", str(paths.runs_dir()),
                                                    "Checkpoints (*.pt)")
            if not source:
                return False
        try:
            checkpoint_to_continue(source)  # a missing file is refused now, not in the worker
        except CheckpointError as exc:
            self._show_error(f"Cannot continue: {exc}")
            return False
        ok, folder = self._new_folder("continue")
        if not ok:
            return False
        self._opening = "continue"
        settings = {**self.form.raised_settings(), **self.form.continue_settings()}
        return self._start(self._request("continue", source=str(source), out=folder, settings=settings))

    @Slot()
    def fill_resume_menu(self) -> None:
        """The Resume menu: the run just trained first, then the runs folder's others, then a folder dialog."""
        fill_resume_menu(self.resume_menu, self.run_dir, paths.runs_dir(), self.resume_training, self.state.report)

    def continue_settings(self) -> dict[str, float]:
        """The form's ``continue_settings``: what a Continue changes of the file's lr and EMA."""
        return self.form.continue_settings()

    def _request(self, mode: str, max_minutes: float | None = None, **fields):
        from ..tasks.train import TrainRequest

        return TrainRequest(mode=mode, runs_dir=paths.runs_dir(), max_minutes=max_minutes or self.form.max_minutes(),
                            device=self.form.device_combo.currentText(), preview_every=self.preview_every,
                            preview_first_steps=self.preview_first_steps, **fields)

    def _start(self, request, plan=None) -> bool:
        return self.start_job(_train_job(request, plan, self.state.data), "training", request, self._on_records)

    def start_job(self, fn, activity: str, request, on_records) -> bool:
        """Run ``fn(ctx)``, a task that hands training records to ``ctx.partial``, as this panel's
        run (``on_records(list)`` hears them): a training, or the distillation box's rounds."""
        self._reset_run()
        self.view.stopping_label.setStyleSheet("")
        self.view.stopping_label.setText("Starting…")
        self.view.progress_label.setText("Preparing the data and the network…")
        self.preview.clear()
        worker = TaskWorker(fn, activity, request=request)
        worker.partial.connect(on_records)
        worker.failed.connect(self._on_failed)
        self.runner.start(worker)
        self._redraw_timer.start()
        self._update_enabled()
        self.state.report(f"{activity} started")
        return True

    @Slot()
    def stop_training(self) -> None:
        if self.is_training():
            self.runner.stop()
            self.stop_button.setEnabled(False)
            self.view.stopping_label.setText("Stopping after this batch…")

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """Stop the run and wait at most ``timeout_ms``; True when no thread is left.
        The engine has already written last.pt / best.pt, so nothing is lost."""
        self._redraw_timer.stop()
        return (self.runner.stop_and_wait(timeout_ms) and self.distill.shutdown(timeout_ms)
                and self.state.wait_for_model(timeout_ms))

    # ------------------------------------------------------------ the run's records
    def _reset_run(self) -> None:
        self.view.reset()
        self.epochs_total = self.steps_per_epoch = 1
        self.start_epoch = 0
        self._t0 = None
        self.max_budget = 0.0
        self.batch_size = 128
        self.validation_images = 10000
        self.timesteps = 1  # the run's T, for the loss-by-timestep bins (its StartedRecord says)
        self.validation_seconds: float | None = None  # measured at the last epoch's end
        self.last_reason = self.last_message = ""

    @Slot(object)
    def _on_records(self, records: list) -> None:
        """A batch of the run's records, in order: runs of steps are drawn together, every
        other record by ``_on_<kind>`` (started, early_validation, epoch, baseline, preview, finished)."""
        steps = []
        for record in records:
            if record.kind == "step":
                steps.append(record)
                continue
            if steps:
                self._on_steps(steps)
                steps = []
            getattr(self, f"_on_{record.kind}")(record)
        if steps:
            self._on_steps(steps)

    def _on_started(self, rec) -> None:
        view = self.view
        self.steps_per_epoch = view.steps_per_epoch = max(1, int(rec.steps_per_epoch))
        self.epochs_total = view.epochs_total = int(rec.epochs)
        if rec.mode != "new":  # the run trains with its own settings: the form shows them
            self.form.show_run_settings(rec)
        self.start_epoch = int(rec.start_epoch)
        self.max_budget = float(rec.max_seconds or 0.0)
        self.batch_size = int(rec.train_config.get("batch_size", 128))
        self.validation_images = int(rec.validation_images)
        self.timesteps = int(rec.timesteps)
        self._t0 = time.monotonic()
        if rec.run_dir:
            self.run_dir = Path(rec.run_dir)
            self.form.show_run_dir(rec.run_dir)
        self.view.show_history(rec.history or {})
        self._opening = None
        what = _start_words(rec)
        view.stopping_label.setText(
            f"{what[:1].upper() + what[1:]} on {rec.device} ({rec.precision_detail or rec.precision}), "
            f"{self.steps_per_epoch} steps per epoch"
            + (f", budget {format_duration(self.max_budget)}" if self.max_budget else ""))
        self.state.report(f"{what} on {rec.device}, T={rec.timesteps}, batch {self.batch_size}")

    def _on_steps(self, steps: list) -> None:
        self.view.add_steps([r.global_step for r in steps], [r.loss for r in steps])
        last = steps[-1]
        self.steps_per_epoch = self.view.steps_per_epoch = last.steps_per_epoch
        done_total = (last.epoch - 1) * last.steps_per_epoch + last.step
        total = self.epochs_total * last.steps_per_epoch
        done = done_total / max(1, total)
        of_budget = (time.monotonic() - self._t0) / self.max_budget if self.max_budget and self._t0 else 0.0
        self.view.progress.setValue(int(1000 * min(1.0, max(done, of_budget))))
        eta = "–"
        if self._t0 is not None and last.images_per_s > 0:
            eta = format_duration(self.eta_seconds(last.epoch, total - done_total, last.images_per_s))
        of_what = " of the time budget" if of_budget > done else ""
        self.view.progress.setFormat(f"epoch {last.epoch}/{self.epochs_total} · %p%{of_what}")
        self.view.progress_label.setText(f"step {last.step}/{last.steps_per_epoch} · loss {last.loss:.4f} · "
                                         f"{last.images_per_s:,.0f} images/s · ETA {eta}")

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

    def _on_epoch(self, rec) -> None:
        if rec.validation_seconds:
            self.validation_seconds = float(rec.validation_seconds)
        if rec.fraction >= 1.0:
            self.form.set_epoch_seconds(rec.seconds)
        self.view.add_epoch(rec.epoch, rec.val_loss, rec.fraction)  # a budget's partial epoch where it ended
        self.view.set_best(rec.best_epoch, rec.best_val_loss)
        if rec.val_loss_by_t is not None:
            self.view.add_loss_by_timestep(loss_bins(self.timesteps), rec.val_loss_by_t)
        if rec.improved:
            state = f"epoch {rec.epoch}: new best validation loss"
        else:
            state = f"{rec.epochs_without_improvement} of {rec.patience} epochs without improvement"
        self.view.stopping_label.setText(state)
        self.view.epoch_label.setText(
            f"epoch {rec.epoch}/{rec.epochs}: train {rec.train_loss:.5f} · validation {rec.val_loss:.5f} · "
            f"best {rec.best_val_loss:.5f} at epoch {rec.best_epoch} · {format_duration(rec.seconds)} · "
            f"{rec.images_per_s:,.0f} images/s")

    def _on_early_validation(self, rec) -> None:
        self.state.report(self.view.show_early_estimate(rec))  # the marker, the line under it, the status bar

    def _on_baseline(self, rec) -> None:
        """A continued run validated the weights it brought: the loss its epochs must beat."""
        if rec.seconds:
            self.validation_seconds = float(rec.seconds)
        self.view.set_best(rec.epoch, rec.val_loss)
        line = baseline_validated(rec.val_loss, rec.seconds)
        self.view.epoch_label.setText(line[:1].upper() + line[1:])

    def _on_preview(self, rec) -> None:
        if self.last_reason:  # sampled after the end: the best weights, restored
            caption = f"samples from the restored best model (epoch {rec.epoch})"
        elif rec.step:
            caption = f"{len(rec.images)} samples after {rec.step} steps (EMA weights; DDIM, 20 steps)"
        else:
            caption = f"{len(rec.images)} samples after epoch {rec.epoch} (DDIM, 20 steps)"
        self.preview.show_digits(rec.images, caption)

    def _on_finished(self, rec) -> None:
        """The run ended. One rule for the Sampler, whatever ended it (completed, early stopping,
        the time budget, Stop, divergence): a run that leaves best.pt becomes the Sampler's model,
        and the status line says so; one stopped before its first validation leaves it as it was."""
        self.last_reason, self.last_message = rec.reason, rec.message
        best = self.run_dir / "best.pt" if self.run_dir is not None else None
        opens = best is not None and best.is_file()
        if opens:
            sampler = f"The Sampler now uses its best weights (epoch {rec.best_epoch or '?'})."
        else:
            sampler = "No epoch was validated, so the Sampler keeps its model; Resume goes on from here."
        text = f"{rec.message[:1].upper() + rec.message[1:]}. {sampler}".replace(".. ", ". ")
        label = self.view.stopping_label
        label.setStyleSheet("color: #1b6e1b;" if rec.reason != "diverged" else "color: #b00020;")
        label.setText(text)
        self.view.show_end(rec.reason, self.epochs_total)
        if rec.reason in ("completed", "early_stopped", "budget") and rec.best_epoch and self.preview.has_digits():
            self.preview.caption.setText(f"samples from the restored best model (epoch {rec.best_epoch})")
        self.view.progress_label.setText(self.view.progress_label.text().split(" · ETA")[0])
        self.view.redraw()
        if opens:
            self.state.open_model(best, f"trained: {self.run_dir.name}")
        self.state.report(text)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.last_reason, self.last_message = "failed", message
        if self._opening:  # last.pt or the checkpoint could not be read or continued: say so in its words
            message = f"Cannot {self._opening}: {message.split(': ', 1)[-1]}"
            self._opening = None
        self._show_error(message[:1].upper() + message[1:])

    @Slot()
    def _on_thread_stopped(self) -> None:
        self._redraw_timer.stop()
        self.form.use_new_run_dir()  # a chosen folder served this run; Start next makes a new one
        self.view.redraw()
        self._update_enabled()
        self.training_finished.emit(self.last_reason, self.last_message)


def _start_words(rec) -> str:
    """"training", "resuming at epoch 8, lr 0.00093" or "continuing default (75 epochs) at ..."."""
    if rec.mode == "continue" and rec.continued_from:
        return continuing_from(rec.source_name, float(rec.continued_from["epochs"]), rec.start_epoch + 1,
                               float(rec.start_lr))
    if rec.mode == "resume" or rec.start_epoch or rec.start_step:
        return resuming_at(rec.start_epoch + 1, float(rec.start_lr))
    return "training"


def _train_job(request, plan, data):
    """fn(ctx) for a TaskWorker: plan the run (a resume or continuation reads its checkpoint
    here, off the GUI thread) and hand each of ``tasks.train.train``'s records to the panel."""

    def run(ctx) -> None:
        from ..tasks.train import plan_train, train

        for record in train(request, plan or plan_train(request), data, ctx):
            ctx.partial(record)

    return run


