"""The forward-noise panel: the t slider, fixed noise, the strip, plots, histogram and readout."""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
import pytest
import torch
from PySide6.QtCore import Qt

from diffusion_studio.engine.storage.data import to_model_range
from diffusion_studio.engine.diffusion.schedule import NoiseSchedule, ScheduleConfig
from diffusion_studio.engine.storage.data import to_uint8
from diffusion_studio.ui.noise_panel import NoisePanel
from diffusion_studio.ui.state import AppState


def make_panel(qtbot, tiny_data, k: int = 8) -> NoisePanel:
    state = AppState()
    state.set_selection(tiny_data.images("train")[:k].numpy(), tiny_data.labels("train")[:k].numpy())
    panel = NoisePanel(state)
    qtbot.addWidget(panel)
    panel.resize(1300, 800)
    panel.show()
    return panel


@pytest.fixture
def panel(qtbot, tiny_data):
    return make_panel(qtbot, tiny_data)


def test_slider_range_and_object_name(panel):
    assert panel.slider.objectName() == "timestepSlider"
    assert panel.findChild(type(panel.slider), "timestepSlider") is panel.slider
    assert (panel.slider.minimum(), panel.slider.maximum()) == (0, panel.state.schedule_config.timesteps) == (0, 300)


def test_t0_shows_the_digits_and_moving_the_slider_changes_the_image(panel, qtbot):
    selection = panel.state.selection
    panel.set_t(0)
    np.testing.assert_array_equal(panel.current_images(), selection)
    key0 = panel.image_label.pixmap().cacheKey()
    # a user drag: keyboard steps on the focused slider
    panel.slider.setFocus()
    for _ in range(5):
        qtbot.keyClick(panel.slider, Qt.Key.Key_PageUp)
    t = panel.t
    assert t > 0 and panel.t_label.text() == f"t = {t}"
    moved = panel.current_images()
    assert not np.array_equal(moved, selection)
    assert panel.image_label.pixmap().cacheKey() != key0
    # x_t is exactly the closed form with the panel's fixed noise
    sched = NoiseSchedule(panel.state.schedule_config)
    x0 = to_model_range(torch.from_numpy(selection))
    want = to_uint8(sched.q_sample(x0, torch.full((len(x0),), t), panel._noise)).numpy()
    np.testing.assert_array_equal(moved, want)


def test_same_t_gives_the_same_picture_and_noise_is_fixed_per_selection(panel, tiny_data):
    panel.set_t(150)
    first = panel.current_images()
    panel.set_t(20)
    panel.set_t(299)
    panel.set_t(150)
    np.testing.assert_array_equal(panel.current_images(), first)
    panel.new_noise()
    assert not np.array_equal(panel.current_images(), first)
    # a new selection draws its noise once: the image at t is stable while dragging
    panel.state.set_selection(tiny_data.images("test")[:5].numpy(), tiny_data.labels("test")[:5].numpy())
    panel.set_t(200)
    a = panel.current_images()
    panel.set_t(10)
    panel.set_t(200)
    np.testing.assert_array_equal(panel.current_images(), a)
    assert a.shape == (5, 28, 28)


def test_histogram_and_markers_follow_t(panel):
    panel.set_t(0)
    edges, h0 = panel.histogram()
    assert all(m.value() == 0 for m in panel.curves.markers)
    # at t = 0 the pixels sit in [-1, 1]: no mass beyond
    centres = (edges[:-1] + edges[1:]) / 2
    assert h0[np.abs(centres) > 1.05].sum() == 0
    panel.set_t(250)
    _, h1 = panel.histogram()
    assert all(m.value() == 250 for m in panel.curves.markers)
    assert h1[np.abs(centres) > 1.05].sum() > 0
    width = edges[1] - edges[0]
    assert math.isclose(h1.sum() * width, 1.0, rel_tol=1e-3)  # a density
    x, y = panel.curves.hist_curve.getData()
    np.testing.assert_allclose(y, h1)


def test_histogram_matches_standard_normal_when_the_image_is_gone(qtbot, tiny_data):
    panel = make_panel(qtbot, tiny_data, k=64)
    panel.set_schedule("cosine", 300)  # alphabar_T ~ 0: x_T is N(0, I)
    panel.set_t(300)
    edges, h = panel.histogram()
    centres = (edges[:-1] + edges[1:]) / 2
    normal = np.exp(-0.5 * centres**2) / math.sqrt(2 * math.pi)
    assert np.abs(h - normal).max() < 0.05


