"""The Evaluate panel with a tiny model: runs in a thread, shows named numbers, cancels, exports."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("PySide6")

from PySide6.QtWidgets import QMessageBox  # noqa: E402

from diffusion_studio.ui.evaluate_panel import EvaluatePanel  # noqa: E402
from diffusion_studio.ui.state import AppState  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tiny_data, tmp_path_factory):
    from diffusion_studio.engine.storage.checkpoint import load_model
    from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
    from diffusion_studio.engine.training.config import TrainConfig
    from diffusion_studio.engine.training.plan import plan_new
    from diffusion_studio.engine.training.trainer import Trainer
    from diffusion_studio.engine.diffusion.unet import UNetConfig

    folder = tmp_path_factory.mktemp("panel-run")
    trainer = Trainer(plan_new(UNetConfig(base_channels=4), ScheduleConfig(timesteps=10), TrainConfig(epochs=1, batch_size=50, precision="fp32")), tiny_data, device="cpu", run_dir=folder)
    for _ in trainer.run():
        pass
    return load_model(folder / "best.pt")


@pytest.fixture
def panel(qtbot, tiny_data, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no Inception weights here
    state = AppState()
    state.device = "cpu"
    state.set_data(tiny_data, tiny_data.source)
    state.set_model(tiny_model, "tiny test model")
    from diffusion_studio.engine.diffusion.scheduling import SamplerConfig

    state.set_sampler_config(SamplerConfig(kind="ddim", steps=3))  # the Sampler tab's form
    p = EvaluatePanel(state)
    qtbot.addWidget(p)
    yield p
    # stops the evaluation and a download; the Inception timing cannot be interrupted and may
    # outlive a busy machine's wait (its thread is kept alive until it ends, see ui.workers)
    assert p.stop_and_wait(20000)
    p.shutdown()


def test_panel_runs_and_shows_named_numbers_and_the_missing_weights_message(panel, qtbot, tmp_path):
    assert panel.objectName() == "evaluatePanel"
    panel.form.n_spin.setValue(12)
    panel.form.metric_combo.setCurrentIndex(panel.form.metric_combo.findData("all"))
    with qtbot.waitSignal(panel.evaluation_finished, timeout=180_000) as sig:
        panel.run_button.click()
        assert panel.cancel_button.isEnabled() and not panel.run_button.isEnabled()
    assert sig.args == ["finished"]
    qtbot.waitUntil(lambda: panel.run_button.isEnabled(), timeout=10_000)
    names = [panel.results.results_table.item(r, 0).text() for r in range(panel.results.results_table.rowCount())]
    assert "FD (MNIST classifier features)" in names
    row = names.index("FD (MNIST classifier features)")
    assert float(panel.results.results_table.item(row, 1).text()) >= 0
    assert "12 /" in panel.results.results_table.item(row, 2).text()
    assert "n_generated: 12" in panel.results.protocol_text.toPlainText()
    # the Inception FID could not run: the panel says what to do, no traceback
    msg = panel.results.message_label.text()
    assert panel.results.message_scroll.isVisibleTo(panel)
    assert "pt_inception-2015-12-05-6726825d.pth" in msg and "Traceback" not in msg

    files = panel.export_report(tmp_path / "exported")
    assert files is not None and all(f.is_file() for f in files.values())
    assert json.loads(files["json"].read_text())["generation"]["n"] == 12
    panel.resize(1100, 640)
    panel.grab().save(str(tmp_path / "panel.png"))


def test_cancel_stops_the_run(panel, qtbot):
    panel.form.n_spin.setValue(20_000)
    panel.form.metric_combo.setCurrentIndex(panel.form.metric_combo.findData("mnist"))
    with qtbot.waitSignal(panel.evaluation_finished, timeout=60_000) as sig:
        panel.run_button.click()
        panel.cancel_button.click()
    assert sig.args == ["cancelled"]
    qtbot.waitUntil(lambda: panel.run_button.isEnabled(), timeout=10_000)
    assert panel.stage_label.text() == "Cancelled." and panel.evaluation is None


def test_inception_only_without_weights_is_a_message(panel, qtbot):
    panel.form.n_spin.setValue(4)
    panel.form.metric_combo.setCurrentIndex(panel.form.metric_combo.findData("inception"))
    with qtbot.waitSignal(panel.evaluation_finished, timeout=60_000) as sig:
        panel.run_button.click()
    assert sig.args == ["failed"]
    assert "pt_inception-2015-12-05-6726825d.pth" in panel.results.message_label.text()


def test_no_model_and_no_data_are_messages(qtbot):
    p = EvaluatePanel(AppState())
    qtbot.addWidget(p)
    p.run_button.click()
    assert "No MNIST data" in p.results.message_label.text() and not p.is_running()


def test_the_evaluation_samples_with_the_sampler_tabs_settings(panel):
    from PySide6.QtWidgets import QLabel

    from diffusion_studio.engine.diffusion.scheduling import SamplerConfig

    label = panel.findChild(QLabel, "evaluateSamplerLabel")
    assert label is panel.form.sampler_label and "DDIM, 3 steps, eta 1" in label.text()
    wanted = SamplerConfig(kind="ddim", steps=7, eta=0.5, clip_x0=True, guidance=0.5)
    panel.state.set_sampler_config(wanted)
    assert panel.config().sampler == wanted
    panel.hide()
    panel.show()  # coming back to the tab shows the sampler's current settings
    assert "DDIM, 7 steps, eta 0.5, x_0 clipped, guidance 0.5" in label.text()


def test_download_with_consent_progress_and_cancel(qtbot, monkeypatch, tmp_path):
    """The download asks first, shows progress, and a cancel leaves no file behind."""
    import http.server
    import threading

    from diffusion_studio.engine.evaluation import fid
    from diffusion_studio.ui.state import AppState

    payload = b"x" * (3 * 2**20)

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            for i in range(0, len(payload), 2**20):
                self.wfile.write(payload[i : i + 2**20])
                self.wfile.flush()
                threading.Event().wait(0.3)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dest = tmp_path / "hub" / fid.FID_WEIGHTS_FILE
    monkeypatch.setattr(fid, "hub_weights_path", lambda: dest)
    monkeypatch.setattr(fid, "fid_weights_url", lambda: f"http://127.0.0.1:{server.server_port}/w.pth")
    panel = EvaluatePanel(AppState())
    qtbot.addWidget(panel)
    button = panel.findChild(type(panel.run_button), "downloadInceptionButton")
    assert button is panel.form.download_button and panel.inception_weights_missing()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    assert not panel.download_weights()  # no consent, no download
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert panel.download_weights()
    qtbot.waitUntil(lambda: "of 3 MB" in panel.stage_label.text(), timeout=10000)
    panel.cancel()
    qtbot.waitUntil(lambda: not panel._download_runner.is_running(), timeout=10000)
    assert not dest.exists() and not any(dest.parent.glob("*.tmp"))
    assert "cancelled" in panel.results.message_label.text()
    # a complete download is refused when its sha256 is not the official file's
    assert panel.download_weights(ask=False)
    qtbot.waitUntil(lambda: not panel._download_runner.is_running(), timeout=20000)
    assert not dest.exists() and "damaged" in panel.results.message_label.text()
    server.shutdown()
    panel.shutdown()


def test_the_panel_says_how_long_the_inception_pass_takes(qtbot, monkeypatch):
    from diffusion_studio.engine.evaluation import fid
    from diffusion_studio.ui.state import AppState

    monkeypatch.setattr(fid, "inception_images_per_second", lambda device, measure=True: 5.0)
    panel = EvaluatePanel(AppState())
    qtbot.addWidget(panel)
    panel.measure_inception_rate()
    panel.form.metric_combo.setCurrentIndex(panel.form.metric_combo.findData("all"))
    panel.form.n_spin.setValue(1000)
    text = panel.findChild(type(panel.stage_label), "inceptionEstimateLabel").text()
    assert "n = 1,000 takes about 3 min here (5.0 images/s)" in text and "33 min once for the 10,000" in text


@pytest.mark.slow
def test_the_current_model_is_scored_with_its_guide_as_the_sampler_shows_it(qtbot, tiny_data, tmp_path, monkeypatch):
    """"Current model" evaluates the loaded handle with its guide network (issue 30: a hand-built
    stand-in dropped it, and the bundled model was scored with autoguidance off while the panel
    showed g = 1.5): the report says g = 1.5, and the digits scored are the Sampler tab's pixels."""
    from dataclasses import replace

    import numpy as np

    from diffusion_studio.engine.evaluation.classifier import ClassifierConfig
    from diffusion_studio.engine.storage.bundled import default_checkpoint_path
    from diffusion_studio.engine.storage.checkpoint import load_model
    from diffusion_studio.ui.sampler_panel import SamplerPanel

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = AppState()
    state.device = "cpu"
    state.set_data(tiny_data, tiny_data.source)
    state.set_model(load_model(default_checkpoint_path()), "bundled default model")
    assert state.model.guide is not None
    sampler = SamplerPanel(state)
    qtbot.addWidget(sampler)
    form = sampler.form
    assert form.autoguidance_spin.value() == 1.5 and form.autoguidance_spin.isEnabled()
    form.sampler_combo.setCurrentIndex(form.sampler_combo.findData("ddim"))
    form.steps_spin.setValue(4)
    form.count_spin.setValue(8)
    form.seed_spin.setValue(5)
    with qtbot.waitSignal(sampler.sampling_finished, timeout=120_000):
        assert sampler.sample()
    shown = sampler.frames[-1].x

    panel = EvaluatePanel(state)
    qtbot.addWidget(panel)
    panel.form.n_spin.setValue(8)
    panel.form.seed_spin.setValue(5)
    panel.form.metric_combo.setCurrentIndex(panel.form.metric_combo.findData("mnist"))
    assert panel.form.source_combo.currentData() == "current"
    small = replace(panel.config(), kid_subsets=5, strip_rows=2, strip_columns=3,
                    classifier_config=ClassifierConfig(epochs=1, batch_size=25))
    monkeypatch.setattr(panel, "config", lambda: small)
    with qtbot.waitSignal(panel.evaluation_finished, timeout=180_000) as sig:
        panel.run_button.click()
    assert sig.args == ["finished"]
    generation = panel.evaluation.report["generation"]
    assert generation["autoguidance"] == 1.5 and generation["guide"]
    np.testing.assert_array_equal(panel.evaluation.samples, shown)
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=10_000)
    sampler.shutdown(5000)
    panel.shutdown()


