"""The sampler panel: run the reverse process and watch x_T become x_0.

A form (``sampler_form.SamplerForm``) builds the request, this panel starts and cancels
it, and a view (``sampler_view.FramesView``) shows the kept frames: play, pause and the
slider only show kept frames, scrubbing never recomputes anything. Sampling is one call of
``tasks.sample.sample_frames``; the explorations (interpolation, guidance sweep, nearest
training digits) are calls of ``tasks.explore``; each runs in a ``TaskWorker``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QFileDialog, QWidget

from ..engine.text import first_line
from ..tasks.explore import NeighboursRequest, guidance_sweep, interpolate, nearest_neighbours
from ..engine.device import PrecisionChoice
from ..engine.storage.images import enlarge, save_png, tile
from ..tasks.sample import Frame, sample_frames, sampling_precision
from .sampler_form import Provenance, SamplerForm, explore_provenance, sample_provenance
from .sampler_view import ExploreBox, FramesView, build_panel, gif_pictures
from .settings import CHECKPOINT_FOLDER, app_settings, export_path
from .state import AppState
from .workers import TaskWorker, WorkerRunner

MAX_FRAMES = 120  # frames a run keeps (plus the strip's): n x frames x 2 x 784 bytes
SWEEP_TIPS = {
    "cfg": "Guidance w = 0, 0.5, 1, 2, 4 in columns, for the digits 0–9 (\u201c0–9 in turn\u201d) or four seeds of "
           "the chosen digit in rows (deterministic DDIM)",
    "guide": "Autoguidance g = 0, 0.5, 1, 2, 4 in columns, four seeds in rows (deterministic DDIM): how steering "
             "away from the weaker guide network changes each digit",
    "none": "Needs a class-conditional model or one with a guide network (it compares guidance weights)",
}
NEIGHBOUR_TIPS = {
    True: "Does the model copy? For each digit sampled above, its nearest training digit in pixels and in "
          "the metric classifier's features, against the same distances for real test digits",
    False: "Sample first (and open MNIST): this compares the samples with the training digits",
}


class SamplerPanel(QWidget):
    """Sample digits from ``state.model`` and animate the reverse process
    (objectName ``samplerPanel``).

    Public API
      sample() -> bool: start sampling with the form's settings (Sample button).
      cancel(): stop a running sampling (Cancel button).
      interpolate(), guidance_sweep(), nearest_neighbours() -> bool: the explorations.
      open_checkpoint(path=None) -> bool: open a checkpoint as ``state.model`` (in the background).
      show_frame(i), play(), pause(): the view's (``view``).
      export_grid(path=None), export_strip(path=None), export_gif(path=None),
          export_explore(path=None) -> Path | None: write the final grid (PNG), the
          t = 300, 100, 50, 20, 0 strip (PNG), the animation of x_t and predicted x_0 (GIF)
          or the exploration's strip, enlarged ``export_scale()`` times (default 4); None asks
          with a file dialog; returns None when there was nothing to export or it was cancelled.
      shutdown(timeout_ms=5000) -> bool: stop and wait (bounded) for the worker.
    Parts: ``form`` (SamplerForm), ``view`` (FramesView), ``explore_box`` (ExploreBox).
    Signals: sampling_finished(str outcome): "finished", "cancelled" or "failed" (sampling),
    "completed" (an exploration).
    """

    sampling_finished = Signal(str)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("samplerPanel")
        self.state = state
        self.runner = WorkerRunner(self)
        self.runner.stopped.connect(self._on_thread_stopped)
        self._outcome = ""
        self._job_info = ""
        self._export_name = "samples"
        self._what = ""  # the exploration running
        self.shown: Provenance | None = None  # what made the frames on screen
        self.explored: Provenance | None = None  # what made the exploration's strip
        self._exploring: Provenance | None = None  # what will make the strip of the exploration running
        self.form = SamplerForm()
        self.view = FramesView()
        self.explore_box = ExploreBox()
        build_panel(self)
        self._connect()
        self._on_model_changed()

    def _connect(self) -> None:
        for button, action in ((self.sample_button, self.sample), (self.cancel_button, self.cancel),
                               (self.interpolate_button, self.interpolate), (self.sweep_button, self.guidance_sweep),
                               (self.neighbour_button, self.nearest_neighbours),
                               (self.export_grid_button, self.export_grid), (self.export_strip_button, self.export_strip),
                               (self.export_gif_button, self.export_gif),
                               (self.explore_box.export_button, self.export_explore)):
            button.clicked.connect(lambda _=False, action=action: action())
        self.form.model_combo.activated.connect(self._on_model_combo)
        self.form.changed.connect(self._push_sampler_config)
        self.state.model_changed.connect(self._on_model_changed)
        self.state.model_open_failed.connect(
            lambda label, reason: self._say(f"Cannot open {label}: {reason}", error=True))

    # ------------------------------------------------------------ the model
    @Slot()
    def _on_model_changed(self) -> None:
        self.form.show_model(self.state.model, self.state.model_source, _listed_models())
        self._update_enabled()
        self._push_sampler_config()  # guidance applies only to what this model has
        if self._mark_stale() and not self.runner.is_running():
            self._say(f"The digits shown are from {self._stale_note(self.shown or self.explored)}; "
                      "sample again for this model's.")

    def _stale_note(self, made: Provenance) -> str:
        return f"{made.source}, not the current model ({self.state.model_source or 'none'})"

    def _mark_stale(self) -> bool:
        """Say which model made the pictures on screen: one that is no longer the current model
        in red (they are kept, and exported with their own provenance). True when any are stale."""
        stale = []
        if self.shown is not None:
            stale.append(not self.shown.is_from(self.state.model))
            source = self._stale_note(self.shown) if stale[-1] else self.shown.source
            self.view.set_source(f"From {source}: {self._job_info}", stale=stale[-1])
        if self.explored is not None:
            stale.append(not self.explored.is_from(self.state.model))
            self.explore_box.set_stale(f"From {self._stale_note(self.explored)}" if stale[-1] else "")
        return any(stale)

    @Slot()
    def _push_sampler_config(self, *_args) -> None:
        """The state holds this form's SamplerConfig (None while the form is not valid), so
        "denoise from here" and the evaluation run what this tab runs."""
        try:
            config = self.form.sampler_config()
        except ValueError:
            config = None
        self.state.set_sampler_config(config)

    @Slot(int)
    def _on_model_combo(self, index: int) -> None:
        kind = self.form.model_combo.itemData(index)
        if kind == "open":
            self.open_checkpoint()
        else:
            for name, title, path in _listed_models():
                if name == kind:
                    self.open_checkpoint(path, source=title[:1].lower() + title[1:])
        self.form.model_combo.setCurrentIndex(0)

    def open_checkpoint(self, path: str | Path | None = None, source: str | None = None) -> bool:
        """Open a checkpoint as ``state.model``, off the GUI thread (None asks with a file
        dialog). False when there is no such file; the model arrives by model_changed."""
        path = Path(path) if path is not None else _ask_checkpoint_path(self)
        if path is None:
            return False
        if not path.is_file():
            self._say(f"Cannot open {path.name}: there is no such file", error=True)
            return False
        self.state.open_model(path, source or f"checkpoint: {path.parent.name}/{path.name}")
        self._say(f"Opening {path.name}…")
        return True

    def _update_enabled(self) -> None:
        running = self.runner.is_running()
        has_model = self.state.model is not None
        self.sample_button.setEnabled(has_model and not running)
        self.sample_button.setToolTip("Generate digits with these settings (Ctrl+R)" if has_model
                                      else "No model: train one or open a checkpoint first")
        self.cancel_button.setEnabled(running)
        self.form.set_running(running)
        conditional, guide = self.form.conditional(), self.form.guide_info()
        has_frames = bool(self.view.frames) and not running
        done = has_frames and self.view.finished()
        for w in (self.export_grid_button, self.export_strip_button):
            w.setEnabled(done)
        for w in (self.interpolate_button, self.seed_b_spin):
            w.setEnabled(has_model and not running)
        self.sweep_button.setEnabled((conditional or guide is not None) and not running)
        self.sweep_button.setToolTip(SWEEP_TIPS["cfg" if conditional else "guide" if guide is not None else "none"])
        self.explore_box.export_button.setEnabled(self.explore_box.strip is not None and not running)
        can_check = done and self.state.data is not None
        self.neighbour_button.setEnabled(can_check)
        self.neighbour_button.setToolTip(NEIGHBOUR_TIPS[can_check])
        self.export_gif_button.setEnabled(has_frames)
        self.view.set_controls_enabled(has_frames)

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet("color: #b00020;" if error else "color: #444;")
        self.message.setText(text)
        self.state.report(text)

    # ------------------------------------------------------------ sampling
    def sampler_config(self):
        """The form's SamplerConfig for the current model."""
        return self.form.sampler_config()

    def labels(self, n: int):
        """The (n,) digits to ask a class-conditional model for (None for an unconditional one)."""
        return self.form.labels(n)

    @property
    def frames(self) -> list:
        return self.view.frames

    @property
    def current_index(self) -> int:
        return self.view.current_index

    @property
    def explore_strip(self) -> np.ndarray | None:
        """The latest exploration's digits, (K, 28, 28) uint8 (None before the first)."""
        return None if self.explore_box.strip is None else self.explore_box.strip.images

    @Slot()
    def sample(self) -> bool:
        """Start sampling with the form's settings; False (with a message) when it cannot."""
        loaded = self.state.model
        if self.runner.is_running():
            return False
        if loaded is None:
            self._say("No model to sample from: train one or open a checkpoint.", error=True)
            return False
        try:
            request = self.form.sample_request()
            steps = request.sampler.num_steps(loaded.schedule.timesteps)
        except ValueError as exc:
            self._say(f"Cannot sample: {exc}", error=True)
            return False
        self.view.clear()
        self._job_info, self._export_name = _describe_sampling(request, loaded, steps)
        self.shown = sample_provenance(loaded, self.state.model_source, request, self._job_info)
        self.view.set_source(f"From {self.shown.source}: {self._job_info}")
        worker = TaskWorker(_sample_job(loaded, request), "sampling", request=request)
        worker.progress.connect(self._on_progress)
        worker.partial.connect(self._on_partial)
        worker.finished.connect(self._on_frames)
        worker.failed.connect(self._on_failed)
        self.progress.setRange(0, steps)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m steps")
        self._start(worker, f"Sampling {self._job_info}…")
        return True

    def _start(self, worker: TaskWorker, message: str) -> None:
        self._outcome = ""
        self.runner.start(worker)
        self._say(message)
        self._update_enabled()

    @Slot()
    def cancel(self) -> None:
        if self.runner.is_running():
            self.runner.stop()
            self.cancel_button.setEnabled(False)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop sampling and wait at most ``timeout_ms``; True when no thread is left
        (a model this panel asked for is read to the end first)."""
        self.view.pause()
        return self.runner.stop_and_wait(timeout_ms) and self.state.wait_for_model(timeout_ms)

    @Slot(str, int, int)
    def _on_progress(self, _stage: str, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    @Slot(object)
    def _on_partial(self, items: list) -> None:
        """The precision first, then kept frames: the newest one is shown."""
        for item in items:
            if isinstance(item, PrecisionChoice):
                self._say(f"Sampling {self._job_info} in {item.describe()}…")
        frames = [item for item in items if isinstance(item, Frame)]
        if frames:
            self.view.show_live(frames[-1].t, frames[-1].x, frames[-1].x0)

    @Slot(object)
    def _on_frames(self, result) -> None:
        self.view.set_frames(result.frames)
        if result.stopped:
            self._outcome = "cancelled"
            self._say("Sampling cancelled" + (f" at t = {self.frames[-1].t}." if self.frames else "."))
        else:
            self._outcome = "finished"
            self._say(f"Sampled {self._job_info}: {len(self.frames)} frames kept.")
        if self._mark_stale():  # the model changed while it sampled
            self._say(f"{self.message.text()} They are from {self._stale_note(self.shown)}.")

    # ---------------------------------------------- interpolation, guidance sweep, neighbours
    def interpolate(self) -> bool:
        """Nine digits between the x_T of Seed and of the second seed (slerp, DDIM eta = 0),
        shown as a strip below the animation; False when it cannot start."""
        loaded = self.state.model
        if loaded is None or self.runner.is_running():
            return False
        request = self.form.interpolate_request(self.seed_b_spin.value())
        return self._explore(lambda ctx: interpolate(loaded, request, ctx), "interpolation", request,
                             explore_provenance(loaded, self.state.model_source, request))

    def guidance_sweep(self) -> bool:
        """A grid with a column per weight, labelled: for a class-conditional model w = 0, 0.5, 1,
        2, 4 for the digits 0-9 (or four seeds of the chosen digit); for a model with a guide
        network and no labels, autoguidance g = 0, 0.5, 1, 2, 4 for four seeds."""
        loaded = self.state.model
        if loaded is None or self.runner.is_running():
            return False
        if not self.form.conditional() and loaded.guide is None:
            self._say("The guidance sweep needs a class-conditional model or one with a guide network.", error=True)
            return False
        request = self.form.sweep_request()
        what = "guidance sweep" if self.form.conditional() else "autoguidance sweep"
        return self._explore(lambda ctx: guidance_sweep(loaded, request, ctx), what, request,
                             explore_provenance(loaded, self.state.model_source, request))

    def nearest_neighbours(self) -> bool:
        """For the digits sampled last: their nearest training digits (pixels, classifier
        features), shown as rows below them, with the distances against real test digits'."""
        data = self.state.data
        if not self.view.finished() or data is None or self.runner.is_running():
            return False
        request = NeighboursRequest(np.asarray(self.frames[-1].x, dtype=np.uint8))
        return self._explore(lambda ctx: nearest_neighbours(data, request, ctx), "nearest-neighbour check", request,
                             self.shown)  # the digits compared are the ones on screen

    def _explore(self, fn, what: str, request, made: Provenance) -> bool:
        """Start an exploration; ``made``: the provenance its strip will carry."""
        self._exploring = made
        worker = TaskWorker(fn, f"the {what}", request=request)
        worker.finished.connect(self._on_strip)
        worker.cancelled.connect(self._on_cancelled)
        worker.failed.connect(self._on_failed)
        worker.progress.connect(self._on_explore_progress)
        self._what = what
        self._start(worker, f"Running the {what}…")
        return True

    @Slot(str, int, int)
    def _on_explore_progress(self, stage: str, done: int, total: int) -> None:
        if stage == "training classifier":  # digits the app ships no metric classifier for: a first use
            self._say(f"Training the metric classifier for these digits, once (it is kept): step {done:,} of {total:,}…")

    @Slot()
    def _on_cancelled(self) -> None:
        self._outcome = "cancelled"
        self._say(f"The {self._what} was cancelled.")

    @Slot(object)
    def _on_strip(self, strip) -> None:
        self._outcome = "completed"
        self.explore_box.show_strip(strip)
        self.explored = self._exploring.described(strip.caption)
        self._say(strip.caption[:1].upper() + strip.caption[1:])
        if self._mark_stale():  # the model changed while it ran
            self._say(f"{self.message.text()} It is from {self._stale_note(self.explored)}.")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._outcome = "failed"
        self._say(message[:1].upper() + message[1:], error=True)

    @Slot()
    def _on_thread_stopped(self) -> None:
        self._update_enabled()
        self.sampling_finished.emit(self._outcome or "failed")

    # ------------------------------------------------------------ the view's API
    def show_frame(self, index: int) -> None:
        self.view.show_frame(index)

    def is_playing(self) -> bool:
        return self.view.is_playing()

    def play(self) -> None:
        if not self.runner.is_running():
            self.view.play()

    def pause(self) -> None:
        self.view.pause()

    def strip_frames(self) -> list:
        return self.view.strip_frames()

    # ------------------------------------------------------------ exports
    def _final(self):
        if not self.view.finished():
            self._say("Nothing to export yet: sample first (and let it finish).", error=True)
            return None
        return self.frames[-1]

    def export_grid(self, path: str | Path | None = None) -> Path | None:
        """Save the final images as one PNG grid (white 2-px gaps), its provenance in the PNG's
        text (``Provenance.text``); returns the path."""
        final = self._final()
        if final is None:
            return None
        grid, text = enlarge(tile(final.x, pad=2, pad_value=255), self.export_scale()), self.shown.text
        return self._export(path, "grid", ".png", lambda p: save_png(grid, p, text))

    def export_strip(self, path: str | Path | None = None) -> Path | None:
        """Save the t = 300, 100, 50, 20, 0 strip (labelled) as PNG, with its provenance; returns the path."""
        if self._final() is None:
            return None
        strip, text = self.view.strip_array(scale=self.export_scale()), self.shown.text
        return self._export(path, "strip", ".png", lambda p: save_png(strip, p, text))

    def export_gif(self, path: str | Path | None = None) -> Path | None:
        """Save the kept frames as an animated GIF: x_t | predicted x_0 side by side under their
        t, the last frame held for 1.5 s; returns the path."""
        from ..engine.storage.images import save_gif

        if not self.frames:
            self._say("Nothing to export yet: sample first.", error=True)
            return None
        frames, scale = list(self.frames), self.export_scale()
        return self._export(path, "animation", ".gif", lambda p: save_gif(gif_pictures(frames, scale), p))

    def export_explore(self, path: str | Path | None = None) -> Path | None:
        """Save the latest interpolation, sweep or neighbour strip as PNG, with its provenance; returns the path."""
        box = self.explore_box
        if box.strip is None:
            self._say("Nothing to export yet: run an interpolation or a guidance sweep first.", error=True)
            return None
        picture, text = box.picture(self.export_scale()), self.explored.text
        return self._export(path, "strip", ".png", lambda p: save_png(picture, p, text), name=box.strip.name)

    def export_scale(self) -> int:
        """Pixels per digit pixel in the exports (the Export box's Scale)."""
        return self.export_scale_spin.value()

    def _export(self, path, what: str, suffix: str, write, name: str | None = None) -> Path | None:
        """Ask for the file (when ``path`` is None), write it, and say what happened."""
        path = export_path(self, path, what, suffix, name or self._export_name)
        if path is None:
            return None
        try:
            write(path)
        except Exception as exc:
            self._say(f"Could not save the {what} to {path}: {first_line(exc)}", error=True)
            return None
        self._say(f"Saved the {what} to {path}")
        return path