def test_strip_has_the_report_timesteps(panel):
    assert panel.strip_timesteps == [0, 20, 50, 100, 300]
    assert not panel.strip_label.pixmap().isNull()
    panel.set_schedule("linear", 80)
    assert panel.strip_timesteps == [0, 20, 50, 80]


def test_schedule_switch_changes_state_and_readout(panel, qtbot):
    panel.set_schedule("linear", 300)
    text = panel.readout.text()
    assert "0.219" in text  # the report's linear T = 300 schedule keeps 0.219 of the image
    assert "KL" not in text and "KL(q(x_T|x_0) ‖ N(0, I))" in panel.readout.toolTip()  # the formula in the tooltip
    beta_before = panel.curves.beta_curve.getData()[1].copy()
    with qtbot.waitSignal(panel.state.schedule_changed, timeout=1000):
        panel.schedule_combo.setCurrentIndex(panel.schedule_combo.findData("cosine"))
    assert panel.state.schedule_config.kind == "cosine"
    cos = NoiseSchedule(ScheduleConfig(kind="cosine", timesteps=300))
    assert f"{cos.signal_at_T():.3f}" in panel.readout.text()
    assert panel.readout.text() != text
    assert not np.allclose(panel.curves.beta_curve.getData()[1], beta_before)
    panel.set_schedule("rescaled_linear", 300)
    resc = NoiseSchedule(ScheduleConfig(kind="rescaled_linear", timesteps=300))
    assert f"{resc.signal_at_T():.3f}" in panel.readout.text()
    # T follows the spin box and the slider range follows T
    panel.steps_spin.setValue(500)
    assert panel.state.schedule_config.timesteps == 500 and panel.slider.maximum() == 500


def test_invalid_schedule_is_refused_with_a_message(panel, qtbot, monkeypatch):
    import diffusion_studio.ui.noise_panel as noise_panel_module

    def refuse(**kwargs):
        raise ValueError("beta_end must stay below 1, got 1.5")

    monkeypatch.setattr(noise_panel_module, "ScheduleConfig", refuse)
    before = panel.state.schedule_config
    with qtbot.waitSignal(panel.state.status_message, timeout=1000) as blocker:
        panel.set_schedule("rescaled_linear", 10)
    assert "not valid" in blocker.args[0]
    assert panel.state.schedule_config == before
    assert panel.steps_spin.value() == before.timesteps


def test_empty_selection_shows_a_hint(qtbot):
    panel = NoisePanel(AppState())
    qtbot.addWidget(panel)
    panel.set_t(40)
    assert panel.current_images().shape == (0, 28, 28)
    assert "Select digits" in panel.image_label.text()


def test_a_drag_over_64_digits_draws_every_frame(qtbot, tiny_data):
    panel = make_panel(qtbot, tiny_data, k=64)
    qtbot.waitExposed(panel)
    assert len(panel.state.selection) == 64
    times = []
    for t in list(range(0, 301, 3)) + list(range(300, -1, -7)):  # a drag there and back
        start = time.perf_counter()
        panel.slider.setValue(t)
        times.append((time.perf_counter() - start) * 1000)
    times = np.array(times[1:])
    print(
        f"\nnoise panel, 64 digits: frame time median {np.median(times):.2f} ms, "
        f"mean {times.mean():.2f} ms, p95 {np.percentile(times, 95):.2f} ms over {len(times)} frames"
    )
    assert panel.last_frame_ms > 0  # every value drew a frame (how fast: bench/gui_latency.py)


def test_play_sweeps_t_and_pauses(panel, qtbot):
    panel.set_t(0)
    panel.play_button.click()
    assert panel.play_button.isChecked()
    qtbot.waitUntil(lambda: panel.t >= 20, timeout=5000)
    panel.play_button.click()
    stopped = panel.t
    qtbot.wait(4 * 30)
    assert panel.t == stopped
    # it turns around at T
    panel.set_t(panel.slider.maximum())
    panel.play_button.click()
    qtbot.waitUntil(lambda: panel.t < panel.slider.maximum(), timeout=5000)
    panel.hide()  # leaving the tab stops it
    assert not panel.play_button.isChecked()


