"""What the forward-noise panel draws, and the layout of its controls.

- ``ScheduleCurves``: beta_t, alphabar_t, SNR_t and the histogram of x_t's pixels, with a
  marker at the slider's t;
- ``ModelViewBox``: the network's predicted x_0 and eps error at this t, with the error's
  colour scale (``ErrorScaleBar``);
- ``DenoiseBox``: "denoise from here" and the identity-vs-t curve;
- ``ForwardStrip`` / ``forward_strip``: the report's Figure 3 (digits at fixed t);
- ``show_readout`` / ``show_t_readout``: what the schedule keeps of the image at T and at t;
- ``build_top_bar`` / ``build_readouts`` / ``build_views``: the panel's controls, lines and views
  (made as its attributes).
"""

from __future__ import annotations

import html
import math
import weakref

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QEvent, QRect, Qt
from PySide6.QtGui import QColor, QFont, QLinearGradient, QPainter, QPixmap
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

from ..engine.defaults import SCHEDULE_KINDS
from ..engine.storage.data import to_uint8
from ..tasks.explore import ERROR_FULL_SCALE, VIEW_DIGITS
from ..engine.storage.images import tile
from .imaging import gray_pixmap
from .widgets import ImageView, caption, styled_plot

HIST_RANGE = 4.0
HIST_BINS = 80
#: the largest whole factor the heights of the x_t box and the model's views grow for with their width
PICTURE_MAX_SCALE = 5
SCHEDULE_TITLES = {"linear": "linear", "cosine": "cosine", "rescaled_linear": "rescaled linear"}
BLUE, RED = "#1f5fbf", "#c0392b"
STALE_STYLE = "color: #b00020; font-weight: bold;"  # as the Sampler panel marks a previous model's digits


def mosaic(images: np.ndarray) -> np.ndarray:
    """(K, 28, 28) uint8 digits in a near-square mosaic of at most 8 columns."""
    return tile(images, min(8, max(1, math.ceil(math.sqrt(len(images))))))


def _plot(title: str, name: str, tip: str, **kwargs) -> pg.PlotWidget:
    plot = styled_plot(title, **{"bottom": "t", **kwargs}, menu=False, min_size=(240, 170))
    plot.setObjectName(name)
    plot.setToolTip(tip)
    return plot


def image_box(title: str, line: QLabel, view: QWidget) -> QGroupBox:
    """A group box titled ``title``: its caption ``line`` above its picture ``view``."""
    box = QGroupBox(title)
    lay = QVBoxLayout(box)
    lay.addWidget(line)
    lay.addWidget(view, 1)
    return box


