"""The desktop app's entry point (PySide6 is imported here, not at package import).

``main(data, checkpoint)`` opens the window at once and loads MNIST in the
background: from ``data`` (the ``--data`` folder), else the last folder used,
else the default data folder. A missing MNIST shows a page with "Choose
folder…" / "Download MNIST" in the Dataset panel. The bundled start-up model (when the
installation has one: ``engine.storage.bundled.startup_model``), then ``--checkpoint`` (what every
command takes: a .pt file, a run folder or a bundled model's name), are opened in the background
(``MainWindow.load_checkpoint``).

Environment variables for scripted runs:
  DIFFUSION_STUDIO_QUIT_AFTER_MS=N     close the window N ms after start-up
  DIFFUSION_STUDIO_SCREENSHOTS=DIR     once the data is loaded, show each panel, save
                                       DIR/<objectName>.png (the whole window), then quit
"""

from __future__ import annotations

import gc
import os
import sys
import traceback
from pathlib import Path

_dialog_open = False


def _excepthook(exc_type, exc, tb) -> None:
    """Show an unexpected error in a dialog (and on stderr) instead of dying with a traceback."""
    global _dialog_open
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    print(text, file=sys.stderr)
    if issubclass(exc_type, KeyboardInterrupt):
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        if app is not None:
            app.quit()
        return
    try:
        from PySide6.QtWidgets import QApplication, QMessageBox

        if QApplication.instance() is None or _dialog_open or _scripted():
            return
        _dialog_open = True
        box = QMessageBox(QMessageBox.Icon.Critical, "Diffusion Studio: unexpected error",
                          f"Something went wrong: {exc_type.__name__}: {exc}\n\n"
                          "The app keeps running; the details below help to report the problem.")
        box.setDetailedText(text)
        box.exec()
    except Exception:  # the hook itself must never raise
        pass
    finally:
        _dialog_open = False


def _scripted() -> bool:
    """A scripted run (tests, screenshots): errors go to stderr only, no dialog waits for a click."""
    return bool(os.environ.get("DIFFUSION_STUDIO_QUIT_AFTER_MS") or os.environ.get("DIFFUSION_STUDIO_SCREENSHOTS"))


def install_excepthook() -> None:
    sys.excepthook = _excepthook


def initial_data_folder(data: str | None) -> Path:
    """The folder to load at start-up: ``data``, else the last one used, else the default."""
    from .engine.storage import paths
    from .ui.settings import DATA_FOLDER, app_settings

    if data:
        return Path(data).expanduser()
    last = app_settings().value(DATA_FOLDER, "")
    if last and Path(str(last)).is_dir():
        return Path(str(last))
    return paths.default_mnist_dir()


def load_initial_models(window, checkpoint: str | None) -> None:
    """The bundled start-up model if this installation has one (silently none otherwise), then
    ``checkpoint`` (a .pt file, a run folder or a bundled model's name such as "default")."""
    from .engine.storage.bundled import startup_model

    bundled = startup_model()
    if bundled is not None:
        _name, title, path = bundled
        window.load_checkpoint(path, source=title, quiet=True)
    if checkpoint:
        window.load_checkpoint(checkpoint)


def _take_screenshots(window, folder: Path, app) -> None:
    """Show each panel in turn, save DIR/<objectName>.png, then close the window."""
    from PySide6.QtCore import QTimer

    folder.mkdir(parents=True, exist_ok=True)
    names = window.panel_names()

    def settle(ms: int = 400) -> None:
        import time

        end = time.monotonic() + ms / 1000
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    def run() -> None:
        if window.loader.busy or window.state.is_opening_model():
            QTimer.singleShot(100, run)
            return
        settle()
        for name in names:
            window.show_panel(name)
            settle()
            window.grab().save(str(folder / f"{name}.png"))
        window.show_panel(names[0])
        window.close()

    QTimer.singleShot(200, run)


def main(data: str | None = None, checkpoint: str | None = None) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from . import __version__

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Diffusion Studio")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("diffusion-studio")
    from .ui.icon import set_app_identity

    set_app_identity(app)  # desktop file name = the app id, so the menu entry's icon is the window's
    install_excepthook()

    from .ui.main_window import MainWindow
    from .ui.state import AppState

    state = AppState()
    window = MainWindow(state)
    window.confirm_quit = not _scripted()  # a scripted close never waits for a click
    shots = os.environ.get("DIFFUSION_STUDIO_SCREENSHOTS")
    if shots:
        window.resize(1366, 768)  # a laptop screen, the same every time, whatever the settings say
    window.show()
    # A full garbage-collection pass over the objects built so far (torch, Qt,
    # pyqtgraph) held the GIL for over a second; they live as long as the app.
    gc.freeze()
    window.loader.load(initial_data_folder(data))
    QTimer.singleShot(0, lambda: load_initial_models(window, checkpoint))

    quit_after = os.environ.get("DIFFUSION_STUDIO_QUIT_AFTER_MS")
    if quit_after:
        try:
            QTimer.singleShot(max(0, int(quit_after)), window.close)
        except ValueError:
            print(f"diffusion-studio: ignoring DIFFUSION_STUDIO_QUIT_AFTER_MS={quit_after!r} (not a number)",
                  file=sys.stderr)
    if shots:
        _take_screenshots(window, Path(shots).expanduser(), app)
    return int(app.exec())