def test_the_panel_says_whose_schedule_it_shows(panel, tiny_data, tmp_path):
    from diffusion_studio.engine.storage.checkpoint import load_model
    from diffusion_studio.engine.training.presets import get_preset
    from diffusion_studio.engine.training.config import TrainConfig
    from diffusion_studio.engine.training.plan import plan_new
    from diffusion_studio.engine.training.trainer import Trainer
    from diffusion_studio.engine.diffusion.unet import UNetConfig

    label = panel.findChild(type(panel.schedule_source_label), "scheduleSourceLabel")
    assert panel.state.schedule_config == get_preset("default").schedule  # what the next run trains
    assert "the training form" in label.text()
    trainer = Trainer(plan_new(UNetConfig(base_channels=4), ScheduleConfig(
        kind="cosine", timesteps=40), TrainConfig(epochs=1, batch_size=32, precision="fp32")), tiny_data, device="cpu", run_dir=tmp_path / "run")
    list(trainer.run())
    panel.state.set_model(load_model(tmp_path / "run" / "best.pt"), "trained: run")
    assert panel.slider.maximum() == 40 and panel.schedule_combo.currentData() == "cosine"
    assert label.text() == "cosine, T = 40: the schedule of the loaded model (trained: run)"
    panel.set_schedule("linear", 300)
    assert "this panel (not what the next run trains)" in label.text()


@pytest.fixture(scope="module")
def tiny_model_checkpoint(tiny_data, tmp_path_factory):
    from diffusion_studio.engine.training.config import TrainConfig
    from diffusion_studio.engine.training.plan import plan_new
    from diffusion_studio.engine.training.trainer import Trainer
    from diffusion_studio.engine.diffusion.unet import UNetConfig

    run = tmp_path_factory.mktemp("noise_model")
    trainer = Trainer(plan_new(UNetConfig(base_channels=4), ScheduleConfig(
        kind="rescaled_linear", timesteps=300), TrainConfig(epochs=1, batch_size=32, precision="fp32")), tiny_data, device="cpu", run_dir=run)
    list(trainer.run())
    return run / "best.pt"


def test_the_models_view_follows_the_slider(qtbot, tiny_data, tiny_model_checkpoint):
    from diffusion_studio.engine.storage.checkpoint import load_model
    from diffusion_studio.tasks.explore import ModelViewRequest, model_view

    panel = make_panel(qtbot, tiny_data, k=20)
    pred = panel.findChild(type(panel.image_label), "predictionView")
    err = panel.findChild(type(panel.image_label), "epsErrorView")
    assert pred is panel.model_box.prediction_view and err is panel.model_box.eps_error_view
    loaded = load_model(tiny_model_checkpoint)
    with qtbot.waitSignal(panel.prediction_shown, timeout=10000):
        panel.state.set_model(loaded, "trained: tiny")
    with qtbot.waitSignal(panel.prediction_shown, timeout=10000, check_params_cb=lambda t: t == 123):
        panel.set_t(123)
    result = panel.last_prediction
    assert result["t"] == 123 and result["x0_pred"].shape == result["error"].shape == (16, 28, 28)  # first 16
    # exactly the network's prediction for this panel's digits and noise
    again = model_view(loaded, ModelViewRequest(panel._x0[:16], panel._noise[:16], 123))
    np.testing.assert_array_equal(again["x0_pred"], result["x0_pred"])
    np.testing.assert_allclose(again["mse"], result["mse"])
    assert "t = 123" in panel.model_box.model_error_label.text() and f"{result['mse'][0]:.3f}" in panel.model_box.model_error_label.text()
    assert pred.array is not None and err.array is not None
    panel.shutdown()


def test_dragging_drops_stale_requests(qtbot, tiny_data, tiny_model_checkpoint):
    from diffusion_studio.engine.storage.checkpoint import load_model

    panel = make_panel(qtbot, tiny_data, k=16)
    panel.state.set_model(load_model(tiny_model_checkpoint), "trained: tiny")
    before = panel.predictions.computed
    for t in range(1, 201):  # a fast drag: 200 slider values without giving the worker time
        panel.set_t(t)
    qtbot.waitUntil(lambda: panel.last_prediction is not None and panel.last_prediction["t"] == 200, timeout=10000)
    assert panel.predictions.computed - before < 200  # most requests were replaced before they started
    panel.shutdown()