def test_a_download_without_network_ends_in_one_line_and_the_panel_is_usable_again(qtbot, monkeypatch, tmp_path):
    """Issue 32, item 10: no network showed a raw URLError while the busy bar spun on."""
    import socket
    import urllib.error
    import urllib.request

    from PySide6.QtWidgets import QProgressBar, QPushButton

    from diffusion_studio.engine.evaluation import fid

    def offline(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(fid, "hub_weights_path", lambda: tmp_path / "hub" / fid.FID_WEIGHTS_FILE)
    panel = EvaluatePanel(AppState())
    qtbot.addWidget(panel)
    assert panel.download_weights(ask=False)
    bar = panel.findChild(QProgressBar)
    assert bar.maximum() == 0  # busy while it tries
    qtbot.waitUntil(lambda: not panel._download_runner.is_running(), timeout=10000)
    qtbot.waitUntil(lambda: bar.maximum() != 0, timeout=5000)  # the busy bar stops
    msg = panel.results.message_label.text()
    assert "\n" not in msg and "URLError" not in msg and "Traceback" not in msg
    assert msg.startswith("Downloading the Inception weights failed: no connection (")
    assert "Connect to the internet and press Download again" in msg and "MNIST-classifier metric" in msg
    assert panel.stage_label.text() == "Download failed (see the message)."
    assert panel.findChild(QPushButton, "evaluateRun").isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.findChild(QPushButton, "downloadInceptionButton").isEnabled()
    assert not (tmp_path / "hub" / fid.FID_WEIGHTS_FILE).exists()


def test_the_default_metric_is_what_works_on_this_machine(qtbot, monkeypatch, tmp_path):
    from diffusion_studio.engine.evaluation import fid

    weights = tmp_path / "hub" / fid.FID_WEIGHTS_FILE
    monkeypatch.setattr(fid, "hub_weights_path", lambda: weights)
    panel = EvaluatePanel(AppState())
    qtbot.addWidget(panel)
    assert panel.form.metric_combo.currentData() == "mnist"  # no Inception weights: the offline metric
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"w")  # the weights arrive (a download, a copy)
    panel._update_enabled()
    assert panel.form.metric_combo.currentData() == "all"
    # a metric the user picks is kept
    combo = panel.form.metric_combo
    combo.setCurrentIndex(combo.findData("inception"))
    combo.activated.emit(combo.currentIndex())
    weights.unlink()
    panel._update_enabled()
    assert combo.currentData() == "inception"


