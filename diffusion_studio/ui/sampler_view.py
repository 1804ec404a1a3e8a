"""What the Sampler panel draws: x_t and the predicted x_0 of the kept frames, played or
scrubbed without recomputing; the t = 300, 100, 50, 20, 0 strip (the report's Figure 7); an
exploration's strip. Each view has a plain caption; the formulas are in its tooltips.

``FramesView`` holds the kept frames (``tasks.sample.Frame``: t, x_t and predicted x_0 as
uint8) and shows one at a time, under a line saying which model made them; ``ExploreBox``
shows an interpolation, a guidance sweep or the nearest training digits (a
``tasks.explore.Strip``). Either says so, in red, when its pictures are from a model that is
no longer the current one. ``build_panel`` lays out the Sampler panel around them.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
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

from ..engine.storage.images import tile
from .widgets import ImageView, caption

PLAY_FPS = 12
#: the exports' default enlargement: a 16-digit grid of 122 px becomes 488 px, enough for a slide
EXPORT_SCALE = 4
STRIP_ROWS = 4  # samples shown in the strip
STALE_STYLE = "color: #b00020; font-weight: bold;"


class ElidedLabel(QLabel):
    """One line that never widens its layout: the text is cut with "…" to the width it gets,
    and shown whole in the tooltip."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        self.setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, max(1, self.width())))


