"""The dataset browser: the list model, split/label filters, counts, selection -> AppState."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QApplication

from diffusion_studio.ui.dataset_panel import (
    DEFAULT_SELECTION,
    MAX_SELECTION,
    DatasetPanel,
    DigitListModel,
    IndexRole,
    LabelRole,
)
from diffusion_studio.ui.state import AppState


@pytest.fixture
def panel(qtbot, tiny_data, tiny_mnist):
    state = AppState()
    state.set_data(tiny_data, Path(tiny_mnist))
    p = DatasetPanel(state)
    qtbot.addWidget(p)
    p.resize(1100, 700)
    p.show()
    return p


def test_model_passes_qmodeltester(qapp, qtmodeltester, tiny_data):
    model = DigitListModel(cache_size=8)
    images = tiny_data.images("val").numpy()
    labels = tiny_data.labels("val").numpy()
    model.set_digits(images, labels, np.arange(len(labels)), "val")
    qtmodeltester.check(model, force_py=True)
    assert model.rowCount() == len(labels) == 20
    idx = model.index(3)
    assert model.data(idx, LabelRole) == labels[3]
    assert model.data(idx, IndexRole) == 3
    assert "label" in model.data(idx, Qt.ItemDataRole.ToolTipRole)
    pix = model.data(idx, Qt.ItemDataRole.DecorationRole)
    assert isinstance(pix, QPixmap) and pix.width() == 28 * model.scale


def test_thumbnails_are_lazy_and_lru_cached(qapp):
    model = DigitListModel(cache_size=5)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(1000, 28, 28), dtype=np.uint8)
    model.set_digits(images, np.arange(1000) % 10, np.arange(1000))
    assert model.thumbnails_built == 0  # nothing built before the view asks
    first = model.data(model.index(0), Qt.ItemDataRole.DecorationRole)
    again = model.data(model.index(0), Qt.ItemDataRole.DecorationRole)
    assert model.thumbnails_built == 1 and first.cacheKey() == again.cacheKey()
    for r in range(1, 10):
        model.data(model.index(r), Qt.ItemDataRole.DecorationRole)
    assert model.cached == 5  # bounded
    model.data(model.index(0), Qt.ItemDataRole.DecorationRole)
    assert model.thumbnails_built == 11  # row 0 was evicted and rebuilt
    # the thumbnail shows the digit: pixel (r, c) of the 2x pixmap is the image's pixel
    img = model.data(model.index(7), Qt.ItemDataRole.DecorationRole).toImage()
    assert img.pixelColor(2 * 5, 2 * 9).red() == images[7, 9, 5]


def test_fifty_thousand_digits_scroll_without_building_them_all(qtbot):
    """The panel's own view over a 50,000-digit train split: scrolling builds only what is shown."""
    import torch

    from diffusion_studio.engine.storage.data import MNISTSplits

    g = torch.Generator().manual_seed(1)
    n = 50_000
    train = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    small = train[:10]
    data = MNISTSplits(
        train_images=train, train_labels=torch.arange(n) % 10,
        val_images=small, val_labels=torch.arange(10), test_images=small, test_labels=torch.arange(10),
        train_index=torch.arange(n), val_index=torch.arange(10), source=Path("synthetic"),
    )
    state = AppState()
    panel = DatasetPanel(state)
    qtbot.addWidget(panel)
    panel.resize(1100, 700)
    panel.show()
    qtbot.waitExposed(panel)
    start = time.perf_counter()
    state.set_data(data, Path("synthetic"))
    QApplication.processEvents()
    assert panel.model.rowCount() == n
    assert panel.split_combo.currentText() == "Train (50,000)"
    view = panel.view
    bar = view.verticalScrollBar()
    frames = []
    for frac in np.linspace(0, 1, 25):
        t0 = time.perf_counter()
        bar.setValue(int(frac * bar.maximum()))
        QApplication.processEvents()  # the view lays out and paints as in the event loop
        view.viewport().repaint()
        frames.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    print(f"\n50,000 digits: load + 25 scroll jumps in {total:.2f} s, "
          f"median repaint {np.median(frames) * 1000:.1f} ms, slowest {max(frames) * 1000:.1f} ms, "
          f"{panel.model.thumbnails_built} thumbnails built")
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
    assert 0 < panel.model.thumbnails_built < 5000  # only what was on screen (timing: bench/gui_latency.py)


