"""A learner's first hour (issue 32): the behaviours its items ask for that the panels' own test
files did not check, each through the widgets' object names. docs/testing.md maps every item of
the issue to its tests ("A learner's first hour: what the GUI tests check").

The window-fit helpers (``overlapping_widgets``, ``squeezed_widgets``, ``settle``) and the window
with the tiny MNIST loaded come from tests/ui/test_window_fit.py.
"""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)
from test_window_fit import (
    SCREENS,
    _wheel_and_drag,
    overlapping_widgets,
    problems_at_work,
    settle,
    squeezed_widgets,
)

from diffusion_studio.engine.storage.checkpoint import load_model
from diffusion_studio.engine.training.config import FinishedRecord, StepRecord
from diffusion_studio.ui.main_window import MIN_WINDOW, MainWindow
from diffusion_studio.ui.state import AppState
from diffusion_studio.ui.train_view import SMOOTHING
from diffusion_studio.ui.widgets import ImageView, whole_pixel_scale

#: a large desktop's free area, to see the pictures grow past the laptop's
LARGE_SCREEN = QRect(0, 0, 1920, 1080 - 48)


@pytest.fixture
def window(loaded_window):
    return loaded_window


@pytest.fixture
def tiny_run(tiny_runs, tmp_path):
    """A copy of one tiny finished run (T = 10, best.pt from its epoch 2)."""
    first = sorted(tiny_runs.iterdir())[0]
    return shutil.copytree(first, tmp_path / "runs" / first.name)


def _with_model(window, qtbot, run) -> None:
    noise = window.panels["noisePanel"]
    window.show_panel("noisePanel")
    with qtbot.waitSignal(noise.prediction_shown, timeout=30000):
        window.state.set_model(load_model(run / "best.pt"), f"trained: {run.name}")


def _sample(window, qtbot, n: int = 16) -> None:
    sampler = window.panels["samplerPanel"]
    window.show_panel("samplerPanel")
    sampler.findChild(QSpinBox, "imageCountSpin").setValue(n)
    with qtbot.waitSignal(sampler.sampling_finished, timeout=60000) as blocker:
        qtbot.mouseClick(sampler.findChild(QPushButton, "sampleButton"), Qt.MouseButton.LeftButton)
    assert blocker.args == ["finished"]


# ------------------------------------------------------------------ item 1: a laptop screen
def test_forced_to_its_smallest_size_every_panel_scrolls_and_nothing_overlaps(window):
    """Where the window is forced smaller than a laptop's screen (its minimum), no panel draws text
    over buttons or plots, no spin box shrinks, and the window does not grow: each panel scrolls."""
    window.resize(MIN_WINDOW)
    settle()
    assert window.size() == MIN_WINDOW
    problems = []
    for name, panel in window.panels.items():
        window.show_panel(name)
        settle()
        assert window.size() == MIN_WINDOW, (name, window.size())
        problems += [f"{name}: {p}" for p in overlapping_widgets(panel) + squeezed_widgets(panel)]
        area = window.scroll_areas[name]
        port = area.viewport().size()
        if panel.minimumSizeHint().height() > port.height():
            assert area.verticalScrollBar().maximum() > 0, name  # the rest is a scroll away, not cut off
    assert problems == []


def test_the_nearest_training_digits_never_grow_the_window(window, qtbot, tiny_run):
    """Item 1: showing the nearest training digits grew the window to 1422 px wide."""
    size = MainWindow.default_size(SCREENS["1280x720"])
    window.resize(size)
    _with_model(window, qtbot, tiny_run)
    _sample(window, qtbot, n=16)
    sampler = window.panels["samplerPanel"]
    button = sampler.findChild(QPushButton, "nearestNeighbourButton")
    assert button.isEnabled()
    with qtbot.waitSignal(sampler.sampling_finished, timeout=120000) as blocker:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["completed"]
    settle(100)
    view = sampler.findChild(QLabel, "exploreView")
    assert view.isVisibleTo(sampler) and view.array.shape[1] == 16 * 30 + 2  # the 16 samples' rows
    assert window.size() == size
    assert overlapping_widgets(sampler) + squeezed_widgets(sampler) == []