class FramesView(QWidget):
    """The kept frames of one sampling run, one shown at a time.

    set_frames(frames): the run's kept frames (t descending), showing the last.
    show_live(t, x, x0): a frame of a run still sampling (not kept here).
    show_frame(i): frame i (0 = x_T); play() / pause() / toggle_play(): animate them.
    strip_frames(): the frames nearest to the strip's timesteps.
    set_source(text, stale): the line above them: which model made them, in red when it is no
    longer the current model (the attribute ``stale`` keeps which).
    Signal ``playing_changed(bool)``.
    """

    playing_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.frames: list = []
        self.current_index = -1
        self._build()
        self.play_timer = QTimer(self)
        self.play_timer.setInterval(int(1000 / PLAY_FPS))
        self.play_timer.timeout.connect(self._advance)

    def _build(self) -> None:
        self.source_label = ElidedLabel(objectName="framesSource")
        self.xt_view = ImageView("x_t appears here")
        self.xt_view.setObjectName("xtView")
        self.x0_view = ImageView("predicted x_0")
        self.x0_view.setObjectName("x0View")
        self.caption = caption("Left: the digits as the model takes the noise away, from pure noise (t = T) to the "
                               "result (t = 0). Right: at each step, the model's guess of the finished digits.",
                               "framesCaption")
        self.xt_title = QLabel("x_t", alignment=Qt.AlignmentFlag.AlignCenter)
        self.xt_title.setToolTip("x_t: the digits part-way through sampling, at step t of the reverse process")
        self.x0_title = QLabel("its guess of the result (predicted x_0)", alignment=Qt.AlignmentFlag.AlignCenter)
        self.x0_title.setToolTip("x̂_0 = (x_t − √(1−ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t: where the network thinks x_t is heading")
        title_font = QFont(self.xt_title.font())
        title_font.setBold(True)
        for title in (self.xt_title, self.x0_title):
            title.setFont(title_font)
        views = QGridLayout()
        views.addWidget(self.xt_title, 0, 0)
        views.addWidget(self.x0_title, 0, 1)
        views.addWidget(self.xt_view, 1, 0)
        views.addWidget(self.x0_view, 1, 1)
        views.setRowStretch(1, 1)
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
        strip_box = QGroupBox("The reverse process, step by step", objectName="reverseStripBox")
        tip = ("The kept frames nearest t = 300, 100, 50, 20, 0 (within the model's T): the layout of Figure 7 "
               "of the project report")
        strip_box.setToolTip(tip)
        self.strip_caption = caption("Each row is one of the digits above, from pure noise on the left to the "
                                     "finished digit on the right.", "stripCaption", tip)
        self.strip_view = ImageView("Sample to see the strip", min_side=120)
        self.strip_view.setObjectName("stripView")
        self.strip_view.setStyleSheet("color: palette(mid);")
        # the strip's own height (drawn at scale 2): shown 1:1, its labels are never resampled
        self.strip_view.setFixedHeight(22 + STRIP_ROWS * (2 * 28 + 6) + 6 + 8)
        strip_layout = QVBoxLayout(strip_box)
        strip_layout.addWidget(self.strip_caption)
        strip_layout.addWidget(self.strip_view)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.source_label)
        layout.addWidget(self.caption)
        layout.addLayout(views, 1)
        layout.addLayout(playback)
        layout.addWidget(strip_box)
        self.set_source("")

    def set_source(self, text: str, stale: bool = False) -> None:
        """What made the frames ("Sampled by …"); ``stale``: a model that is no longer the current one."""
        self.stale = stale
        self.source_label.setStyleSheet(STALE_STYLE if stale else "color: palette(mid);")
        self.source_label.set_full_text(text)

    # ------------------------------------------------------------ frames
    def clear(self) -> None:
        self.pause()
        self.frames = []
        self.current_index = -1

    def set_frames(self, frames) -> None:
        self.frames = list(frames)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, len(self.frames) - 1))
        self.slider.setValue(max(0, len(self.frames) - 1))
        self.slider.blockSignals(False)
        if self.frames:
            self.show_frame(len(self.frames) - 1)
        self._update_strip()

    def _show_arrays(self, t: int, x: np.ndarray, x0: np.ndarray) -> None:
        self.xt_view.set_array(tile(x, pad=2, pad_value=90))
        self.x0_view.set_array(tile(x0, pad=2, pad_value=90))
        self.xt_title.setText(f"x_t at t = {t}" if t else "x_0 (the result)")

    def show_live(self, t: int, x: np.ndarray, x0: np.ndarray) -> None:
        self._show_arrays(t, x, x0)
        self.frame_label.setText(f"t = {t} (sampling…)")

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
        if not self.frames:
            return
        if self.current_index >= len(self.frames) - 1:
            self.show_frame(0)
        self.play_timer.start()
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause))
        self.playing_changed.emit(True)

    def pause(self) -> None:
        self.play_timer.stop()
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.playing_changed.emit(False)

    @Slot()
    def _advance(self) -> None:
        if self.current_index >= len(self.frames) - 1:
            self.pause()
            return
        self.show_frame(self.current_index + 1)

    def set_controls_enabled(self, enabled: bool) -> None:
        for w in (self.play_button, self.slider):
            w.setEnabled(enabled)

    # ------------------------------------------------------------ strip
    def strip_frames(self) -> list:
        """The kept frames nearest to t = 300, 100, 50, 20, 0 (clipped to T)."""
        from ..engine.diffusion.scheduling import strip_timesteps

        if not self.frames:
            return []
        out = []
        for s in strip_timesteps(self.frames[0].t):
            f = min(self.frames, key=lambda fr: abs(fr.t - s))
            if not out or out[-1] is not f:
                out.append(f)
        return out

    def strip_array(self, scale: int = 3) -> np.ndarray:
        """The strip: a column per timestep (labelled), a row per sample (``engine.images.labelled_strip``,
        the picture the export writes)."""
        from ..engine.storage.images import labelled_strip

        return labelled_strip([(f.t, f.x) for f in self.strip_frames()], STRIP_ROWS, scale=scale)

    def finished(self) -> bool:
        """A run's frames down to x_0 are kept."""
        return bool(self.frames) and self.frames[-1].t == 0

    def _update_strip(self) -> None:
        if self.finished():
            self.strip_view.set_array(self.strip_array(scale=2))
        else:
            self.strip_view.set_array(None)
            self.strip_view.setText("The strip needs a finished sampling run")


