"""The sampler panel, used as a person would: sample, scrub, play, export, cancel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from diffusion_studio.engine.storage.checkpoint import load_model
from diffusion_studio.engine.diffusion.scheduling import SamplerConfig
from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
from diffusion_studio.engine.training.config import TrainConfig
from diffusion_studio.engine.training.plan import plan_new
from diffusion_studio.engine.training.trainer import Trainer
from diffusion_studio.engine.diffusion.unet import UNetConfig
from diffusion_studio.ui import sampler_panel as sp
from diffusion_studio.engine.storage.images import tile
from diffusion_studio.ui.state import AppState
from diffusion_studio.tasks import sample as sample_task


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("sampler_run")
    trainer = Trainer(plan_new(UNetConfig(base_channels=4), ScheduleConfig(timesteps=10), TrainConfig(epochs=1, batch_size=32, precision="fp32")), tiny_data, device="cpu", run_dir=run)
    for _ in trainer.run():
        pass
    return run / "best.pt"


@pytest.fixture
def panel(qtbot, tiny_checkpoint):
    state = AppState()
    state.set_model(load_model(tiny_checkpoint), "trained: tiny")
    p = sp.SamplerPanel(state)
    qtbot.addWidget(p)
    p.resize(1000, 700)
    p.show()
    yield p
    p.shutdown(5000)


def run_sampling(qtbot, panel, n=6):
    panel.form.count_spin.setValue(n)
    with qtbot.waitSignal(panel.sampling_finished, timeout=30000) as blocker:
        qtbot.mouseClick(panel.sample_button, Qt.MouseButton.LeftButton)
    return blocker.args[0]


def record_sample_steps(monkeypatch, module) -> dict:
    """Wrap ``module.sample_steps`` so the keyword arguments of its latest call land in the returned dict."""
    seen = {}
    real = module.sample_steps

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "sample_steps", spy)
    return seen


def test_needs_a_model(qtbot):
    p = sp.SamplerPanel(AppState())
    qtbot.addWidget(p)
    assert p.findChild(type(p.sample_button), "sampleButton") is p.sample_button
    assert not p.sample_button.isEnabled() and "model" in p.sample_button.toolTip().lower()
    assert not p.sample()
    assert p.export_grid("unused.png") is None  # nothing to export: a message, no file
    assert "sample first" in p.message.text()


def test_sample_keeps_frames_and_scrubbing_does_not_recompute(qtbot, panel):
    assert panel.sample_button.isEnabled()
    assert panel.progress.text() == "no samples yet"  # not "0 / 1 steps" before the first run
    assert run_sampling(qtbot, panel) == "finished"
    assert panel.progress.text() == "10 / 10 steps"
    frames = panel.frames
    assert [f.t for f in frames] == list(range(10, -1, -1))  # T=10, DDPM: every step kept
    assert frames[0].x.shape == (6, 28, 28) and frames[-1].x.dtype == np.uint8
    # the view shows the result: x_0 on the left, its own x_0 on the right
    assert panel.view.slider.maximum() == len(frames) - 1 and panel.view.slider.value() == len(frames) - 1
    np.testing.assert_array_equal(panel.view.xt_view.array, tile(frames[-1].x, pad=2, pad_value=90))
    # scrub to x_T: the image changes, from the kept frames, with no worker started
    kept = list(frames)
    panel.view.slider.setValue(0)
    assert panel.current_index == 0 and not panel.runner.is_running()
    np.testing.assert_array_equal(panel.view.xt_view.array, tile(frames[0].x, pad=2, pad_value=90))
    np.testing.assert_array_equal(panel.view.x0_view.array, tile(frames[0].x0, pad=2, pad_value=90))
    assert not np.array_equal(panel.view.xt_view.array, tile(frames[-1].x, pad=2, pad_value=90))
    assert "t = 10" in panel.view.frame_label.text() and "t = 10" in panel.view.xt_title.text()
    panel.view.slider.setValue(5)
    assert f"t = {frames[5].t}" in panel.view.frame_label.text()
    assert all(a is b for a, b in zip(panel.frames, kept))  # the same frames, nothing recomputed
    # the strip: t = 10 (T) and 0 for this tiny schedule
    assert [f.t for f in panel.strip_frames()] == [10, 0]
    assert not panel.view.strip_view.pixmap().isNull()


def test_play_and_pause(qtbot, panel):
    run_sampling(qtbot, panel, n=2)
    panel.view.slider.setValue(0)
    panel.view.play_button.click()
    assert panel.is_playing()
    qtbot.waitUntil(lambda: panel.current_index >= 2, timeout=5000)
    panel.view.play_button.click()
    assert not panel.is_playing()
    stopped_at = panel.current_index
    qtbot.wait(300)
    assert panel.current_index == stopped_at
    panel.play()  # plays to the end and stops there
    qtbot.waitUntil(lambda: not panel.is_playing(), timeout=5000)
    assert panel.current_index == len(panel.frames) - 1


def test_exports_write_png_grid_strip_and_gif(qtbot, panel, tmp_path):
    panel.form.sampler_combo.setCurrentIndex(panel.form.sampler_combo.findData("ddim"))
    panel.form.steps_spin.setValue(5)
    assert panel.form.steps_spin.isEnabled() and panel.form.eta_spin.isEnabled()
    cfg = panel.sampler_config()
    assert (cfg.kind, cfg.steps, cfg.clip_x0) == ("ddim", 5, SamplerConfig(kind="ddim").clips_x0)  # the one default
    panel.form.clip_check.setChecked(True)
    assert panel.sampler_config().clip_x0
    panel.form.clip_check.setChecked(False)
    assert panel.sampler_config().clip_x0 is False
    run_sampling(qtbot, panel, n=4)
    assert [f.t for f in panel.frames][0] == 10 and panel.frames[-1].t == 0 and len(panel.frames) == 6
    assert panel.export_grid_button.isEnabled()
    grid = panel.export_grid(tmp_path / "out" / "grid.png")
    with Image.open(grid) as im:  # enlarged 4 times by default (whole pixels)
        assert im.format == "PNG" and im.size == (4 * (2 * 30 + 2), 4 * (2 * 30 + 2))
        np.testing.assert_array_equal(np.asarray(im)[::4, ::4], tile(panel.frames[-1].x, pad=2, pad_value=255))
    strip = panel.export_strip(tmp_path / "strip.png")
    with Image.open(strip) as im:
        assert im.format == "PNG" and im.width > 2 * 28 and im.height > 4 * 28
    gif = panel.export_gif(tmp_path / "anim")  # the suffix is added
    assert gif.suffix == ".gif"
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames > 1
    assert "Saved" in panel.message.text()


def slow_sample_frames(model, request, ctx, **kwargs):
    """``tasks.sample.sample_frames``, 0.1 s slower per kept frame."""
    import time

    hand_over = ctx.on_partial

    def slowly(frame):
        time.sleep(0.1)
        hand_over(frame)

    ctx.on_partial = slowly
    return sample_task.sample_frames(model, request, ctx, **kwargs)


def test_cancel_stops_the_worker(qtbot, panel, monkeypatch):
    monkeypatch.setattr(sp, "sample_frames", slow_sample_frames)
    panel.form.count_spin.setValue(2)
    with qtbot.waitSignal(panel.sampling_finished, timeout=10000) as blocker:
        panel.sample_button.click()
        assert panel.cancel_button.isEnabled() and not panel.sample_button.isEnabled()
        qtbot.waitUntil(lambda: panel.progress.value() >= 1, timeout=5000)
        panel.cancel_button.click()
    assert blocker.args == ["cancelled"]
    assert not panel.runner.is_running() and panel.sample_button.isEnabled()
    assert 0 < len(panel.frames) < 11
    assert "cancelled" in panel.message.text().lower()
    assert not panel.export_grid_button.isEnabled()  # no final grid from a cancelled run


def test_open_checkpoint_errors_are_messages(qtbot, panel, tmp_path, tiny_checkpoint):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with qtbot.waitSignal(panel.state.model_open_failed, timeout=20000):
        assert panel.open_checkpoint(bad)  # read off the GUI thread
    assert "Cannot open checkpoint:" in panel.message.text() and "bad.pt" in panel.message.text()
    assert not panel.open_checkpoint(tmp_path / "missing.pt")
    assert "Cannot open missing.pt" in panel.message.text()
    with qtbot.waitSignal(panel.state.model_changed, timeout=20000):
        assert panel.open_checkpoint(tiny_checkpoint)
    assert panel.state.model_source.startswith("checkpoint:")
    assert panel.form.model_combo.itemText(0) == panel.state.model_source


@pytest.fixture(scope="module")
def tiny_conditional_checkpoint(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("sampler_cond_run")
    trainer = Trainer(plan_new(UNetConfig(base_channels=4, num_classes=10), ScheduleConfig(timesteps=10), TrainConfig(epochs=1, batch_size=32, precision="fp32")), tiny_data, device="cpu", run_dir=run)
    for _ in trainer.run():
        pass
    return run / "best.pt"


def test_digit_and_guidance_only_for_conditional_models(qtbot, panel, tiny_conditional_checkpoint, monkeypatch):
    # the unconditional model: no digit to choose, and why is said
    assert not panel.form.digit_combo.isEnabled() and not panel.form.guidance_spin.isEnabled()
    assert "unconditional" in panel.form.digit_combo.toolTip()
    assert panel.labels(4) is None and panel.sampler_config().guidance == 0.0
    panel.state.set_model(load_model(tiny_conditional_checkpoint), "trained: tiny conditional")
    assert panel.form.digit_combo.isEnabled() and panel.form.guidance_spin.isEnabled()
    info = panel.form.model_info.text()
    assert "class-conditional" in info and f"{panel.state.model.epochs_trained:g} epochs" in info
    # what the worker is asked for: every image a 3, guided with w = 1.5
    seen = record_sample_steps(monkeypatch, sample_task)
    panel.form.digit_combo.setCurrentIndex(panel.form.digit_combo.findData(3))
    panel.form.guidance_spin.setValue(1.5)
    assert run_sampling(qtbot, panel, n=5) == "finished"
    assert seen["labels"].tolist() == [3] * 5 and seen["sampler"].guidance == 1.5
    assert "digit 3, guidance 1.5" in panel.message.text()
    # "all digits" cycles 0..9
    panel.form.digit_combo.setCurrentIndex(0)
    assert panel.labels(12).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_the_form_opens_at_the_engine_defaults_for_a_conditional_model(qtbot, tiny_conditional_checkpoint):
    """The form shows SamplerConfig()'s values exactly (a spin box with too few decimals
    would round the default guidance weight, and the GUI would sample differently from the CLI)."""
    state = AppState()
    state.set_model(load_model(tiny_conditional_checkpoint), "trained: tiny conditional")
    p = sp.SamplerPanel(state)
    qtbot.addWidget(p)
    form, default = p.sampler_config(), SamplerConfig()
    fields = ("kind", "steps", "eta", "variance", "clips_x0", "guidance", "autoguidance_min_t")  # (no guide: g = 0)
    assert [getattr(form, f) for f in fields] == [getattr(default, f) for f in fields]
    for value in (0.25, 0.75, 1.5):  # the weights a person types are kept as typed
        p.form.guidance_spin.setValue(value)
        assert p.sampler_config().guidance == value


def test_autoguidance_only_for_models_with_a_guide(qtbot, panel, tiny_checkpoint, tmp_path, monkeypatch):
    from diffusion_studio.engine.storage.checkpoint import attach_guide, load_checkpoint, save_checkpoint

    # the tiny model has no guide: the control is off, says why, and the form asks for none
    assert not panel.form.autoguidance_spin.isEnabled() and "no guide network" in panel.form.autoguidance_spin.toolTip()
    assert not panel.form.autoguidance_min_t_spin.isEnabled()
    assert panel.sampler_config().autoguidance == 0.0
    payload = load_checkpoint(tiny_checkpoint)
    weak = {**payload, "ema_weights": None, "weights": {k: v * 0.5 if v.is_floating_point() else v
                                                        for k, v in payload["weights"].items()}}
    save_checkpoint(tmp_path / "guided.pt", attach_guide(payload, weak, "early/best.pt"))
    panel.state.set_model(load_model(tmp_path / "guided.pt"), "trained: tiny with a guide")
    assert panel.form.autoguidance_spin.isEnabled() and "early/best.pt" in panel.form.autoguidance_spin.toolTip()
    assert panel.form.autoguidance_min_t_spin.isEnabled() and "interval" in panel.form.autoguidance_min_t_spin.toolTip()
    assert "autoguidance guide of 1.0 epochs" in panel.form.model_info.text()
    # the model line, three lines long here, gets the height its text needs (it lost a line at each end)
    qtbot.waitUntil(lambda: panel.form.model_info.height() >= panel.form.model_info.heightForWidth(panel.form.model_info.width()))
    assert panel.form.model_info.heightForWidth(panel.form.model_info.width()) > 2 * panel.form.model_info.fontMetrics().height()
    assert panel.sampler_config().autoguidance == SamplerConfig().autoguidance  # the engine's default
    seen = record_sample_steps(monkeypatch, sample_task)
    panel.form.autoguidance_spin.setValue(1.25)
    panel.form.autoguidance_min_t_spin.setValue(3)
    assert run_sampling(qtbot, panel, n=4) == "finished"
    assert seen["sampler"].autoguidance == 1.25 and seen["guide"] is panel.state.model.guide
    assert seen["sampler"].autoguidance_min_t == 3
    assert "autoguidance 1.25" in panel.message.text()
    # the sweep compares autoguidance weights for it (it has no labels for classifier-free guidance)
    assert panel.sweep_button.isEnabled() and "Autoguidance g = 0, 0.5, 1, 2, 4" in panel.sweep_button.toolTip()
    with qtbot.waitSignal(panel.sampling_finished, timeout=60000) as blocker:
        qtbot.mouseClick(panel.sweep_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0] == "completed" and panel.explore_strip.shape == (4 * 5, 28, 28)  # four seeds x five g
    assert "autoguidance g = 0, 0.5, 1, 2, 4 above t = 3, away from a guide of 1.0 epochs" in panel.explore_box.caption.text()
    assert panel.explore_box.strip.column_labels == ("g = 0", "g = 0.5", "g = 1", "g = 2", "g = 4")
    assert panel.explore_box.strip.row_labels == ("seed 0", "seed 1", "seed 2", "seed 3")
    # and the interpolation steers with the form's weight too
    from diffusion_studio.engine.diffusion import explore as engine_sample  # interpolate runs its loop

    seen = record_sample_steps(monkeypatch, engine_sample)
    with qtbot.waitSignal(panel.sampling_finished, timeout=60000):
        assert panel.interpolate()
    assert seen["guide"] is panel.state.model.guide and seen["sampler"].autoguidance == 1.25
    assert seen["sampler"].autoguidance_min_t == 3
    assert "autoguidance g = 1.25 above t = 3" in panel.explore_box.caption.text()


@pytest.mark.slow
def test_the_gui_sampler_at_its_initial_settings_makes_the_cli_samples(qtbot, tmp_path):
    """One SamplerConfig and one default count end to end: the panel as the app opens it (the
    default model) and `sample --seed 0` with every other option at its default give the same
    pixels."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import torch

    from diffusion_studio.engine.defaults import DEFAULT_MODEL
    from diffusion_studio.engine.storage.bundled import bundled_checkpoint_path

    # the same thread count, so the CLI's measured precision choice (cached in this session's
    # folder) is the one the panel reads: both sample at the same precision
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    r = subprocess.run([sys.executable, "-m", "diffusion_studio", "sample", "--seed", "0",
                        "--out", str(tmp_path / "a.npz")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    cli = np.load(tmp_path / "a.npz")["images"]
    state = AppState()
    state.set_model(load_model(bundled_checkpoint_path(DEFAULT_MODEL)), DEFAULT_MODEL)
    p = sp.SamplerPanel(state)
    qtbot.addWidget(p)
    assert p.form.seed_spin.value() == 0  # the form as it opens
    with qtbot.waitSignal(p.sampling_finished, timeout=300000):
        p.sample()
    gui = p.frames[-1].x
    p.shutdown(5000)
    assert gui.shape == cli.shape == (p.form.count_spin.value(), 28, 28) and len(gui) > 1
    np.testing.assert_array_equal(gui, cli)


def test_interpolation_strip_between_two_seeds(qtbot, panel, tmp_path):
    button = panel.findChild(type(panel.sample_button), "interpolateButton")
    assert button is panel.interpolate_button and button.isEnabled()
    sweep = panel.findChild(type(panel.sample_button), "guidanceSweepButton")
    assert not sweep.isEnabled() and "class-conditional" in sweep.toolTip()  # an unconditional model
    panel.form.seed_spin.setValue(3)
    panel.seed_b_spin.setValue(8)
    with qtbot.waitSignal(panel.sampling_finished, timeout=60000) as blocker:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert blocker.args[0] == "completed"
    assert panel.explore_strip.shape == (9, 28, 28) and panel.explore_box.isVisible()
    assert "seed 3 → seed 8" in panel.explore_box.caption.text()
    view = panel.findChild(type(panel.explore_box.view), "exploreView")
    assert view.pixmap() is not None and not view.pixmap().isNull()
    out = panel.export_explore(tmp_path / "interp.png")
    assert Image.open(out).size == (4 * (9 * 30 + 2), 4 * 32)  # at the export scale, 4 by default


def test_guidance_sweep_strip(qtbot, tiny_conditional_checkpoint, tmp_path):
    state = AppState()
    state.set_model(load_model(tiny_conditional_checkpoint), "trained: tiny conditional")
    p = sp.SamplerPanel(state)
    qtbot.addWidget(p)
    sweep = p.findChild(type(p.sample_button), "guidanceSweepButton")
    assert sweep.isEnabled()
    # "0-9 in turn" (the default): a digits x w grid, each column labelled with its w
    with qtbot.waitSignal(p.sampling_finished, timeout=60000):
        qtbot.mouseClick(sweep, Qt.MouseButton.LeftButton)
    strip = p.explore_box.strip
    assert p.explore_strip.shape == (10 * 5, 28, 28) and strip.columns == 5
    assert strip.column_labels == ("w = 0", "w = 0.5", "w = 1", "w = 2", "w = 4")
    assert strip.row_labels == tuple(f"digit {d}" for d in range(10))
    assert "digits 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 (rows)" in p.explore_box.caption.text()
    picture = p.explore_box.picture()
    plain = (10 * 30 + 2, 5 * 30 + 2)
    assert picture.shape[0] > plain[0] and picture.shape[1] > plain[1]  # a header and a margin of labels
    assert (picture[:14] < 128).any() and (picture[14:, :30] < 128).any()  # with text in them
    exported = np.asarray(Image.open(p.export_explore(tmp_path / "sweep.png")))
    np.testing.assert_array_equal(exported, p.explore_box.picture(4))  # at the export scale, 4 by default
    # one digit: four seeds of it in rows
    p.form.digit_combo.setCurrentIndex(p.form.digit_combo.findData(7))
    with qtbot.waitSignal(p.sampling_finished, timeout=60000):
        qtbot.mouseClick(sweep, Qt.MouseButton.LeftButton)
    assert p.explore_strip.shape == (4 * 5, 28, 28)
    assert "digit 7, seeds 0–3 (rows)" in p.explore_box.caption.text() and "w = 0, 0.5, 1, 2, 4" in p.explore_box.caption.text()
    p.shutdown(5000)


def test_a_conditional_models_interpolation_asks_for_no_digit_unless_one_is_chosen(qtbot, tiny_conditional_checkpoint):
    """Issue 32, item 6: with "0-9 in turn" the interpolation runs the model's unconditional branch, so
    seeds 0 and 1 can make two different digits (asking for a 0 made nine 0s); a chosen digit is kept."""
    state = AppState()
    state.set_model(load_model(tiny_conditional_checkpoint), "trained: tiny conditional")
    p = sp.SamplerPanel(state)
    qtbot.addWidget(p)
    assert p.form.interpolate_request(1).digit is None
    with qtbot.waitSignal(p.sampling_finished, timeout=60000):
        assert p.interpolate()
    assert "no digit asked (the model's unconditional branch" in p.explore_box.caption.text()
    p.form.digit_combo.setCurrentIndex(p.form.digit_combo.findData(3))
    assert p.form.interpolate_request(1).digit == 3
    p.shutdown(5000)


def test_nearest_training_digits_of_the_samples(qtbot, panel, tiny_data, tmp_path):
    button = panel.findChild(type(panel.sample_button), "nearestNeighbourButton")
    assert not button.isEnabled()  # nothing sampled yet
    panel.state.set_data(tiny_data, None)
    run_sampling(qtbot, panel, n=4)
    assert button.isEnabled()
    with qtbot.waitSignal(panel.sampling_finished, timeout=120000):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    strip = panel.explore_strip
    assert strip.shape == (12, 28, 28)  # samples, nearest in pixels, nearest in features
    np.testing.assert_array_equal(strip[:4], panel.frames[-1].x)
    train = tiny_data.train_images.numpy()
    for row in strip[4:]:
        assert any((row == t).all() for t in train)  # every neighbour is a real training digit
    assert "real test digits" in panel.explore_box.caption.text()
    assert Image.open(panel.export_explore(tmp_path / "nn.png")).size == (4 * (4 * 30 + 2), 4 * (3 * 30 + 2))


def test_evaluate_scores_exactly_the_digits_the_sampler_panel_shows(qtbot, panel, tiny_data):
    """One SamplerConfig for both tabs: the evaluation, given the sampler panel's n and seed,
    generates the very pixels the sampler panel shows."""
    from dataclasses import replace

    from diffusion_studio.engine.evaluation.classifier import ClassifierConfig
    from diffusion_studio.engine.evaluation.report import evaluate_model
    from diffusion_studio.ui.evaluate_panel import EvaluatePanel

    panel.form.sampler_combo.setCurrentIndex(panel.form.sampler_combo.findData("ddim"))
    panel.form.steps_spin.setValue(4)
    panel.form.eta_spin.setValue(0.5)
    panel.form.seed_spin.setValue(5)
    assert run_sampling(qtbot, panel, n=12) == "finished"
    shown = panel.frames[-1].x

    panel.state.set_data(tiny_data, tiny_data.source)
    ev_panel = EvaluatePanel(panel.state)
    qtbot.addWidget(ev_panel)
    ev_panel.form.n_spin.setValue(12)
    ev_panel.form.seed_spin.setValue(5)
    config = ev_panel.config()
    assert config.sampler == panel.sampler_config()
    config = replace(config, metric="mnist", kid_subsets=5, strip_rows=2, strip_columns=3,
                     classifier_config=ClassifierConfig(epochs=1, batch_size=25))
    evaluation = evaluate_model(panel.state.model, tiny_data, config)
    np.testing.assert_array_equal(evaluation.samples, shown)


def test_dpm_solver_takes_its_own_steps_and_no_eta(qtbot, panel):
    T = panel.state.model.schedule.timesteps
    panel.form.sampler_combo.setCurrentIndex(panel.form.sampler_combo.findData("dpmpp2m"))
    assert panel.form.steps_spin.isEnabled() and not panel.form.eta_spin.isEnabled()
    assert panel.form.steps_spin.value() == min(SamplerConfig(kind="dpmpp2m").default_steps, T)
    assert panel.form.clip_check.isChecked() is SamplerConfig(kind="dpmpp2m").clips_x0 is True  # its own default
    panel.form.steps_spin.setValue(4)
    cfg = panel.sampler_config()
    assert (cfg.kind, cfg.steps, cfg.clips_x0) == ("dpmpp2m", 4, True)
    run_sampling(qtbot, panel, n=3)
    assert len(panel.frames) == 5 and panel.frames[-1].t == 0  # x_T and four steps
    assert "DPM-Solver++ (2M) 4 steps" in panel._job_info and "η" not in panel._job_info
    panel.form.sampler_combo.setCurrentIndex(panel.form.sampler_combo.findData("ddim"))
    assert panel.form.eta_spin.isEnabled() and panel.form.steps_spin.value() == min(SamplerConfig(kind="ddim").default_steps, T)
    assert panel.form.clip_check.isChecked() is SamplerConfig(kind="ddim").clips_x0 is False
    panel.form.sampler_combo.setCurrentIndex(panel.form.sampler_combo.findData("ddpm"))
    assert not panel.form.steps_spin.isEnabled() and not panel.form.eta_spin.isEnabled()


def png_text(path) -> dict:
    with Image.open(path) as im:
        im.load()
        return dict(im.text)


def test_exports_carry_their_provenance_and_a_new_model_marks_the_old_digits(qtbot, panel, tmp_path,
                                                                            tiny_conditional_checkpoint):
    """Issue 31, item 16: the old model's digits never stay on screen under the new model's
    name, and an exported grid or strip says in its PNG text what made it."""
    from diffusion_studio import __version__

    panel.form.seed_spin.setValue(7)
    assert run_sampling(qtbot, panel, n=4) == "finished"
    assert not panel.view.stale and panel.view.source_label.full_text().startswith("From trained: tiny: 4 images")
    config = panel.sampler_config()
    expected = {"model": "trained: tiny", "sampler": config.describe(10), "seed": "7", "n": "4",
                "digit": "none (an unconditional model)", "app_version": __version__,
                "Software": f"Diffusion Studio {__version__}", "checkpoint": str(panel.state.model.path)}
    grid = png_text(panel.export_grid(tmp_path / "grid.png"))
    assert {k: grid.get(k) for k in expected} == expected and "4 images" in grid["Description"]
    assert "U-Net base 4" in grid["model_details"]
    with qtbot.waitSignal(panel.sampling_finished, timeout=60000):
        assert panel.interpolate()
    assert png_text(panel.export_explore(tmp_path / "interp.png"))["model"] == "trained: tiny"

    panel.state.set_model(load_model(tiny_conditional_checkpoint), "trained: tiny conditional")
    stale = "From trained: tiny, not the current model (trained: tiny conditional)"
    assert panel.view.stale and panel.view.source_label.full_text().startswith(stale + ": 4 images")
    assert "color: #b00020" in panel.view.source_label.styleSheet()
    assert panel.explore_box.caption.text().startswith(stale + ": seed 7 → seed 1")
    assert "from trained: tiny, not the current model" in panel.message.text()
    assert panel.form.model_combo.itemText(0) == "trained: tiny conditional"
    # still exportable, and still saying what made them
    strip = png_text(panel.export_strip(tmp_path / "strip.png"))
    assert {k: strip.get(k) for k in expected} == expected
    interp = png_text(panel.export_explore(tmp_path / "interp2.png"))
    assert interp["model"] == "trained: tiny" and interp["seed"] == "7 to 1"
    assert interp["Description"].startswith("seed 7 → seed 1")  # the caption (iTXt: not Latin-1)

    # the new model's digits are its own again
    panel.form.digit_combo.setCurrentIndex(panel.form.digit_combo.findData(5))
    assert run_sampling(qtbot, panel, n=3) == "finished"
    assert not panel.view.stale and panel.view.source_label.full_text().startswith("From trained: tiny conditional:")
    grid = png_text(panel.export_grid(tmp_path / "grid5.png"))
    assert (grid["model"], grid["digit"], grid["n"]) == ("trained: tiny conditional", "5", "3")


def test_a_model_opened_while_sampling_leaves_the_digits_marked_as_the_old_models(qtbot, panel, monkeypatch,
                                                                                  tiny_conditional_checkpoint):
    monkeypatch.setattr(sp, "sample_frames", slow_sample_frames)
    panel.form.count_spin.setValue(2)
    with qtbot.waitSignal(panel.sampling_finished, timeout=30000) as blocker:
        panel.sample_button.click()
        qtbot.waitUntil(lambda: panel.progress.value() >= 1, timeout=5000)
        panel.state.set_model(load_model(tiny_conditional_checkpoint), "trained: tiny conditional")
        assert panel.view.stale  # the live frames already say so
    assert blocker.args == ["finished"] and panel.frames[-1].t == 0
    assert panel.view.stale and "From trained: tiny, not the current model" in panel.view.source_label.full_text()
    assert panel.message.text().startswith("Sampled 2 images")
    assert panel.message.text().endswith("They are from trained: tiny, not the current model "
                                         "(trained: tiny conditional).")


def test_exports_are_scaled_for_a_slide_and_gif_frames_carry_their_t(qtbot, panel, tmp_path):
    """Issue 32, item 2: a Scale in the Export box (default 4: a 16-digit grid of 122 px becomes
    488 px), whole-pixel nearest-neighbour enlargement of the grid, strip and exploration, and each
    GIF frame captioned with its t."""
    from PySide6.QtWidgets import QSpinBox

    from diffusion_studio.ui.sampler_view import EXPORT_SCALE

    spin = panel.findChild(QSpinBox, "exportScaleSpin")
    assert spin is panel.export_scale_spin and spin.value() == EXPORT_SCALE == 4
    panel.form.count_spin.setValue(16)
    panel.form.sampler_combo.setCurrentIndex(panel.form.sampler_combo.findData("ddim"))
    panel.form.steps_spin.setValue(3)
    with qtbot.waitSignal(panel.sampling_finished, timeout=60000):
        panel.sample()
    with Image.open(panel.export_grid(tmp_path / "grid4.png")) as im:
        big = np.asarray(im)
    assert big.shape == (488, 488)
    small = tile(panel.frames[-1].x, pad=2, pad_value=255)
    np.testing.assert_array_equal(big, np.kron(small, np.ones((4, 4), np.uint8)))  # whole pixels, not blurred
    spin.setValue(1)
    with Image.open(panel.export_grid(tmp_path / "grid1.png")) as im:
        assert im.size == (122, 122)
    with Image.open(panel.export_strip(tmp_path / "strip1.png")) as im:
        narrow = im.size
    spin.setValue(4)
    with Image.open(panel.export_strip(tmp_path / "strip4.png")) as im:
        assert im.width > 3 * narrow[0] and im.height > 3 * narrow[1] - 80
    from diffusion_studio.ui.sampler_view import gif_pictures

    pictures = gif_pictures(panel.frames, 4)
    assert len(pictures) == len(panel.frames)
    with Image.open(panel.export_gif(tmp_path / "anim.gif")) as im:
        assert im.n_frames == len(panel.frames) and im.size == pictures[0].shape[::-1]
        im.seek(0)
        first = np.asarray(im.convert("L"))
    np.testing.assert_array_equal(first, pictures[0])
    head = pictures[0].shape[0] - 4 * (4 * 30 + 2)  # the caption's band above the 4 x 4 mosaics
    assert head > 0 and (first[:head] < 128).any()  # the caption's text above the digits
    assert not np.array_equal(pictures[0][:head], pictures[-1][:head])  # t = 3 and t = 0 say different things


# ------------------------------------------------ plain words, formulas in tooltips (issue 32, item 11)
#: what a learner, who has no report and no paper at hand, should not meet on screen
JARGON = ("report", "Figure", "nats", "ᾱ", "ε_θ", "‖")


def test_the_sampler_panel_speaks_plainly_and_keeps_the_formulas_in_tooltips(qtbot, panel):
    from PySide6.QtWidgets import QGroupBox, QLabel

    assert run_sampling(qtbot, panel) == "finished"
    texts = {f"{type(w).__name__}({w.objectName()})": w.text() if isinstance(w, QLabel) else w.title()
             for w in panel.findChildren(QLabel) + panel.findChildren(QGroupBox) if w.isVisibleTo(panel)}
    assert len(texts) >= 10
    assert {where: t for where, t in texts.items() if any(word in t for word in JARGON)} == {}
    for name in ("framesCaption", "stripCaption"):  # each view says what it shows
        line = panel.findChild(QLabel, name)
        assert line.isVisibleTo(panel) and len(line.text().split()) >= 8, name
    assert "Figure 7" in panel.findChild(QLabel, "stripCaption").toolTip()
    assert "Figure 7" in panel.findChild(QGroupBox, "reverseStripBox").toolTip()
    assert "x̂_0 = (x_t − √(1−ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t" in panel.view.x0_title.toolTip()
    assert "predicted x_0" in panel.view.x0_title.text()


# ------------------------------------------------ the model list (issue 32, item 12)
def test_the_model_list_says_what_each_bundled_model_is(qtbot, panel):
    """Each bundled model's entry says unconditional or class-conditional, and its steps (a student's
    own steps), as read from the model itself; every entry's whole name is in its tooltip."""
    from PySide6.QtWidgets import QComboBox

    from diffusion_studio.engine.storage.bundled import available_bundled

    combo = panel.findChild(QComboBox, "modelCombo")
    items = {combo.itemData(i): combo.itemText(i) for i in range(combo.count())}
    bundled = available_bundled()
    assert bundled and {name for name, _title, _path in bundled} <= set(items)
    for name, title, path in bundled:
        assert items[name] == title
        config, T = (m := load_model(path)).model_config, m.schedule.timesteps
        assert ("class-conditional" if config.conditional else "unconditional") in title.split(), title
        assert (f"{config.distilled_steps}-step student" if config.is_student else f"{T} steps") in title, title
    for i in range(combo.count()):
        assert combo.itemData(i, Qt.ItemDataRole.ToolTipRole) == combo.itemText(i)


def test_the_model_list_shows_whole_names_and_cuts_a_long_one_in_the_middle(qtbot, panel, tiny_checkpoint):
    from diffusion_studio.engine.storage.bundled import available_bundled

    combo = panel.form.model_combo
    column = combo.parentWidget().width()
    # a bundled model chosen reads whole in the closed list (it is named as its title says)
    for _name, title, _path in available_bundled():
        panel.state.set_model(load_model(tiny_checkpoint), title[:1].lower() + title[1:])
        assert combo.shown_text() == combo.currentText(), combo.shown_text()
    # a run's long name keeps its start and its file, and the list does not widen its column
    long_name = "run: " + "a-long-run-name-" * 4 + "/best.pt"
    panel.state.set_model(load_model(tiny_checkpoint), long_name)
    shown = combo.shown_text()
    assert "…" in shown and shown.startswith("run: a-long") and shown.endswith("/best.pt")
    assert combo.parentWidget().width() == column and combo.geometry().right() <= column
    assert combo.toolTip() == long_name
    # the popup is wide enough for the longest name
    combo.showPopup()
    view = combo.view()
    qtbot.waitUntil(view.isVisible, timeout=2000)
    widest = max(view.fontMetrics().horizontalAdvance(combo.itemText(i)) for i in range(combo.count()))
    assert view.viewport().width() >= widest
    combo.hidePopup()


def test_the_sampler_form_the_sample_task_and_command_make_the_same_number_of_digits(qtbot):
    """One source for the count: the GUI said 16 while `sample` made 64."""
    from diffusion_studio.cli import build_parser
    from diffusion_studio.engine.defaults import DEFAULT_SAMPLE_COUNT
    from diffusion_studio.tasks.sample import SampleRequest
    from diffusion_studio.ui.sampler_form import SamplerForm

    form = SamplerForm()
    qtbot.addWidget(form)
    cli = build_parser().parse_args(["sample", "--out", "x.png"])
    assert form.count_spin.value() == SampleRequest().n == cli.n == DEFAULT_SAMPLE_COUNT


def test_an_unconditional_student_takes_the_autoguidance_weight_and_one_call_a_step(qtbot):
    """The bundled default-4step: the form offers g (its input), not w or the guide's threshold,
    and a run makes its digits in 4 calls of the student alone."""
    from diffusion_studio.engine.storage.bundled import bundled_checkpoint_path

    state = AppState()
    state.set_model(load_model(bundled_checkpoint_path("default-4step")), "default-4step")
    p = sp.SamplerPanel(state)
    qtbot.addWidget(p)
    form = p.form
    assert form.autoguidance_spin.isEnabled() and not form.guidance_spin.isEnabled()
    assert not form.autoguidance_min_t_spin.isEnabled()
    assert form.sampler_config().autoguidance == form.autoguidance_spin.value() > 0
    form.count_spin.setValue(3)
    calls = []
    hook = state.model.model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    with qtbot.waitSignal(p.sampling_finished, timeout=120000) as blocker:
        p.sample()
    hook.remove()
    p.shutdown(5000)
    assert blocker.args[0] == "finished" and calls == [3] * 4
    assert p.frames[-1].x.shape == (3, 28, 28)
