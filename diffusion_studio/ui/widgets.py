"""The widgets every panel shares: one image view, one styled plot, one wrapping label and
one streaming loss smoother, so the panels draw digits, curves and losses the same way."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPoint, QSize, Qt, Signal
from PySide6.QtWidgets import QGraphicsItem, QLabel, QScrollArea, QSizePolicy, QToolButton, QWidget

from .imaging import gray_pixmap

#: an image view's smallest box; it grows with the window
MIN_IMAGE_SIDE = 160
#: the largest whole-pixel factor a zoomable ImageView offers (a 28 px digit 1,120 px wide)
MAX_ZOOM = 40
#: the room a height-following ImageView leaves under itself in the scroll area's view (its box's frame)
FOLLOW_MARGIN = 16


def caption(text: str, name: str, tip: str = "") -> QLabel:
    """A view's "what am I looking at" line: plain words on screen, the formula in ``tip``."""
    label = QLabel(text, objectName=name, wordWrap=True)
    label.setStyleSheet("color: #444; font-size: 11px;")
    label.setToolTip(tip)
    return label


class ImageView(QLabel):
    """Shows a uint8 image (a digit, a mosaic of digits, a strip) as large as its box allows, in
    whole-pixel multiples of its size: a 28 px digit is drawn 2x, 3x, ... as the box grows, every
    image pixel a square of ``scale`` screen pixels (sharp, never blurred or unevenly stretched).
    Only an image larger than its box is shrunk to fit (nearest neighbour; ``scale`` is then 0).
    The box expands into the room its layout has, from a size hint that does not depend on the
    picture, so a new picture never re-lays out the panel.

    set_array(array): (H, W) uint8 (0 = black), or None for the placeholder text.
    ``array`` is the image shown (None when none is); ``scale`` the whole-pixel factor drawn.

    Opt-in zoom (``zoomable=True``): Ctrl+wheel, or ``set_zoom(k)``, draws the image at exactly
    ``k`` screen pixels per image pixel (1..MAX_ZOOM) and makes the view at least that large, so a
    QScrollArea around it pans; ``set_zoom(0)`` fits the box again. ``zoom_changed(k)`` follows.

    Opt-in height that follows the width (``follow_width=k``, k > 0), for a view in a panel that
    scrolls: its minimum height is what the picture needs at the whole factor its width allows,
    up to ``k``, and no more than the scroll area shows below the view's top within
    ``follow_anchor`` (default: the panel; less FOLLOW_MARGIN), so the whole picture and what is
    above it in the anchor (the panel's slider, a box's caption) are in sight together. A panel
    taller than the window gives its views only their minimum height: a wider window grew nothing.
    """

    zoom_changed = Signal(int)  # the zoom a person chose (0 = fit the box)

    def __init__(self, placeholder: str = "", parent: QWidget | None = None, min_side: int = MIN_IMAGE_SIDE,
                 square: bool = False, zoomable: bool = False, follow_width: int = 0,
                 follow_anchor: QWidget | None = None) -> None:
        super().__init__(parent)
        self.follow_width = int(follow_width)  # the largest factor the height grows for; 0: it does not
        self.follow_anchor = follow_anchor
        self._watched: QWidget | None = None  # the scroll area's viewport, whose resizes re-fit the height
        self._square = square  # a box as tall as it is wide (one digit), whatever width it gets
        self._min_side = min_side
        self.zoomable = zoomable
        self.zoom = 0  # 0: the largest whole factor that fits the box
        self.array: np.ndarray | None = None
        self.scale = 0
        self._placeholder = placeholder
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(min_side, min_side)
        # Expanding, not Ignored: a layout that sizes by height-for-width (one holding a wrapping
        # label) gives an Ignored item only its minimum, which left a 24-digit mosaic 150 px wide
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        policy.setHeightForWidth(square)
        self.setSizePolicy(policy)
        self.setStyleSheet("background: #202124; border-radius: 4px; color: #bbb;")
        self.setText(placeholder)

    def set_array(self, array: np.ndarray | None) -> None:
        shape = None if self.array is None else self.array.shape
        self.array = None if array is None else np.ascontiguousarray(array, dtype=np.uint8)
        if self.follow_width and self.array is not None and self.array.shape != shape:
            self._follow_width()  # (only for a new shape: set_array runs on every frame of a drag)
        self._fit_zoom()
        self._rescale()

    def set_zoom(self, zoom: int) -> None:
        """Draw at ``zoom`` screen pixels per image pixel (clamped to 1..MAX_ZOOM), or fit the box with 0."""
        zoom = 0 if zoom <= 0 else min(int(zoom), MAX_ZOOM)
        if zoom == self.zoom:
            return
        self.zoom = zoom
        self._fit_zoom()
        self._rescale()
        self.zoom_changed.emit(zoom)

    def wheelEvent(self, event) -> None:  # noqa: N802 (Qt name)
        """Ctrl+wheel zooms a zoomable view one whole factor a notch; any other wheel turn scrolls
        whatever holds the view."""
        if not (self.zoomable and event.modifiers() & Qt.KeyboardModifier.ControlModifier):
            super().wheelEvent(event)
            return
        notches = event.angleDelta().y() // 120
        if notches:
            self.set_zoom(max(1, (self.zoom or self.scale or 1) + notches))
        event.accept()

    def _fit_zoom(self) -> None:
        """A zoomed view is as large as its picture (plus the margin), so a scroll area pans it."""
        if not self.zoomable:
            return
        side = self._min_side
        if self.zoom and self.array is not None:
            rows, cols = self.array.shape[:2]
            want = QSize(max(side, cols * self.zoom + 8), max(side, rows * self.zoom + 8))
        else:
            want = QSize(side, side)
        if self.minimumSize() != want:
            self.setMinimumSize(want)

    def setFixedHeight(self, height: int) -> None:  # noqa: N802 (Qt name)
        """A fixed height that layouts keep: a layout that sizes by height-for-width (one holding a
        wrapping label) gives an item whose vertical policy is Ignored no height at all."""
        super().setFixedHeight(height)
        self.setSizePolicy(self.sizePolicy().horizontalPolicy(), QSizePolicy.Policy.Fixed)

    def setFixedSize(self, width: int, height: int) -> None:  # noqa: N802 (Qt name)
        """A fixed size that layouts keep (see ``setFixedHeight``)."""
        super().setFixedSize(width, height)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(320, 320)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt name)
        return self._square

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (Qt name)
        return width if self._square else super().heightForWidth(width)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        if self.follow_width:
            self._follow_width()
        self._rescale()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        if self.follow_width:
            area = self._scroll_area()
            port = None if area is None else area.viewport()
            if port is not self._watched:  # a taller window alone resizes the viewport, not this view
                if self._watched is not None:
                    self._watched.removeEventFilter(self)
                self._watched = port
                if port is not None:
                    port.installEventFilter(self)
            self._follow_width()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt name)
        if watched is self._watched and event.type() == QEvent.Type.Resize:
            self._follow_width()
        return False

    def _scroll_area(self) -> QScrollArea | None:
        parent = self.parentWidget()
        while parent is not None and not isinstance(parent, QScrollArea):
            parent = parent.parentWidget()
        return parent

    def _follow_width(self) -> None:
        """``follow_width``: the minimum height at which the picture draws at the whole factor
        the width allows, within the scroll area's view below this view's top (see the class)."""
        area = self._scroll_area()
        if self.array is None or area is None or area.widget() is None:
            return  # outside a scroll area the window would grow itself: the height stays as laid out
        rows, cols = self.array.shape[:2]
        anchor = self.follow_anchor if self.follow_anchor is not None else area.widget()
        top = self.mapTo(anchor, QPoint(0, 0)).y()
        room = area.viewport().height() - top - FOLLOW_MARGIN
        scale = min(self.follow_width, (self.width() - 8) // max(1, cols), (room - 8) // max(1, rows))
        want = max(self._min_side, scale * rows + 8)
        if want != self.minimumHeight():
            self.setMinimumHeight(want)

    def _rescale(self) -> None:
        if self.array is None:
            self.scale = 0
            self.setText(self._placeholder)  # (replaces the picture)
            return
        # fit the box itself, whatever its shape: a square side would crop a mosaic in a short
        # box and shrink a wide strip
        width, height = max(16, self.width() - 8), max(16, self.height() - 8)
        self.scale = self.zoom or whole_pixel_scale(self.array.shape, (height, width))
        if self.scale:
            pix = gray_pixmap(self.array, self.scale)
        else:  # larger than its box: fitted (nearest neighbour, so pixels stay sharp)
            pix = gray_pixmap(self.array).scaled(
                width, height, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
        self.setPixmap(pix)


def whole_pixel_scale(image: tuple[int, int], box: tuple[int, int]) -> int:
    """The largest whole factor at which an image of ``image`` = (rows, cols) fits in ``box`` =
    (height, width); 0 when even 1x does not fit."""
    return max(0, min(box[0] // max(1, image[0]), box[1] // max(1, image[1])))


class WrappingLabel(QLabel):
    """A word-wrapped label that keeps the height its text needs at its width. In a QFormLayout
    row a wrapped label got the height of a shorter text, and its first and last lines were
    drawn under the rows around it."""

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


class PlotView(pg.PlotWidget):
    """A plot whose view a person can pan and zoom (``interactive``) shows a "Reset view" button
    in its top-right corner once it has been moved, and only then; a click puts the automatic
    range back and hides it (pyqtgraph's own corner "A" is a few pixels and easily missed)."""

    reset_button: QToolButton | None = None  # (a class default: pyqtgraph resizes during __init__)

    def __init__(self, interactive: bool) -> None:
        super().__init__(background="w")
        vb = self.getPlotItem().getViewBox()
        vb.setMouseEnabled(interactive, interactive)
        self.getPlotItem().hideButtons()
        if interactive:
            self.reset_button = QToolButton(self, objectName="resetViewButton", text="Reset view")
            self.reset_button.setToolTip("Show the whole curve again (the view follows new points)")
            self.reset_button.setCursor(Qt.CursorShape.PointingHandCursor)
            self.reset_button.clicked.connect(self.reset_view)
            self.reset_button.hide()
            vb.sigRangeChangedManually.connect(self._on_moved)

    @property
    def interactive(self) -> bool:
        return self.reset_button is not None

    def reset_view(self) -> None:
        self.getPlotItem().getViewBox().enableAutoRange()
        if self.reset_button is not None:
            self.reset_button.hide()

    def _on_moved(self, *_args) -> None:
        self.reset_button.show()
        self._place_button()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        if self.reset_button is not None:
            self._place_button()

    def _place_button(self) -> None:
        self.reset_button.adjustSize()
        self.reset_button.move(self.width() - self.reset_button.width() - 6, 4)
        self.reset_button.raise_()


def styled_plot(title: str = "", left: str = "", bottom: str = "", *, grid: float | None = 0.25,
                menu: bool = True, min_size: tuple[int, int] | None = None,
                interactive: bool = False) -> PlotView:
    """A pyqtgraph plot with dark-on-light axes and a readable title.

    grid: the grid's alpha, None for none (on a software-rendered view a grid doubles the cost
    of every redraw of a streaming plot). menu: pyqtgraph's right-click menu. interactive: the
    mouse pans and zooms the view, with a visible "Reset view" (``PlotView``); by default a plot
    is locked, so a stray drag or wheel turn over a teaching plot never moves it (the wheel
    scrolls the panel instead). The axes are cached as pixmaps: a moving marker or a new point
    no longer repaints them every frame (they are redrawn when their range or size changes).
    """
    w = PlotView(interactive)
    item = w.getPlotItem()
    if title:
        item.setTitle(title, color="#222", size="10pt")
    for name in ("left", "bottom"):
        ax = item.getAxis(name)
        ax.setPen(pg.mkPen("#444"))
        ax.setTextPen(pg.mkPen("#222"))
        ax.enableAutoSIPrefix(False)
        ax.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
    if left:
        item.setLabel("left", left, color="#222")
    if bottom:
        item.setLabel("bottom", bottom, color="#222")
    if grid is not None:
        item.showGrid(x=True, y=True, alpha=grid)
    # a locked view has no view-box menu either (its "mouse enabled" entries would unlock it)
    item.setMenuEnabled(menu, enableViewBoxMenu=menu and interactive)
    if min_size is not None:
        w.setMinimumSize(*min_size)
    return w


class Series:
    """A growable float array (amortised appends, a view for plotting)."""

    def __init__(self) -> None:
        self._a = np.zeros(1024)
        self.n = 0

    def extend(self, values) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        need = self.n + len(values)
        if need > len(self._a):
            grown = np.zeros(max(need, 2 * len(self._a)))
            grown[: self.n] = self._a[: self.n]
            self._a = grown
        self._a[self.n : need] = values
        self.n = need

    def clear(self) -> None:
        self.n = 0

    @property
    def values(self) -> np.ndarray:
        return self._a[: self.n]


class StreamingSmoother:
    """``engine.runs.smooth`` (the debiased EMA the Runs panel and ``runs plot`` draw) over a
    series that arrives in chunks, exactly as if it had been smoothed whole: each chunk is
    smoothed by the engine and joined to the state the earlier chunks left.

    For the EMA's running sum A and weight N (A / N is the smoothed value) after the earlier
    values, and S_k / T_k the engine's result for the chunk's first k finite values (T_k =
    1 - w^k), the whole series' value is (w^k A + S_k) / (w^k N + T_k).
    ``values`` and ``smoothed`` hold everything so far (``Series``)."""

    def __init__(self, weight: float) -> None:
        self.weight = float(weight)
        self.values = Series()
        self.smoothed = Series()
        self._acc = self._norm = 0.0

    def extend(self, chunk) -> None:
        from ..engine.runs import smooth

        chunk = np.asarray(chunk, dtype=np.float64).ravel()
        w = self.weight
        fresh = smooth(chunk, w)  # the chunk alone, from an empty state
        count = np.cumsum(np.isfinite(chunk))  # finite values so far in the chunk
        decay = w ** count
        t = 1.0 - decay
        s = fresh * t
        out = (decay * self._acc + s) / np.where(decay * self._norm + t > 0, decay * self._norm + t, 1.0)
        out[~np.isfinite(chunk)] = np.nan
        if count.size and count[-1]:
            last = np.flatnonzero(np.isfinite(chunk))[-1]
            self._acc, self._norm = decay[-1] * self._acc + s[last], decay[-1] * self._norm + t[-1]
        self.values.extend(chunk)
        self.smoothed.extend(out)

    def clear(self) -> None:
        self.values.clear()
        self.smoothed.clear()
        self._acc = self._norm = 0.0