def _sample_job(loaded, request):
    """fn(ctx) for a TaskWorker: the precision first (the panel says it while sampling), then
    the kept frames (``tasks.sample.sample_frames``)."""

    def run(ctx):
        ctx.partial(sampling_precision(loaded, request.precision))
        return sample_frames(loaded, request, ctx, max_frames=MAX_FRAMES)

    return run


def _describe_sampling(request, loaded, steps: int) -> tuple[str, str]:
    """(what the messages call the run, the file stem its exports get)."""
    sampler, n, seed = request.sampler, request.n, request.seed
    conditional = loaded.model_config.conditional
    digit = None if not conditional else (request.digit if request.digit is not None else -1)
    what = "" if digit is None else (f", digit {digit}" if digit >= 0 else ", digits 0–9")
    what += f", guidance {sampler.guidance:g}" if conditional else ""
    takes_g = loaded.guide is not None or loaded.model_config.weight_input == "autoguidance"  # (a student)
    autoguided = takes_g and sampler.autoguidance > 0
    what += f", autoguidance {sampler.autoguidance:g}" if autoguided else ""
    info = (f"{n} images, {sampler.title}" + (f" {steps} steps" if sampler.takes_steps else "")
            + (f", η={sampler.eta:g}" if sampler.takes_eta else "") + what + f", seed {seed}")
    name = (f"samples-{n}-{sampler.kind}" + (f"{sampler.steps}" if sampler.takes_steps else "")
            + ("" if digit is None else (f"-digit{digit}" if digit >= 0 else "-digits") + f"-w{sampler.guidance:g}")
            + (f"-ag{sampler.autoguidance:g}" if autoguided else "") + f"-seed{seed}")
    return info, name


def _ask_checkpoint_path(parent: QWidget) -> Path | None:
    """A checkpoint chosen in a file dialog opened in the last folder used (None: cancelled)."""
    from ..engine.storage import paths

    start = app_settings().value(CHECKPOINT_FOLDER, "") or str(paths.runs_dir())
    path, _ = QFileDialog.getOpenFileName(parent, "Open checkpoint", start, "Checkpoints (*.pt);;All files (*)")
    if not path:
        return None
    app_settings().setValue(CHECKPOINT_FOLDER, str(Path(path).parent))
    return Path(path)


def _listed_models() -> list[tuple[str, str, Path]]:
    """(key, title, path) of the models the list offers: the bundled ones, then the students of
    the distillations in the runs folder (``distill_form.student_models``)."""
    from ..engine.storage import paths
    from ..engine.storage.bundled import available_bundled
    from .distill_form import student_models

    return available_bundled() + student_models(paths.runs_dir())