@pytest.mark.parametrize("screen", sorted(SCREENS))
def test_the_training_and_runs_panels_fit_with_a_run_shown(qtbot, tiny_mnist, tiny_runs, tmp_path, monkeypatch,
                                                           screen):
    """The fit check of test_window_fit with what these panels show once a learner has trained: a
    run's curves, its early estimate, preview digits and the end line on Training; two runs listed,
    selected and overlaid on Runs. Nothing overlaps, nothing is squeezed, the window keeps its size."""
    from diffusion_studio.engine.training.config import EarlyValidationRecord, EpochRecord
    from diffusion_studio.tasks.train import PreviewRecord

    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path / "home"))
    runs = shutil.copytree(tiny_runs, tmp_path / "home" / "data" / "runs")
    w = MainWindow(AppState())
    qtbot.addWidget(w)
    w.show()
    w.loader.load(tiny_mnist)
    assert w.loader.wait(60)
    size = MainWindow.default_size(SCREENS[screen])
    w.resize(size)
    train, runs_panel = w.panels["trainPanel"], w.panels["runsPanel"]
    steps = [StepRecord(epoch=1, step=i, steps_per_epoch=40, global_step=i, loss=1.0 / i, images_per_s=90.0,
                        elapsed=0.3 * i) for i in range(1, 41)]
    train._on_records(steps + [
        EarlyValidationRecord(epoch=1, step=20, global_step=20, position=0.5, val_loss=0.09, images=1000,
                              val_images=10000, seconds=2.0),
        PreviewRecord(1, np.full((16, 28, 28), 128, np.uint8), step=20),
        EpochRecord(epoch=1, epochs=50, train_loss=0.1, val_loss=0.08, seconds=12.0, images_per_s=90.0,
                    best_val_loss=0.08, best_epoch=1, epochs_without_improvement=0, patience=5, improved=True,
                    fraction=1.0),
        FinishedRecord("budget", 1, 1, 0.08, "the time budget ended the run at epoch 1")])
    train.view.redraw()
    names = sorted(p.name for p in runs.iterdir())
    w.show_panel("runsPanel")
    qtbot.waitUntil(lambda: len(runs_panel.runs()) == len(names), timeout=5000)
    runs_panel.select_runs(names)
    assert problems_at_work(w, ("trainPanel", "runsPanel"), size) == []
    assert train.preview.has_digits() and len(runs_panel.selected_runs()) == len(names)
    train.state.wait_for_model()


# ------------------------------------------------------------------ item 2: pictures that fill their boxes
def _drawn_scale(view: ImageView) -> int:
    """The whole-pixel factor ``view`` draws its picture at, checked against the pixmap it shows."""
    rows, cols = view.array.shape
    pix = view.pixmap()
    assert (pix.width(), pix.height()) == (cols * view.scale, rows * view.scale), view.objectName()
    return view.scale


def test_the_pictures_fill_their_boxes_and_grow_with_the_window_in_whole_pixels(window, qtbot, tiny_run):
    """The x_t mosaic, the model's predicted x_0 and error map, and the Sampler's x_t and predicted
    x_0: each drawn at the largest whole multiple of its pixels its box holds, larger on a larger
    screen (the 24-digit mosaic was 150 px wide in a 640 px box, and nothing grew)."""
    _with_model(window, qtbot, tiny_run)
    _sample(window, qtbot, n=16)
    views = {"noisePanel": ("noisyImages", "predictionView", "epsErrorView"), "samplerPanel": ("xtView", "x0View")}
    scales = {}
    for screen in (SCREENS["1280x720"], LARGE_SCREEN):
        window.resize(MainWindow.default_size(screen) if screen is not LARGE_SCREEN else QSize(1900, 1000))
        for panel_name, names in views.items():
            window.show_panel(panel_name)
            settle(100)
            for name in names:
                view = window.panels[panel_name].findChild(ImageView, name)
                assert view is not None and view.array is not None, name
                scale = _drawn_scale(view)
                assert scale >= 2, (name, scale)  # never the 1x thumbnail in a large dark box
                assert scale == whole_pixel_scale(view.array.shape, (view.width(), view.height())), name
                scales.setdefault(name, []).append(scale)
    grown = {name for name, s in scales.items() if s[1] > s[0]}
    assert grown == set(scales), scales  # larger on the larger screen