def test_denoise_from_here_and_the_identity_curve(qtbot, tiny_data, tiny_model_checkpoint):
    from diffusion_studio.engine.storage.checkpoint import load_model

    panel = make_panel(qtbot, tiny_data, k=6)
    button = panel.findChild(type(panel.denoise_box.denoise_button), "denoiseFromHereButton")
    assert not button.isEnabled()  # no model yet
    panel.state.set_data(tiny_data, None)
    panel.state.set_model(load_model(tiny_model_checkpoint), "trained: tiny")
    assert button.isEnabled()
    panel.set_t(40)
    with qtbot.waitSignal(panel.denoise_finished, timeout=120000) as blocker:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert blocker.args == [40]
    r = panel.denoise_result
    assert r.t == 40 and r.result.shape == r.x0.shape == (6, 28, 28)
    assert r.predicted is not None and len(r.predicted) == 6
    assert "Still the same digit" in panel.denoise_box.denoise_label.text()
    view = panel.findChild(type(panel.image_label), "denoiseView")
    assert view.array is not None and view.array.shape == (2 * 30 + 2, 6 * 30 + 2)  # originals over results
    curve_button = panel.findChild(type(panel.denoise_box.denoise_button), "identityCurveButton")
    qtbot.waitUntil(lambda: curve_button.isEnabled(), timeout=10000)  # the first run's thread has ended
    with qtbot.waitSignal(panel.identity_finished, timeout=120000):
        assert panel.identity_curve([10, 100, 300])
    assert [t for t, _ in panel.identity_points] == [10, 100, 300]
    assert all(0.0 <= s <= 1.0 for _, s in panel.identity_points)
    x, y = panel.denoise_box.identity_curve_item.getData()
    assert list(x) == [10, 100, 300]
    qtbot.waitUntil(lambda: curve_button.isEnabled(), timeout=10000)
    panel.shutdown()


def test_a_mosaic_fits_its_box_whatever_the_boxs_shape(qtbot):
    """A mosaic used to be drawn in a square of at least 242 px whatever its box, so a short box
    (the model's views) cropped the top and bottom rows of digits, and the 2 x 16 strip of
    "denoise from here" was drawn 242 px wide in a box three times as wide."""
    from diffusion_studio.ui.widgets import ImageView

    view = ImageView("")
    qtbot.addWidget(view)
    view.setMinimumSize(100, 100)
    view.resize(400, 130)
    view.set_array(np.full((118, 118), 200, dtype=np.uint8))  # 4 x 4 digits with their padding
    pix = view.pixmap()
    assert not pix.isNull() and pix.height() <= 130 and pix.width() <= 400
    assert pix.height() >= 110  # as large as the box allows
    view.resize(1000, 200)
    view.set_array(np.full((58, 478), 200, dtype=np.uint8))  # two rows of 16 digits
    pix = view.pixmap()
    assert pix.width() <= 1000 and pix.height() <= 200
    assert (pix.width(), pix.height()) == (2 * 478, 2 * 58)  # the strip fills the width, in whole pixels


def test_denoise_from_here_uses_the_models_guide_as_the_sampler_does(qtbot, tiny_data, tiny_model_checkpoint,
                                                                      tmp_path, monkeypatch):
    """"With the sampler panel's settings": a model with a guide network denoises with autoguidance,
    in the animation and in the identity curve alike."""
    from diffusion_studio.engine.diffusion import explore as E
    from diffusion_studio.engine.diffusion import sampling as S
    from diffusion_studio.engine.storage.checkpoint import attach_guide, load_checkpoint, load_model, save_checkpoint

    payload = load_checkpoint(tiny_model_checkpoint)
    save_checkpoint(tmp_path / "guided.pt", attach_guide(payload, payload, "early.pt"))
    guides = []
    real = S.sample_steps

    def spy(*args, **kwargs):
        guides.append((kwargs.get("guide"), kwargs["sampler"].autoguidance))
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "sample_steps", spy)
    monkeypatch.setattr(E, "sample_steps", spy)  # the identity curve's denoise_from runs it from there
    panel = make_panel(qtbot, tiny_data, k=4)
    panel.state.set_data(tiny_data, None)
    loaded = load_model(tmp_path / "guided.pt")
    panel.state.set_model(loaded, "trained: tiny with a guide")
    panel.set_t(30)
    with qtbot.waitSignal(panel.denoise_finished, timeout=120000):
        assert panel.denoise_from_here()
    curve_button = panel.findChild(type(panel.denoise_box.denoise_button), "identityCurveButton")
    qtbot.waitUntil(lambda: curve_button.isEnabled(), timeout=10000)
    with qtbot.waitSignal(panel.identity_finished, timeout=120000):
        assert panel.identity_curve([10, 20])
    want = panel.state.current_sampler_config().autoguidance
    assert want > 0 and len(guides) == 3 and all(g is loaded.guide and w == want for g, w in guides)
    qtbot.waitUntil(lambda: curve_button.isEnabled(), timeout=10000)
    panel.shutdown()