def test_split_and_label_filter_change_counts(panel, tiny_data):
    sizes = tiny_data.sizes()
    assert panel.model.rowCount() == sizes["train"] == 100
    assert "Train (100)" == panel.split_combo.currentText()
    train_counts = np.bincount(tiny_data.labels("train").numpy(), minlength=10)
    assert [int(lbl.text().replace(",", "")) for lbl in panel.label_count_labels] == train_counts.tolist()

    panel.set_split("val")
    assert panel.model.rowCount() == sizes["val"] == 20
    assert "20" in panel.count_label.text()
    val_counts = np.bincount(tiny_data.labels("val").numpy(), minlength=10)
    assert [int(lbl.text()) for lbl in panel.label_count_labels] == val_counts.tolist()

    panel.set_split("test")
    panel.set_label_filter(3)
    test_labels = tiny_data.labels("test").numpy()
    want = int((test_labels == 3).sum())
    assert panel.model.rowCount() == want > 0
    assert all(panel.model.data(panel.model.index(r), LabelRole) == 3 for r in range(want))
    # the rows keep their index in the split
    assert [panel.model.data(panel.model.index(r), IndexRole) for r in range(want)] == np.flatnonzero(
        test_labels == 3
    ).tolist()
    panel.set_label_filter(None)
    assert panel.model.rowCount() == sizes["test"]
    with pytest.raises(ValueError, match="unknown split"):
        panel.set_split("holdout")


def test_default_selection_fills_the_noise_panel(panel, tiny_data):
    state = panel.state
    assert state.selection.shape == (DEFAULT_SELECTION, 28, 28)
    np.testing.assert_array_equal(state.selection, tiny_data.images("train")[:DEFAULT_SELECTION].numpy())
    np.testing.assert_array_equal(state.selection_labels, tiny_data.labels("train")[:DEFAULT_SELECTION].numpy())