def test_the_x_t_mosaic_grows_with_the_window(window):
    """The Forward-noise panel is taller than a screen (it scrolls), so its x_t box kept its
    minimum height and the mosaic its 2x at any size. Its height now follows its width: the
    mosaic grows with a wider window, whole and below the slider in the scrolled view, and the
    model's view under it is a scroll away."""
    noise = window.panels["noisePanel"]
    window.show_panel("noisePanel")
    view = noise.findChild(ImageView, "noisyImages")
    area = window.scroll_areas["noisePanel"]
    slider = noise.findChild(QWidget, "timestepSlider")
    scales = []
    for size in (MainWindow.default_size(SCREENS["1280x720"]), QSize(1900, 1000), QSize(1900, 1400)):
        window.resize(size)
        settle(100)
        scales.append(_drawn_scale(view))
        assert area.verticalScrollBar().value() == 0
        top, bottom = view.mapTo(noise, view.rect().topLeft()).y(), view.mapTo(noise, view.rect().bottomLeft()).y()
        assert slider.mapTo(noise, slider.rect().bottomLeft()).y() < top and bottom < area.viewport().height()
        box = noise.model_box  # below it, not squeezed, and the scroll bar brings all of it into view
        box_top = box.mapTo(noise, box.rect().topLeft()).y()
        assert box_top > bottom and box.height() >= box.minimumHeight()
        assert box_top + box.height() <= area.viewport().height() + area.verticalScrollBar().maximum()
    assert scales[0] >= 2 and scales[1] > scales[0] and scales[2] >= scales[1], scales


# ------------------------------------------------------------------ item 3: no silent wait
def test_a_first_use_of_the_metric_classifier_is_said_while_it_lasts(qtbot, tiny_data, tiny_run, tmp_path,
                                                                     monkeypatch):
    """The app ships the metric classifier for the official MNIST; for other digits the first
    "denoise from here" still trains it after the last step, and the line under the picture says
    so meanwhile instead of sitting on "Denoising… t = 0". Once it is kept, nothing is said."""
    from diffusion_studio.engine.evaluation import classifier as C
    from diffusion_studio.ui.noise_panel import NoisePanel

    monkeypatch.setattr(C, "classifier_dir", lambda: tmp_path / "classifiers")  # none kept yet
    training, release, seen = threading.Event(), threading.Event(), []
    real = C.train_classifier

    def held_training(*args, **kwargs):
        training.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(C, "train_classifier", held_training)
    state = AppState()
    state.set_data(tiny_data, None)
    state.set_selection(tiny_data.images("train")[:6].numpy(), tiny_data.labels("train")[:6].numpy())
    panel = NoisePanel(state)
    qtbot.addWidget(panel)
    panel.resize(1300, 800)
    panel.show()
    state.set_model(load_model(tiny_run / "best.pt"), "trained: tiny")
    panel.set_t(8)
    button = panel.findChild(QPushButton, "denoiseFromHereButton")
    line = panel.findChild(QLabel, "denoiseLabel")
    with qtbot.waitSignal(panel.denoise_finished, timeout=120000):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(training.is_set, timeout=30000)
        settle(300)  # the last steps' pictures have arrived
        seen.append(line.text())
        release.set()
    assert seen[0].startswith("Denoising… t = ") and "metric classifier" in seen[0] and "once" in seen[0], seen[0]
    assert "Still the same digit" in line.text() and "metric classifier" not in line.text()
    qtbot.waitUntil(button.isEnabled, timeout=10000)
    training.clear()
    with qtbot.waitSignal(panel.denoise_finished, timeout=120000):  # kept now: no first use left
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert "metric classifier" not in line.text()
    assert not training.is_set()
    panel.shutdown()


def test_the_nearest_training_digits_say_when_they_train_the_metric_classifier(qtbot, tiny_data, tiny_run,
                                                                                tmp_path, monkeypatch):
    """The Sampler's memorisation check uses the same classifier: where it must be trained first,
    the panel's line counts its steps instead of "Running the nearest-neighbour check…" alone."""
    from diffusion_studio.engine.evaluation import classifier as C
    from diffusion_studio.ui.sampler_panel import SamplerPanel

    monkeypatch.setattr(C, "classifier_dir", lambda: tmp_path / "classifiers")  # none kept yet
    state = AppState()
    state.set_data(tiny_data, None)
    state.set_model(load_model(tiny_run / "best.pt"), "trained: tiny")
    panel = SamplerPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    said = []
    state.status_message.connect(said.append)  # every line the panel says goes to the status bar too
    panel.findChild(QSpinBox, "imageCountSpin").setValue(4)
    for button in ("sampleButton", "nearestNeighbourButton"):
        with qtbot.waitSignal(panel.sampling_finished, timeout=120000) as blocker:
            qtbot.mouseClick(panel.findChild(QPushButton, button), Qt.MouseButton.LeftButton)
        assert blocker.args[0] in ("finished", "completed"), button
    training = [line for line in said if line.startswith("Training the metric classifier for these digits, once")]
    assert training and " of " in training[-1], said
    assert said.index(training[0]) > said.index("Running the nearest-neighbour check…")
    said.clear()
    with qtbot.waitSignal(panel.sampling_finished, timeout=120000):  # kept now: nothing to train
        qtbot.mouseClick(panel.findChild(QPushButton, "nearestNeighbourButton"), Qt.MouseButton.LeftButton)
    assert said and not any("metric classifier" in line for line in said), said
    panel.shutdown(5000)