class ExploreBox(QGroupBox):
    """An exploration's strip (hidden until the first): its picture, caption and PNG button.
    ``strip`` is the latest ``tasks.explore.Strip`` (None before the first)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Interpolation / guidance sweep", parent)
        self.strip = None
        self.view = ImageView("", min_side=60)
        self.view.setObjectName("exploreView")
        self.view.setStyleSheet("")  # on the panel's background, as the exported PNG
        self.view.setMinimumWidth(200)
        self.caption = QLabel(wordWrap=True, objectName="exploreCaption")
        self.caption.setStyleSheet("color: palette(mid); font-size: 11px;")
        self.export_button = QPushButton("PNG…", objectName="exportExploreButton", enabled=False)
        self.export_button.setToolTip("Save this strip as a PNG")
        col = QVBoxLayout()
        col.addWidget(self.view)
        col.addWidget(self.caption)
        layout = QHBoxLayout(self)
        layout.addLayout(col, 1)
        layout.addWidget(self.export_button)
        self.setVisible(False)

    def show_strip(self, strip) -> None:
        self.strip = strip
        picture = self.picture()
        # two screen pixels per pixel where that stays under 300 px, else one (the labels stay legible)
        height = picture.shape[0] * (2 if 2 * picture.shape[0] <= 300 else 1)
        self.view.setFixedHeight(min(height, 330) + 8)
        self.view.set_array(picture)
        self.set_stale("")
        self.setVisible(True)

    def set_stale(self, note: str) -> None:
        """``note`` ("From …, not the current model"): the strip is from a previous model, and its
        caption says so first, in red; "": the current model's, the caption alone."""
        if self.strip is not None:
            self.caption.setStyleSheet((STALE_STYLE if note else "color: palette(mid);") + " font-size: 11px;")
            self.caption.setText(f"{note}: {self.strip.caption}" if note else self.strip.caption)

    def picture(self, scale: int = 1) -> np.ndarray:
        """The strip as one uint8 image (white 2-px gaps, its columns' and rows' labels: "w = 2"),
        as the export writes it (``tasks.explore.Strip.picture``)."""
        return self.strip.picture(scale)


def gif_pictures(frames, scale: int) -> list[np.ndarray]:
    """The animation's pictures: each kept frame's x_t | predicted x_0 (``engine.storage.images.
    animation_frames``, enlarged ``scale`` times) under the captions "x_t at t = ..." and "predicted x_0"."""
    from PIL import Image, ImageDraw, ImageFont

    from ..engine.storage.images import animation_frames

    pictures = animation_frames([(f.x, f.x0) for f in frames], scale=scale)
    font = ImageFont.load_default(size=max(12, 5 * scale))
    head = int(font.size * 1.6)
    out = []
    for f, picture in zip(frames, pictures):
        image = Image.new("L", (picture.shape[1], picture.shape[0] + head), 255)
        image.paste(Image.fromarray(picture), (0, head))
        draw, half = ImageDraw.Draw(image), (picture.shape[1] - 8 * scale) / 2  # 8 px between the mosaics
        draw.text((half / 2, head / 2), f"x_t at t = {f.t}" if f.t else "x_0 (t = 0)", fill=34, font=font, anchor="mm")
        draw.text((picture.shape[1] - half / 2, head / 2), "predicted x_0", fill=34, font=font, anchor="mm")
        out.append(np.asarray(image))
    return out


