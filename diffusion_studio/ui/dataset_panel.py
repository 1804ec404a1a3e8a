"""The dataset browser: splits, label filter, per-label counts and a thumbnail grid.

The grid is a ``QListView`` in icon mode over ``DigitListModel``, a
``QAbstractListModel`` that builds each thumbnail only when the view asks for
it and keeps the most recent ones in an LRU cache, so 50,000 digits scroll
smoothly. "Send to noise panel" sends the selected digits (at most ``MAX_SELECTION``) to
``AppState.set_selection`` for the forward-noise panel; browsing and selecting alone never
replace what that panel shows (the selection label says which digits it shows). The thumbnails
and the enlarged digit zoom in whole-pixel steps (Ctrl+wheel, the zoom fields, Ctrl++ / Ctrl+-).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QEvent,
    QObject,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QKeySequence, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QVBoxLayout,
    QWidget,
)

from ..engine.storage import paths
from .imaging import gray_pixmap
from .settings import DATASET_THUMB_ZOOM, app_settings, stored_int
from .state import AppState
from .widgets import MAX_ZOOM, ImageView, WrappingLabel

SPLIT_TITLES = {"train": "Train", "val": "Validation", "test": "Test"}
MAX_SELECTION = 64  # the noise panel redraws every selected digit on each slider move
DEFAULT_SELECTION = 16
THUMB_SCALE = 2  # 28 px -> 56 px thumbnails, the default zoom
MAX_THUMB_SCALE = 6  # 168 px: a few digits a row in a small window
ENLARGED_MIN_SIDE = 28 * 8 + 8  # the enlarged digit is drawn at least 8x
#: what the panel shows, for a learner who has not met MNIST
INTRO = ("<b>MNIST</b>: 70,000 handwritten digits, each 28 × 28 gray pixels (0 = black, 255 = white), "
         "with its label 0–9. These are the pictures the diffusion model learns to make.")
SEND_TEXT = "Send to noise panel"

IndexRole = Qt.ItemDataRole.UserRole + 1  # the digit's index within its split
LabelRole = Qt.ItemDataRole.UserRole + 2  # its label 0..9


class DigitListModel(QAbstractListModel):
    """A flat list of digits: one row per image.

    images: (N, 28, 28) uint8 (0 = black); labels: (N,) ints 0..9; indices: (N,)
    each row's index within its split (rows may be a filtered subset). Rows give
    a thumbnail (DecorationRole, a QPixmap built on demand, LRU-cached), a
    tooltip, the split index (IndexRole) and the label (LabelRole).
    """

    def __init__(self, parent=None, cache_size: int = 4096, scale: int = THUMB_SCALE) -> None:
        super().__init__(parent)
        self._images = np.zeros((0, 28, 28), dtype=np.uint8)
        self._labels = np.zeros((0,), dtype=np.int64)
        self._indices = np.zeros((0,), dtype=np.int64)
        self._split = ""
        self._n = 0  # row count (asked ~4 times per row during a layout: keep it cheap)
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()
        self.cache_size = int(cache_size)
        self.scale = int(scale)
        self.thumbnails_built = 0  # how many pixmaps were ever made (tests check laziness)

    # ----------------------------------------------------------------- data
    def set_digits(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, split: str = "") -> None:
        images = np.asarray(images, dtype=np.uint8).reshape(-1, 28, 28)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if not len(images) == len(labels) == len(indices):
            raise ValueError(
                f"images, labels and indices must have the same length, got {len(images)}, {len(labels)}, {len(indices)}"
            )
        self.beginResetModel()
        self._images, self._labels, self._indices, self._split = images, labels, indices, split
        self._n = len(images)
        self._cache.clear()
        self.endResetModel()

    def digit(self, row: int) -> tuple[np.ndarray, int, int]:
        """(image (28, 28) uint8, label, index within the split) of one row."""
        return self._images[row], int(self._labels[row]), int(self._indices[row])

    def rows_data(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """Images (K, 28, 28) uint8 and labels (K,) of the given rows."""
        rows = np.asarray(list(rows), dtype=np.int64)
        return self._images[rows], self._labels[rows]

    def thumbnail(self, row: int) -> QPixmap:
        pix = self._cache.get(row)
        if pix is not None:
            self._cache.move_to_end(row)
            return pix
        pix = gray_pixmap(self._images[row], self.scale)
        self.thumbnails_built += 1
        self._cache[row] = pix
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return pix

    @property
    def cached(self) -> int:
        return len(self._cache)

    def set_scale(self, scale: int) -> None:
        """Thumbnails ``scale`` screen pixels per image pixel, rebuilt as they are shown (the rows,
        and so the view's selection, stay)."""
        self.scale = int(scale)
        self._cache.clear()
        if self._n:
            self.dataChanged.emit(self.index(0), self.index(self._n - 1),
                                  [Qt.ItemDataRole.DecorationRole, Qt.ItemDataRole.SizeHintRole])

    # ------------------------------------------------------------ Qt model API
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self._n

    def data(self, index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.parent().isValid():
            return None
        row = index.row()
        if not 0 <= row < len(self._images):
            return None
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnail(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            split = f"{SPLIT_TITLES.get(self._split, self._split)} " if self._split else ""
            return f"{split}#{int(self._indices[row])}: label {int(self._labels[row])}"
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"digit {int(self._labels[row])}"
        if role == Qt.ItemDataRole.SizeHintRole:
            side = 28 * self.scale + 6
            return QSize(side, side)
        if role == IndexRole:
            return int(self._indices[row])
        if role == LabelRole:
            return int(self._labels[row])
        return None

    _FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def flags(self, index):
        return self._FLAGS if index.isValid() else Qt.ItemFlag.NoItemFlags


class ThumbnailDelegate(QStyledItemDelegate):
    """Paints a thumbnail and a selection frame: one model call per visible item
    (the stock delegate asks for about ten roles per item on every paint)."""

    def __init__(self, parent=None, scale: int = THUMB_SCALE) -> None:
        super().__init__(parent)
        self.set_scale(scale)
        self._select_pen = QPen(QColor("#4aa3ff"), 3)
        self._select_fill = QColor(74, 163, 255, 70)
        self._focus_pen = QPen(QColor("#ffb300"), 2, Qt.PenStyle.DashLine)

    def paint(self, painter: QPainter, option, index) -> None:
        pix = index.data(Qt.ItemDataRole.DecorationRole)
        r = option.rect
        x = r.x() + (r.width() - self._side) // 2
        y = r.y() + (r.height() - self._side) // 2
        if pix is not None:
            painter.drawPixmap(x, y, pix)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(x, y, self._side, self._side, self._select_fill)
            painter.setPen(self._select_pen)
            painter.drawRect(x - 1, y - 1, self._side + 1, self._side + 1)
        if option.state & QStyle.StateFlag.State_HasFocus:  # the digit shown enlarged
            painter.setPen(self._focus_pen)
            painter.drawRect(x - 2, y - 2, self._side + 3, self._side + 3)

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 (Qt name)
        return self._size

    def set_scale(self, scale: int) -> None:
        self._side = 28 * scale
        self._size = QSize(self._side + 6, self._side + 6)


class _CtrlWheelZoom(QObject):
    """Turns Ctrl+wheel over the thumbnail grid into one zoom step a notch (the plain wheel scrolls)."""

    def __init__(self, step, parent: QObject) -> None:
        super().__init__(parent)
        self._step = step

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.Wheel and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            notches = event.angleDelta().y() // 120
            if notches:
                self._step(notches)
            return True
        return False


class _SquareScrollArea(QScrollArea):
    """A scroll area as tall as it is wide: the enlarged digit's box, panned when zoomed past it."""

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt name)
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (Qt name)
        return width


class DatasetPanel(QWidget):
    """Browse MNIST; "Send to noise panel" gives the selection to the forward-noise panel.

    Shows a page with "Choose folder…" / "Download MNIST" when no data is
    loaded (``state.data is None``), a "loading" page while a load runs, and the
    browser otherwise.
    """

    selection_sent = Signal(int)  # how many digits went to AppState (for tests and the status bar)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("datasetPanel")
        self.state = state
        self.model = DigitListModel(self)
        self._split = "train"
        self._label_filter: int | None = None
        self._sent: tuple[str, tuple[int, ...]] | None = None  # (split, indices) the noise panel shows
        zoom = stored_int(app_settings(), DATASET_THUMB_ZOOM)
        self.model.set_scale(THUMB_SCALE if zoom is None else min(max(1, zoom), MAX_THUMB_SCALE))

        self.stack = QStackedWidget(self)
        self.stack.addWidget(_build_missing_page(self))
        self.stack.addWidget(self._build_browser_page())
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.stack)

        # Ctrl++ / Ctrl+- / Ctrl+0 while the panel has the focus; the window's View menu lists them
        zoom_in = [QKeySequence(QKeySequence.StandardKey.ZoomIn), QKeySequence("Ctrl+=")]  # "+" needs Shift
        self.zoom_actions: list[QAction] = []
        for name, text, keys, slot in (
                ("zoomInAction", "Zoom thumbnails &in", zoom_in, lambda: self.zoom_thumbnails(1)),
                ("zoomOutAction", "Zoom thumbnails &out", [QKeySequence(QKeySequence.StandardKey.ZoomOut)],
                 lambda: self.zoom_thumbnails(-1)),
                ("zoomResetAction", "Default &zoom", [QKeySequence("Ctrl+0")], self.reset_zoom)):
            act = QAction(text, self, objectName=name)
            act.setShortcuts(keys)
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            act.triggered.connect(lambda _=False, f=slot: (self.state.show_panel("datasetPanel"), f()))
            self.addAction(act)
            self.zoom_actions.append(act)

        state.data_changed.connect(self._on_data_changed)
        state.data_loading.connect(self._on_loading)
        self._on_data_changed()

    # ---------------------------------------------------------------- building
    def _build_browser_page(self) -> QWidget:
        page = QWidget()
        self.intro_label = WrappingLabel(objectName="datasetIntro")
        self.intro_label.setText(INTRO)
        self.intro_label.setStyleSheet("color: #444;")
        lay = QHBoxLayout()
        lay.addWidget(_fixed_width(self._build_filters(), 250))
        grid = QVBoxLayout()
        grid.addLayout(self._build_thumbnail_zoom())
        grid.addWidget(self._build_thumbnail_view(), 1)
        lay.addLayout(grid, 3)
        enlarged = QWidget()  # a quarter of a wide window: the digit grows with it
        enlarged.setLayout(self._build_enlarged())
        enlarged.setMinimumWidth(250)
        lay.addWidget(enlarged, 1)
        outer = QVBoxLayout(page)
        outer.addWidget(self.intro_label)
        outer.addLayout(lay, 1)
        return page

    def _build_thumbnail_zoom(self) -> QHBoxLayout:
        """Above the grid: the thumbnails' size, a whole-pixel factor."""
        self.thumb_zoom_spin = _zoom_spin("thumbnailZoomSpin", 1, MAX_THUMB_SCALE, self.model.scale)
        self.thumb_zoom_spin.setToolTip("Thumbnail size: screen pixels per image pixel (Ctrl+wheel over "
                                        "the digits, Ctrl++ / Ctrl+-; Ctrl+0 for the default)")
        self.thumb_zoom_spin.valueChanged.connect(self._set_thumbnail_scale)
        row = QHBoxLayout()
        row.addWidget(QLabel("Thumbnails"))
        row.addWidget(self.thumb_zoom_spin)
        row.addWidget(QLabel("Ctrl+wheel to zoom", styleSheet="color: #777;"))
        row.addStretch(1)
        return row

    def _build_filters(self) -> QVBoxLayout:
        """Left: the split, the label filter, the per-label counts and the selection."""
        self.split_combo = QComboBox(objectName="splitCombo")
        for key, title in SPLIT_TITLES.items():
            self.split_combo.addItem(title, key)
        self.split_combo.currentIndexChanged.connect(self._on_split_changed)
        self.label_combo = QComboBox(objectName="labelFilterCombo")
        self.label_combo.addItem("All digits", None)
        for d in range(10):
            self.label_combo.addItem(str(d), d)
        self.label_combo.currentIndexChanged.connect(self._on_label_changed)
        self.count_label = QLabel(objectName="shownCountLabel", wordWrap=True)
        self.send_button = QPushButton(SEND_TEXT, objectName="sendToNoiseButton")
        self.send_button.setToolTip(f"Use the selected digits (at most {MAX_SELECTION}) in the Forward noise panel "
                                    "and show it; with none selected, the first ones shown")
        self.send_button.clicked.connect(self.send_to_noise_panel)
        self.selection_label = QLabel(objectName="selectionLabel", wordWrap=True)
        form = QGridLayout()
        form.addWidget(QLabel("Split"), 0, 0)
        form.addWidget(self.split_combo, 0, 1)
        form.addWidget(QLabel("Label"), 1, 0)
        form.addWidget(self.label_combo, 1, 1)
        form.setColumnStretch(1, 1)
        left = QVBoxLayout()
        left.addLayout(form)
        left.addWidget(self.count_label)
        left.addWidget(self._build_counts_box())
        left.addWidget(self.selection_label)
        left.addWidget(self.send_button)
        left.addStretch(1)
        return left

    def _build_counts_box(self) -> QGroupBox:
        counts_box = QGroupBox("Digits per label")
        grid = QGridLayout(counts_box)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        self.label_count_labels: list[QLabel] = []
        self.label_bars: list[QFrame] = []
        for d in range(10):
            bar = QFrame(styleSheet="background: #5c8dd6; border-radius: 2px;")
            bar.setFixedHeight(10)
            num = QLabel("0", objectName=f"labelCount{d}", minimumWidth=48)
            num.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            grid.addWidget(QLabel(f"<b>{d}</b>"), d, 0)
            grid.addWidget(bar, d, 1, Qt.AlignmentFlag.AlignLeft)
            grid.addWidget(num, d, 2)
            self.label_count_labels.append(num)
            self.label_bars.append(bar)
        grid.setColumnStretch(1, 1)
        return counts_box

    def _build_thumbnail_view(self) -> QListView:
        """Centre: the thumbnail grid (QListView in icon mode over the lazy model)."""
        view = self.view = QListView(objectName="thumbnailView")
        view.setViewMode(QListView.ViewMode.IconMode)
        view.setMovement(QListView.Movement.Static)  # list-mode layout engine: fast for 50,000 rows
        view.setResizeMode(QListView.ResizeMode.Adjust)
        view.setFlow(QListView.Flow.LeftToRight)
        view.setWrapping(True)
        view.setUniformItemSizes(True)
        # lay out 50,000 items a batch at a time between events, so the GUI never stalls
        view.setLayoutMode(QListView.LayoutMode.Batched)
        view.setBatchSize(4000)
        view.setSpacing(2)
        view.setIconSize(QSize(28 * self.model.scale, 28 * self.model.scale))
        view.setGridSize(QSize(28 * self.model.scale + 6, 28 * self.model.scale + 6))
        view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        view.verticalScrollBar().setSingleStep(20)
        view.setStyleSheet("QListView { background: #202124; }")
        view.setItemDelegate(ThumbnailDelegate(view, self.model.scale))
        view.viewport().installEventFilter(_CtrlWheelZoom(self.zoom_thumbnails, view))
        view.setModel(self.model)
        view.selectionModel().selectionChanged.connect(self._on_view_selection)
        view.selectionModel().currentChanged.connect(self._on_current_changed)
        view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        return view

    def _build_enlarged(self) -> QVBoxLayout:
        """Right: the digit last clicked, enlarged (at least eight screen pixels per pixel, more
        as the column grows), and how to select."""
        self.big_image = ImageView("", min_side=ENLARGED_MIN_SIDE, zoomable=True)
        self.big_image.setObjectName("enlargedDigit")
        self.big_image.setToolTip("Ctrl+wheel zooms in whole pixels; the scroll bars pan a zoomed digit")
        box = self.big_scroll = _SquareScrollArea(objectName="enlargedScroll", widgetResizable=True)
        box.setFrameShape(QFrame.Shape.NoFrame)
        box.setMinimumSize(ENLARGED_MIN_SIDE, ENLARGED_MIN_SIDE)
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        policy.setHeightForWidth(True)
        box.setSizePolicy(policy)
        box.setWidget(self.big_image)
        self.big_zoom_spin = _zoom_spin("enlargedZoomSpin", 0, MAX_ZOOM, 0)
        self.big_zoom_spin.setSpecialValueText("Fit")
        self.big_zoom_spin.setToolTip("Screen pixels per image pixel; Fit: as large as the box (Ctrl+wheel "
                                      "over the digit zooms too)")
        self.big_zoom_spin.valueChanged.connect(self.big_image.set_zoom)
        self.big_image.zoom_changed.connect(self._on_big_zoom)
        zoom_row = QHBoxLayout()
        zoom_row.addWidget(QLabel("Zoom"))
        zoom_row.addWidget(self.big_zoom_spin)
        zoom_row.addStretch(1)
        self.big_caption = QLabel("Click a digit to enlarge it.", objectName="enlargedCaption", wordWrap=True)
        self.big_caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint = QLabel("Shift/Ctrl-click or drag to select several digits, then press "
                      f"<b>{SEND_TEXT}</b> to noise them in <b>Forward noise</b> (at most {MAX_SELECTION}).",
                      wordWrap=True, objectName="selectHint")
        hint.setStyleSheet("color: #555;")
        right = QVBoxLayout()
        right.addLayout(zoom_row)
        right.addWidget(box)
        right.addWidget(self.big_caption)
        right.addSpacing(12)
        right.addWidget(hint)
        right.addStretch(1)
        return right

    # ------------------------------------------------------------------ actions
    def choose_folder(self) -> None:
        start = str(self.state.data_dir) if self.state.data_dir else ""
        folder = QFileDialog.getExistingDirectory(self, "Choose the MNIST folder", start)
        if folder:
            self.state.request_data(folder)

    def download(self) -> None:
        self.state.request_data(None, download=True)

    def zoom_thumbnails(self, steps: int) -> None:
        """Thumbnails ``steps`` whole-pixel factors larger (or smaller, when negative)."""
        self.thumb_zoom_spin.setValue(self.thumb_zoom_spin.value() + int(steps))

    def reset_zoom(self) -> None:
        """The default thumbnail size, and the enlarged digit fitted to its box."""
        self.thumb_zoom_spin.setValue(THUMB_SCALE)
        self.big_zoom_spin.setValue(0)

    def _set_thumbnail_scale(self, scale: int) -> None:
        if scale == self.model.scale:
            return
        current = self.view.currentIndex()
        self.model.set_scale(scale)
        self.view.itemDelegate().set_scale(scale)
        self.view.setIconSize(QSize(28 * scale, 28 * scale))
        self.view.setGridSize(QSize(28 * scale + 6, 28 * scale + 6))  # lays the grid out again
        if current.isValid():  # the digit being looked at stays in view
            self.view.scrollTo(current, QAbstractItemView.ScrollHint.PositionAtCenter)
        app_settings().setValue(DATASET_THUMB_ZOOM, scale)

    def _on_big_zoom(self, zoom: int) -> None:
        """Ctrl+wheel over the digit: the field follows, and the zoomed digit stays centred."""
        if self.big_zoom_spin.value() != zoom:
            self.big_zoom_spin.setValue(zoom)
        for bar in (self.big_scroll.horizontalScrollBar(), self.big_scroll.verticalScrollBar()):
            bar.setValue((bar.minimum() + bar.maximum()) // 2)

    def send_to_noise_panel(self) -> None:
        """Send the selected digits (or, with none selected, the first ones shown) and show the noise panel."""
        rows = self._selected_rows()
        if not rows and self.model.rowCount():
            rows = list(range(min(DEFAULT_SELECTION, self.model.rowCount())))
        if rows:
            self._send_rows(rows)
        self.state.show_panel("noisePanel")

    # ---------------------------------------------------------------- reacting
    def _on_loading(self, message: str) -> None:
        if self.state.data is None:
            self.missing_title.setText("<h2>Loading MNIST…</h2>")
            self.missing_text.setText(message)
            self.choose_button.setEnabled(False)
            self.download_button.setEnabled(False)
            self.stack.setCurrentIndex(0)
        else:
            self.state.report(message)

    def _on_data_changed(self) -> None:
        data = self.state.data
        self.choose_button.setEnabled(True)
        self.download_button.setEnabled(True)
        if data is None:
            self.missing_title.setText("<h2>MNIST was not found</h2>" if self.state.data_missing
                                       else "<h2>MNIST could not be read</h2>")
            folder = self.state.data_dir
            text = self.state.data_error or (
                f"No MNIST data is loaded{f' from {folder}' if folder else ''}."
            )
            self.missing_text.setText(
                text + "<br><br>Choose the folder that holds the four MNIST files, or download them "
                f"(about 11 MB, into {paths.default_mnist_dir()})."
            )
            self.model.set_digits(np.zeros((0, 28, 28), np.uint8), np.zeros(0), np.zeros(0))
            self.stack.setCurrentIndex(0)
            return
        sizes = data.sizes()
        for i, key in enumerate(SPLIT_TITLES):
            self.split_combo.setItemText(i, f"{SPLIT_TITLES[key]} ({sizes[key]:,})")
        self.stack.setCurrentIndex(1)
        self._refill(select_default=True)

    def _on_split_changed(self, _index: int) -> None:
        self._split = self.split_combo.currentData()
        self._refill()

    def _on_label_changed(self, _index: int) -> None:
        self._label_filter = self.label_combo.currentData()
        self._refill()

    def set_split(self, split: str) -> None:
        """Show "train", "val" or "test"."""
        i = self.split_combo.findData(split)
        if i < 0:
            raise ValueError(f"unknown split {split!r}; choose train, val or test")
        self.split_combo.setCurrentIndex(i)

    def set_label_filter(self, label: int | None) -> None:
        """Show only one label (0..9), or all with None."""
        self.label_combo.setCurrentIndex(0 if label is None else int(label) + 1)

    def _refill(self, select_default: bool = False) -> None:
        data = self.state.data
        if data is None:
            return
        images = data.images(self._split).numpy()
        labels = data.labels(self._split).numpy()
        counts = np.bincount(labels, minlength=10)[:10]
        top = max(1, int(counts.max()))
        for d in range(10):
            self.label_count_labels[d].setText(f"{int(counts[d]):,}")
            self.label_bars[d].setFixedWidth(max(2, int(110 * counts[d] / top)))
            self.label_combo.setItemText(d + 1, f"{d}  ({int(counts[d]):,})")
        self.label_combo.setItemText(0, f"All digits ({len(labels):,})")
        if self._label_filter is None:
            idx = np.arange(len(labels))
            self.model.set_digits(images, labels, idx, self._split)  # no copy of 50,000 images
        else:
            idx = np.flatnonzero(labels == self._label_filter)
            self.model.set_digits(images[idx], labels[idx], idx, self._split)
        title = SPLIT_TITLES[self._split].lower()
        what = "" if self._label_filter is None else f" with label {self._label_filter}"
        self.count_label.setText(f"Showing <b>{len(idx):,}</b> of {len(labels):,} {title} digits{what}.")
        if select_default and self.model.rowCount():
            # a sensible start: the first digits shown, so the noise panel is never empty
            n = min(DEFAULT_SELECTION, self.model.rowCount())
            sel = self.view.selectionModel()
            sel.select(
                QItemSelection(self.model.index(0), self.model.index(n - 1)),
                QItemSelectionModel.SelectionFlag.ClearAndSelect,
            )
            sel.setCurrentIndex(self.model.index(0), QItemSelectionModel.SelectionFlag.NoUpdate)
            self._show_enlarged(0)
            self._send_rows(list(range(n)))
        self._update_selection_label()

    def _selected_rows(self) -> list[int]:
        return sorted(i.row() for i in self.view.selectionModel().selectedIndexes())

    def _on_view_selection(self, *_args) -> None:
        # browsing only selects: the noise panel keeps its digits until Send (the label says so)
        self._update_selection_label()

    def _send_rows(self, rows: list[int]) -> None:
        used = rows[:MAX_SELECTION]
        images, labels = self.model.rows_data(used)
        self.state.set_selection(images, labels)
        self._sent = self._key(used)
        extra = f" (the first {MAX_SELECTION} of {len(rows)} selected)" if len(rows) > MAX_SELECTION else ""
        self.state.report(f"{len(used)} digits sent to the forward-noise panel{extra}")
        self.selection_sent.emit(len(used))
        self._update_selection_label()

    def _key(self, rows: list[int]) -> tuple[str, tuple[int, ...]]:
        """Which digits ``rows`` are: the split and their indices in it."""
        return self._split, tuple(self.model.digit(r)[2] for r in rows)

    def _update_selection_label(self) -> None:
        """How many are selected, and what Send would change: the noise panel shows the digits sent last."""
        rows = self._selected_rows()
        n = len(rows)
        shown = len(self._sent[1]) if self._sent else 0
        if n and self._sent == self._key(rows[:MAX_SELECTION]):
            which = f"the first {MAX_SELECTION} of these" if n > MAX_SELECTION else "these"
            text = f"<b>{n:,}</b> selected: Forward noise shows {which}."
        else:
            head = f"<b>{n:,}</b> selected." if n else "None selected."
            now = f" Forward noise still shows the {shown} digits sent before." if shown else ""
            use = (f"the first {MAX_SELECTION} of these" if n > MAX_SELECTION else "these" if n
                   else f"the first {min(DEFAULT_SELECTION, self.model.rowCount())} shown")
            text = f"{head}{now} <i>{SEND_TEXT}</i> uses {use}."
        self.selection_label.setText(text)

    def _on_current_changed(self, current, _previous) -> None:
        if current.isValid():
            self._show_enlarged(current.row())

    def _show_enlarged(self, row: int) -> None:
        image, label, index = self.model.digit(row)
        self.big_image.set_array(image)
        split = SPLIT_TITLES[self._split]
        self.big_caption.setText(f"<b>{split} #{index:,}</b><br>label <b>{label}</b>")


def _build_missing_page(panel: DatasetPanel) -> QWidget:
    """The page shown without data: why, and "Choose folder…" / "Download MNIST"."""
    page = QWidget()
    page.setObjectName("dataMissingPage")
    box = QFrame(page)
    box.setObjectName("dataMissingBanner")
    box.setFrameShape(QFrame.Shape.StyledPanel)
    box.setStyleSheet(
        "#dataMissingBanner { background: #fff8e1; border: 1px solid #e0c068; border-radius: 6px; }"
    )
    box.setMaximumWidth(760)
    panel.missing_title = QLabel("<h2>MNIST was not found</h2>")
    panel.missing_text = QLabel()
    panel.missing_text.setObjectName("dataMissingMessage")
    panel.missing_text.setWordWrap(True)
    panel.missing_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    panel.choose_button = QPushButton("Choose folder…")
    panel.choose_button.setObjectName("chooseDataFolderButton")
    panel.choose_button.setToolTip("Pick a folder holding the four MNIST .gz files")
    panel.choose_button.clicked.connect(panel.choose_folder)
    panel.download_button = QPushButton("Download MNIST")
    panel.download_button.setObjectName("downloadMnistButton")
    panel.download_button.setToolTip("Fetch MNIST (about 11 MB) into the default data folder")
    panel.download_button.clicked.connect(panel.download)
    buttons = QHBoxLayout()
    buttons.addWidget(panel.choose_button)
    buttons.addWidget(panel.download_button)
    buttons.addStretch(1)
    inner = QVBoxLayout(box)
    inner.setContentsMargins(24, 18, 24, 18)
    inner.setSpacing(12)
    inner.addWidget(panel.missing_title)
    inner.addWidget(panel.missing_text)
    inner.addLayout(buttons)
    lay = QVBoxLayout(page)
    lay.addStretch(1)
    row = QHBoxLayout()
    row.addStretch(1)
    row.addWidget(box, 4)
    row.addStretch(1)
    lay.addLayout(row)
    lay.addStretch(2)
    return page


def _zoom_spin(name: str, low: int, high: int, value: int) -> QSpinBox:
    """A whole-pixel zoom field: "3x" is three screen pixels per image pixel."""
    spin = QSpinBox(objectName=name, minimum=low, maximum=high, value=value, suffix="x")
    spin.setAccelerated(False)
    return spin


def _fixed_width(layout, width: int) -> QWidget:
    """``layout`` in a widget ``width`` pixels wide."""
    w = QWidget()
    w.setLayout(layout)
    w.setFixedWidth(width)
    return w