# ------------------------------------------------------------------ item 5: no dead end after a run
@pytest.fixture
def train_panel(qtbot, tiny_data):
    from diffusion_studio.ui.train_panel import TrainPanel

    state = AppState()
    state.set_data(tiny_data, None)
    panel = TrainPanel(state)
    qtbot.addWidget(panel)
    panel.resize(1000, 650)
    panel.show()
    yield panel
    panel.shutdown(10000)


@pytest.mark.parametrize("reason, message", [("budget", "the time budget ended the run at epoch 2"),
                                             ("stopped", "stopped at epoch 2, step 3")])
def test_a_run_ended_by_its_budget_or_by_stop_becomes_the_samplers_model_and_says_so(
        qtbot, train_panel, tiny_run, reason, message):
    """One rule, said on screen: a run that leaves best.pt becomes the Sampler's model whatever
    ended it (a budget-ended run did silently, a stopped one did not at all)."""
    train_panel.run_dir = tiny_run  # the run that just ended (its StartedRecord names it)
    train_panel._on_records([FinishedRecord(reason, 2, 2, 0.5, message)])
    line = train_panel.findChild(QLabel, "earlyStoppingLabel").text()
    assert line.startswith(message[:1].upper() + message[1:]) and "The Sampler now uses its best weights (epoch 2)" in line
    qtbot.waitUntil(lambda: train_panel.state.model is not None, timeout=20000)
    assert train_panel.state.model_source == f"trained: {tiny_run.name}"
    assert train_panel.state.model.path.resolve() == (tiny_run / "best.pt").resolve()


def test_after_a_run_continue_from_takes_a_fresh_folder(qtbot, train_panel, tiny_run, monkeypatch):
    """Item 5: Continue-from failed after a run because the Run-folder field still named it; the
    refusal (while it does name a run) is whole and points at Resume."""
    jobs = []
    monkeypatch.setattr(train_panel.runner, "start", lambda worker: jobs.append(worker.request))  # no thread
    field = train_panel.findChild(QLineEdit, "runDirEdit")
    train_panel.set_run_dir(str(tiny_run))  # the folder the last run trained in, chosen by the user
    assert not train_panel.continue_training(tiny_run / "best.pt")
    refusal = train_panel.findChild(QLabel, "earlyStoppingLabel")
    assert refusal.text().startswith("Cannot continue in that folder") and "Use Resume" in refusal.text()
    assert refusal.wordWrap()
    train_panel._on_thread_stopped()  # what the end of that run does
    assert field.text() != str(tiny_run)
    assert train_panel.continue_training(tiny_run / "best.pt")
    assert jobs[-1].mode == "continue" and jobs[-1].out is None  # a new folder, named after the run
    assert train_panel.start_training() and jobs[-1].out is None


# ------------------------------------------------------------------ item 8: locked plots, visible reset
def test_the_identity_plot_is_locked_too(window):
    window.resize(MainWindow.default_size(SCREENS["1366x768"]))
    window.show_panel("noisePanel")
    settle(300)
    plot = window.panels["noisePanel"].findChild(pg.PlotWidget, "identityPlot")
    vb = plot.getPlotItem().getViewBox()
    before = vb.viewRange()
    _wheel_and_drag(plot)
    assert vb.viewRange() == before and plot.findChild(QAbstractButton, "resetViewButton") is None


@pytest.mark.parametrize("panel_name, plot_name", [("trainPanel", "lossPlot"), ("trainPanel", "lossByTimestepPlot"),
                                                   ("runsPanel", "runsPlot")])
def test_the_live_plots_that_pan_show_a_reset_view_button(window, panel_name, plot_name):
    """The training and runs curves may be explored; once moved, "Reset view" in the plot's corner
    (not pyqtgraph's few-pixel "A") puts the whole curve back."""
    window.resize(MainWindow.default_size(SCREENS["1366x768"]))
    window.show_panel(panel_name)
    plot = window.panels[panel_name].findChild(pg.PlotWidget, plot_name)
    plot.plot([1, 2, 3, 4], [0.9, 0.3, 0.2, 0.1])
    settle(300)
    vb = plot.getPlotItem().getViewBox()
    button = plot.findChild(QAbstractButton, "resetViewButton")
    assert button is not None and not button.isVisible()
    before = vb.viewRange()
    _wheel_and_drag(plot)
    assert vb.viewRange() != before
    assert button.isVisible() and button.text() == "Reset view" and button.width() >= 40
    button.click()
    settle(50)
    assert not button.isVisible()


