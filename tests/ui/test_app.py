"""The main window and the app entry point: panels, menus, data loading, checkpoints, shutdown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from diffusion_studio.ui import main_window as mw
from diffusion_studio.ui.main_window import PANELS, MainWindow
from diffusion_studio.ui.settings import app_settings
from diffusion_studio.ui.state import AppState

ROOT = Path(__file__).resolve().parents[2]
CORE_PANELS = ["datasetPanel", "noisePanel", "trainPanel", "samplerPanel"]


@pytest.fixture
def window(qtbot):
    w = MainWindow(AppState())
    qtbot.addWidget(w)
    w.show()
    return w


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A real (tiny, untrained) checkpoint file."""
    from diffusion_studio.engine.storage.checkpoint import save_checkpoint
    from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
    from diffusion_studio.engine.diffusion.unet import UNet, UNetConfig

    cfg = UNetConfig(base_channels=4, time_embed_dim=8)
    payload = {
        "model": cfg.to_dict(),
        "schedule": ScheduleConfig(timesteps=10).to_dict(),
        "weights": UNet(cfg).state_dict(),
        "epoch": 3,
    }
    return save_checkpoint(tmp_path / "tiny.pt", payload)


def test_window_has_the_four_panels_as_tabs(window):
    names = window.panel_names()
    assert names[:4] == CORE_PANELS
    for name in CORE_PANELS:
        assert window.findChild(QWidget, name) is window.panels[name]
    # optional panels appear exactly when their module is present
    for spec in PANELS[4:]:
        present = (ROOT / (spec.module.replace(".", "/") + ".py")).is_file()
        assert (spec.object_name in names) == present
    assert window.findChild(QWidget, "timestepSlider") is not None
    assert window.windowTitle() == "Diffusion Studio"


def test_optional_panel_module_missing_is_skipped_but_a_broken_one_is_not(monkeypatch):
    spec = mw.PanelSpec("diffusion_studio.ui.no_such_panel", "NoSuchPanel", "noSuchPanel", "Nope", optional=True)
    assert mw._panel_class(spec) is None
    required = mw.PanelSpec("diffusion_studio.ui.no_such_panel", "NoSuchPanel", "noSuchPanel", "Nope")
    with pytest.raises(ModuleNotFoundError):
        mw._panel_class(required)


def test_menus_and_shortcuts(window, qtbot):
    assert window.open_data_action.shortcut().toString() == "Ctrl+O"
    assert window.open_checkpoint_action.shortcut().toString() == "Ctrl+Shift+O"
    assert window.export_grid_action.shortcut().toString() == "Ctrl+E"
    assert window.quit_action.shortcut().toString() == "Ctrl+Q"
    menus = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert menus == ["File", "View", "Help"]
    for i, act in enumerate(window.panel_actions):
        assert act.shortcut().toString() == f"Ctrl+{i + 1}"
    window.panel_actions[1].trigger()
    assert window.current_panel().objectName() == "noisePanel"
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert window.current_panel().objectName() == "datasetPanel"
    window.state.show_panel("samplerPanel")
    assert window.current_panel().objectName() == "samplerPanel"
    keys = dict(window.shortcut_list())
    assert keys["Ctrl+O"] == "Open data folder…" and keys["Ctrl+2"] == "Forward noise"


def test_export_actions_delegate_to_the_sampler_panel(window, monkeypatch):
    calls = []
    sampler = window.panels["samplerPanel"]
    for name in ("export_grid", "export_strip", "export_gif"):
        monkeypatch.setattr(sampler, name, lambda n=name: calls.append(n), raising=False)
    window.show_panel("datasetPanel")
    window.export_grid_action.trigger()
    assert calls == ["export_grid"] and window.current_panel() is sampler
    window.export_strip_action.trigger()
    window.export_gif_action.trigger()
    assert calls == ["export_grid", "export_strip", "export_gif"]


def test_status_bar_shows_state_messages(window):
    window.state.report("hello from a panel")
    assert window.statusBar().currentMessage() == "hello from a panel"