def test_the_metrics_table_fits_its_pane_and_the_missing_weights_note_is_one_line(panel, qtbot):
    from PySide6.QtWidgets import QTableWidget

    panel.resize(1000, 600)
    panel.show()
    panel.form.n_spin.setValue(12)
    panel.form.metric_combo.setCurrentIndex(panel.form.metric_combo.findData("all"))
    with qtbot.waitSignal(panel.evaluation_finished, timeout=180_000):
        panel.run_button.click()
    qtbot.waitUntil(lambda: panel.run_button.isEnabled(), timeout=10_000)
    table = panel.findChild(QTableWidget, "evaluateMetricsTable")
    for width in (1000, 760, 1400):
        panel.resize(width, 600)
        qtbot.wait(50)
        pane = table.viewport().width()
        assert table.horizontalHeader().length() <= pane + 1
        assert all(table.columnWidth(c) <= pane for c in range(table.columnCount()))
    for row in range(table.rowCount()):
        for col in range(table.columnCount()):
            assert table.item(row, col).toolTip()  # the full text, however the cell wraps
    note = panel.results.message_label.text().split("\n\n")[0]
    assert "pt_inception-2015-12-05-6726825d.pth is not on this computer" in note and "\n" not in note
    assert "TORCH_HOME" in panel.results.message_label.toolTip()  # the engine's full message


