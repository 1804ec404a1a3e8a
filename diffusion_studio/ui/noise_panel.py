"""The forward process: drag t and watch x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.

Everything is the engine's closed form (``NoiseSchedule.q_sample``) on the
digits selected in the dataset browser, with one fixed noise tensor per
selection, so a drag is smooth and the same t always shows the same picture.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QRect, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsItem,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..engine.storage.data import to_model_range
from ..engine.diffusion.schedule import SCHEDULE_KINDS, NoiseSchedule, ScheduleConfig
from .imaging import gray_pixmap, model_to_uint8, tile
from .model_view import ERROR_FULL_SCALE, PredictionService
from .workers import TaskWorker, WorkerRunner, on_gui_thread
from .state import AppState

STRIP_TIMESTEPS = (20, 50, 100, 300)  # the report's Figure 3
STRIP_ROWS = 3  # digits shown in the strip
HIST_RANGE = 4.0
HIST_BINS = 80
MIN_IMAGE_SIDE = 160  # the x_t mosaic's smallest box; it grows with the window
PLAY_INTERVAL_MS = 30
PLAY_FRAMES = 150  # a sweep 0 -> T takes this many frames
CHUNK = 32  # digits per q_sample call (see NoisePanel.closed_form)  # the x_t mosaic is scaled (integer factor) to about this many pixels

SCHEDULE_TITLES = {"linear": "linear", "cosine": "cosine", "rescaled_linear": "rescaled linear"}


def _num(x: float) -> str:
    """0.219 for ordinary values, 4.9e-05 for tiny ones (never a misleading 0.000)."""
    return f"{x:.3f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2g}"


def styled_plot(title: str, left: str = "", bottom: str = "t") -> pg.PlotWidget:
    """A pyqtgraph plot with dark-on-light styling and a readable title."""
    w = pg.PlotWidget(background="w")
    item = w.getPlotItem()
    item.setTitle(title, color="#222", size="10pt")
    for name in ("left", "bottom"):
        ax = item.getAxis(name)
        ax.setPen(pg.mkPen("#444"))
        ax.setTextPen(pg.mkPen("#222"))
        ax.enableAutoSIPrefix(False)
        # The axes also draw the grid across the plot, so the moving t marker made every
        # axis repaint on every frame of a drag (half of a frame's time). Kept as a
        # pixmap, an axis is redrawn only when its range or size changes.
        ax.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
    if left:
        item.setLabel("left", left, color="#222")
    if bottom:
        item.setLabel("bottom", bottom, color="#222")
    item.showGrid(x=True, y=True, alpha=0.25)
    item.setMenuEnabled(False)
    w.setMinimumSize(240, 170)
    return w


class MosaicView(QLabel):
    """Shows a uint8 mosaic as large as its box allows (whole-pixel enlargement when
    that fills the box, else a nearest-neighbour fit); rescales itself on resize and
    never asks the layout for more room than MIN_IMAGE_SIDE."""

    def __init__(self, placeholder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._mosaic: np.ndarray | None = None
        self._placeholder = placeholder
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(MIN_IMAGE_SIDE, MIN_IMAGE_SIDE)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setStyleSheet("background: #202124; border-radius: 4px; color: #ddd;")
        self.setText(placeholder)

    def set_mosaic(self, mosaic: np.ndarray | None) -> None:
        """mosaic: (H, W) uint8, or None for the placeholder text."""
        self._mosaic = mosaic
        self._rescale()

    def _rescale(self) -> None:
        if self._mosaic is None:
            self.setText(self._placeholder)
            return
        # fit the box itself, whatever its shape: a square side would crop a mosaic in a short box
        # (the model's views are allowed less than MIN_IMAGE_SIDE) and shrink a wide strip
        width, height = max(16, self.width() - 8), max(16, self.height() - 8)
        rows, cols = self._mosaic.shape
        exact = min(width / cols, height / rows)
        scale = int(exact)
        if scale >= 2 and scale >= 0.85 * exact:  # whole pixels when that fills the box
            pix = gray_pixmap(self._mosaic, min(scale, 12))
        else:  # else fit the box (nearest neighbour: pixels stay sharp, never blurred)
            pix = gray_pixmap(self._mosaic).scaled(
                width, height, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
            )
        self.setPixmap(pix)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._rescale()


class NoisePanel(QWidget):
    """The forward-noise explorer (objectName ``noisePanel``).

    ``timestepSlider`` (0..T) redraws x_t for ``state.selection``; the schedule
    selector and T change ``state.schedule_config``. ``last_frame_ms`` holds the
    time of the latest redraw (closed form, mosaic, histogram, markers).
    """

    frame_drawn = Signal(int)  # t of the frame just drawn
    prediction_shown = Signal(int)  # t of the model's view just drawn
    denoise_finished = Signal(int)  # "denoise from here" ended (its t)
    identity_finished = Signal()  # the identity-vs-t curve is drawn

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
        self._hist = np.zeros(HIST_BINS)
        self._edges = np.linspace(-HIST_RANGE, HIST_RANGE, HIST_BINS + 1)
        self._hist_top: float | None = None  # the density axis's top (see _fit_hist_range)
        self.predictions = PredictionService(self)
        self.predictions.ready.connect(self._on_prediction)
        # during a drag the model's view is asked at most every PREDICTION_INTERVAL_MS (and
        # always for the t the slider stops at), so the network does not take the CPU the
        # drawing needs
        self._last_request = 0.0
        self._prediction_timer = QTimer(self)
        self._prediction_timer.setSingleShot(True)
        self._prediction_timer.timeout.connect(lambda: self._request_prediction(self.slider.value()))
        self.predictions.failed.connect(lambda msg: self.model_error_label.setText(msg[:1].upper() + msg[1:]))
        self.last_prediction: dict | None = None
        self._build()
        state.selection_changed.connect(self._on_selection_changed)
        state.schedule_changed.connect(self._on_schedule_changed)
        state.model_changed.connect(self._on_model_changed)
        self._on_schedule_changed()
        self._on_selection_changed()
        self._on_model_changed()

    # ---------------------------------------------------------------- building
    def _build(self) -> None:
        self.schedule_combo = QComboBox()
        self.schedule_combo.setObjectName("scheduleCombo")
        for kind in SCHEDULE_KINDS:
            self.schedule_combo.addItem(SCHEDULE_TITLES.get(kind, kind), kind)
        self.schedule_combo.currentIndexChanged.connect(self._on_schedule_edited)
        self.steps_spin = QSpinBox()
        self.steps_spin.setObjectName("timestepsSpin")
        self.steps_spin.setRange(10, 4000)
        self.steps_spin.setSingleStep(50)
        self.steps_spin.setKeyboardTracking(False)
        self.steps_spin.setToolTip("T, the number of diffusion steps")
        self.steps_spin.valueChanged.connect(self._on_schedule_edited)

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("timestepSlider")
        self.slider.setToolTip("Drag to move along the forward process (t = 0 is the clean digit)")
        self.slider.setTracking(True)
        self.slider.setMinimumWidth(300)
        self.slider.valueChanged.connect(self._render)
        self.t_label = QLabel()
        self.t_label.setObjectName("timestepLabel")
        self.t_label.setMinimumWidth(80)
        font = QFont(self.t_label.font())
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        self.t_label.setFont(font)
        self.play_button = QPushButton("▶ Play")
        self.play_button.setObjectName("playNoiseButton")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Sweep t from 0 to T and back (or drag the slider; arrow keys step by 1)")
        self.play_button.toggled.connect(self._on_play_toggled)
        self._play_timer = QTimer(self)
        self._play_timer.setInterval(PLAY_INTERVAL_MS)
        self._play_timer.timeout.connect(self._play_step)
        self._play_direction = 1
        self.new_noise_button = QPushButton("New noise")
        self.new_noise_button.setObjectName("newNoiseButton")
        self.new_noise_button.setToolTip("Draw a fresh noise image for every digit")
        self.new_noise_button.clicked.connect(self.new_noise)

        self.schedule_source_label = QLabel(objectName="scheduleSourceLabel")
        self.schedule_source_label.setStyleSheet("color: palette(mid); font-size: 11px;")
        self.schedule_source_label.setToolTip(
            "The noise panel follows the training form (the schedule the next run trains) and, when a model "
            "is loaded, that model's schedule; choosing one here only changes what this panel shows"
        )
        top = QHBoxLayout()
        top.addWidget(QLabel("Schedule"))
        top.addWidget(self.schedule_combo)
        top.addSpacing(8)
        top.addWidget(QLabel("T"))
        top.addWidget(self.steps_spin)
        top.addSpacing(16)
        top.addWidget(self.t_label)
        top.addWidget(self.slider, 1)
        top.addWidget(self.play_button)
        top.addWidget(self.new_noise_button)

        self.readout = QLabel()
        self.readout.setObjectName("signalReadout")
        self.readout.setWordWrap(True)
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        self.readout.setStyleSheet(
            "QLabel { background: #eef3fb; border: 1px solid #c9d6ea; border-radius: 4px; padding: 6px; }"
        )
        self.t_readout = QLabel()
        self.t_readout.setObjectName("timestepReadout")
        self.t_readout.setTextFormat(Qt.TextFormat.RichText)
        # labels rewritten on every frame must not ask the window for a new layout each time
        self.t_readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

        # x_t mosaic
        self.image_label = MosaicView("Select digits in the Dataset panel.")
        self.image_label.setObjectName("noisyImages")
        self.frame_label = QLabel()
        self.frame_label.setObjectName("frameTimeLabel")
        self.frame_label.setStyleSheet("color: #666;")
        self.frame_label.setMinimumWidth(self.frame_label.fontMetrics().horizontalAdvance(
            "64 digits · frame drawn in 000.0 ms") + 8)
        self.frame_label.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        image_box = QGroupBox("x_t for the selected digits")
        ib = QVBoxLayout(image_box)
        ib.addWidget(self.image_label, 1)

        # the strip (Figure 3)
        self.strip_label = QLabel()
        self.strip_label.setObjectName("noiseStrip")
        self.strip_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        strip_box = QGroupBox("Forward process at fixed t (the report's Figure 3)")
        sb = QVBoxLayout(strip_box)
        sb.addWidget(self.strip_label)

        # ---- the model's view: what the network predicts from this x_t
        self.model_box = QGroupBox("The model's view at this t (first 16 digits)")
        mb = QGridLayout(self.model_box)
        self.prediction_view = MosaicView("Load or train a model to see what it predicts from x_t.")
        self.prediction_view.setObjectName("predictionView")
        self.prediction_view.setToolTip("x̂_0 = (x_t − √(1−ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t: the network's guess of the clean digit")
        self.eps_error_view = MosaicView("")
        self.eps_error_view.setObjectName("epsErrorView")
        self.eps_error_view.setToolTip(
            f"|ε_θ(x_t, t) − ε| per pixel: black = exact, white = off by {ERROR_FULL_SCALE:g} or more"
        )
        mb.addWidget(QLabel("predicted x̂_0", alignment=Qt.AlignmentFlag.AlignCenter), 0, 0)
        mb.addWidget(QLabel("|ε_θ − ε| (error of the predicted noise)", alignment=Qt.AlignmentFlag.AlignCenter), 0, 1)
        mb.addWidget(self.prediction_view, 1, 0)
        mb.addWidget(self.eps_error_view, 1, 1)
        self.model_error_label = QLabel(objectName="epsErrorLabel", wordWrap=True)
        self.model_error_label.setStyleSheet("color: #444; font-size: 11px;")
        self.model_error_label.setFixedHeight(3 * self.model_error_label.fontMetrics().lineSpacing() + 4)
        mb.addWidget(self.model_error_label, 2, 0, 1, 2)
        for v in (self.prediction_view, self.eps_error_view):
            v.setMinimumSize(120, 120)
        mb.setRowStretch(1, 1)  # the views take the room the box gets; the labels keep their lines
        # an explicit minimum, which the layout honours where it may squeeze a hint: the denoise
        # box's expanding plot once took the room and the error line overlapped the views
        self.model_box.setMinimumHeight(self.model_box.minimumSizeHint().height() + 4)

        # ---- denoise from here (SDEdit)
        self.denoise_box = QGroupBox("Denoise from here: x_t → x_0 with the sampler panel's settings")
        db = QGridLayout(self.denoise_box)
        self.denoise_button = QPushButton("Denoise from here", objectName="denoiseFromHereButton")
        self.denoise_button.setToolTip(
            "Run the reverse process from this x_t of the first 16 digits down to x_0 (SDEdit), "
            "and say which digits are still the same digit (the metric classifier)"
        )
        self.denoise_button.clicked.connect(lambda: self.denoise_from_here())
        self.identity_button = QPushButton("Identity kept vs t", objectName="identityCurveButton")
        self.identity_button.setToolTip("Denoise from several t and plot the share of digits that keep their label")
        self.identity_button.clicked.connect(lambda: self.identity_curve())
        self.denoise_view = MosaicView("")
        self.denoise_view.setObjectName("denoiseView")
        self.denoise_view.setMinimumSize(200, 90)
        self.denoise_label = QLabel(objectName="denoiseLabel", wordWrap=True)
        self.denoise_label.setStyleSheet("color: #444; font-size: 11px;")
        self.identity_plot = styled_plot("same digit after denoising", left="share", bottom="t")
        self.identity_plot.setObjectName("identityPlot")
        self.identity_plot.setYRange(0, 1.05)
        self.identity_plot.setMinimumHeight(110)
        self.identity_curve_item = self.identity_plot.plot(pen=pg.mkPen("#1f5fbf", width=2), symbol="o", symbolSize=6,
                                                           symbolBrush="#1f5fbf")
        db.addWidget(self.denoise_button, 0, 0)
        db.addWidget(self.identity_button, 0, 1)
        db.addWidget(self.denoise_view, 1, 0)
        db.addWidget(self.identity_plot, 1, 1)
        db.addWidget(self.denoise_label, 2, 0, 1, 2)
        db.setColumnStretch(0, 3)
        db.setColumnStretch(1, 2)
        self.denoise_box.setMaximumHeight(260)
        self.denoise_runner = WorkerRunner(self)
        self.denoise_runner.stopped.connect(self._update_denoise_enabled)
        self.denoise_result: dict | None = None

        left = QVBoxLayout()
        left.addWidget(image_box, 3)
        left.addWidget(self.model_box, 4)
        left.addWidget(self.denoise_box, 3)

        # plots
        self.beta_plot = styled_plot("β_t (noise added per step)")
        self.beta_plot.setObjectName("betaPlot")
        self.beta_curve = self.beta_plot.plot(pen=pg.mkPen("#1f5fbf", width=2))
        self.alphabar_plot = styled_plot("ᾱ_t and √ᾱ_t (signal kept)")
        self.alphabar_plot.setObjectName("alphabarPlot")
        self.alphabar_plot.addLegend(offset=(-10, 10), labelTextColor="#222")
        self.alphabar_curve = self.alphabar_plot.plot(pen=pg.mkPen("#1f5fbf", width=2), name="ᾱ_t")
        self.sqrt_alphabar_curve = self.alphabar_plot.plot(
            pen=pg.mkPen("#d0782a", width=2, style=Qt.PenStyle.DashLine), name="√ᾱ_t"
        )
        self.alphabar_plot.setYRange(0, 1.02)
        self.snr_plot = styled_plot("SNR_t = ᾱ_t / (1 − ᾱ_t), log scale")
        self.snr_plot.setObjectName("snrPlot")
        self.snr_plot.getPlotItem().setLogMode(x=False, y=True)
        self.snr_curve = self.snr_plot.plot(pen=pg.mkPen("#1f5fbf", width=2))
        self.hist_plot = styled_plot("Pixels of x_t against N(0, 1)", left="density", bottom="value")
        self.hist_plot.setObjectName("histogramPlot")
        self.hist_plot.addLegend(offset=(-10, 10), labelTextColor="#222")
        self.hist_curve = self.hist_plot.plot(
            stepMode="center", fillLevel=0, brush=(31, 95, 191, 90), pen=pg.mkPen("#1f5fbf", width=1.5), name="x_t"
        )
        z = np.linspace(-HIST_RANGE, HIST_RANGE, 200)
        self.hist_plot.plot(
            z,
            np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi),
            pen=pg.mkPen("#c0392b", width=2, style=Qt.PenStyle.DashLine),
            name="N(0, 1)",
        )
        self.hist_plot.setXRange(-HIST_RANGE, HIST_RANGE, padding=0)
        # the schedule's curves change only with the schedule: kept as pixmaps, so the moving
        # t marker does not make them re-stroke on every frame (the x_t histogram does change)
        for curve in (self.beta_curve, self.alphabar_curve, self.sqrt_alphabar_curve, self.snr_curve):
            curve.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.markers: list[pg.InfiniteLine] = []
        for plot in (self.beta_plot, self.alphabar_plot, self.snr_plot):
            line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#c0392b", width=1.5))
            plot.addItem(line)
            self.markers.append(line)
        plots = QGridLayout()
        plots.setSpacing(8)
        plots.addWidget(self.beta_plot, 0, 0)
        plots.addWidget(self.alphabar_plot, 0, 1)
        plots.addWidget(self.snr_plot, 1, 0)
        plots.addWidget(self.hist_plot, 1, 1)

        right = QVBoxLayout()
        right.addLayout(plots, 1)
        right.addWidget(strip_box)
        body = QHBoxLayout()
        body.addLayout(left, 1)
        body.addLayout(right, 1)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.schedule_source_label)
        lay.addWidget(self.readout)
        readout_row = QHBoxLayout()
        readout_row.addWidget(self.t_readout, 1)
        readout_row.addWidget(self.frame_label)
        lay.addLayout(readout_row)
        lay.addLayout(body, 1)

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
            parts.append(self.schedule.q_sample(x0, torch.full((len(x0),), int(t), dtype=torch.long), self._noise[i : i + CHUNK]))
        return torch.cat(parts) if parts else torch.zeros(0, 1, 28, 28)

    # ------------------------------------------------------------ the model's view
    MODEL_VIEW_DIGITS = 16

    PREDICTION_INTERVAL_MS = 100

    def _request_prediction(self, t: int) -> None:
        """Ask the background service for the network's view at ``t`` (newest request wins),
        at most every PREDICTION_INTERVAL_MS; a later t is asked for when the interval ends."""
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
            self.model_error_label.setText(
                "t = 0 is the clean digit: the network predicts from t ≥ 1" if t == 0
                else f"t = {t} is beyond this model's T = {T}")
            return
        k = self.MODEL_VIEW_DIGITS
        self.predictions.request(loaded, self._x0[:k], self._noise[:k], t)

    def _on_prediction(self, result: dict) -> None:
        self.last_prediction = result
        k = len(result["x0_pred"])
        ncols = min(8, max(1, math.ceil(math.sqrt(k))))
        self.prediction_view.set_mosaic(tile(result["x0_pred"], ncols))
        self.eps_error_view.set_mosaic(tile(result["error"], ncols))
        errors = " ".join(f"{v:.3f}" for v in result["mse"])
        stale = "" if result["t"] == self.slider.value() else " (catching up with the slider)"
        self.model_error_label.setText(
            f"t = {result['t']}{stale}: ‖ε_θ − ε‖² per digit (mean over pixels), in the order shown: {errors}")
        self.prediction_shown.emit(result["t"])

    def _on_model_changed(self) -> None:
        self._update_denoise_enabled()
        loaded = self.state.model
        self.model_box.setTitle(
            "The model's view at this t (first 16 digits)" + (f": {self.state.model_source}" if loaded else ""))
        if loaded is None:
            self.prediction_view.set_mosaic(None)
            self.eps_error_view.set_mosaic(None)
            self.model_error_label.setText("")
            return
        self._request_prediction(self.slider.value())

    def shutdown(self) -> None:
        """Stop the model's view and any denoising run (the window calls it on close)."""
        self.predictions.shutdown()
        self.denoise_runner.stop_and_wait(5000)

    # ------------------------------------------------------------ denoise from here
    def _denoise_inputs(self):
        loaded = self.state.model
        t = self.slider.value()
        if loaded is None or not len(self._x0) or self.denoise_runner.is_running():
            return None
        if not 1 <= t <= loaded.schedule.timesteps:
            self.denoise_label.setText(f"Move t into 1..{loaded.schedule.timesteps} (the model's T) first.")
            return None
        k = self.MODEL_VIEW_DIGITS
        labels = self.state.selection_labels[:k]
        return loaded, self._x0[:k], self._noise[:k], t, labels

    def denoise_from_here(self) -> bool:
        """Run the reverse process from the slider's x_t of the first 16 digits to x_0 (animated),
        with the sampler panel's settings; then say which digits kept their label."""
        inputs = self._denoise_inputs()
        if inputs is None:
            return False
        loaded, x0, noise, t, labels = inputs
        sampler = self.state.current_sampler_config()
        data = self.state.data

        def job(should_stop, report):
            from ..engine.evaluation.classifier import ensure_classifier
            from ..engine.diffusion.sampling import SamplingStopped, sample_steps

            x_t = loaded.schedule.q_sample(x0, torch.full((len(x0),), t, dtype=torch.long), noise)
            x = x_t
            for step in sample_steps(loaded.model, loaded.schedule, len(x0), sampler=sampler, x_T=x_t, start_t=t,
                                     device=loaded.device, guide=loaded.guide):
                if should_stop():
                    raise SamplingStopped()
                x = step.x
                report((step.t_prev, model_to_uint8(step.x)))
            result = {"t": t, "x0": model_to_uint8(x0), "x_t": model_to_uint8(x_t), "result": model_to_uint8(x),
                      "labels": np.asarray(labels), "predicted": None}
            if data is not None:
                clf = ensure_classifier(data, should_stop=should_stop)
                _, probs = clf.predict(result["result"])
                result["predicted"] = probs.argmax(1)
            return result

        worker = TaskWorker(job, "denoising")
        worker.partial.connect(self._on_denoise_frame)
        worker.finished.connect(self._on_denoised)
        worker.failed.connect(self.denoise_label.setText)
        worker.cancelled.connect(on_gui_thread(self, lambda: self.denoise_label.setText("Denoising was stopped.")))
        self.denoise_runner.start(worker)
        from ..engine.diffusion.scheduling import reverse_timesteps

        what = f"{sampler.title}, {len(reverse_timesteps(sampler, loaded.schedule, t))} steps"
        self.denoise_label.setText(f"Denoising the first {len(x0)} digits from t = {t} ({what})…")
        self._update_denoise_enabled()
        return True

    def _on_denoise_frame(self, frame) -> None:
        t, x = frame
        ncols = min(8, max(1, math.ceil(math.sqrt(len(x)))))
        self.denoise_view.set_mosaic(tile(x, ncols))
        self.denoise_label.setText(f"Denoising… t = {t}")

    def _on_denoised(self, result: dict) -> None:
        self.denoise_result = result
        k = len(result["result"])
        # originals on top, the results below, side by side per digit
        pairs = np.concatenate([result["x0"], result["result"]])
        self.denoise_view.set_mosaic(tile(pairs, k))
        text = f"From t = {result['t']}: top row the originals, bottom row what the reverse process made."
        if result["predicted"] is not None and len(result["labels"]) == k:
            kept = result["predicted"] == result["labels"]
            marks = " ".join(f"{a}→{b}{'✓' if ok else '✗'}" for a, b, ok in
                             zip(result["labels"], result["predicted"], kept))
            text += f" Still the same digit: {int(kept.sum())} of {k} ({marks})."
        self.denoise_label.setText(text)
        self.denoise_finished.emit(result["t"])

    def identity_curve(self, ts=None) -> bool:
        """Denoise the first 16 digits from several t (default 7 values up to T) and plot the
        share that keep their label (the metric classifier)."""
        if self.state.model is None or self.state.data is None or self.denoise_runner.is_running() or not len(self._x0):
            return False
        loaded = self.state.model
        T = loaded.schedule.timesteps
        ts = ts or sorted({max(1, round(T * f)) for f in (0.1, 0.2, 0.33, 0.5, 0.67, 0.83, 1.0)})
        k = self.MODEL_VIEW_DIGITS
        x0, labels = self._x0[:k], self.state.selection_labels[:k]
        sampler = self.state.current_sampler_config()
        data = self.state.data

        def job(should_stop, report):
            from ..engine.evaluation.classifier import ensure_classifier
            from ..engine.diffusion.explore import identity_kept

            clf = ensure_classifier(data, should_stop=should_stop)
            return identity_kept(loaded.model, loaded.schedule, x0, labels, lambda u: clf.predict(u)[1].argmax(1), ts,
                                 sampler=sampler, device=loaded.device, should_stop=should_stop, guide=loaded.guide,
                                 progress=lambda i, n: report(f"Identity curve: {i} of {n} t values done…"))

        worker = TaskWorker(job, "the identity curve")
        worker.partial.connect(self.denoise_label.setText)
        worker.finished.connect(self._on_identity_curve)
        worker.failed.connect(self.denoise_label.setText)
        self.denoise_runner.start(worker)
        self.denoise_label.setText(f"Denoising {len(x0)} digits from t = {', '.join(map(str, ts))}…")
        self._update_denoise_enabled()
        return True

    def _on_identity_curve(self, curve) -> None:
        self.identity_points = list(curve)
        if curve:
            ts, shares = zip(*curve)
            self.identity_curve_item.setData(list(ts), list(shares))
            self.identity_plot.setXRange(0, max(ts), padding=0.05)
            lost = next((t for t, s in curve if s < 0.5), None)
            self.denoise_label.setText(
                "Share of digits that keep their label after denoising from t: "
                + ", ".join(f"t={t}: {s:.0%}" for t, s in curve)
                + (f". Half of them have become another digit by t = {lost}." if lost else "."))
        self.identity_finished.emit()

    def _update_denoise_enabled(self) -> None:
        busy = self.denoise_runner.is_running()
        has = self.state.model is not None and len(self._x0) > 0
        self.denoise_button.setEnabled(has and not busy)
        self.identity_button.setEnabled(has and not busy and self.state.data is not None)

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
        step = max(1, round(T / PLAY_FRAMES))
        t = self.slider.value() + self._play_direction * step
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

    # ---------------------------------------------------------------- reacting
    def _on_schedule_edited(self, *_args) -> None:
        kind = self.schedule_combo.currentData()
        old = self.state.schedule_config
        try:
            config = ScheduleConfig(
                kind=kind,
                timesteps=int(self.steps_spin.value()),
                beta_start=old.beta_start,
                beta_end=old.beta_end,
                cosine_s=old.cosine_s,
            )
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
        ts = np.arange(T + 1)
        s = self.schedule
        self.beta_curve.setData(ts[1:], s.beta[1:].numpy())
        self.alphabar_curve.setData(ts, s.alphabar.numpy())
        self.sqrt_alphabar_curve.setData(ts, s.sqrt_alphabar.numpy())
        snr = s.snr[1:].double().numpy()
        self.snr_curve.setData(ts[1:], np.clip(snr, 1e-12, None))
        for plot in (self.beta_plot, self.alphabar_plot, self.snr_plot):
            plot.setXRange(0, T, padding=0.02)
        self._update_readout()
        self._update_strip()
        self._render()

    def _on_selection_changed(self) -> None:
        images = self.state.selection
        self._x0 = to_model_range(torch.from_numpy(np.ascontiguousarray(images)))
        self._update_denoise_enabled()
        self._draw_noise()
        self._update_readout()
        self._update_strip()
        self._render()

    def _draw_noise(self) -> None:
        g = torch.Generator().manual_seed(self.noise_seed)
        self._noise = torch.randn(self._x0.shape, generator=g)

    # ------------------------------------------------------------------ drawing
    def _update_readout(self) -> None:
        s = self.schedule
        summ = s.summary()
        T = s.timesteps
        title = SCHEDULE_TITLES.get(s.config.kind, s.config.kind)
        kl_bg = summ["prior_kl_background"]
        kl_sel = ""
        if len(self._x0):
            kl_sel = f"; {s.prior_kl(self._x0):.3g} nats/pixel averaged over the selected digits"
        verdict = (
            "the chain has essentially destroyed the image"
            if summ["signal_at_T"] < 0.05
            else "a visible trace of the digit remains in x_T, which sampling (starting from pure noise) never sees"
        )
        self.readout.setText(
            f"<b>{title}</b> schedule, T = {T}: at t = T, √ᾱ<sub>T</sub> = <b>{_num(summ['signal_at_T'])}</b> "
            f"of the image survives (ᾱ<sub>T</sub> = {summ['alphabar_T']:.3g}); "
            f"KL(q(x<sub>T</sub>|x<sub>0</sub>) ‖ N(0, I)) = {kl_bg:.3g} nats for a background pixel{kl_sel}. "
            f"So {verdict}."
        )

    def _update_strip(self) -> None:
        """Draw the strip: up to STRIP_ROWS digits at t = 0 and at STRIP_TIMESTEPS (those <= T)."""
        T = self.schedule.timesteps
        ts = [0] + [t for t in STRIP_TIMESTEPS if t <= T]
        if T > STRIP_TIMESTEPS[-1] or not any(t == T for t in ts):
            ts.append(T)
        self.strip_timesteps = ts
        k = min(STRIP_ROWS, len(self._x0))
        scale, pad, head = 2, 6, 20
        cell = 28 * scale
        w = len(ts) * (cell + pad) + pad
        h = head + max(k, 1) * (cell + pad) + pad
        pix = QPixmap(w, h)
        pix.fill(QColor("white"))
        p = QPainter(pix)
        p.setPen(QColor("#222"))
        for j, t in enumerate(ts):
            x = pad + j * (cell + pad)
            label = "x₀" if t == 0 else f"t = {t}"
            p.drawText(QRect(x - pad, 0, cell + 2 * pad, head), Qt.AlignmentFlag.AlignCenter, label)
            if k:
                tt = torch.full((k,), t, dtype=torch.long)
                xt = model_to_uint8(self.schedule.q_sample(self._x0[:k], tt, self._noise[:k]))
                for i in range(k):
                    p.drawPixmap(x, head + pad + i * (cell + pad), gray_pixmap(xt[i], scale))
        if not k:
            p.drawText(QRect(0, head, w, h - head), Qt.AlignmentFlag.AlignCenter, "no digits selected")
        p.end()
        self.strip_label.setPixmap(pix)

    def _fit_hist_range(self) -> None:
        """The density axis in steps (the next of 0.5, 1, 2, 5, 10, ... above the peak), so a
        drag does not re-draw the axis on every frame as autoscaling would."""
        peak = max(float(self._hist.max()) if self._hist.size else 0.0, 0.4)
        top = next(v for v in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 1e4, 1e5, 1e6, float("inf"))
                   if v >= peak * 1.05)
        if top != self._hist_top and math.isfinite(top):
            self._hist_top = top
            self.hist_plot.setYRange(0, top, padding=0)

    def _render(self, *_args) -> None:
        """Redraw x_t, the histogram, the markers and the readout for the slider's t."""
        start = time.perf_counter()
        t = self.slider.value()
        s = self.schedule
        k = len(self._x0)
        if k:
            xt = self.closed_form(t)
            self._xt_uint8 = model_to_uint8(xt)
            ncols = min(8, max(1, math.ceil(math.sqrt(k))))
            self.image_label.set_mosaic(tile(self._xt_uint8, ncols))
            values = xt.numpy().ravel()
            # equal bins + range: numpy's fast path (no sort); pixels beyond +-HIST_RANGE are not drawn
            counts, _ = np.histogram(values, bins=HIST_BINS, range=(-HIST_RANGE, HIST_RANGE))
            width = self._edges[1] - self._edges[0]
            self._hist = counts / (values.size * width)
        else:
            self._xt_uint8 = np.zeros((0, 28, 28), dtype=np.uint8)
            self.image_label.set_mosaic(None)
            self._hist = np.zeros(HIST_BINS)
        self.hist_curve.setData(self._edges, self._hist)
        self._fit_hist_range()
        for line in self.markers:
            line.setValue(t)
        a = float(s.sqrt_alphabar[t])
        b = float(s.sqrt_one_minus_alphabar[t])
        snr = "∞" if t == 0 else f"{float(s.snr[t]):.3g}"
        self.t_label.setText(f"t = {t}")
        self.t_readout.setText(
            f"x<sub>{t}</sub> = <b>{a:.3f}</b>·x<sub>0</sub> + <b>{b:.3f}</b>·ε &nbsp;&nbsp; "
            f"β<sub>t</sub> = {float(s.beta[t]):.4g}, &nbsp; ᾱ<sub>t</sub> = {float(s.alphabar[t]):.4g}, "
            f"&nbsp; SNR = {snr}"
        )
        self._request_prediction(t)
        self.last_frame_ms = (time.perf_counter() - start) * 1000.0
        self.frame_label.setText(f"{k} digits · frame drawn in {self.last_frame_ms:.1f} ms")
        self.frame_drawn.emit(t)
