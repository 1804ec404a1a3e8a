"""The sampler panel: run the reverse process and watch x_T become x_0.

Sampling runs in a ``SampleWorker`` (``workers.py``) that keeps a bounded list
of frames (x_t and the predicted x_0 as uint8). Play / pause / the slider only
show kept frames: scrubbing never recomputes anything.
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QFont, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from ..engine.text import first_line, guided_above
from .imaging import gray_qimage, model_to_uint8, tile
from .settings import CHECKPOINT_FOLDER, EXPORT_FOLDER, app_settings
from .state import AppState
from .workers import Frame, SampleJob, SampleWorker, TaskWorker, WorkerRunner, on_gui_thread

PLAY_FPS = 12
STRIP_ROWS = 4  # samples shown in the strip


class PixmapView(QLabel):
    """Shows a uint8 image scaled to fit with square, sharp pixels (integer zoom when possible)."""

    def __init__(self, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setStyleSheet("background: #1e1e1e; color: #9a9a9a; border-radius: 4px;")
        self._image: QImage | None = None
        self.array: np.ndarray | None = None
        self.setText(placeholder)

    def set_array(self, array: np.ndarray | None) -> None:
        self.array = None if array is None else np.asarray(array, dtype=np.uint8)
        self._image = None if array is None else gray_qimage(self.array)
        self._rescale()

    def set_qimage(self, image: QImage) -> None:
        self.array = None
        self._image = image
        self._rescale()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._rescale()

    def sizeHint(self) -> QSize:
        return QSize(320, 320)

    def _rescale(self) -> None:
        if self._image is None:
            self.setPixmap(QPixmap())
            return
        w, h = self._image.width(), self._image.height()
        avail_w, avail_h = max(1, self.width() - 8), max(1, self.height() - 8)
        zoom = min(avail_w / w, avail_h / h)
        if zoom >= 1:
            zoom = int(zoom)
        size = QSize(max(1, int(w * zoom)), max(1, int(h * zoom)))
        self.setPixmap(QPixmap.fromImage(self._image).scaled(
            size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation))


class WrappingLabel(QLabel):
    """A word-wrapped label that keeps the height its text needs at its width. In a QFormLayout
    row a wrapped label got the height of a shorter text, and the model line lost its first and
    last lines to the rows around it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(wordWrap=True, **kwargs)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt name)
        super().setText(text)
        self._fit()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        self.ensurePolished()  # the style sheet's font decides the lines
        need = self.heightForWidth(self.width())
        if need > 0 and need != self.minimumHeight():
            self.setMinimumHeight(need)