def build_panel(panel) -> None:
    """The Sampler panel's layout, made as its attributes: on the left its form, Sample and
    Cancel, the progress bar, the message line, the exploration and export boxes; on the
    right its ``view`` (FramesView) above its ``explore_box`` (ExploreBox)."""
    panel.sample_button = QPushButton("Sample", objectName="sampleButton")
    panel.sample_button.setShortcut("Ctrl+R")
    panel.cancel_button = QPushButton("Cancel", objectName="cancelSampleButton", enabled=False)
    panel.cancel_button.setShortcut("Ctrl+Shift+R")
    panel.cancel_button.setToolTip("Stop sampling before the next step (Ctrl+Shift+R)")
    buttons = QHBoxLayout()
    buttons.addWidget(panel.sample_button, 2)
    buttons.addWidget(panel.cancel_button, 1)
    panel.progress = QProgressBar(objectName="sampleProgress", minimum=0, maximum=1, value=0)
    panel.progress.setFormat("no samples yet")  # "%v / %m steps" once a run starts (not "0 / 1 steps")
    panel.message = QLabel(wordWrap=True, objectName="samplerMessage")
    panel.message.setMinimumHeight(40)
    panel.message.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
    left = QVBoxLayout()
    left.addWidget(panel.form)
    left.addLayout(buttons)
    left.addWidget(panel.progress)
    left.addWidget(panel.message)
    left.addWidget(build_explore_buttons(panel))
    left.addWidget(build_export_buttons(panel))
    left.addStretch(1)
    left_w = QWidget()
    left_w.setLayout(left)
    left_w.setFixedWidth(340)  # the bundled models' names whole in the model list
    right = QVBoxLayout()
    right.addWidget(panel.view, 1)
    right.addWidget(panel.explore_box)
    layout = QHBoxLayout(panel)
    layout.addWidget(left_w)
    layout.addLayout(right, 1)


def build_explore_buttons(panel) -> QGroupBox:
    """The panel's "From noise to digits" box, made as its attributes: the second seed, Interpolate,
    Guidance sweep, Nearest training digits."""
    box = QGroupBox("From noise to digits")
    form = QFormLayout(box)
    panel.seed_b_spin = QSpinBox(objectName="interpolateSeedSpin", minimum=0, maximum=2**31 - 1, value=1)
    panel.seed_b_spin.setToolTip("The second seed: the strip walks from the x_T of Seed to the x_T of this one")
    panel.interpolate_button = QPushButton("Interpolate", objectName="interpolateButton")
    panel.interpolate_button.setToolTip("9 digits from points on the great circle (slerp) between the x_T of two "
                                        "seeds, deterministic DDIM (η = 0) with the Steps above")
    row = QHBoxLayout()
    row.addWidget(panel.seed_b_spin)
    row.addWidget(panel.interpolate_button, 1)
    form.addRow("to seed", row)
    panel.sweep_button = QPushButton("Guidance sweep", objectName="guidanceSweepButton")
    form.addRow(panel.sweep_button)
    panel.neighbour_button = QPushButton("Nearest training digits", objectName="nearestNeighbourButton")
    form.addRow(panel.neighbour_button)
    return box


def build_export_buttons(panel) -> QGroupBox:
    """The panel's Export box, made as its attributes: the scale, grid, strip and animation buttons."""
    box = QGroupBox("Export")
    layout = QVBoxLayout(box)
    panel.export_scale_spin = QSpinBox(objectName="exportScaleSpin", minimum=1, maximum=10, value=EXPORT_SCALE)
    panel.export_scale_spin.setSuffix(" ×")
    panel.export_scale_spin.setToolTip("Each pixel of a digit becomes this many pixels across in the exported grid, "
                                       "strip, exploration and animation (whole pixels, never blurred)")
    scale_row = QHBoxLayout()
    scale_row.addWidget(QLabel("Scale"))
    scale_row.addWidget(panel.export_scale_spin, 1)
    layout.addLayout(scale_row)
    panel.export_grid_button = QPushButton("Grid as PNG…", objectName="exportGridButton")
    panel.export_strip_button = QPushButton("Strip as PNG…", objectName="exportStripButton")
    panel.export_gif_button = QPushButton("Animation as GIF…", objectName="exportGifButton")
    for b in (panel.export_grid_button, panel.export_strip_button, panel.export_gif_button):
        layout.addWidget(b)
    return box
