"""The forward process: drag t and watch x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.

Everything is the engine's closed form (``NoiseSchedule.q_sample``) on the digits selected
in the dataset browser, with one fixed noise tensor per selection, so a drag is smooth and
the same t always shows the same picture; cheap, so drawn synchronously. What a model makes
of x_t runs in the background as task calls: its view at t (``tasks.explore.model_view``,
newest request wins), "denoise from here" (``denoise_from``) and the identity curve
(``identity_curve``). The drawing lives in ``noise_view``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ..engine.defaults import SCHEDULE_KINDS
from ..engine.diffusion.schedule import NoiseSchedule, ScheduleConfig
from ..engine.storage.data import to_model_range, to_uint8
from ..tasks.explore import (
    VIEW_DIGITS,
    DenoiseRequest,
    IdentityCurveRequest,
    ModelViewRequest,
    denoise_from,
    denoise_steps,
    identity_curve,
    identity_ts,
)
from .model_view import PredictionService
from .noise_view import (
    HIST_BINS,
    build_readouts,
    build_top_bar,
    HIST_RANGE,
    Origin,
    build_views,
    mosaic,
    show_readout,
    show_t_readout,
)
from .state import AppState
from .workers import TaskWorker, WorkerRunner

STRIP_TIMESTEPS = (20, 50, 100, 300)  # as in the report's Figure 3
STRIP_ROWS = 3  # digits shown in the strip
PLAY_INTERVAL_MS = 30
PLAY_FRAMES = 150  # a sweep 0 -> T takes this many frames
CHUNK = 32  # digits per q_sample call (see NoisePanel.closed_form)


class NoisePanel(QWidget):
    """The forward-noise explorer (objectName ``noisePanel``).

    ``timestepSlider`` (0..T) redraws x_t for ``state.selection``; the schedule
    selector and T change ``state.schedule_config``. ``last_frame_ms`` holds the
    time of the latest redraw (closed form, mosaic, histogram, markers).
    Parts: ``curves`` (ScheduleCurves), ``model_box`` (ModelViewBox), ``denoise_box`` (DenoiseBox),
    ``strip`` (ForwardStrip), laid out by ``noise_view.build_views``.
    """

    frame_drawn = Signal(int)  # t of the frame just drawn
    prediction_shown = Signal(int)  # t of the model's view just drawn
    denoise_finished = Signal(int)  # "denoise from here" ended (its t)
    identity_finished = Signal()  # the identity-vs-t curve is drawn

    MODEL_VIEW_DIGITS = VIEW_DIGITS
    PREDICTION_INTERVAL_MS = 100

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("noisePanel")
        self.state = state
        self.schedule = NoiseSchedule(state.schedule_config)
        self.noise_seed = 0
        self.last_frame_ms = 0.0
        self._x0 = torch.zeros(0, 1, 28, 28)
        self._noise = torch.zeros(0, 1, 28, 28)
        self._xt_uint8 = np.zeros((0, 28, 28), dtype=np.uint8)
        self._edges = np.linspace(-HIST_RANGE, HIST_RANGE, HIST_BINS + 1)
        self._hist = np.zeros(HIST_BINS)
        self.last_prediction: dict | None = None
        self.denoise_result = None  # the last tasks.explore.Denoised
        self._first_use = ""  # said while a denoising runs that will train the metric classifier
        self.identity_points: list | None = None
        self.view_origin, self.denoise_origin = Origin(), Origin()  # which model made what is shown
        self.predictions = PredictionService(self)
        self.predictions.ready.connect(self._on_prediction)
        self.denoise_runner = WorkerRunner(self)
        # during a drag the model's view is asked at most every PREDICTION_INTERVAL_MS (and
        # always for the t the slider stops at), so the network does not take the CPU the
        # drawing needs
        self._last_request = 0.0
        self._prediction_timer = QTimer(self, singleShot=True)
        self._prediction_timer.timeout.connect(lambda: self._request_prediction(self.slider.value()))
        self._play_timer = QTimer(self, interval=PLAY_INTERVAL_MS)
        self._play_timer.timeout.connect(self._play_step)
        self._play_direction = 1
        self._build()
        self.predictions.failed.connect(self._on_prediction_failed)
        self.denoise_runner.stopped.connect(self._update_denoise_enabled)
        state.selection_changed.connect(self._on_selection_changed)
        state.schedule_changed.connect(self._on_schedule_changed)
        state.model_changed.connect(self._on_model_changed)
        self._on_schedule_changed()
        self._on_selection_changed()
        self._on_model_changed()

    # ---------------------------------------------------------------- building
    def _build(self) -> None:
        body = build_views(self)
        self.denoise_box.denoise_button.clicked.connect(lambda: self.denoise_from_here())
        self.denoise_box.identity_button.clicked.connect(lambda: self.identity_curve())
        lay = QVBoxLayout(self)
        lay.addLayout(build_top_bar(self))
        lay.addLayout(build_readouts(self))
        lay.addLayout(body, 1)
        self.schedule_combo.currentIndexChanged.connect(self._on_schedule_edited)
        self.steps_spin.valueChanged.connect(self._on_schedule_edited)
        self.slider.valueChanged.connect(self._render)
        self.play_button.toggled.connect(self._on_play_toggled)
        self.new_noise_button.clicked.connect(self.new_noise)

    # ------------------------------------------------------------------ public
    @property
    def t(self) -> int:
        return self.slider.value()

    def set_t(self, t: int) -> None:
        self.slider.setValue(int(t))

    def current_images(self) -> np.ndarray:
        """x_t of the selected digits as shown: (K, 28, 28) uint8, 0 = black."""
        return self._xt_uint8.copy()

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """(bin edges (B+1,), density (B,)) of the pixels of x_t as plotted."""
        return self._edges.copy(), self._hist.copy()

    def closed_form(self, t: int) -> torch.Tensor:
        """x_t of the selected digits via ``schedule.q_sample``: (K, 1, 28, 28) float, N(0,1)-ish scale.

        Computed in chunks of CHUNK digits: each chunk stays below torch's
        parallel grain size (32,768 elements), so it runs on the GUI thread
        alone. One 64-digit call goes through the thread pool, and on a
        loaded 2-core machine that measured 70 ms against 0.2 ms in chunks.
        """
        parts = []
        for i in range(0, len(self._x0), CHUNK):
            x0 = self._x0[i : i + CHUNK]
            parts.append(self.schedule.q_sample(x0, torch.full((len(x0),), int(t), dtype=torch.long),
                                                self._noise[i : i + CHUNK]))
        return torch.cat(parts) if parts else torch.zeros(0, 1, 28, 28)

    def new_noise(self) -> None:
        """Draw a new fixed noise tensor for the current selection and redraw."""
        self.noise_seed += 1
        self._draw_noise()
        self._update_strip()
        self._render()

    def set_schedule(self, kind: str, timesteps: int | None = None) -> None:
        """Choose the schedule (linear, cosine, rescaled_linear) and optionally T."""
        i = self.schedule_combo.findData(kind)
        if i < 0:
            raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULE_KINDS)}")
        self.schedule_combo.blockSignals(True)
        self.schedule_combo.setCurrentIndex(i)
        self.schedule_combo.blockSignals(False)
        if timesteps is not None:
            self.steps_spin.blockSignals(True)
            self.steps_spin.setValue(int(timesteps))
            self.steps_spin.blockSignals(False)
        self._on_schedule_edited()

    def shutdown(self) -> None:
        """Stop the model's view and any denoising run (the window calls it on close)."""
        self.predictions.shutdown()
        self.denoise_runner.stop_and_wait(5000)

    # ---------------------------------------------------------------- play
    def _on_play_toggled(self, playing: bool) -> None:
        self.play_button.setText("❚❚ Pause" if playing else "▶ Play")
        if playing:
            if self.slider.value() >= self.slider.maximum():
                self._play_direction = -1
            self._play_timer.start()
        else:
            self._play_timer.stop()

    def _play_step(self) -> None:
        T = self.slider.maximum()
        t = self.slider.value() + self._play_direction * max(1, round(T / PLAY_FRAMES))
        if t >= T or t <= 0:
            self._play_direction *= -1
            t = min(max(t, 0), T)
        self.slider.setValue(t)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        self.slider.setFocus()  # arrow keys move t at once

    def hideEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.play_button.setChecked(False)  # no animation behind another tab
        super().hideEvent(event)

    # ---------------------------------------------------------------- reacting
    def _on_schedule_edited(self, *_args) -> None:
        old = self.state.schedule_config
        try:
            config = ScheduleConfig(kind=self.schedule_combo.currentData(), timesteps=int(self.steps_spin.value()),
                                    beta_start=old.beta_start, beta_end=old.beta_end, cosine_s=old.cosine_s)
        except ValueError as exc:
            self.state.report(f"That schedule is not valid: {exc}")
            self._sync_controls()  # back to the state's schedule
            return
        self.state.set_schedule_config(config, "this panel (not what the next run trains)")

    def _sync_controls(self) -> None:
        c = self.state.schedule_config
        for w in (self.schedule_combo, self.steps_spin):
            w.blockSignals(True)
        self.schedule_combo.setCurrentIndex(max(0, self.schedule_combo.findData(c.kind)))
        self.steps_spin.setValue(c.timesteps)
        for w in (self.schedule_combo, self.steps_spin):
            w.blockSignals(False)

    def _on_schedule_changed(self) -> None:
        self.schedule = NoiseSchedule(self.state.schedule_config)
        self._sync_controls()
        c = self.state.schedule_config
        self.schedule_source_label.setText(f"{c.kind}, T = {c.timesteps}: the schedule of {self.state.schedule_source}")
        T = self.schedule.timesteps
        t_old = self.slider.value()
        self.slider.blockSignals(True)
        self.slider.setRange(0, T)
        self.slider.setPageStep(max(1, T // 20))
        self.slider.setValue(min(t_old if t_old else min(100, T), T))
        self.slider.blockSignals(False)
        self.curves.show_schedule(self.schedule)
        show_readout(self.readout, self.schedule, self._x0)
        self._update_strip()
        self._render()
        self.mark_stale()

    def _on_selection_changed(self) -> None:
        self._x0 = to_model_range(torch.from_numpy(np.ascontiguousarray(self.state.selection)))
        self._update_denoise_enabled()
        self._draw_noise()
        show_readout(self.readout, self.schedule, self._x0)
        self._update_strip()
        self._render()

    def _draw_noise(self) -> None:
        self._noise = torch.randn(self._x0.shape, generator=torch.Generator().manual_seed(self.noise_seed))

    # ------------------------------------------------------------------ drawing
    def _update_strip(self) -> None:
        """Draw the strip: up to STRIP_ROWS digits at t = 0 and at STRIP_TIMESTEPS (those <= T)."""
        T = self.schedule.timesteps
        ts = [0] + [t for t in STRIP_TIMESTEPS if t <= T]
        if T > STRIP_TIMESTEPS[-1] or not any(t == T for t in ts):
            ts.append(T)
        self.strip_timesteps = ts
        k = min(STRIP_ROWS, len(self._x0))
        self.strip.draw(self.schedule, self._x0[:k], self._noise[:k], ts)

    def _render(self, *_args) -> None:
        """Redraw x_t, the histogram, the markers and the readout for the slider's t."""
        start = time.perf_counter()
        t = self.slider.value()
        k = len(self._x0)
        if k:
            xt = self.closed_form(t)
            self._xt_uint8 = to_uint8(xt).numpy()
            self.image_label.set_array(mosaic(self._xt_uint8))
            values = xt.numpy().ravel()
            # equal bins + range: numpy's fast path (no sort); pixels beyond +-HIST_RANGE are not drawn
            counts, _ = np.histogram(values, bins=HIST_BINS, range=(-HIST_RANGE, HIST_RANGE))
            self._hist = counts / (values.size * (self._edges[1] - self._edges[0]))
        else:
            self._xt_uint8 = np.zeros((0, 28, 28), dtype=np.uint8)
            self.image_label.set_array(None)
            self._hist = np.zeros(HIST_BINS)
        self.curves.show_t(t, self._edges, self._hist)
        self.t_label.setText(f"t = {t}")
        show_t_readout(self.t_readout, self.schedule, t)
        self._request_prediction(t)
        self.last_frame_ms = (time.perf_counter() - start) * 1000.0
        self.frame_label.setText(f"{k} digits · frame drawn in {self.last_frame_ms:.1f} ms")
        self.frame_drawn.emit(t)

    # ------------------------------------------------------------ the model's view
    def _request_prediction(self, t: int) -> None:
        """Ask for the network's view at ``t`` (newest request wins), at most every
        PREDICTION_INTERVAL_MS; a later t is asked for when the interval ends."""
        now = time.monotonic()
        wait_ms = self.PREDICTION_INTERVAL_MS - (now - self._last_request) * 1000
        if wait_ms > 0:
            if not self._prediction_timer.isActive():
                self._prediction_timer.start(int(wait_ms) + 1)
            return
        self._last_request = now
        loaded = self.state.model
        if loaded is None or not len(self._x0):
            return
        T = loaded.schedule.timesteps
        if not 1 <= t <= T:
            self.model_box.set_text(
                "t = 0 is the clean digit: the network predicts from t ≥ 1" if t == 0
                else f"t = {t} is beyond this model's T = {T}")
            return
        x0, noise, labels = self._digits()
        # a class-conditional model is given each digit's label (else a 7 at t = 151 looked like a 9)
        request = ModelViewRequest(x0, noise, t, labels if len(labels) == len(x0) else None)
        self.view_origin.ask(loaded, self.state.model_source)
        self.predictions.post(loaded, request)

    @Slot(object)
    def _on_prediction(self, result: dict) -> None:
        self.last_prediction = result
        self.view_origin.arrived()
        self.model_box.show_result(result, self.slider.value())
        self.mark_stale()
        self.prediction_shown.emit(result["t"])

    @Slot(str)
    def _on_prediction_failed(self, message: str) -> None:
        self.model_box.set_text(message[:1].upper() + message[1:])

    def _on_model_changed(self) -> None:
        self._update_denoise_enabled()
        loaded = self.state.model
        self.model_box.show_model(self.state.model_source if loaded is not None else None)
        if loaded is None:
            self.view_origin.clear()  # the views were cleared
        self.mark_stale()
        if loaded is not None:
            self._request_prediction(self.slider.value())

    def mark_stale(self) -> None:
        """Mark what another model made, or what was made under another schedule than the one
        shown, in red until it is recomputed (the Sampler panel marks its digits so)."""
        state = self.state
        self.model_box.set_stale(self.view_origin.note(state.model, state.model_source, state.schedule_config))
        self.denoise_box.set_stale(self.denoise_origin.note(state.model, state.model_source))

    # ------------------------------------------------------------ denoise from here
    def _digits(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """The first MODEL_VIEW_DIGITS digits: x0, their noise and their labels."""
        k = self.MODEL_VIEW_DIGITS
        return self._x0[:k], self._noise[:k], self.state.selection_labels[:k]

    def denoise_from_here(self) -> bool:
        """Run the reverse process from the slider's x_t of the first 16 digits to x_0 (animated),
        with the sampler panel's settings; then say which digits kept their label."""
        loaded, t = self.state.model, self.slider.value()
        if loaded is None or not len(self._x0) or self.denoise_runner.is_running():
            return False
        if not 1 <= t <= loaded.schedule.timesteps:
            self.denoise_box.set_text(f"Move t into 1..{loaded.schedule.timesteps} (the model's T) first.")
            return False
        x0, noise, labels = self._digits()
        request = DenoiseRequest(x0, noise, t, labels, sampler=self.state.current_sampler_config())
        self.denoise_origin.ask(loaded, self.state.model_source)
        data = self.state.data
        worker = TaskWorker(lambda ctx: denoise_from(loaded, request, data, ctx), "denoising", request=request)
        worker.partial.connect(self._on_denoise_steps)
        worker.finished.connect(self._on_denoised)
        worker.cancelled.connect(self._on_denoise_cancelled)
        what = f"{request.sampler.title}, {denoise_steps(loaded, request)} steps"
        self._start_denoising(worker, f"Denoising the first {len(x0)} digits from t = {t} ({what})…")
        return True

    def _start_denoising(self, worker: TaskWorker, message: str) -> None:
        worker.failed.connect(self.denoise_box.set_text)
        self._first_use = first_use_note(self.state.data)
        self.denoise_runner.start(worker)
        self.denoise_box.set_text(message + self._first_use)
        self._update_denoise_enabled()

    @Slot(object)
    def _on_denoise_steps(self, steps: list) -> None:
        t, x = steps[-1]  # the newest of (t, x_t as uint8)
        self.denoise_box.show_step(t, x)
        if self._first_use:  # the classifier trains after the last step: no silent "t = 0"
            self.denoise_box.set_text(f"Denoising… t = {t}.{self._first_use}")

    @Slot(object)
    def _on_denoised(self, result) -> None:
        self.denoise_result = result
        self.denoise_origin.arrived()
        self.denoise_box.show_denoised(result)
        self.mark_stale()
        self.denoise_finished.emit(result.t)

    @Slot()
    def _on_denoise_cancelled(self) -> None:
        self.denoise_box.set_text("Denoising was stopped.")

    def identity_curve(self, ts=None) -> bool:
        """Denoise the first 16 digits from several t (default 7 values up to T) and plot the
        share that keep their label (the metric classifier)."""
        loaded, data = self.state.model, self.state.data
        if loaded is None or data is None or self.denoise_runner.is_running() or not len(self._x0):
            return False
        x0, _noise, labels = self._digits()
        ts = tuple(ts or identity_ts(loaded.schedule.timesteps))
        request = IdentityCurveRequest(x0, labels, ts, sampler=self.state.current_sampler_config())
        self.denoise_origin.ask(loaded, self.state.model_source)
        worker = TaskWorker(lambda ctx: identity_curve(loaded, request, data, ctx), "the identity curve",
                            request=request)
        worker.progress.connect(self._on_identity_progress)
        worker.finished.connect(self._on_identity_curve)
        self._start_denoising(worker, f"Denoising {len(x0)} digits from t = {', '.join(map(str, ts))}…")
        return True

    @Slot(str, int, int)
    def _on_identity_progress(self, stage: str, done: int, total: int) -> None:
        if stage == "identity":
            self.denoise_box.set_text(f"Identity curve: {done} of {total} t values done…")

    @Slot(object)
    def _on_identity_curve(self, curve) -> None:
        self.identity_points = list(curve)
        self.denoise_origin.arrived()
        self.denoise_box.show_curve(self.identity_points)
        self.mark_stale()
        self.identity_finished.emit()

    def _update_denoise_enabled(self) -> None:
        busy = self.denoise_runner.is_running()
        has = self.state.model is not None and len(self._x0) > 0
        self.denoise_box.denoise_button.setEnabled(has and not busy)
        self.denoise_box.identity_button.setEnabled(has and not busy and self.state.data is not None)


def first_use_note(data) -> str:
    """" …" for a denoising whose results the metric classifier must first be trained to check:
    the app ships it for the official MNIST only; other digits train it once (it is then kept)."""
    if data is None:
        return ""
    from ..engine.evaluation.classifier import bundled_classifier_dir, classifier_path

    path = classifier_path(data)
    if path.is_file() or (bundled_classifier_dir() / path.name).is_file():
        return ""
    return (" Then, once only for these digits, the metric classifier that checks the results is trained "
            "(a minute or more; it is kept for next time).")