def test_plain_captions_with_the_formulas_in_tooltips(qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QLabel

    panel = EvaluatePanel(AppState())
    qtbot.addWidget(panel)
    caption = panel.findChild(QLabel, "evaluateCaption")
    assert "lower is better" in caption.text() and "Σ" not in caption.text()
    assert "Tr(Σ_r + Σ_g − 2(Σ_r Σ_g)^½)" in caption.toolTip()
    combo = panel.form.metric_combo
    assert combo.itemText(combo.findData("mnist")) == "MNIST metrics only (works offline)"
    assert "No download" in combo.itemData(combo.findData("mnist"), Qt.ItemDataRole.ToolTipRole)
    assert "needs the Inception weights" in combo.itemText(combo.findData("all"))


def test_a_failed_timing_of_inception_says_so_instead_of_timing_forever(qtbot, monkeypatch):
    from PySide6.QtWidgets import QLabel

    from diffusion_studio.engine.evaluation import fid

    def rate(device, measure=True):
        if measure:
            raise RuntimeError("no memory for the network")
        return None

    monkeypatch.setattr(fid, "inception_images_per_second", rate)
    panel = EvaluatePanel(AppState())
    qtbot.addWidget(panel)
    combo = panel.form.metric_combo
    combo.setCurrentIndex(combo.findData("all"))
    combo.activated.emit(combo.currentIndex())
    panel.measure_inception_rate()
    label = panel.findChild(QLabel, "inceptionEstimateLabel")
    qtbot.waitUntil(lambda: "no time estimate" in label.text(), timeout=5000)
    assert label.text() == "Timing Inception failed: no memory for the network; no time estimate for the Inception pass."