def test_a_conditional_models_view_is_given_each_digits_label_and_says_so(qtbot, tiny_data, tiny_model_checkpoint):
    """Issue 32, item 6: the class-conditional model's view runs with the selected digits' labels and
    says "(conditioned on each digit's label)"; an unconditional model's says nothing of labels."""
    from diffusion_studio.engine.storage.checkpoint import load_model
    from diffusion_studio.tasks.models import open_model

    panel = make_panel(qtbot, tiny_data, k=6)
    label = panel.findChild(type(panel.model_box.model_error_label), "epsErrorLabel")
    with qtbot.waitSignal(panel.prediction_shown, timeout=20000):
        panel.state.set_model(open_model("default-conditional", "cpu"), "bundled class-conditional model")
    qtbot.waitUntil(lambda: panel.last_prediction is not None and panel.last_prediction["t"] == panel.t, timeout=20000)
    assert panel.last_prediction["conditioned"] and "(conditioned on each digit's label)" in label.text()
    with qtbot.waitSignal(panel.prediction_shown, timeout=20000):
        panel.state.set_model(load_model(tiny_model_checkpoint), "trained: tiny")
    qtbot.waitUntil(lambda: not panel.last_prediction["conditioned"], timeout=20000)
    assert "conditioned" not in label.text() and "label" not in label.text()
    panel.shutdown()


def test_the_error_map_has_a_labelled_colour_scale(panel):
    """Issue 32, item 6: beside the eps-error map a grey ramp says what black and white mean:
    0 at the bottom (black), ERROR_FULL_SCALE or more at the top (white)."""
    from PySide6.QtWidgets import QWidget

    from diffusion_studio.tasks.explore import ERROR_FULL_SCALE

    scale = panel.findChild(QWidget, "epsErrorScale")
    error_map = panel.findChild(QWidget, "epsErrorView")
    assert scale is not None and scale.isVisible()
    assert scale.labels == ("0", f"≥ {ERROR_FULL_SCALE:g}")
    assert scale.height() >= 60 and scale.width() < 80
    # beside the map: to its right, level with it
    here = scale.mapTo(panel, scale.rect().topLeft())
    there = error_map.mapTo(panel, error_map.rect().topRight())
    assert here.x() >= there.x() and abs(here.y() - there.y()) < 20
    image = scale.grab().toImage()
    x = scale.RAMP_WIDTH // 2
    top, bottom = image.pixelColor(x, scale.fontMetrics().height()), image.pixelColor(x, scale.height() - scale.fontMetrics().height())
    assert top.lightness() > 200 and bottom.lightness() < 55


def test_views_of_a_previous_model_or_schedule_are_marked_until_recomputed(qtbot, tiny_data, tiny_model_checkpoint):
    """Issue 32, item 6: the model's view and the "denoise from here" result say, first and in red,
    "From <model>, not the current model" once the model changes (until they are recomputed), and the
    model's view says when it was computed under another schedule than the one the panel shows."""
    from diffusion_studio.engine.storage.checkpoint import load_model

    panel = make_panel(qtbot, tiny_data, k=4)
    view_line = panel.findChild(type(panel.model_box.model_error_label), "epsErrorLabel")
    denoise_line = panel.findChild(type(panel.model_box.model_error_label), "denoiseLabel")
    panel.state.set_data(tiny_data, None)
    with qtbot.waitSignal(panel.prediction_shown, timeout=20000):
        panel.state.set_model(load_model(tiny_model_checkpoint), "trained: first")
    panel.set_t(20)
    with qtbot.waitSignal(panel.denoise_finished, timeout=120000):
        assert panel.denoise_from_here()
    qtbot.waitUntil(lambda: panel.last_prediction["t"] == 20 and "t = 20" in view_line.text(), timeout=20000)
    assert "not the current model" not in view_line.text() + denoise_line.text()
    panel.state.set_model(None, "")  # no model: the model's view is cleared, the denoise picture kept
    assert "From trained: first, not the current model (none)" in denoise_line.text()
    assert "b00020" in denoise_line.text() and "Still the same digit" in denoise_line.text()
    with qtbot.waitSignal(panel.prediction_shown, timeout=20000):
        panel.state.set_model(load_model(tiny_model_checkpoint), "trained: second")
    assert "From trained: first, not the current model (trained: second)" in denoise_line.text()
    assert "not the current model" not in view_line.text()  # recomputed for the new model
    with qtbot.waitSignal(panel.denoise_finished, timeout=120000):
        assert panel.denoise_from_here()
    assert "not the current model" not in denoise_line.text()
    # the panel shows another schedule than the model's: the model's view says under which it was made
    panel.set_schedule("cosine", 300)
    assert "Computed under the model's schedule (rescaled_linear, T = 300), not the cosine, T = 300 shown above" \
        in view_line.text()
    panel.set_schedule("rescaled_linear", 300)
    assert "Computed under" not in view_line.text()
    panel.shutdown()


