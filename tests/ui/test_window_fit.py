"""The window on a laptop screen (issue 32, item 1): at 1280x720 and 1366x768 it opens at a size
that fits, never grows itself, and no two visible widgets of any panel overlap.

``overlapping_widgets`` and ``squeezed_widgets`` are the reusable checks: give them a panel (any
widget) and they list what a person would see drawn over something else, or shrunk below the
size its text needs.
"""

from __future__ import annotations

import pyqtgraph as pg
import pytest
from PySide6.QtCore import QRect, QSize
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLabel,
    QScrollArea,
    QSlider,
    QWidget,
)

from diffusion_studio.ui.main_window import FRAME_MARGIN, MainWindow

#: (screen, its free area: the screen less a 48 px taskbar)
SCREENS = {"1280x720": QRect(0, 0, 1280, 720 - 48), "1366x768": QRect(0, 0, 1366, 768 - 48)}
#: the widgets a person reads or clicks; containers (group boxes, frames, scroll areas) hold them
LEAF_TYPES = (QLabel, QAbstractButton, QAbstractSpinBox, QComboBox, QSlider, pg.PlotWidget)
#: widgets that must never be shrunk below the width and height their text needs
CONTROL_TYPES = (QAbstractButton, QAbstractSpinBox, QComboBox)


def visible_leaves(root: QWidget) -> list[QWidget]:
    """The visible widgets of ``LEAF_TYPES`` under ``root`` (an image view is a QLabel) that hold
    no other such widget (a button drawn on a plot is checked, not the plot around it)."""
    found = [w for w in root.findChildren(QWidget)
             if isinstance(w, LEAF_TYPES) and w.isVisibleTo(root) and w.width() > 0 and w.height() > 0]
    ids = {id(w) for w in found}

    def has_leaf_inside(w: QWidget) -> bool:
        return any(id(c) in ids for c in w.findChildren(QWidget) if c.isVisibleTo(root))

    return [w for w in found if not has_leaf_inside(w) and not _inside_a_leaf(w, ids, root)]


def _inside_a_leaf(w: QWidget, ids: set[int], root: QWidget) -> bool:
    """A part of a compound leaf (a spin box's or combo's own buttons): not a leaf of its own."""
    parent = w.parentWidget()
    while parent is not None and parent is not root:
        if isinstance(parent, (QAbstractSpinBox, QComboBox)):
            return True
        parent = parent.parentWidget()
    return False


def _geometry(w: QWidget, top: QWidget) -> QRect:
    return QRect(w.mapTo(top, w.rect().topLeft()), w.size())


def overlapping_widgets(root: QWidget, tolerance: int = 1) -> list[str]:
    """'a overlaps b' for each pair of visible leaf widgets under ``root`` whose rectangles (in
    the window's coordinates) share more than ``tolerance`` pixels each way."""
    top = root.window()
    leaves = [(w, _geometry(w, top)) for w in visible_leaves(root)]
    found = []
    for i, (a, ra) in enumerate(leaves):
        for b, rb in leaves[i + 1:]:
            common = ra.intersected(rb)
            if common.width() > tolerance and common.height() > tolerance:
                found.append(f"{_name(a)} {ra.getRect()} overlaps {_name(b)} {rb.getRect()}")
    return found


def squeezed_widgets(root: QWidget) -> list[str]:
    """The visible buttons, spin boxes and combo boxes under ``root`` drawn smaller than their
    minimum size hint (a spin box squeezed to 8 px shows no digit)."""
    found = []
    for w in root.findChildren(QWidget):
        if isinstance(w, CONTROL_TYPES) and w.isVisibleTo(root) and not _inside_a_leaf(w, set(), root):
            need = w.minimumSizeHint()
            if w.width() < min(need.width(), 40) or w.height() < min(need.height(), 16):
                found.append(f"{_name(w)} is {w.width()}x{w.height()}, needs {need.width()}x{need.height()}")
    return found


def _name(w: QWidget) -> str:
    text = w.text()[:24] if hasattr(w, "text") and callable(w.text) and isinstance(w.text(), str) else ""
    return f"{type(w).__name__}({w.objectName() or text!r})"


def settle(ms: int = 50) -> None:
    import time

    app = QApplication.instance()
    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.005)