class SamplerPanel(QWidget):
    """Sample digits from ``state.model`` and animate the reverse process
    (objectName ``samplerPanel``).

    Public API
      sample() -> bool: start sampling with the form's settings (Sample button).
      cancel(): stop a running sampling (Cancel button).
      open_checkpoint(path=None) -> bool: open a checkpoint as ``state.model`` (in the background).
      show_frame(i): show kept frame i (what the slider does).
      play() / pause(): animate the kept frames.
      export_grid(path=None), export_strip(path=None), export_gif(path=None) ->
          Path | None: write the final grid (PNG), the t = 300, 100, 50, 20, 0 strip
          (PNG) or the animation of x_t and predicted x_0 (GIF); None asks with a
          file dialog; returns None when there was nothing to export or it was cancelled.
      shutdown(timeout_ms=5000) -> bool: stop and wait (bounded) for the worker.
    Attributes: ``frames`` (list of workers.Frame, t descending), ``current_index``.
    Signals: sampling_finished(str outcome) with "finished", "cancelled" or "failed".
    """

    sampling_finished = Signal(str)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("samplerPanel")
        self.state = state
        self.frames: list[Frame] = []
        self.current_index = -1
        self.runner = WorkerRunner(self)
        self.runner.stopped.connect(self._on_thread_stopped)
        self._outcome = ""
        self._job_info = ""
        self.precision_detail = ""
        self._build()
        self.play_timer = QTimer(self)
        self.play_timer.setInterval(int(1000 / PLAY_FPS))
        self.play_timer.timeout.connect(self._advance)
        state.model_changed.connect(self._on_model_changed)
        state.model_open_failed.connect(self._on_model_open_failed)
        for w in (self.sampler_combo, self.digit_combo):
            w.currentIndexChanged.connect(self._push_sampler_config)
        for w in (self.steps_spin, self.eta_spin, self.guidance_spin, self.autoguidance_spin,
                  self.autoguidance_min_t_spin):
            w.valueChanged.connect(self._push_sampler_config)
        self.clip_check.toggled.connect(self._push_sampler_config)
        self._on_model_changed()

    @Slot()
    def _push_sampler_config(self, *_args) -> None:
        """The state holds this form's SamplerConfig (None while the form is not valid), so
        "denoise from here" and the evaluation run what this tab runs."""
        try:
            config = self.sampler_config()
        except ValueError:
            config = None
        self.state.set_sampler_config(config)

    # ------------------------------------------------------------ layout
    def _build(self) -> None:
        from ..engine.diffusion.scheduling import DEFAULT_DDIM_STEPS, SamplerConfig

        box = QGroupBox("Sampling")
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.model_combo = QComboBox(objectName="modelCombo")
        self.model_combo.activated.connect(self._on_model_combo)
        form.addRow("Model", self.model_combo)
        self.model_info = WrappingLabel(objectName="modelInfo")
        self.model_info.setStyleSheet("color: palette(mid); font-size: 11px;")
        form.addRow(self.model_info)
        self.count_spin = QSpinBox(objectName="imageCountSpin", minimum=1, maximum=400, value=16)
        self.count_spin.setToolTip("How many digits to generate")
        form.addRow("Images", self.count_spin)
        self._sampler_kind = SamplerConfig().kind  # the kind the steps field was last set for
        self.sampler_combo = QComboBox(objectName="samplerCombo")
        self.sampler_combo.addItem("DDPM (all T steps)", "ddpm")
        self.sampler_combo.addItem("DDIM (fewer steps)", "ddim")
        self.sampler_combo.addItem("DPM-Solver++ 2M", "dpmpp2m")
        self.sampler_combo.setCurrentIndex(self.sampler_combo.findData(SamplerConfig().kind))
        self.sampler_combo.currentIndexChanged.connect(self._on_sampler_changed)
        form.addRow("Sampler", self.sampler_combo)
        self.steps_spin = QSpinBox(objectName="ddimStepsSpin", minimum=1, maximum=1000,
                                   value=SamplerConfig().steps or DEFAULT_DDIM_STEPS)
        self.steps_spin.setToolTip("DDIM or DPM-Solver++ steps (at most T)")
        form.addRow("Steps", self.steps_spin)
        self.eta_spin = QDoubleSpinBox(objectName="etaSpin", decimals=2, minimum=0.0, maximum=1.0, singleStep=0.1)
        self.eta_spin.setValue(SamplerConfig().eta)
        self.eta_spin.setToolTip("DDIM noise: 0 = deterministic, 1 = DDPM-like (the default: it scored better)")
        form.addRow("η (eta)", self.eta_spin)
        self.seed_spin = QSpinBox(objectName="sampleSeedSpin", minimum=0, maximum=2**31 - 1, value=0)
        form.addRow("Seed", self.seed_spin)
        self.digit_combo = QComboBox(objectName="digitCombo")
        self.digit_combo.addItem("All digits, 0–9 in turn", -1)
        for d in range(10):
            self.digit_combo.addItem(str(d), d)
        form.addRow("Digit", self.digit_combo)
        self.guidance_spin = QDoubleSpinBox(objectName="guidanceSpin", decimals=2, minimum=0.0, maximum=20.0,
                                            singleStep=0.25, value=SamplerConfig().guidance)
        form.addRow("Guidance", self.guidance_spin)
        self.autoguidance_spin = QDoubleSpinBox(objectName="autoguidanceSpin", decimals=2, minimum=0.0, maximum=20.0,
                                                singleStep=0.25, value=SamplerConfig().autoguidance)
        form.addRow("Autoguidance", self.autoguidance_spin)
        self.autoguidance_min_t_spin = QSpinBox(objectName="autoguidanceMinTSpin", minimum=0, maximum=10_000,
                                                value=SamplerConfig().autoguidance_min_t)
        form.addRow("Autoguide above t", self.autoguidance_min_t_spin)
        self.clip_check = QCheckBox("Clip predicted x_0 to [−1, 1]", objectName="clipX0Check",
                                    checked=SamplerConfig().clips_x0)
        self.clip_check.setToolTip(
            "Step from the clipped prediction of x_0 (keeps a young model's samples from blowing up); "
            "off = Algorithm 2 exactly as written"
        )
        form.addRow(self.clip_check)

        self.sample_button = QPushButton("Sample", objectName="sampleButton")
        self.sample_button.setShortcut("Ctrl+R")
        self.sample_button.clicked.connect(self.sample)
        self.cancel_button = QPushButton("Cancel", objectName="cancelSampleButton", enabled=False)
        self.cancel_button.setShortcut("Ctrl+Shift+R")
        self.cancel_button.setToolTip("Stop sampling before the next step (Ctrl+Shift+R)")
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.sample_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        self.progress = QProgressBar(objectName="sampleProgress", minimum=0, maximum=1, value=0)
        self.progress.setFormat("no samples yet")  # "%v / %m steps" once a run starts (not "0 / 1 steps")
        self.message = QLabel(wordWrap=True, objectName="samplerMessage")
        self.message.setMinimumHeight(40)
        self.message.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        export_box = QGroupBox("Export")
        ev = QVBoxLayout(export_box)
        self.export_grid_button = QPushButton("Grid as PNG…", objectName="exportGridButton")
        self.export_grid_button.clicked.connect(lambda: self.export_grid())
        self.export_strip_button = QPushButton("Strip as PNG…", objectName="exportStripButton")
        self.export_strip_button.clicked.connect(lambda: self.export_strip())
        self.export_gif_button = QPushButton("Animation as GIF…", objectName="exportGifButton")
        self.export_gif_button.clicked.connect(lambda: self.export_gif())
        for b in (self.export_grid_button, self.export_strip_button, self.export_gif_button):
            ev.addWidget(b)

        explore_box = QGroupBox("From noise to digits")
        eb = QFormLayout(explore_box)
        self.seed_b_spin = QSpinBox(objectName="interpolateSeedSpin", minimum=0, maximum=2**31 - 1, value=1)
        self.seed_b_spin.setToolTip("The second seed: the strip walks from the x_T of Seed to the x_T of this one")
        self.interpolate_button = QPushButton("Interpolate", objectName="interpolateButton")
        self.interpolate_button.setToolTip(
            "9 digits from points on the great circle (slerp) between the x_T of two seeds, "
            "deterministic DDIM (η = 0) with the Steps above"
        )
        self.interpolate_button.clicked.connect(lambda: self.interpolate())
        row = QHBoxLayout()
        row.addWidget(self.seed_b_spin)
        row.addWidget(self.interpolate_button, 1)
        eb.addRow("to seed", row)
        self.sweep_button = QPushButton("Guidance sweep", objectName="guidanceSweepButton")
        self.sweep_button.clicked.connect(lambda: self.guidance_sweep())
        eb.addRow(self.sweep_button)
        self.neighbour_button = QPushButton("Nearest training digits", objectName="nearestNeighbourButton")
        self.neighbour_button.clicked.connect(lambda: self.nearest_neighbours())
        eb.addRow(self.neighbour_button)

        left = QVBoxLayout()
        left.addWidget(box)
        left.addLayout(buttons)
        left.addWidget(self.progress)
        left.addWidget(self.message)
        left.addWidget(explore_box)
        left.addWidget(export_box)
        left.addStretch(1)
        left_w = QWidget()
        left_w.setLayout(left)
        left_w.setFixedWidth(320)

        # ---- views
        self.xt_view = PixmapView("x_t appears here")
        self.xt_view.setObjectName("xtView")
        self.x0_view = PixmapView("predicted x_0")
        self.x0_view.setObjectName("x0View")
        self.xt_title = QLabel("x_t", alignment=Qt.AlignmentFlag.AlignCenter)
        self.x0_title = QLabel("predicted x_0 = (x_t − √(1−ᾱ_t) ε_θ) / √ᾱ_t", alignment=Qt.AlignmentFlag.AlignCenter)
        title_font = QFont(self.xt_title.font())
        title_font.setBold(True)
        self.xt_title.setFont(title_font)
        self.x0_title.setFont(title_font)
        views = QGridLayout()
        views.addWidget(self.xt_title, 0, 0)
        views.addWidget(self.x0_title, 0, 1)
        views.addWidget(self.xt_view, 1, 0)
        views.addWidget(self.x0_view, 1, 1)

        self.play_button = QPushButton(objectName="playButton")
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.play_button.setShortcut("Ctrl+P")
        self.play_button.setToolTip("Play / pause the animation (Ctrl+P)")
        self.play_button.clicked.connect(self.toggle_play)
        self.slider = QSlider(Qt.Orientation.Horizontal, objectName="frameSlider")
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(self.show_frame)
        self.frame_label = QLabel("no frames yet", objectName="frameLabel")
        self.frame_label.setMinimumWidth(170)
        playback = QHBoxLayout()
        playback.addWidget(self.play_button)
        playback.addWidget(self.slider, 1)
        playback.addWidget(self.frame_label)

        strip_box = QGroupBox("The reverse process at t = 300, 100, 50, 20, 0 (report Figure 7)")
        sv = QVBoxLayout(strip_box)
        self.strip_view = QLabel(alignment=Qt.AlignmentFlag.AlignCenter, objectName="stripView")
        self.strip_view.setMinimumHeight(STRIP_ROWS * 62 + 30)
        self.strip_view.setText("Sample to see the strip")
        self.strip_view.setStyleSheet("color: palette(mid);")
        sv.addWidget(self.strip_view)

        self.explore_box = QGroupBox("Interpolation / guidance sweep")
        xv = QHBoxLayout(self.explore_box)
        self.explore_view = QLabel(alignment=Qt.AlignmentFlag.AlignCenter, objectName="exploreView")
        self.explore_view.setMinimumHeight(70)
        self.explore_caption = QLabel(wordWrap=True, objectName="exploreCaption")
        self.explore_caption.setStyleSheet("color: palette(mid); font-size: 11px;")
        self.export_explore_button = QPushButton("PNG…", objectName="exportExploreButton", enabled=False)
        self.export_explore_button.setToolTip("Save this strip as a PNG")
        self.export_explore_button.clicked.connect(lambda: self.export_explore())
        col = QVBoxLayout()
        col.addWidget(self.explore_view)
        col.addWidget(self.explore_caption)
        xv.addLayout(col, 1)
        xv.addWidget(self.export_explore_button)
        self.explore_box.setVisible(False)
        self.explore_strip: np.ndarray | None = None  # (K, 28, 28) uint8, the latest strip

        right = QVBoxLayout()
        right.addLayout(views, 1)
        right.addLayout(playback)
        right.addWidget(strip_box)
        right.addWidget(self.explore_box)

        layout = QHBoxLayout(self)
        layout.addWidget(left_w)
        layout.addLayout(right, 1)
        self._on_sampler_changed()
        self._update_enabled()

    # ------------------------------------------------------------ model choice
    @Slot()
    def _on_model_changed(self) -> None:
        self.model_combo.clear()
        loaded = self.state.model
        if loaded is not None:
            self.model_combo.addItem(self.state.model_source or "current model", "current")
        else:
            self.model_combo.addItem("no model loaded", "none")
        for name, title, _path in _bundled_models():
            self.model_combo.addItem(title, f"bundled:{name}")
        self.model_combo.addItem("Open checkpoint…", "open")
        self.model_combo.setCurrentIndex(0)
        self.model_combo.setToolTip(self.model_combo.itemText(0))
        if loaded is not None:
            T = loaded.schedule.timesteps
            mc, sc = loaded.model_config, loaded.schedule_config
            best_val = (loaded.payload.get("best") or {}).get("val_loss")
            self.model_info.setText(
                (f"residual U-Net {'/'.join(map(str, mc.level_channels))} channels" if mc.arch == "res"
                 else f"U-Net base {mc.base_channels}") + f", {sc.kind} schedule T={T}, "
                f"{round(loaded.epochs_trained, 1):g} epochs"
                + (f" (validation {best_val:.5f})" if best_val is not None else "")
                + (", EMA weights" if loaded.uses_ema else "")
                + (", class-conditional" if mc.conditional else "")
                + (f", autoguidance guide of {loaded.guide_epochs:.1f} epochs" if loaded.guide is not None else "")
            )
            self.steps_spin.setMaximum(T)
            self.steps_spin.setValue(min(self.steps_spin.value(), T))
        else:
            self.model_info.setText("Train a model or open a checkpoint to sample.")
        self._update_enabled()
        self._push_sampler_config()  # guidance applies only to what this model has

    @Slot(int)
    def _on_model_combo(self, index: int) -> None:
        kind = self.model_combo.itemData(index)
        if kind == "open":
            self.open_checkpoint()
        elif isinstance(kind, str) and kind.startswith("bundled:"):
            for name, title, path in _bundled_models():
                if f"bundled:{name}" == kind:
                    self.open_checkpoint(path, source=title[:1].lower() + title[1:])
        self.model_combo.setCurrentIndex(0)

    def open_checkpoint(self, path: str | Path | None = None, source: str | None = None) -> bool:
        """Open a checkpoint as ``state.model``, off the GUI thread (None asks with a file
        dialog). False when there is no such file; the model arrives by model_changed."""
        if path is None:
            start = app_settings().value(CHECKPOINT_FOLDER, "")
            if not start:
                from ..engine.storage import paths

                start = str(paths.runs_dir())
            path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", start, "Checkpoints (*.pt);;All files (*)")
            if not path:
                return False
            app_settings().setValue(CHECKPOINT_FOLDER, str(Path(path).parent))
        path = Path(path)
        if not path.is_file():
            self._say(f"Cannot open {path.name}: there is no such file", error=True)
            return False
        # read off the GUI thread: model_changed (or model_open_failed) follows
        self.state.open_model(path, source or f"checkpoint: {path.parent.name}/{path.name}")
        self._say(f"Opening {path.name}…")
        return True

    @Slot(str, str)
    def _on_model_open_failed(self, label: str, reason: str) -> None:
        self._say(f"Cannot open {label}: {reason}", error=True)

    @Slot()
    def _on_sampler_changed(self) -> None:
        from ..engine.diffusion.scheduling import SamplerConfig

        kind = SamplerConfig(kind=self.sampler_combo.currentData())
        if kind.kind != self._sampler_kind:  # the kind's own defaults
            if kind.takes_steps:
                self.steps_spin.setValue(min(kind.default_steps, self.steps_spin.maximum()))
            self.clip_check.setChecked(kind.clips_x0)
        self._sampler_kind = kind.kind
        self.steps_spin.setEnabled(kind.takes_steps and not self.runner.is_running())
        self.eta_spin.setEnabled(kind.takes_eta and not self.runner.is_running())

    def _update_enabled(self) -> None:
        running = self.runner.is_running()
        has_model = self.state.model is not None
        self.sample_button.setEnabled(has_model and not running)
        self.sample_button.setToolTip(
            "Generate digits with these settings (Ctrl+R)" if has_model else "No model: train one or open a checkpoint first"
        )
        self.cancel_button.setEnabled(running)
        for w in (self.model_combo, self.count_spin, self.sampler_combo, self.seed_spin, self.clip_check):
            w.setEnabled(not running)
        conditional = self._conditional()
        for w in (self.digit_combo, self.guidance_spin):
            w.setEnabled(conditional and not running)
        if conditional:
            self.digit_combo.setToolTip("Which digit to generate (the model is class-conditional)")
            self.guidance_spin.setToolTip(
                "Classifier-free guidance weight w: ε = (1 + w) ε(x, t, digit) − w ε(x, t, no digit); "
                "0 = plain conditional sampling, larger = more typical digits, less variety (costs 2x per step)"
            )
        else:
            why = "This model is unconditional: train with “Class-conditional” to choose the digit"
            self.digit_combo.setToolTip(why)
            self.guidance_spin.setToolTip(why)
        guide = self._guide_info()
        self.autoguidance_spin.setEnabled(guide is not None and not running)
        self.autoguidance_min_t_spin.setEnabled(guide is not None and not running)
        self.autoguidance_min_t_spin.setToolTip(
            "Autoguidance applies only at steps whose t is above this (a guidance interval): the last, "
            "low-noise steps, which draw the strokes' detail, go unguided; 0 = every step"
            if guide is not None else "This model has no guide network")
        self.autoguidance_spin.setToolTip(
            "Autoguidance weight g (Karras et al. 2024): ε = ε(x, t) + g (ε(x, t) − ε_guide(x, t)), steering "
            f"away from the errors of a weaker version of this model, its guide ({guide}); 0 = off "
            "(costs 2x per step)" if guide is not None else
            "This model has no guide network (a weaker version of itself to steer away from); "
            "the bundled unconditional model has one"
        )
        self._on_sampler_changed()
        has_frames = bool(self.frames) and not running
        done = has_frames and self.frames[-1].t == 0
        self.export_grid_button.setEnabled(done)
        self.export_strip_button.setEnabled(done)
        self.interpolate_button.setEnabled(has_model and not running)
        self.seed_b_spin.setEnabled(has_model and not running)
        self.sweep_button.setEnabled((conditional or guide is not None) and not running)
        self.sweep_button.setToolTip(
            "One seed, the chosen digit, guidance w = 0, 0.5, 1, 2, 4 side by side (deterministic DDIM)"
            if conditional else
            "One seed, autoguidance g = 0, 0.5, 1, 2, 4 side by side (deterministic DDIM): how steering away "
            "from the weaker guide network changes one digit" if guide is not None else
            "Needs a class-conditional model or one with a guide network (it compares guidance weights)"
        )
        self.export_explore_button.setEnabled(self.explore_strip is not None and not running)
        can_check = done and self.state.data is not None
        self.neighbour_button.setEnabled(can_check)
        self.neighbour_button.setToolTip(
            "Does the model copy? For each digit sampled above, its nearest training digit in pixels and in "
            "the metric classifier's features, against the same distances for real test digits"
            if can_check else "Sample first (and open MNIST): this compares the samples with the training digits"
        )
        self.export_gif_button.setEnabled(has_frames)
        self.play_button.setEnabled(has_frames)
        self.slider.setEnabled(has_frames)

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet("color: #b00020;" if error else "color: #444;")
        self.message.setText(text)
        self.state.report(text)

    # ------------------------------------------------------------ sampling
    def _conditional(self) -> bool:
        loaded = self.state.model
        return bool(loaded is not None and loaded.model_config.conditional)

    def _guide_info(self) -> str | None:
        loaded = self.state.model
        return None if loaded is None else loaded.guide_info

    def sampler_config(self):
        from ..engine.diffusion.scheduling import SamplerConfig

        kind = SamplerConfig(kind=self.sampler_combo.currentData())
        return SamplerConfig(
            kind=kind.kind,
            steps=self.steps_spin.value() if kind.takes_steps else None,
            eta=self.eta_spin.value() if kind.takes_eta else kind.eta,
            clip_x0=self.clip_check.isChecked(),
            guidance=self.guidance_spin.value() if self._conditional() else 0.0,
            autoguidance=self.autoguidance_spin.value() if self._guide_info() is not None else 0.0,
            autoguidance_min_t=self.autoguidance_min_t_spin.value(),
        )

    def labels(self, n: int):
        """The (n,) digits to ask a class-conditional model for (None for an unconditional one)."""
        if not self._conditional():
            return None
        import torch

        digit = self.digit_combo.currentData()
        return torch.full((n,), int(digit)) if digit >= 0 else torch.arange(n) % 10

    @Slot()
    def sample(self) -> bool:
        """Start sampling with the form's settings; False (with a message) when it cannot."""
        if self.runner.is_running():
            return False
        loaded = self.state.model
        if loaded is None:
            self._say("No model to sample from: train one or open a checkpoint.", error=True)
            return False
        try:
            sampler = self.sampler_config()
            sampler.num_steps(loaded.schedule.timesteps)
        except ValueError as exc:
            self._say(f"Cannot sample: {exc}", error=True)
            return False
        self.pause()
        self.frames = []
        self.current_index = -1
        n = self.count_spin.value()
        labels = self.labels(n)
        digit = self.digit_combo.currentData() if labels is not None else None
        what = "" if digit is None else (f", digit {digit}" if digit >= 0 else ", digits 0–9")
        what += f", guidance {sampler.guidance:g}" if labels is not None else ""
        autoguided = self._guide_info() is not None and sampler.autoguidance > 0
        what += f", autoguidance {sampler.autoguidance:g}" if autoguided else ""
        self._job_info = (
            f"{n} images, {sampler.title}"
            + (f" {sampler.num_steps(loaded.schedule.timesteps)} steps" if sampler.takes_steps else "")
            + (f", η={sampler.eta:g}" if sampler.takes_eta else "")
            + what + f", seed {self.seed_spin.value()}"
        )
        self._export_name = (
            f"samples-{n}-{sampler.kind}" + (f"{sampler.steps}" if sampler.takes_steps else "")
            + ("" if digit is None else (f"-digit{digit}" if digit >= 0 else "-digits") + f"-w{sampler.guidance:g}")
            + (f"-ag{sampler.autoguidance:g}" if autoguided else "")
            + f"-seed{self.seed_spin.value()}"
        )
        job = SampleJob(loaded, n=n, sampler=sampler, seed=self.seed_spin.value(), precision="auto",
                        labels=labels)
        gc.freeze()  # keep long GC passes off the animation (see TrainPanel._start)
        worker = SampleWorker(job)
        worker.precision_chosen.connect(self._on_precision_chosen)
        worker.progress.connect(self._on_progress)
        worker.frame.connect(self._on_live_frame)
        worker.finished.connect(self._on_finished)
        worker.cancelled.connect(self._on_cancelled)
        worker.failed.connect(self._on_failed)
        self.progress.setRange(0, sampler.num_steps(loaded.schedule.timesteps))
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m steps")
        self._outcome = ""
        self.runner.start(worker)
        self._say(f"Sampling {self._job_info}…")
        self._update_enabled()
        return True

    @Slot()
    def cancel(self) -> None:
        if self.runner.is_running():
            self.runner.stop()
            self.cancel_button.setEnabled(False)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop sampling and wait at most ``timeout_ms``; True when no thread is left
        (a model this panel asked for is read to the end first)."""
        self.pause()
        return self.runner.stop_and_wait(timeout_ms) and self.state.wait_for_model(timeout_ms)

    @Slot(str)
    def _on_precision_chosen(self, detail: str) -> None:
        self.precision_detail = detail
        self._say(f"Sampling {self._job_info} in {detail}…")

    @Slot(int, int)
    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    @Slot(int, object, object)
    def _on_live_frame(self, t: int, x, x0) -> None:
        self._show_arrays(t, x, x0)
        self.frame_label.setText(f"t = {t} (sampling…)")

    @Slot(object)
    def _on_finished(self, frames) -> None:
        self._outcome = "finished"
        self._set_frames(frames)
        self._say(f"Sampled {self._job_info}: {len(self.frames)} frames kept.")

    @Slot(object)
    def _on_cancelled(self, frames) -> None:
        self._outcome = "cancelled"
        self._set_frames(frames)
        self._say("Sampling cancelled" + (f" at t = {self.frames[-1].t}." if self.frames else "."))

    # ---------------------------------------------- interpolation, guidance sweep
    def interpolate(self) -> bool:
        """Nine digits between the x_T of Seed and of the second seed (slerp, DDIM eta = 0),
        shown as a strip below the animation; False (with a message) when it cannot start."""
        loaded = self.state.model
        if loaded is None or self.runner.is_running():
            return False
        seed_a, seed_b = self.seed_spin.value(), self.seed_b_spin.value()
        steps = min(self.steps_spin.value(), loaded.schedule.timesteps)
        labels = self.labels(1)
        label = None if labels is None else int(labels[0])
        guidance = self.guidance_spin.value()
        config = self.sampler_config()
        autoguidance, min_t = config.autoguidance, config.autoguidance_min_t  # g = 0 without a guide

        def job(should_stop, report):
            from ..engine.device import choose_precision
            from ..engine.diffusion.explore import interpolate

            p = choose_precision("auto", loaded.device, mode="sample", model_config=loaded.model_config).precision
            x = interpolate(loaded.model, loaded.schedule, seed_a, seed_b, count=9, steps=steps, label=label,
                            guidance=guidance, device=loaded.device, precision=p, should_stop=should_stop,
                            guide=loaded.guide, autoguidance=autoguidance, autoguidance_min_t=min_t)
            return model_to_uint8(x)

        caption = (f"seed {seed_a} → seed {seed_b}: 9 points on the great circle between their x_T (slerp), "
                   f"DDIM {steps} steps, η = 0" + ("" if label is None else f", digit {label}, w = {guidance:g}")
                   + (f", autoguidance g = {autoguidance:g}{guided_above(min_t)}"
                      if loaded.guide is not None and autoguidance > 0 else ""))
        return self._start_task(job, "interpolation", caption, f"interpolation-seed{seed_a}-seed{seed_b}")

    def guidance_sweep(self) -> bool:
        """One seed and digit at w = 0, 0.5, 1, 2, 4 (class-conditional models); for a model
        with a guide network and no labels, one seed at autoguidance g = 0, 0.5, 1, 2, 4."""
        loaded = self.state.model
        if loaded is None or self.runner.is_running():
            return False
        from ..engine.diffusion.explore import GUIDANCE_SWEEP

        if not self._conditional():
            if loaded.guide is None:
                self._say("The guidance sweep needs a class-conditional model or one with a guide network.",
                          error=True)
                return False
            return self._autoguidance_sweep(loaded, GUIDANCE_SWEEP)

        digit = self.digit_combo.currentData()
        digit = 0 if digit is None or digit < 0 else int(digit)
        seed = self.seed_spin.value()
        steps = min(self.steps_spin.value(), loaded.schedule.timesteps)

        def job(should_stop, report):
            from ..engine.device import choose_precision
            from ..engine.diffusion.explore import guidance_sweep

            p = choose_precision("auto", loaded.device, mode="sample", model_config=loaded.model_config).precision
            x = guidance_sweep(loaded.model, loaded.schedule, digit, seed, steps=steps, device=loaded.device,
                               precision=p, should_stop=should_stop)
            return model_to_uint8(x)

        weights = ", ".join(f"{w:g}" for w in GUIDANCE_SWEEP)
        caption = f"digit {digit}, seed {seed}: guidance w = {weights} (DDIM {steps} steps, η = 0, same x_T)"
        return self._start_task(job, "guidance sweep", caption, f"guidance-sweep-digit{digit}-seed{seed}")

    def _autoguidance_sweep(self, loaded, weights) -> bool:
        seed = self.seed_spin.value()
        steps = min(self.steps_spin.value(), loaded.schedule.timesteps)
        min_t = self.autoguidance_min_t_spin.value()

        def job(should_stop, report):
            from ..engine.device import choose_precision
            from ..engine.diffusion.explore import autoguidance_sweep

            p = choose_precision("auto", loaded.device, mode="sample", model_config=loaded.model_config).precision
            x = autoguidance_sweep(loaded.model, loaded.guide, loaded.schedule, seed, weights=weights, steps=steps,
                                   device=loaded.device, precision=p, should_stop=should_stop,
                                   autoguidance_min_t=min_t)
            return model_to_uint8(x)

        caption = (f"seed {seed}: autoguidance g = {', '.join(f'{g:g}' for g in weights)}{guided_above(min_t)}, "
                   "away from a guide "
                   f"of {loaded.guide_epochs:.1f} epochs (DDIM {steps} steps, η = 0, same x_T)")
        return self._start_task(job, "autoguidance sweep", caption, f"autoguidance-sweep-seed{seed}")

    def nearest_neighbours(self) -> bool:
        """For the digits sampled last: their nearest training digits (pixels, classifier
        features), shown as rows below them, with the distances against real test digits'."""
        final = self._final()
        data = self.state.data
        if final is None or data is None or self.runner.is_running():
            return False
        generated = np.asarray(final.x, dtype=np.uint8)

        def job(should_stop, report):
            from ..engine.evaluation.classifier import ensure_classifier
            from ..engine.evaluation.neighbours import memorisation_check

            clf = ensure_classifier(data, should_stop=should_stop)  # trains it once (about 2 min on 2 cores)
            check = memorisation_check(generated, data, classifier=clf, n_test=max(len(generated), 200),
                                       should_stop=should_stop)
            train = data.train_images.numpy()
            rows = np.concatenate([generated, train[check.generated_pixel.index],
                                   train[check.generated_feature.index]])
            return rows, check.summary()

        n = len(generated)
        self._neighbour_count = n
        return self._start_task(job, "nearest-neighbour check", "", f"nearest-training-digits-{n}")

    def _start_task(self, job, what: str, caption: str, export_name: str) -> bool:
        worker = TaskWorker(job, what)
        worker.finished.connect(on_gui_thread(self, lambda images: self._on_explore_done(images, caption, export_name)))
        worker.cancelled.connect(on_gui_thread(self, lambda: self._say(f"The {what} was cancelled.")))
        worker.failed.connect(self._on_failed)
        self._outcome = ""
        self.runner.start(worker)
        self._say(f"Running the {what}…")
        self._update_enabled()
        return True

    def _on_explore_done(self, result, caption: str, export_name: str) -> None:
        self._outcome = "completed"
        ncols = None
        if isinstance(result, tuple):  # the nearest-neighbour check: 3 rows and the distances
            images, summary = result
            ncols = len(images) // 3
            px, ft = summary["pixel"], summary.get("feature")
            caption = (
                f"Rows: the {ncols} samples; their nearest training digits in pixels; in classifier features. "
                f"Pixel distance to the nearest training digit, median: samples {px['generated_median']:.2f}, "
                f"real test digits {px['test_median']:.2f}; "
                f"{px['generated_share_below_test_1st_percentile']:.0%} of samples are closer than the closest 1% "
                "of test digits" + (f" (features: {ft['generated_median']:.2f} against {ft['test_median']:.2f})"
                                    if ft else "") + ". A copying model would sit far below the test digits."
            )
        else:
            images = result
        self.explore_strip = np.asarray(images, dtype=np.uint8)
        self._explore_cols = ncols or len(self.explore_strip)
        self._explore_name = export_name
        strip = tile(self.explore_strip, ncols=self._explore_cols, pad=2, pad_value=255)
        self.explore_view.setPixmap(QPixmap.fromImage(gray_qimage(strip)).scaledToHeight(
            2 * strip.shape[0], Qt.TransformationMode.FastTransformation))
        self.explore_caption.setText(caption)
        self.explore_box.setVisible(True)
        self._say(caption[:1].upper() + caption[1:])

    def export_explore(self, path: str | Path | None = None) -> Path | None:
        """Save the latest interpolation or guidance-sweep strip as PNG; returns the path."""
        if self.explore_strip is None:
            self._say("Nothing to export yet: run an interpolation or a guidance sweep first.", error=True)
            return None
        self._export_name = getattr(self, "_explore_name", "strip")
        path = self._export_path(path, "Export strip", ".png", "PNG images (*.png)")
        if path is None:
            return None
        strip = tile(self.explore_strip, ncols=getattr(self, "_explore_cols", len(self.explore_strip)),
                     pad=2, pad_value=255)
        return self._write(path, lambda: _save_png(strip, path), "strip")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._outcome = "failed"
        self._say(message[:1].upper() + message[1:], error=True)

    @Slot()
    def _on_thread_stopped(self) -> None:
        self._update_enabled()
        self.sampling_finished.emit(self._outcome or "failed")

    def _set_frames(self, frames) -> None:
        self.frames = list(frames)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, len(self.frames) - 1))
        self.slider.setValue(max(0, len(self.frames) - 1))
        self.slider.blockSignals(False)
        if self.frames:
            self.show_frame(len(self.frames) - 1)
            self._update_strip()

    # ------------------------------------------------------------ viewing
    def _grid(self, images: np.ndarray) -> np.ndarray:
        return tile(images, pad=2, pad_value=90)

    def _show_arrays(self, t: int, x: np.ndarray, x0: np.ndarray) -> None:
        self.xt_view.set_array(self._grid(x))
        self.x0_view.set_array(self._grid(x0))
        self.xt_title.setText(f"x_t at t = {t}" if t else "x_0 (the result)")

    @Slot(int)
    def show_frame(self, index: int) -> None:
        """Show kept frame ``index`` (0 = x_T); never recomputes."""
        if not self.frames:
            return
        index = int(np.clip(index, 0, len(self.frames) - 1))
        self.current_index = index
        f = self.frames[index]
        self._show_arrays(f.t, f.x, f.x0)
        self.frame_label.setText(f"t = {f.t}  (frame {index + 1} of {len(self.frames)})")
        if self.slider.value() != index:
            self.slider.blockSignals(True)
            self.slider.setValue(index)
            self.slider.blockSignals(False)

    def is_playing(self) -> bool:
        return self.play_timer.isActive()

    @Slot()
    def toggle_play(self) -> None:
        self.pause() if self.is_playing() else self.play()

    def play(self) -> None:
        if not self.frames or self.runner.is_running():
            return
        if self.current_index >= len(self.frames) - 1:
            self.show_frame(0)
        self.play_timer.start()
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause))

    def pause(self) -> None:
        self.play_timer.stop()
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))

    @Slot()
    def _advance(self) -> None:
        if self.current_index >= len(self.frames) - 1:
            self.pause()
            return
        self.show_frame(self.current_index + 1)

    # ------------------------------------------------------------ strip
    def strip_frames(self) -> list[Frame]:
        """The kept frames nearest to t = 300, 100, 50, 20, 0 (clipped to T)."""
        from ..engine.diffusion.scheduling import strip_timesteps

        if not self.frames:
            return []
        T = self.frames[0].t
        out = []
        for s in strip_timesteps(T):
            f = min(self.frames, key=lambda fr: abs(fr.t - s))
            if not out or out[-1] is not f:
                out.append(f)
        return out

    def strip_image(self, scale: int = 3) -> QImage:
        """The strip as a QImage: a column per timestep (labelled), a row per sample
        (``engine.images.labelled_strip``, the picture the export writes)."""
        from ..engine.storage.images import labelled_strip

        frames = self.strip_frames()
        return gray_qimage(labelled_strip([(f.t, f.x) for f in frames], STRIP_ROWS, scale=scale))

    def _update_strip(self) -> None:
        if self.frames and self.frames[-1].t == 0:
            self.strip_view.setPixmap(QPixmap.fromImage(self.strip_image(scale=2)))
        else:
            self.strip_view.setText("The strip needs a finished sampling run")

    # ------------------------------------------------------------ exports
    def _export_path(self, path, title: str, suffix: str, filt: str) -> Path | None:
        if path is not None:
            path = Path(path)
            return path if path.suffix.lower() == suffix else path.with_name(path.name + suffix)
        settings = app_settings()
        folder = settings.value(EXPORT_FOLDER, "") or str(Path.home())
        default = str(Path(folder) / f"{getattr(self, '_export_name', 'samples')}{suffix}")
        chosen, _ = QFileDialog.getSaveFileName(self, title, default, filt)
        if not chosen:
            return None
        chosen = Path(chosen)
        if chosen.suffix.lower() != suffix:
            chosen = chosen.with_name(chosen.name + suffix)
        settings.setValue(EXPORT_FOLDER, str(chosen.parent))
        return chosen

    def _final(self) -> Frame | None:
        if not self.frames or self.frames[-1].t != 0:
            self._say("Nothing to export yet: sample first (and let it finish).", error=True)
            return None
        return self.frames[-1]

    def export_grid(self, path: str | Path | None = None) -> Path | None:
        """Save the final images as one PNG grid (white 2-px gaps); returns the path."""
        final = self._final()
        if final is None:
            return None
        path = self._export_path(path, "Export grid", ".png", "PNG images (*.png)")
        if path is None:
            return None
        return self._write(path, lambda: _save_png(tile(final.x, pad=2, pad_value=255), path), "grid")

    def export_strip(self, path: str | Path | None = None) -> Path | None:
        """Save the t = 300, 100, 50, 20, 0 strip (labelled) as PNG; returns the path."""
        if self._final() is None:
            return None
        path = self._export_path(path, "Export strip", ".png", "PNG images (*.png)")
        if path is None:
            return None

        def write():
            from ..engine.storage.images import labelled_strip, save_png

            save_png(labelled_strip([(f.t, f.x) for f in self.strip_frames()], STRIP_ROWS), path)

        return self._write(path, write, "strip")

    def export_gif(self, path: str | Path | None = None) -> Path | None:
        """Save the kept frames as an animated GIF: x_t | predicted x_0 side by side,
        the last frame held for 1.5 s; returns the path."""
        if not self.frames:
            self._say("Nothing to export yet: sample first.", error=True)
            return None
        path = self._export_path(path, "Export animation", ".gif", "GIF animations (*.gif)")
        if path is None:
            return None
        return self._write(path, lambda: _save_gif(self.frames, path), "animation")

    def _write(self, path: Path, write, what: str) -> Path | None:
        try:
            write()
        except Exception as exc:
            self._say(f"Could not save the {what} to {path}: {first_line(exc)}", error=True)
            return None
        self._say(f"Saved the {what} to {path}")
        return path


def _save_png(array: np.ndarray, path: Path) -> None:
    from ..engine.storage.images import save_png

    save_png(array, path)


def _save_gif(frames: list[Frame], path: Path) -> None:
    from ..engine.storage.images import animation_frames, save_gif

    save_gif(animation_frames([(f.x, f.x0) for f in frames]), path)


def _bundled_models() -> list[tuple[str, str, Path]]:
    from ..engine.storage.bundled import available_bundled

    return available_bundled()