# ------------------------------------------------------------------ item 11: plain words on every panel
#: a paper reader's words a learner, who has no report, meets nowhere on screen
PAPER_WORDS = ("the report", "Report recipe", "Figure ", "nats", "KL(")


def test_no_panel_shows_a_paper_readers_words(window, qtbot, tiny_run):
    """Every panel, with a model loaded and digits sampled: labels, box titles, buttons and
    list entries speak plainly (the formulas and the report's figures live in tooltips)."""
    _with_model(window, qtbot, tiny_run)
    _sample(window, qtbot, n=4)
    found, seen = {}, 0
    for name, panel in window.panels.items():
        window.show_panel(name)
        settle()
        for w in panel.findChildren(QWidget):
            if not w.isVisibleTo(panel):
                continue
            if isinstance(w, (QLabel, QAbstractButton)):
                texts = [w.text()]
            elif isinstance(w, QGroupBox):
                texts = [w.title()]
            elif isinstance(w, QComboBox):
                texts = [w.itemText(i) for i in range(w.count())]
            else:
                continue
            seen += 1
            for text in texts:
                if any(word in text for word in PAPER_WORDS):
                    found[f"{name}: {type(w).__name__}({w.objectName()})"] = text
    assert seen > 100 and found == {}


def test_the_training_chart_says_what_it_shows_and_keeps_its_formula_in_a_tooltip(train_panel):
    """Item 11: the chart's y axis read 'loss ‖ε − ε_θ‖²' and nothing said what the curves were. A
    plain line of eight words or more says it, the axis says 'loss', and both keep the formula in
    their tooltips (as the Runs plot does)."""
    view = train_panel.findChild(pg.PlotWidget, "lossPlot").parentWidget()
    status = {"earlyStoppingLabel", "trainProgressLabel", "epochLabel"}  # lines about the run, not the chart
    captions = [w for w in view.findChildren(QLabel) if w.objectName() not in status and w.isVisibleTo(train_panel)
                and len(w.text().split()) >= 8 and "ε" not in w.text() and "ε" in w.toolTip()]
    axis = train_panel.findChild(pg.PlotWidget, "lossPlot").getPlotItem().getAxis("left")
    assert captions and "ε" not in axis.labelText
    assert "lower is better" in captions[0].text() and "‖ε − ε_θ" in axis.toolTip()


# ------------------------------------------------------------------ item 12: the smoothed loss
def test_the_smoothed_training_loss_starts_where_the_loss_is(train_panel):
    """An un-debiased EMA (weight 0.95) starts at 5% of the first loss and lags badly; the chart's
    smoothed curve starts at the first loss and follows a level loss exactly."""
    records = [StepRecord(epoch=1, step=i, steps_per_epoch=100, global_step=i, loss=0.8, images_per_s=100.0,
                          elapsed=0.1 * i) for i in range(1, 6)]
    records += [StepRecord(epoch=1, step=i, steps_per_epoch=100, global_step=i, loss=0.2, images_per_s=100.0,
                           elapsed=0.1 * i) for i in range(6, 40)]
    train_panel._on_records(records[:3])
    train_panel._on_records(records[3:])  # in two chunks, as the worker's signals bring them
    train_panel.view.redraw()
    plot = train_panel.findChild(pg.PlotWidget, "lossPlot").getPlotItem()
    smoothed = next(item for item in plot.listDataItems() if item.name() == "train (smoothed)")
    y = np.asarray(smoothed.yData, dtype=float)
    assert len(y) == len(records)
    np.testing.assert_allclose(y[:5], 0.8)  # level: no ramp up from 0
    assert 0.2 < y[5] < 0.8 and np.all(np.diff(y[4:]) <= 1e-12)  # then it follows the fall, never overshoots
    w = SMOOTHING  # the debiased EMA's value after 5 steps of 0.8 and k of 0.2, as the Runs panel draws it
    k = np.arange(1, len(records) - 4)
    want = (0.8 * (w ** k) * (1 - w ** 5) + 0.2 * (1 - w ** k)) / (1 - w ** (5 + k))
    np.testing.assert_allclose(y[5:], want, rtol=1e-9)