def test_browsing_keeps_the_noise_panels_digits_until_send(panel, qtbot, tiny_data):
    """Issue 32, item 12: selecting digits only selects; the label says the noise panel still shows
    the digits sent before, and Send (the button, by object name) replaces them and says so."""
    from PySide6.QtWidgets import QLabel, QPushButton

    state = panel.state
    label = panel.findChild(QLabel, "selectionLabel")
    send = panel.findChild(QPushButton, "sendToNoiseButton")
    before = state.selection.copy()
    assert "Forward noise shows these" in label.text()  # the default selection was sent on load
    panel.set_split("test")
    sel = panel.view.selectionModel()
    with qtbot.assertNotEmitted(state.selection_changed, wait=50):
        sel.select(QItemSelection(panel.model.index(4), panel.model.index(9)), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    np.testing.assert_array_equal(state.selection, before)
    assert label.text().startswith("<b>6</b> selected.")
    assert f"still shows the {DEFAULT_SELECTION} digits sent before" in label.text() and "uses these" in label.text()

    with qtbot.waitSignal(state.panel_requested, timeout=1000) as shown:
        qtbot.mouseClick(send, Qt.MouseButton.LeftButton)
    assert shown.args == ["noisePanel"]
    np.testing.assert_array_equal(state.selection, tiny_data.images("test")[4:10].numpy())
    np.testing.assert_array_equal(state.selection_labels, tiny_data.labels("test")[4:10].numpy())
    assert "<b>6</b> selected: Forward noise shows these." == label.text()
    panel.set_label_filter(3)  # the filter clears the view's selection, not the noise panel's digits
    np.testing.assert_array_equal(state.selection, tiny_data.images("test")[4:10].numpy())
    assert label.text().startswith("None selected. Forward noise still shows the 6 digits sent before.")


def test_click_enlarges(panel, qtbot, tiny_data):
    panel.set_split("test")
    before = panel.state.selection.copy()

    # a click (current index) shows the digit enlarged with its index and label
    rect = panel.view.visualRect(panel.model.index(7))
    qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    label = int(tiny_data.labels("test")[7])
    assert "#7" in panel.big_caption.text() and f"label <b>{label}</b>" in panel.big_caption.text()
    assert panel.big_image.pixmap().width() == 28 * 8
    np.testing.assert_array_equal(panel.state.selection, before)  # looking is not sending


def test_large_selection_is_capped_and_send_button_switches_panel(panel, qtbot):
    state = panel.state
    panel.view.selectAll()
    assert f"uses the first {MAX_SELECTION} of these" in panel.selection_label.text()
    with qtbot.waitSignal(state.panel_requested, timeout=1000) as blocker:
        qtbot.mouseClick(panel.send_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["noisePanel"]
    assert len(state.selection) == MAX_SELECTION
    assert f"Forward noise shows the first {MAX_SELECTION} of these" in panel.selection_label.text()


def test_missing_data_page_offers_choose_and_download(qtbot, tmp_path):
    state = AppState()
    panel = DatasetPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    state.set_data(None, tmp_path, "MNIST was not found in /nowhere (missing: everything).")
    assert panel.stack.currentIndex() == 0
    assert "/nowhere" in panel.missing_text.text()
    assert panel.choose_button.isVisible() and panel.download_button.isVisible()
    with qtbot.waitSignal(state.data_requested, timeout=1000) as blocker:
        qtbot.mouseClick(panel.download_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["", True]
    state.set_data_loading("Downloading MNIST into /x …")
    assert "Loading" in panel.missing_title.text() and not panel.download_button.isEnabled()


def _drawn(panel) -> tuple[int, int, int]:
    from PySide6.QtWidgets import QLabel

    big = panel.findChild(QLabel, "enlargedDigit")
    return big.pixmap().width(), big.pixmap().height(), big.scale


def test_the_enlarged_digit_grows_with_the_window_in_whole_pixels(panel, qtbot):
    """Issue 32, item 2: drawn 8x, 9x, ... as its column allows: every image pixel a square of
    whole screen pixels (never blurred or stretched unevenly), larger in a larger window."""
    panel.view.setCurrentIndex(panel.model.index(2))
    sizes = []
    for width, height in ((1000, 620), (1366, 720), (1900, 1000)):
        panel.resize(width, height)
        qtbot.wait(20)
        w, h, scale = _drawn(panel)
        assert scale >= 8 and w == h == 28 * scale, (width, w, scale)
        sizes.append(scale)
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]


def test_whole_pixel_scale():
    from diffusion_studio.ui.widgets import whole_pixel_scale

    assert whole_pixel_scale((28, 28), (100, 300)) == 3
    assert whole_pixel_scale((28, 280), (300, 300)) == 1  # a wide strip: its width decides
    assert whole_pixel_scale((28, 28), (20, 300)) == 0  # larger than the box: shrunk to fit


# ------------------------------------------------------------------ zoom (issue 32, item 12)
def _ctrl_wheel(widget, notches: int = 1) -> None:
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtGui import QWheelEvent

    centre = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.ControlModifier, Qt.ScrollPhase.NoScrollPhase,
                        False)
    QApplication.sendEvent(widget, event)


def test_thumbnails_zoom_in_whole_pixels_and_the_size_is_remembered(panel, qtbot, tiny_data):
    """The zoom field, Ctrl+wheel over the grid and Ctrl++ / Ctrl+- / Ctrl+0 make every thumbnail
    28 x k screen pixels; the selection stays; a new panel (a restart) opens at the last size."""
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QSpinBox

    spin = panel.findChild(QSpinBox, "thumbnailZoomSpin")
    assert spin.value() == panel.model.scale == 2
    panel.view.selectionModel().select(QItemSelection(panel.model.index(3), panel.model.index(5)),
                                       QItemSelectionModel.SelectionFlag.ClearAndSelect)
    first_row = panel.view.visualRect(panel.model.index(0)).width()

    def thumb_width() -> int:
        return panel.model.data(panel.model.index(0), Qt.ItemDataRole.DecorationRole).width()

    spin.setValue(4)
    assert thumb_width() == 28 * 4 and panel.view.gridSize().width() == 28 * 4 + 6
    assert panel.view.visualRect(panel.model.index(0)).width() > first_row
    _ctrl_wheel(panel.view.viewport())
    assert spin.value() == 5 and thumb_width() == 28 * 5
    bar = panel.view.verticalScrollBar().value()
    _ctrl_wheel(panel.view.viewport(), -2)  # Ctrl+wheel zooms; it does not scroll the grid
    assert spin.value() == 3 and panel.view.verticalScrollBar().value() <= bar
    panel.findChild(QAction, "zoomInAction").trigger()
    assert spin.value() == 4
    panel.findChild(QAction, "zoomOutAction").trigger()
    assert spin.value() == 3 and thumb_width() == 28 * 3
    assert [i.row() for i in panel.view.selectionModel().selectedIndexes()] == [3, 4, 5]
    spin.setValue(spin.maximum() + 3)
    assert spin.value() == 6 and thumb_width() == 28 * 6  # clamped

    again = DatasetPanel(panel.state)
    qtbot.addWidget(again)
    assert again.findChild(QSpinBox, "thumbnailZoomSpin").value() == again.model.scale == 6
    again.findChild(QAction, "zoomResetAction").trigger()
    assert again.model.scale == 2


def test_a_stored_zoom_that_is_not_a_whole_number_leaves_the_default(panel, qtbot):
    from PySide6.QtWidgets import QSpinBox

    from diffusion_studio.ui.settings import DATASET_THUMB_ZOOM, app_settings

    for stored, shown in (("abc", 2), ("", 2), ("0", 1), ("99", 6), ("3", 3)):
        app_settings().setValue(DATASET_THUMB_ZOOM, stored)  # as a hand-edited settings file has it
        again = DatasetPanel(panel.state)
        qtbot.addWidget(again)
        assert again.findChild(QSpinBox, "thumbnailZoomSpin").value() == again.model.scale == shown, stored


def test_the_view_menu_offers_the_zoom_and_shows_the_dataset(loaded_window):
    from PySide6.QtGui import QKeySequence

    window = loaded_window
    view_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    zoom_in = next(a for a in view_menu.actions() if a.objectName() == "zoomInAction")
    assert QKeySequence("Ctrl++") in zoom_in.shortcuts() and QKeySequence("Ctrl+=") in zoom_in.shortcuts()
    assert [a.objectName() for a in view_menu.actions()][-3:] == ["zoomInAction", "zoomOutAction", "zoomResetAction"]
    window.show_panel("samplerPanel")
    panel = window.panels["datasetPanel"]
    zoom_in.trigger()
    assert window.current_panel() is panel and panel.model.scale == 3  # zooms what it shows


def test_the_enlarged_digit_zooms_in_whole_pixels_and_pans(panel, qtbot):
    """Ctrl+wheel over the enlarged digit (or its Zoom field) draws it k screen pixels per image
    pixel, past its box with scroll bars to pan; Fit puts it back to the largest that fits."""
    from PySide6.QtWidgets import QScrollArea, QSpinBox

    panel.view.setCurrentIndex(panel.model.index(2))
    qtbot.wait(20)
    spin = panel.findChild(QSpinBox, "enlargedZoomSpin")
    box = panel.findChild(QScrollArea, "enlargedScroll")
    w, h, fit = _drawn(panel)
    assert spin.value() == 0 and spin.text() == "Fit" and fit >= 8
    _ctrl_wheel(panel.big_image)
    qtbot.wait(20)
    assert spin.value() == fit + 1 and _drawn(panel) == (28 * (fit + 1), 28 * (fit + 1), fit + 1)
    assert box.verticalScrollBar().maximum() > 0  # bigger than its box: it pans
    spin.setValue(20)
    qtbot.wait(20)
    assert _drawn(panel) == (560, 560, 20) and box.horizontalScrollBar().maximum() > 0
    _ctrl_wheel(panel.big_image, -3)
    assert spin.value() == 17 and panel.big_image.scale == 17
    spin.setValue(0)
    qtbot.wait(20)
    assert _drawn(panel) == (w, h, fit) and box.verticalScrollBar().maximum() == 0