class ScheduleCurves(QWidget):
    """The schedule's curves (drawn once per schedule) and x_t's histogram (drawn per frame)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.caption = caption(
            "How the schedule wipes the digit out, step by step: the noise each step adds, how much of the digit "
            "is left, and how x_t's pixels compare with pure noise. The red line is the slider's t.", "curvesCaption")
        self.beta_plot = _plot("Noise added at each step (β_t)", "betaPlot", "β_t, the variance of the noise "
                               "step t adds: q(x_t | x_{t−1}) = N(√(1−β_t) x_{t−1}, β_t I)")
        self.beta_curve = self.beta_plot.plot(pen=pg.mkPen(BLUE, width=2))
        self.alphabar_plot = _plot("How much of the digit is left", "alphabarPlot",
                                   "x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε with ᾱ_t = (1−β_1)···(1−β_t): √ᾱ_t scales the "
                                   "digit, ᾱ_t is the share of x_t's variance that is still the digit")
        self.alphabar_plot.addLegend(offset=(-10, 10), labelTextColor="#222")
        self.alphabar_curve = self.alphabar_plot.plot(pen=pg.mkPen(BLUE, width=2), name="ᾱ_t")
        self.sqrt_alphabar_curve = self.alphabar_plot.plot(
            pen=pg.mkPen("#d0782a", width=2, style=Qt.PenStyle.DashLine), name="√ᾱ_t")
        self.alphabar_plot.setYRange(0, 1.02)
        self.snr_plot = _plot("Signal-to-noise ratio (log scale)", "snrPlot",
                              "SNR_t = ᾱ_t / (1 − ᾱ_t): the digit's variance over the noise's in x_t")
        self.snr_plot.getPlotItem().setLogMode(x=False, y=True)
        self.snr_curve = self.snr_plot.plot(pen=pg.mkPen(BLUE, width=2))
        self._build_histogram()
        # the schedule's curves change only with the schedule: kept as pixmaps, so the moving
        # t marker does not make them re-stroke on every frame (the x_t histogram does change)
        for curve in (self.beta_curve, self.alphabar_curve, self.sqrt_alphabar_curve, self.snr_curve):
            curve.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.markers: list[pg.InfiniteLine] = []
        for plot in (self.beta_plot, self.alphabar_plot, self.snr_plot):
            line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(RED, width=1.5))
            plot.addItem(line)
            self.markers.append(line)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(8)
        grid.addWidget(self.caption, 0, 0, 1, 2)
        for i, plot in enumerate((self.beta_plot, self.alphabar_plot, self.snr_plot, self.hist_plot)):
            grid.addWidget(plot, 1 + i // 2, i % 2)

    def _build_histogram(self) -> None:
        self.hist_plot = _plot("Pixel values of x_t against pure noise", "histogramPlot",
                               "The histogram of x_t's pixels against the density of N(0, 1): once they match, "
                               "nothing of the digits is left", left="density", bottom="value")
        self.hist_plot.addLegend(offset=(-10, 10), labelTextColor="#222")
        self.hist_curve = self.hist_plot.plot(stepMode="center", fillLevel=0, brush=(31, 95, 191, 90),
                                              pen=pg.mkPen(BLUE, width=1.5), name="x_t")
        z = np.linspace(-HIST_RANGE, HIST_RANGE, 200)
        self.hist_plot.plot(z, np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi),
                            pen=pg.mkPen(RED, width=2, style=Qt.PenStyle.DashLine), name="N(0, 1)")
        self.hist_plot.setXRange(-HIST_RANGE, HIST_RANGE, padding=0)
        self._hist_top: float | None = None

    def show_schedule(self, s) -> None:
        """Draw a NoiseSchedule's curves over t = 0..T."""
        T = s.timesteps
        ts = np.arange(T + 1)
        self.beta_curve.setData(ts[1:], s.beta[1:].numpy())
        self.alphabar_curve.setData(ts, s.alphabar.numpy())
        self.sqrt_alphabar_curve.setData(ts, s.sqrt_alphabar.numpy())
        self.snr_curve.setData(ts[1:], np.clip(s.snr[1:].double().numpy(), 1e-12, None))
        for plot in (self.beta_plot, self.alphabar_plot, self.snr_plot):
            plot.setXRange(0, T, padding=0.02)

    def show_t(self, t: int, edges: np.ndarray, density: np.ndarray) -> None:
        """Move the markers to ``t`` and draw x_t's histogram (bin edges (B+1,), density (B,))."""
        self.hist_curve.setData(edges, density)
        self._fit_hist_range(density)
        for line in self.markers:
            line.setValue(t)

    def _fit_hist_range(self, density: np.ndarray) -> None:
        """The density axis in steps (the next of 0.5, 1, 2, 5, 10, ... above the peak), so a
        drag does not re-draw the axis on every frame as autoscaling would."""
        peak = max(float(density.max()) if density.size else 0.0, 0.4)
        top = next(v for v in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 1e4, 1e5, 1e6, float("inf"))
                   if v >= peak * 1.05)
        if top != self._hist_top and math.isfinite(top):
            self._hist_top = top
            self.hist_plot.setYRange(0, top, padding=0)