def test_missing_mnist_shows_the_page_with_buttons(window, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    window.show_panel("noisePanel")
    window.loader.load(empty)
    assert window.loader.wait(60)
    panel = window.panels["datasetPanel"]
    assert window.state.data is None
    assert panel.stack.currentWidget().objectName() == "dataMissingPage"
    assert "MNIST was not found" in panel.missing_title.text()
    assert str(empty) in panel.missing_text.text()
    assert panel.choose_button.isVisible() and panel.choose_button.isEnabled()
    assert panel.download_button.isVisible() and panel.download_button.isEnabled()
    assert window.data_status.text() == "Data: none"


def test_damaged_mnist_is_not_called_missing(window, tiny_mnist, tmp_path):
    """A folder whose IDX files are there but damaged gets its own heading and reason."""
    import shutil

    folder = Path(shutil.copytree(tiny_mnist, tmp_path / "damaged"))
    victim = next(folder.glob("train-images*"))
    victim.write_bytes(victim.read_bytes()[:40])  # cut short
    window.loader.load(folder)
    assert window.loader.wait(60)
    panel = window.panels["datasetPanel"]
    assert window.state.data is None and not window.state.data_missing
    assert "could not be read" in panel.missing_title.text() and "not found" not in panel.missing_title.text()
    assert "not found" not in window.statusBar().currentMessage()
    shutil.rmtree(folder)


def test_data_folder_loads_in_the_background(window, tiny_mnist):
    window.state.request_data(tiny_mnist)
    assert window.loader.busy  # the GUI thread is free while it loads
    assert window.loader.wait(60)
    state = window.state
    assert state.data is not None and state.data.sizes() == {"train": 100, "val": 20, "test": 30}
    assert window.panels["datasetPanel"].model.rowCount() == 100
    assert len(state.selection) == 16  # the default selection reached the noise panel
    assert window.panels["noisePanel"].current_images().shape == (16, 28, 28)
    assert app_settings().value("data/lastFolder") == str(Path(tiny_mnist))
    assert str(tiny_mnist) in window.data_status.text()


def test_a_failed_switch_keeps_the_loaded_data(window, tiny_mnist, tmp_path):
    window.loader.load(tiny_mnist)
    window.loader.wait(60)
    data = window.state.data
    window.loader.load(tmp_path / "nothing-here")
    window.loader.wait(60)
    assert window.state.data is data
    assert "not found" in window.statusBar().currentMessage()


def test_open_and_save_checkpoint(window, qtbot, tiny_checkpoint, tmp_path):
    with qtbot.waitSignal(window.state.model_changed, timeout=20000):  # read off the GUI thread
        assert window.load_checkpoint(tiny_checkpoint)
    state = window.state
    assert state.model is not None and state.model.epoch == 3
    assert "tiny.pt" in state.model_source and "tiny.pt" in window.model_status.text()
    target = window.copy_checkpoint(tmp_path / "copy")
    assert target == tmp_path / "copy.pt"  # the suffix is added
    assert target.read_bytes() == Path(tiny_checkpoint).read_bytes()
    assert app_settings().value("checkpoint/lastFolder") == str(tmp_path)


def test_a_bad_checkpoint_is_a_message_not_an_exception(window, qtbot, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(window, "show_message", lambda title, text, icon=None: shown.append((title, text)))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with qtbot.waitSignal(window.state.model_open_failed, timeout=20000) as blocker:
        assert window.load_checkpoint(bad)  # read in the background; the failure comes back as a message
    assert blocker.args[0] == "bad.pt" and "Traceback" not in blocker.args[1]
    assert window.state.model is None
    assert shown and "bad.pt" in shown[0][1]
    assert window.load_checkpoint(tmp_path / "missing.pt") is False  # no such file: at once
    assert "missing.pt" in shown[-1][1]


def test_close_calls_shutdown_on_every_panel_and_saves_geometry(qtbot):
    w = MainWindow(AppState())
    qtbot.addWidget(w)
    w.show()
    calls = []
    for name, panel in w.panels.items():
        panel.shutdown = lambda n=name: calls.append(n)
    w.panels["noisePanel"].shutdown = lambda: (calls.append("noisePanel"), 1 / 0)  # a failing one
    w.resize(1111, 777)
    w.close()
    assert sorted(calls) == sorted(w.panels)
    assert not app_settings().value("window/geometry").isEmpty()


def test_excepthook_shows_a_dialog(qapp, monkeypatch, capsys):
    from diffusion_studio import app

    shown = []
    monkeypatch.delenv("DIFFUSION_STUDIO_QUIT_AFTER_MS", raising=False)
    monkeypatch.delenv("DIFFUSION_STUDIO_SCREENSHOTS", raising=False)
    monkeypatch.setattr(QMessageBox, "exec", lambda self: shown.append((self.text(), self.detailedText())) or 0)
    try:
        raise RuntimeError("boom in a slot")
    except RuntimeError:
        app._excepthook(*sys.exc_info())
    assert shown and "boom in a slot" in shown[0][0] and "Traceback" in shown[0][1]
    assert "boom in a slot" in capsys.readouterr().err


def _run_app(args, env_extra, timeout=180):
    env = dict(os.environ)
    env.update(env_extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "diffusion_studio", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast tier stays under 90 s
def test_app_main_smoke_with_missing_data_quits_cleanly(tmp_path):
    """`diffusion-studio --data EMPTY` opens, shows the missing-data page, quits by itself: no traceback."""
    proc = _run_app(
        ["--data", str(tmp_path / "no-mnist")],
        {"QT_QPA_PLATFORM": "offscreen", "DIFFUSION_STUDIO_QUIT_AFTER_MS": "1500",
         "XDG_CONFIG_HOME": str(tmp_path / "config")},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def test_initial_data_folder_order(tmp_path, monkeypatch):
    from diffusion_studio.app import initial_data_folder
    from diffusion_studio.engine.storage import paths

    settings = app_settings()
    settings.setValue("data/lastFolder", str(tmp_path))
    assert initial_data_folder(str(tmp_path / "given")) == tmp_path / "given"  # --data wins
    assert initial_data_folder(None) == tmp_path  # then the last folder used
    settings.setValue("data/lastFolder", str(tmp_path / "gone"))
    assert initial_data_folder(None) == paths.default_mnist_dir()  # then the default
    settings.remove("data/lastFolder")


def test_main_with_data_loads_it_and_the_checkpoint(qapp, tiny_mnist, tiny_checkpoint, monkeypatch):
    """app.main(data=..., checkpoint=...) in-process: the window opens at once, the data arrives
    from the background load, the checkpoint lands in state.model; a timer closes the window."""
    from PySide6.QtCore import QTimer

    from diffusion_studio import app

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # main() installs its own; restore it after
    for var in ("DIFFUSION_STUDIO_QUIT_AFTER_MS", "DIFFUSION_STUDIO_SCREENSHOTS"):
        monkeypatch.delenv(var, raising=False)
    windows = []

    class Recording(MainWindow):
        def __init__(self, state):
            super().__init__(state)
            windows.append(self)

    monkeypatch.setattr(mw, "MainWindow", Recording)
    seen_busy = []

    def poll():
        if windows:
            w = windows[0]
            seen_busy.append(w.loader.busy)
            if not w.loader.busy and w.state.model is not None and not w.state.is_opening_model():
                w.close()
                return
        QTimer.singleShot(50, poll)

    QTimer.singleShot(0, poll)
    assert app.main(data=str(tiny_mnist), checkpoint=str(tiny_checkpoint)) == 0
    w = windows[0]
    assert seen_busy[0] is True  # the window was up while MNIST loaded
    assert w.state.data is not None and w.state.data.sizes()["train"] == 100
    assert w.state.data_dir == Path(tiny_mnist)
    assert w.state.model is not None and w.state.model.epoch == 3
    assert QApplication_name() == "Diffusion Studio"


def QApplication_name() -> str:  # noqa: N802
    from PySide6.QtWidgets import QApplication

    return QApplication.applicationName()


def test_an_exception_in_a_slot_reaches_the_dialog(qapp, monkeypatch):
    """A bug in a Qt slot goes through sys.excepthook: the user sees a dialog, the app lives on."""
    from PySide6.QtCore import QObject, Signal

    from diffusion_studio import app

    for var in ("DIFFUSION_STUDIO_QUIT_AFTER_MS", "DIFFUSION_STUDIO_SCREENSHOTS"):
        monkeypatch.delenv(var, raising=False)
    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda self: shown.append(self.text()) or 0)
    monkeypatch.setattr(sys, "excepthook", app._excepthook)

    class Emitter(QObject):
        fire = Signal()

    class Buggy(QObject):
        def on_fire(self):
            raise ValueError("a bug in a slot")

    emitter, buggy = Emitter(), Buggy()
    emitter.fire.connect(buggy.on_fire)
    emitter.fire.emit()
    assert shown and "a bug in a slot" in shown[0]


def test_download_button_fetches_mnist_off_the_gui_thread(window, qtbot, tiny_mnist, monkeypatch):
    """"Download MNIST" runs engine.data.download_mnist in the loader thread (faked here: no network
    in tests), then loads the result; a failed download leaves the page with its buttons."""
    import shutil
    import threading

    from diffusion_studio.engine.storage import data as data_mod
    from diffusion_studio.engine.storage import paths

    threads = []

    def fake_download(folder):
        threads.append(threading.current_thread().name)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for f in Path(tiny_mnist).iterdir():
            shutil.copy(f, folder / f.name)
        return folder

    def failing_download(folder):
        raise data_mod.MNISTNotFoundError(f"MNIST was not found in {folder}. The download failed (no network).")

    panel = window.panels["datasetPanel"]
    target = paths.default_mnist_dir()
    shutil.rmtree(target, ignore_errors=True)
    monkeypatch.setattr(data_mod, "download_mnist", failing_download)
    qtbot.mouseClick(panel.download_button, Qt.MouseButton.LeftButton)
    assert window.loader.wait(60)
    assert window.state.data is None and "download failed" in panel.missing_text.text()
    assert panel.download_button.isEnabled()

    monkeypatch.setattr(data_mod, "download_mnist", fake_download)
    qtbot.mouseClick(panel.download_button, Qt.MouseButton.LeftButton)
    assert window.loader.wait(60)
    assert threads == ["mnist-load"]  # not the GUI thread
    assert window.state.data is not None and window.state.data_dir == target
    assert panel.stack.currentIndex() == 1 and panel.model.rowCount() == 100
    shutil.rmtree(target, ignore_errors=True)


def test_runs_panel_resume_goes_to_the_training_panel(qtbot, monkeypatch):
    from diffusion_studio.ui.main_window import MainWindow
    from diffusion_studio.ui.state import AppState

    window = MainWindow(AppState())
    qtbot.addWidget(window)
    asked = []
    monkeypatch.setattr(window.panels["trainPanel"], "resume_training", lambda run_dir=None: asked.append(run_dir))
    window.panels["runsPanel"].resume_requested.emit("/some/run")
    assert asked == ["/some/run"]
    assert window.current_panel() is window.panels["trainPanel"]


def test_one_settings_store():
    """Every panel goes through ui.settings.app_settings(): a bare QSettings() would be a
    second store (the sampler's folders once lived in one the rest of the app never read)."""
    ui = Path(__file__).resolve().parents[2] / "diffusion_studio" / "ui"
    offenders = [p.name for p in ui.glob("*.py") if p.name != "settings.py" and "QSettings(" in p.read_text()]
    assert offenders == []


def test_start_up_opens_the_default_model_then_the_asked_checkpoint():
    from diffusion_studio import app
    from diffusion_studio.engine.defaults import DEFAULT_MODEL
    from diffusion_studio.engine.storage.bundled import BUNDLED, bundled_checkpoint_path

    class Window:
        def __init__(self):
            self.opened = []

        def load_checkpoint(self, path, source=None, quiet=False):
            self.opened.append((Path(path), source, quiet))

    window = Window()
    app.load_initial_models(window, "mine.pt")
    assert window.opened == [
        (bundled_checkpoint_path(DEFAULT_MODEL), BUNDLED[DEFAULT_MODEL][1], True),
        (Path("mine.pt"), None, False),
    ]


def test_the_window_opens_what_the_commands_take(window, qtbot, tiny_checkpoint, tmp_path):
    """`diffusion-studio --checkpoint default` said "default does not exist" while every command takes
    a bundled model's name and a run folder (issue 30): the window's loader takes them too."""
    import shutil

    from diffusion_studio.engine.storage.bundled import BUNDLED

    with qtbot.waitSignal(window.state.model_changed, timeout=30000):
        assert window.load_checkpoint("default")
    assert window.state.model_source == BUNDLED["default"][1] and window.state.model.guide is not None
    run = tmp_path / "my-run"
    run.mkdir()
    shutil.copy(tiny_checkpoint, run / "best.pt")
    with qtbot.waitSignal(window.state.model_changed, timeout=20000):
        assert window.load_checkpoint(run)  # a run folder: its best.pt
    assert window.state.model_source == "my-run" and window.state.model.epoch == 3


def _answer_quit_box(monkeypatch, button):
    """Answer the (modal) quit confirmation with ``button``; the boxes asked are listed as
    (objectName, text, default button)."""
    seen = []

    def answer(box):
        seen.append((box.objectName(), box.text(), box.defaultButton() is box.button(QMessageBox.StandardButton.No)))
        return button

    monkeypatch.setattr(QMessageBox, "exec", answer)
    return seen


def test_closing_during_a_training_asks_first(qtbot, monkeypatch):
    """Issue 32, item 12: No keeps the window open and the training running; Yes stops it as a
    close always did (every panel's shutdown)."""
    w = MainWindow(AppState())
    qtbot.addWidget(w)
    w.show()
    train = w.panels["trainPanel"]
    monkeypatch.setattr(train, "is_training", lambda: True)
    stopped = []
    for name, panel in w.panels.items():
        monkeypatch.setattr(panel, "shutdown", lambda n=name: stopped.append(n), raising=False)
    seen = _answer_quit_box(monkeypatch, QMessageBox.StandardButton.No)
    assert w.close() is False
    assert [(name, "training is running" in text, no_default) for name, text, no_default in seen] == [
        ("confirmQuitBox", True, True)]
    assert w.isVisible() and stopped == []
    seen = _answer_quit_box(monkeypatch, QMessageBox.StandardButton.Yes)
    assert w.close() is True
    assert len(seen) == 1 and "trainPanel" in stopped and not w.isVisible()
    w.confirm_quit = False  # qtbot closes it again at teardown: no box with nobody to answer it


def test_closing_without_a_training_does_not_ask(window):
    assert not window.panels["trainPanel"].is_training()
    assert window.close() is True  # (a confirmation box would block this test)


def test_f1_opens_getting_started_and_its_links_show_the_panels(window, qtbot):
    from PySide6.QtWidgets import QDialog, QLabel

    help_items = [a.text().replace("&", "") for a in window.menuBar().actions()[-1].menu().actions()]
    assert help_items[:2] == ["Getting started", "Keyboard shortcuts"]
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_F1)
    dialog = window.findChild(QDialog, "gettingStartedDialog")
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()
    text = dialog.findChild(QLabel, "gettingStartedText").text()
    steps = ["Look at the data", "Drag t", "Sample from the bundled model", "Train for 15 minutes and watch",
             "Evaluate"]
    assert text.count("<li>") == 5 and all(step in text for step in steps)
    assert [text.index(step) for step in steps] == sorted(text.index(step) for step in steps)
    for name in ("noisePanel", "samplerPanel", "trainPanel", "datasetPanel"):
        assert f'href="#{name}"' in text
        dialog.findChild(QLabel, "gettingStartedText").linkActivated.emit(f"#{name}")
        assert window.current_panel().objectName() == name
    shown = []
    window.show_message = lambda title, text, *a: shown.append(title)
    dialog.findChild(QWidget, "gettingStartedShortcutsButton").click()
    window.shortcuts_action.trigger()
    assert shown == ["Keyboard shortcuts", "Keyboard shortcuts"]
    assert window.show_getting_started() is dialog  # F1 again: the same page, not a second one