# ------------------------------------------------ plain words, formulas in tooltips (issue 32, item 11)
#: what a learner, who has no report and no paper at hand, should not meet on screen
JARGON = ("report", "Figure", "nats", "KL(", "ᾱ", "ε_θ", "‖")


def visible_texts(root) -> dict[str, str]:
    """{where: text} of every visible label and group box title under ``root``."""
    from PySide6.QtWidgets import QGroupBox, QLabel

    out = {}
    for w in root.findChildren(QLabel) + root.findChildren(QGroupBox):
        if w.isVisibleTo(root):
            out[f"{type(w).__name__}({w.objectName()})"] = w.text() if isinstance(w, QLabel) else w.title()
    return out


def test_no_label_on_the_forward_panel_uses_a_papers_words(qtbot, tiny_data, tiny_model_checkpoint):
    """Labels and box titles speak plainly, with a model's view and a schedule's readouts shown;
    the formulas, the KL in nats and the report's figure live in the tooltips."""
    from diffusion_studio.engine.storage.checkpoint import load_model

    panel = make_panel(qtbot, tiny_data)
    with qtbot.waitSignal(panel.prediction_shown, timeout=20000):
        panel.state.set_model(load_model(tiny_model_checkpoint), "a tiny model")
    texts = visible_texts(panel)
    assert len(texts) >= 10
    found = {where: text for where, text in texts.items() if any(word in text for word in JARGON)}
    assert found == {}
    assert "nats" in panel.readout.toolTip()
    tip = panel.t_readout.toolTip()
    assert "β_t = " in tip and "ᾱ_t = " in tip and "SNR_t = ᾱ_t / (1 − ᾱ_t)" in tip
    assert "× the digit" in panel.t_readout.text() and "× noise" in panel.t_readout.text()
    for name, formula in (("betaPlot", "N(√(1−β_t) x_{t−1}, β_t I)"), ("alphabarPlot", "x_t = √ᾱ_t x_0"),
                          ("snrPlot", "ᾱ_t / (1 − ᾱ_t)"), ("histogramPlot", "N(0, 1)")):
        assert formula in panel.findChild(pg.PlotWidget, name).toolTip(), name


def test_each_view_says_what_it_shows(panel):
    from PySide6.QtWidgets import QLabel

    for name in ("noisyImagesCaption", "curvesCaption", "modelViewCaption", "denoiseCaption", "noiseStripCaption"):
        line = panel.findChild(QLabel, name)
        assert line is not None and line.isVisibleTo(panel), name
        assert len(line.text().split()) >= 8 and not any(word in line.text() for word in JARGON), name
        assert line.geometry().bottom() < line.parentWidget().height(), name  # drawn inside its box


def test_the_strips_caption_says_how_much_of_the_digit_is_left_and_its_tooltip_has_the_formula(panel):
    from PySide6.QtWidgets import QGroupBox, QLabel

    line = panel.findChild(QLabel, "noiseStripCaption")
    assert "x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε" in line.toolTip() and "Figure 3" in line.toolTip()
    assert panel.findChild(QGroupBox, "forwardStripBox").toolTip() == line.toolTip()
    for kind, T in (("linear", 300), ("rescaled_linear", 300), ("linear", 80)):
        panel.set_schedule(kind, T)
        last = panel.strip_timesteps[-1]
        kept = float(NoiseSchedule(ScheduleConfig(kind=kind, timesteps=T)).sqrt_alphabar[last])
        assert f"by t = {last}," in line.text()
        # the linear schedule keeps 22% of the digit at t = 300; the rescaled one under 1%
        assert ("almost nothing" in line.text()) == (kept < 0.05), (kind, T, line.text())
        assert kept < 0.05 or f"{kept:.0%} of the digit is left" in line.text(), (kind, T, line.text())