class ErrorScaleBar(QWidget):
    """The error map's colour scale (objectName ``epsErrorScale``): a grey ramp from black,
    |ε_θ − ε| = 0 (bottom), to white, ERROR_FULL_SCALE or more (top), labelled at both ends.
    ``labels``: (bottom, top) as drawn."""

    RAMP_WIDTH = 12

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("epsErrorScale")
        self.labels = ("0", f"≥ {ERROR_FULL_SCALE:g}")
        self.setToolTip(f"The error map's scale: black = |ε_θ − ε| of 0 (exact), "
                        f"white = {ERROR_FULL_SCALE:g} or more")
        text = max(self.fontMetrics().horizontalAdvance(label) for label in self.labels)
        self.setFixedWidth(self.RAMP_WIDTH + 6 + text + 4)
        self.setMinimumHeight(60)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        line = self.fontMetrics().height()
        top, bottom = line // 2 + 1, self.height() - line // 2 - 1
        ramp = QLinearGradient(0, top, 0, bottom)
        ramp.setColorAt(0.0, QColor("white"))
        ramp.setColorAt(1.0, QColor("black"))
        p.setPen(QColor("#666"))
        p.setBrush(ramp)
        p.drawRect(0, top, self.RAMP_WIDTH, bottom - top)
        p.setPen(QColor("#222"))
        x = self.RAMP_WIDTH + 6
        flags = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        p.drawText(QRect(x, bottom - line // 2, self.width() - x, line), flags, self.labels[0])
        p.drawText(QRect(x, top - line // 2, self.width() - x, line), flags, self.labels[1])
        p.end()


class ModelViewBox(QGroupBox):
    """The network's view of x_t: its predicted x_0 and the error of its predicted noise."""

    TITLE = f"The model's view at this t (first {VIEW_DIGITS} digits)"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(self.TITLE, parent)
        self._text, self.stale_note = "", ""
        grid = QGridLayout(self)
        self.caption = caption("What the trained network makes of x_t: its guess of the clean digits, and where "
                               "its guess of the noise that was added is wrong.", "modelViewCaption")
        # their heights follow their widths, the box's caption kept in sight with them when scrolled to
        follow = {"min_side": 120, "follow_width": PICTURE_MAX_SCALE, "follow_anchor": self}
        self.prediction_view = ImageView("Load or train a model\nto see what it predicts\nfrom x_t.", **follow)
        self.prediction_view.setObjectName("predictionView")
        self.prediction_view.setToolTip(
            "x̂_0 = (x_t − √(1−ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t: the network's guess of the clean digit")
        self.eps_error_view = ImageView("", **follow)
        self.eps_error_view.setObjectName("epsErrorView")
        self.eps_error_view.setToolTip(
            f"|ε_θ(x_t, t) − ε| per pixel: black = exact, white = off by {ERROR_FULL_SCALE:g} or more")
        centre = Qt.AlignmentFlag.AlignCenter
        grid.addWidget(self.caption, 0, 0, 1, 3)
        grid.addWidget(QLabel("its guess of the clean digits", alignment=centre,
                              toolTip=self.prediction_view.toolTip()), 1, 0)
        grid.addWidget(QLabel("where its noise guess is wrong", alignment=centre,
                              toolTip=self.eps_error_view.toolTip()), 1, 1)
        grid.addWidget(self.prediction_view, 2, 0)
        grid.addWidget(self.eps_error_view, 2, 1)
        self.error_scale = ErrorScaleBar()
        grid.addWidget(self.error_scale, 2, 2)
        self.model_error_label = caption("", "epsErrorLabel", "‖ε_θ(x_t, t) − ε‖², the squared error of the predicted "
                                         "noise, averaged over each digit's pixels")
        self.model_error_label.setFixedHeight(3 * self.model_error_label.fontMetrics().lineSpacing() + 4)
        grid.addWidget(self.model_error_label, 3, 0, 1, 3)
        grid.setRowStretch(2, 1)  # the views take the room the box gets; the labels keep their lines
        # an explicit minimum, which the layout honours where it may squeeze a hint: the denoise
        # box's expanding plot once took the room and the error line overlapped the views
        self.setMinimumHeight(self.minimumSizeHint().height() + 4)

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.LayoutRequest:  # a view's height followed its width: so does the minimum
            want = self.minimumSizeHint().height() + 4
            if want != self.minimumHeight():
                self.setMinimumHeight(want)
        return super().event(event)

    def show_model(self, source: str | None) -> None:
        """Title the box for the model ``source`` names (None: no model, the views cleared)."""
        self.setTitle(self.TITLE + (f": {source}" if source else ""))
        if source is None:
            self.prediction_view.set_array(None)
            self.eps_error_view.set_array(None)
            self.set_text("")
            self.set_stale("")

    def show_result(self, result: dict, current_t: int) -> None:
        """``tasks.explore.model_view``'s result, made while the slider was at ``result["t"]``."""
        self.prediction_view.set_array(mosaic(result["x0_pred"]))
        self.eps_error_view.set_array(mosaic(result["error"]))
        errors = " ".join(f"{v:.3f}" for v in result["mse"])
        stale = "" if result["t"] == current_t else " (catching up with the slider)"
        given = " (conditioned on each digit's label)" if result.get("conditioned") else ""
        self.set_text(f"t = {result['t']}{stale}{given}: how far off the noise guess is, per digit "
                      f"(mean squared error), in the order shown: {errors}")

    def set_text(self, text: str) -> None:
        """The line under the views (after the stale mark, if any)."""
        self._text = text
        self.model_error_label.setText(with_stale_mark(self.stale_note, text))

    def set_stale(self, note: str) -> None:
        """``note`` ("from …, not the current model"): the views were made by another model or
        under another schedule, said first in red until they are recomputed; "": they are current."""
        self.stale_note = note
        self.model_error_label.setText(with_stale_mark(note, self._text))


class DenoiseBox(QGroupBox):
    """"Denoise from here" and the identity-vs-t curve: two buttons, the picture, the plot."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Denoise from here (with the Sampler panel's settings)", parent)
        self._text, self.stale_note = "", ""
        self.caption = caption("Does a digit survive the noise? The model takes the noise away again from this t, "
                               "and a classifier checks whether each result is still the same digit.",
                               "denoiseCaption", "SDEdit: the reverse process from x_t down to x_0")
        self.denoise_button = QPushButton("Denoise from here", objectName="denoiseFromHereButton")
        self.denoise_button.setToolTip(
            f"Run the reverse process from this x_t of the first {VIEW_DIGITS} digits down to x_0 (SDEdit), "
            "and say which digits are still the same digit (the metric classifier)")
        self.identity_button = QPushButton("Identity kept vs t", objectName="identityCurveButton")
        self.identity_button.setToolTip("Denoise from several t and plot the share of digits that keep their label")
        self.denoise_view = ImageView("", min_side=90)
        self.denoise_view.setObjectName("denoiseView")
        self.denoise_view.setMinimumWidth(200)
        self.denoise_label = caption("", "denoiseLabel")
        self.identity_plot = styled_plot("same digit after denoising", left="share", bottom="t", menu=False)
        self.identity_plot.setObjectName("identityPlot")
        self.identity_plot.setYRange(0, 1.05)
        self.identity_plot.setMinimumHeight(110)
        self.identity_curve_item = self.identity_plot.plot(pen=pg.mkPen(BLUE, width=2), symbol="o", symbolSize=6,
                                                           symbolBrush=BLUE)
        grid = QGridLayout(self)
        grid.addWidget(self.caption, 0, 0, 1, 2)
        grid.addWidget(self.denoise_button, 1, 0)
        grid.addWidget(self.identity_button, 1, 1)
        grid.addWidget(self.denoise_view, 2, 0)
        grid.addWidget(self.identity_plot, 2, 1)
        grid.addWidget(self.denoise_label, 3, 0, 1, 2)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        self.setMaximumHeight(260 + 2 * self.caption.fontMetrics().lineSpacing())  # the caption's two lines

    def show_step(self, t: int, x: np.ndarray) -> None:
        self.denoise_view.set_array(mosaic(x))
        self.set_text(f"Denoising… t = {t}")

    def set_text(self, text: str) -> None:
        """The line under the picture (after the stale mark, if any)."""
        self._text = text
        self.denoise_label.setText(with_stale_mark(self.stale_note, text))

    def set_stale(self, note: str) -> None:
        """``note`` ("from …, not the current model"): the picture and the curve were made by another
        model, said first in red until they are remade; "": they are the current model's."""
        self.stale_note = note
        self.denoise_label.setText(with_stale_mark(note, self._text))

    def show_denoised(self, r) -> None:
        """A ``tasks.explore.Denoised``: the originals on top, the results below them."""
        k = len(r.result)
        self.denoise_view.set_array(tile(np.concatenate([r.x0, r.result]), k))
        text = f"From t = {r.t}: top row the originals, bottom row what the reverse process made."
        if r.predicted is not None and len(r.labels) == k:
            marks = " ".join(f"{a}→{b}{'✓' if ok else '✗'}" for a, b, ok in zip(r.labels, r.predicted, r.kept))
            text += f" Still the same digit: {int(r.kept.sum())} of {k} ({marks})."
        self.set_text(text)

    def show_curve(self, curve: list[tuple[int, float]]) -> None:
        """[(t, share of digits that keep their label)]."""
        if not curve:
            return
        ts, shares = zip(*curve)
        self.identity_curve_item.setData(list(ts), list(shares))
        self.identity_plot.setXRange(0, max(ts), padding=0.05)
        lost = next((t for t, s in curve if s < 0.5), None)
        self.set_text(
            "Share of digits that keep their label after denoising from t: "
            + ", ".join(f"t={t}: {s:.0%}" for t, s in curve)
            + (f". Half of them have become another digit by t = {lost}." if lost else "."))


class Origin:
    """Which model made what a view shows, so that the view can say when that is no longer the
    current model: ``ask`` when a request starts, ``arrived`` when its result is shown."""

    def __init__(self) -> None:
        self._asked = self.shown = None  # (weak reference to the model, its label)

    def ask(self, loaded, source: str) -> None:
        self._asked = (weakref.ref(loaded), source or "a model")

    def arrived(self) -> None:
        self.shown = self._asked

    def clear(self) -> None:
        self.shown = None

    def note(self, current, current_source: str, shown_schedule=None) -> str:
        """"" while the current model made what is shown under the schedule shown (``shown_schedule``,
        a ScheduleConfig, None: not asked), else what to say first, in red."""
        if self.shown is None:
            return ""
        made = self.shown[0]()  # None once that model is gone
        if made is None or made is not current:
            return f"From {self.shown[1]}, not the current model ({current_source or 'none'})"
        model = made.schedule_config
        if shown_schedule is None or model == shown_schedule:
            return ""
        return (f"Computed under the model's schedule ({model.kind}, T = {model.timesteps}), "
                f"not the {shown_schedule.kind}, T = {shown_schedule.timesteps} shown above")


def with_stale_mark(note: str, text: str) -> str:
    """``text``, after ``note`` in bold red when there is one (as rich text)."""
    if not note:
        return text
    return f'<span style="{STALE_STYLE}">{html.escape(note, quote=False)}.</span> {html.escape(text, quote=False)}'


class ForwardStrip(QGroupBox):
    """The forward process at fixed t (objectName ``forwardStripBox``): the first digits at t = 0
    and a few t (``label``, objectName ``noiseStrip``), under a line (``caption``, objectName
    ``noiseStripCaption``) saying how much of the digit the last column keeps."""

    TIP = ("Each column is x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε at one t, with the same noise ε in every column "
           "(the layout of Figure 3 of the project report)")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Noise builds up: the same digits at a few t", parent)
        self.setObjectName("forwardStripBox")
        self.setToolTip(self.TIP)
        self.caption = caption("", "noiseStripCaption", self.TIP)
        self.label = QLabel(objectName="noiseStrip", alignment=Qt.AlignmentFlag.AlignCenter)
        lay = QVBoxLayout(self)
        lay.addWidget(self.caption)
        lay.addWidget(self.label)

    def draw(self, schedule, x0: torch.Tensor, noise: torch.Tensor, ts: list[int]) -> None:
        """The digits x0 (k, 1, 28, 28) with ``noise`` at each t in ``ts`` (t = 0: x_0), and the caption."""
        self.label.setPixmap(forward_strip(schedule, x0, noise, ts))
        kept = float(schedule.sqrt_alphabar[ts[-1]])
        left = "almost nothing" if kept < 0.05 else f"only {kept:.0%}" if kept < 0.5 else f"{kept:.0%}"
        self.caption.setText(f"The same digits with more and more noise added, left to right: by t = {ts[-1]}, "
                             f"{left} of the digit is left.")


def forward_strip(schedule, x0: torch.Tensor, noise: torch.Tensor, ts: list[int]) -> QPixmap:
    """The report's Figure 3: the digits x0 (k, 1, 28, 28) at each t in ``ts`` (t = 0: x_0),
    noised with ``noise``, a labelled column per t; "no digits selected" when k = 0."""
    k = len(x0)
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
        p.drawText(QRect(x - pad, 0, cell + 2 * pad, head), Qt.AlignmentFlag.AlignCenter, "x₀" if t == 0 else f"t = {t}")
        if k:
            xt = to_uint8(schedule.q_sample(x0, torch.full((k,), t, dtype=torch.long), noise)).numpy()
            for i in range(k):
                p.drawPixmap(x, head + pad + i * (cell + pad), gray_pixmap(xt[i], scale))
    if not k:
        p.drawText(QRect(0, head, w, h - head), Qt.AlignmentFlag.AlignCenter, "no digits selected")
    p.end()
    return pix


def _num(x: float) -> str:
    """0.219 for ordinary values, 4.9e-05 for tiny ones (never a misleading 0.000)."""
    return f"{x:.3f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2g}"


def show_readout(label: QLabel, schedule, x0: torch.Tensor) -> None:
    """What the schedule keeps of the image at T, in words; the closed form and how far x_T is
    from N(0, I) (KL, in nats) in the tooltip."""
    summ = schedule.summary()
    title = SCHEDULE_TITLES.get(schedule.config.kind, schedule.config.kind)
    verdict = ("the noise has all but wiped out the digit: x<sub>T</sub> is as good as the pure noise sampling "
               "starts from"
               if summ["signal_at_T"] < 0.05 else
               "a visible trace of the digit remains in x<sub>T</sub>, which sampling (starting from pure noise) "
               "never sees")
    label.setText(f"<b>{title}</b> schedule, T = {schedule.timesteps} steps: the last step, x<sub>T</sub>, keeps "
                  f"<b>{_num(summ['signal_at_T'])}</b> × the digit under its noise. So {verdict}.")
    kl_sel = f"; {schedule.prior_kl(x0):.3g} nats/pixel averaged over the selected digits" if len(x0) else ""
    label.setToolTip(f"x_T = √ᾱ_T·x_0 + √(1−ᾱ_T)·ε with √ᾱ_T = {_num(summ['signal_at_T'])}, ᾱ_T = "
                     f"{summ['alphabar_T']:.3g}. How far x_T is from pure noise: KL(q(x_T|x_0) ‖ N(0, I)) = "
                     f"{summ['prior_kl_background']:.3g} nats for a background pixel{kl_sel} (0: no difference).")


def show_t_readout(label: QLabel, schedule, t: int) -> None:
    """x_t as so much digit plus so much noise, with the schedule's β_t, ᾱ_t and SNR_t in the tooltip."""
    a, b = float(schedule.sqrt_alphabar[t]), float(schedule.sqrt_one_minus_alphabar[t])
    snr = "∞" if t == 0 else f"{float(schedule.snr[t]):.3g}"
    label.setText(f"x<sub>{t}</sub> = <b>{a:.3f}</b> × the digit + <b>{b:.3f}</b> × noise &nbsp;&nbsp; "
                  f"signal-to-noise ratio {snr}")
    label.setToolTip(f"x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε; β_t = {float(schedule.beta[t]):.4g}, ᾱ_t = "
                     f"{float(schedule.alphabar[t]):.4g}, SNR_t = ᾱ_t / (1 − ᾱ_t) = {snr}")


def build_top_bar(panel) -> QHBoxLayout:
    """The noise panel's top row, made as its attributes: the schedule, T, the t slider, Play and New noise."""
    panel.schedule_combo = QComboBox(objectName="scheduleCombo")
    for kind in SCHEDULE_KINDS:
        panel.schedule_combo.addItem(SCHEDULE_TITLES.get(kind, kind), kind)
    panel.steps_spin = QSpinBox(objectName="timestepsSpin", minimum=10, maximum=4000, singleStep=50)
    panel.steps_spin.setKeyboardTracking(False)
    panel.steps_spin.setToolTip("T, the number of diffusion steps")
    panel.slider = QSlider(Qt.Orientation.Horizontal, objectName="timestepSlider")
    panel.slider.setToolTip("Drag to move along the forward process (t = 0 is the clean digit)")
    panel.slider.setMinimumWidth(300)
    panel.t_label = QLabel(objectName="timestepLabel")
    panel.t_label.setMinimumWidth(80)
    font = QFont(panel.t_label.font())
    font.setPointSizeF(font.pointSizeF() * 1.3)
    font.setBold(True)
    panel.t_label.setFont(font)
    panel.play_button = QPushButton("▶ Play", objectName="playNoiseButton", checkable=True)
    panel.play_button.setToolTip("Sweep t from 0 to T and back (or drag the slider; arrow keys step by 1)")
    panel.new_noise_button = QPushButton("New noise", objectName="newNoiseButton")
    panel.new_noise_button.setToolTip("Draw a fresh noise image for every digit")
    top = QHBoxLayout()
    for w, space in ((QLabel("Schedule"), 0), (panel.schedule_combo, 8), (QLabel("T"), 0), (panel.steps_spin, 16),
                     (panel.t_label, 0)):
        top.addWidget(w)
        top.addSpacing(space)
    top.addWidget(panel.slider, 1)
    top.addWidget(panel.play_button)
    top.addWidget(panel.new_noise_button)
    return top


def build_views(panel) -> QHBoxLayout:
    """The noise panel's views, made as its attributes: on the left x_t (``image_label``), the
    model's view (``model_box``) and "denoise from here" (``denoise_box``); on the right the
    schedule's curves (``curves``) above the strip at fixed t (``strip``, its picture ``strip_label``)."""
    panel.curves, panel.model_box, panel.denoise_box = ScheduleCurves(), ModelViewBox(), DenoiseBox()
    # its height follows its width, so the mosaic grows with the window (the panel scrolls); up to
    # 5x (140 px digits): beyond, the model's view below went out of sight
    panel.image_label = ImageView("Select digits in the Dataset panel.", follow_width=PICTURE_MAX_SCALE)
    panel.image_label.setObjectName("noisyImages")
    xt_box = image_box("x_t: the selected digits at the slider's t", caption(
        "The digits picked in the Dataset panel with noise added up to t: t = 0 is the clean digit, t = T is "
        "pure noise. Drag t and watch the digit fade.", "noisyImagesCaption",
        "x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε, with one fixed noise ε per digit (New noise draws another)"), panel.image_label)
    panel.strip = ForwardStrip()
    panel.strip_label = panel.strip.label
    left = QVBoxLayout()
    left.addWidget(xt_box, 3)
    left.addWidget(panel.model_box, 4)
    left.addWidget(panel.denoise_box, 3)
    right = QVBoxLayout()
    right.addWidget(panel.curves)
    right.addWidget(panel.strip)
    right.addStretch(1)
    body = QHBoxLayout()
    body.addLayout(left, 1)
    body.addLayout(right, 1)
    return body


def build_readouts(panel) -> QVBoxLayout:
    """The noise panel's lines under the top row, made as its attributes: whose schedule, what it
    keeps at T, x_t at this t, and the frame time."""
    panel.schedule_source_label = QLabel(objectName="scheduleSourceLabel")
    panel.schedule_source_label.setStyleSheet("color: palette(mid); font-size: 11px;")
    panel.schedule_source_label.setToolTip(
        "The noise panel follows the training form (the schedule the next run trains) and, when a model "
        "is loaded, that model's schedule; choosing one here only changes what this panel shows")
    panel.readout = QLabel(objectName="signalReadout", wordWrap=True, textFormat=Qt.TextFormat.RichText)
    panel.readout.setStyleSheet(
        "QLabel { background: #eef3fb; border: 1px solid #c9d6ea; border-radius: 4px; padding: 6px; }")
    panel.t_readout = QLabel(objectName="timestepReadout", textFormat=Qt.TextFormat.RichText)
    # labels rewritten on every frame must not ask the window for a new layout each time
    panel.t_readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    panel.frame_label = QLabel(objectName="frameTimeLabel")
    panel.frame_label.setStyleSheet("color: #666;")
    panel.frame_label.setMinimumWidth(
        panel.frame_label.fontMetrics().horizontalAdvance("64 digits · frame drawn in 000.0 ms") + 8)
    panel.frame_label.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
    row = QHBoxLayout()
    row.addWidget(panel.t_readout, 1)
    row.addWidget(panel.frame_label)
    column = QVBoxLayout()
    column.addWidget(panel.schedule_source_label)
    column.addWidget(panel.readout)
    column.addLayout(row)
    return column