def problems_at_work(window, names, size: QSize) -> list[str]:
    """Show each named panel with its work on screen: the window keeps ``size`` (it never grows
    itself); what overlaps or is squeezed, as 'panel: problem' lines."""
    problems = []
    for name in names:
        window.show_panel(name)
        settle(100)
        assert window.size() == size, (name, window.size())
        panel = window.panels[name]
        problems += [f"{name}: {p}" for p in overlapping_widgets(panel) + squeezed_widgets(panel)]
    return problems


@pytest.fixture
def window(loaded_window):
    return loaded_window


def test_the_default_size_fits_the_free_screen_area():
    for screen in SCREENS.values():
        size = MainWindow.default_size(screen)
        assert size.width() + FRAME_MARGIN.width() <= screen.width()
        assert size.height() + FRAME_MARGIN.height() <= screen.height()
    assert MainWindow.default_size(QRect(0, 0, 2560, 1440)) == QSize(1360, 860)  # room: the preferred size


def test_the_minimum_size_fits_a_1280x720_screen(window):
    room = MainWindow.default_size(SCREENS["1280x720"])
    hint = window.minimumSizeHint().expandedTo(window.minimumSize())
    assert hint.width() <= room.width() and hint.height() <= room.height(), hint


@pytest.mark.parametrize("screen", sorted(SCREENS))
def test_every_panel_fits_and_nothing_overlaps(window, screen):
    size = MainWindow.default_size(SCREENS[screen])
    window.resize(size)
    problems = []
    for name, panel in window.panels.items():
        window.show_panel(name)
        settle()
        assert window.current_panel() is panel
        assert isinstance(window.tabs.currentWidget(), QScrollArea)
        assert window.width() <= size.width() and window.height() <= size.height(), (name, window.size())
        problems += [f"{name}: {p}" for p in overlapping_widgets(panel) + squeezed_widgets(panel)]
    assert problems == []


@pytest.mark.parametrize("screen", sorted(SCREENS))
def test_the_noise_and_sampler_panels_fit_with_a_model_at_work(window, qtbot, screen):
    """The two panels with all they show once a model works: the bundled student's long name in the
    model list and its caption, the model's view at t, sampled frames, their strip and an
    interpolation below them. Nothing overlaps, no spin box is squeezed, the window keeps its size."""
    from diffusion_studio.engine.storage.bundled import startup_model
    from diffusion_studio.engine.storage.checkpoint import load_model

    size = MainWindow.default_size(SCREENS[screen])
    window.resize(size)
    _name, title, path = startup_model()
    noise, sampler = window.panels["noisePanel"], window.panels["samplerPanel"]
    data = window.state.data
    window.state.set_selection(data.images("train")[:16].numpy(), data.labels("train")[:16].numpy())
    window.show_panel("noisePanel")
    noise.set_t(150)
    with qtbot.waitSignal(noise.prediction_shown, timeout=30000):
        window.state.set_model(load_model(path), title[:1].lower() + title[1:])
    window.show_panel("samplerPanel")
    for action in (sampler.sample, sampler.interpolate):
        with qtbot.waitSignal(sampler.sampling_finished, timeout=60000):
            assert action()
    assert sampler.form.student_info.isVisibleTo(sampler) and sampler.explore_box.isVisibleTo(sampler)
    assert problems_at_work(window, ("noisePanel", "samplerPanel"), size) == []
    combo = sampler.form.model_combo
    assert combo.shown_text() == combo.currentText()  # the student's name whole, not cut


def test_a_panel_that_asks_for_more_room_scrolls_instead_of_growing_the_window(window):
    """Showing the nearest training digits once grew the window to 1422 px wide."""
    size = MainWindow.default_size(SCREENS["1280x720"])
    window.resize(size)
    window.show_panel("samplerPanel")
    settle()
    wide = QLabel("a strip wider than the screen", objectName="wideStrip")
    wide.setMinimumSize(1500, 900)
    window.panels["samplerPanel"].layout().addWidget(wide)
    settle()
    assert window.size() == size
    area = window.scroll_areas["samplerPanel"]
    assert area.horizontalScrollBar().maximum() > 0 and area.verticalScrollBar().maximum() > 0


def test_a_long_data_path_does_not_widen_the_window(window, tmp_path):
    size = MainWindow.default_size(SCREENS["1280x720"])
    window.resize(size)
    window.state.data_dir = tmp_path / ("very-long-folder-name-" * 12)
    window._update_permanent_status()
    settle()
    assert window.size() == size
    assert window.data_status.width() <= window.data_status.maximumWidth()
    assert "very-long-folder-name" in window.data_status.toolTip()


def test_a_remembered_size_larger_than_the_screen_is_shrunk_to_fit(window, monkeypatch):
    screen = SCREENS["1280x720"]
    monkeypatch.setattr(window, "_available", lambda: screen)
    window.resize(1900, 1200)
    window.fit_to_screen()
    room = MainWindow.default_size(screen)
    assert window.width() <= room.width() and window.height() <= room.height()


def test_the_overlap_check_sees_widgets_drawn_over_each_other(window):
    """The helper itself: every panel has leaves to compare, and a label moved onto a button is found."""
    for name, panel in window.panels.items():
        window.show_panel(name)
        settle()
        assert len(visible_leaves(panel)) >= 3, name
    panel = window.panels["datasetPanel"]
    window.show_panel("datasetPanel")
    button = next(b for b in visible_leaves(panel) if isinstance(b, QAbstractButton))
    stray = QLabel("drawn over a button", panel, objectName="strayLabel")
    stray.setGeometry(QRect(button.mapTo(panel, button.rect().topLeft()), button.size()))
    stray.show()
    assert any("strayLabel" in p for p in overlapping_widgets(panel))


# ------------------------------------------------------- locked teaching plots (issue 32, item 8)
def _wheel_and_drag(plot) -> None:
    """One wheel turn and one left-button drag over the middle of ``plot``'s view."""
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QMouseEvent, QWheelEvent

    port = plot.viewport()
    centre = QPointF(port.width() / 2, port.height() / 2)
    glob = QPointF(port.mapToGlobal(centre.toPoint()))
    wheel = QWheelEvent(centre, glob, QPoint(), QPoint(0, 240), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(port, wheel)
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    QApplication.sendEvent(port, QMouseEvent(QMouseEvent.Type.MouseButtonPress, centre, glob, left, left,
                                             Qt.KeyboardModifier.NoModifier))
    for step in range(1, 6):
        p = centre + QPointF(12 * step, 8 * step)
        QApplication.sendEvent(port, QMouseEvent(QMouseEvent.Type.MouseMove, p, QPointF(port.mapToGlobal(p.toPoint())),
                                                 none, left, Qt.KeyboardModifier.NoModifier))
    QApplication.sendEvent(port, QMouseEvent(QMouseEvent.Type.MouseButtonRelease, p,
                                             QPointF(port.mapToGlobal(p.toPoint())), left, none,
                                             Qt.KeyboardModifier.NoModifier))
    settle(30)


def test_teaching_plots_do_not_move_on_a_stray_wheel_turn_or_drag(window):
    window.resize(MainWindow.default_size(SCREENS["1366x768"]))
    window.show_panel("noisePanel")
    settle(300)  # laid out and drawn: the automatic range no longer changes with the plot's size
    panel = window.panels["noisePanel"]
    for name in ("betaPlot", "alphabarPlot", "snrPlot", "histogramPlot"):
        plot = panel.findChild(pg.PlotWidget, name)
        assert plot is not None, name
        vb = plot.getPlotItem().getViewBox()
        before, auto = vb.viewRange(), vb.autoRangeEnabled()
        _wheel_and_drag(plot)
        assert vb.viewRange() == before and vb.autoRangeEnabled() == auto, name
        assert plot.findChild(QAbstractButton, "resetViewButton") is None  # nothing to reset


def test_an_interactive_plot_moves_and_shows_a_reset_button(qtbot):
    """The same wheel turn and drag move a plot made interactive (the live training and runs
    curves may be), and its "Reset view" button puts the whole curve back."""
    from diffusion_studio.ui.widgets import styled_plot

    plot = styled_plot("loss", interactive=True)
    qtbot.addWidget(plot)
    plot.resize(400, 300)
    plot.plot([0, 1, 2, 3], [3, 1, 2, 0])
    plot.show()
    settle(50)
    vb = plot.getPlotItem().getViewBox()
    before = vb.viewRange()
    button = plot.findChild(QAbstractButton, "resetViewButton")
    assert not button.isVisible()
    _wheel_and_drag(plot)
    assert vb.viewRange() != before
    assert button.isVisible() and button.text() == "Reset view"
    assert button.geometry().right() < plot.width() and button.geometry().top() >= 0
    button.click()
    settle(50)
    assert not button.isVisible()
    assert vb.autoRangeEnabled() == [True, True]
