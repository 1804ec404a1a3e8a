"""The main window: the panels as tabs, the menus, the status bar and the remembered settings.

Panels are listed once in ``PANELS``: each is a class taking the shared
``AppState`` that sets its own objectName. To add a panel, add one line.
Optional panels (``optional=True``) are skipped when their module is not
installed. A panel may define ``shutdown()`` (called before the window
closes, e.g. to stop a worker) and the sampler panel ``export_grid()``
(File > Export grid…).
"""

from __future__ import annotations

import importlib
import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QByteArray, QObject, QRect, QSize, Qt, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..engine.storage import paths
from .settings import CHECKPOINT_FOLDER, DATA_FOLDER, WINDOW_GEOMETRY, WINDOW_STATE, WINDOW_TAB, app_settings
from .state import AppState
from .workers import LatestRunner, TaskWorker, on_gui_thread


@dataclass(frozen=True)
class PanelSpec:
    module: str  # e.g. "diffusion_studio.ui.noise_panel"
    cls: str  # the class, constructed as cls(state)
    object_name: str  # the panel's objectName (for automation and settings)
    title: str  # the tab's title
    optional: bool = False  # skip the tab when the module is missing


#: the window's own smallest size: every panel scrolls inside it (a 1280x720 screen less its
#: title bar and taskbar leaves about 1280x640)
MIN_WINDOW = QSize(720, 480)
#: the size the window opens at on a screen that has room for it
PREFERRED_WINDOW = QSize(1360, 860)
#: room a window manager takes around the client area (title bar, borders)
FRAME_MARGIN = QSize(16, 40)
#: the widest a permanent status-bar label may be (a long path is elided, full in its tooltip)
STATUS_LABEL_MAX_PX = 420

# The tabs, in order (Ctrl+1.. switch to them). One line per panel.
PANELS: list[PanelSpec] = [
    PanelSpec("diffusion_studio.ui.dataset_panel", "DatasetPanel", "datasetPanel", "Dataset"),
    PanelSpec("diffusion_studio.ui.noise_panel", "NoisePanel", "noisePanel", "Forward noise"),
    PanelSpec("diffusion_studio.ui.train_panel", "TrainPanel", "trainPanel", "Training"),
    PanelSpec("diffusion_studio.ui.sampler_panel", "SamplerPanel", "samplerPanel", "Sampler"),
    PanelSpec("diffusion_studio.ui.evaluate_panel", "EvaluatePanel", "evaluatePanel", "Evaluate", optional=True),
    PanelSpec("diffusion_studio.ui.runs_panel", "RunsPanel", "runsPanel", "Runs", optional=True),
]


def _panel_class(spec: PanelSpec):
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if spec.optional and exc.name == spec.module:
            return None
        raise
    return getattr(module, spec.cls)


def _read_mnist(folder: Path, download: bool) -> tuple[str, object]:
    """("ok", MNISTSplits), or ("missing" | "error", one line for the user). Runs in a worker."""
    from ..engine.storage.data import DataError, MNISTNotFoundError, load_mnist

    try:
        return "ok", load_mnist(folder, download=download)
    except MNISTNotFoundError as exc:
        return "missing", str(exc)
    except DataError as exc:  # there, but damaged or not MNIST
        return "error", str(exc)
    except Exception as exc:  # anything else: still a message, never a traceback
        return "error", f"MNIST could not be read from {folder}: {type(exc).__name__}: {exc}"


class DataLoader(QObject):
    """Loads (or downloads) MNIST in a worker thread (a ``TaskWorker`` on a ``LatestRunner``)
    and hands it to ``state.set_data`` in the GUI thread. A request made while one loads
    runs after it; only the newest waiting request does."""

    def __init__(self, state: AppState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.jobs = LatestRunner(self)
        self.on_loaded = None  # callable(folder: Path) after a successful load
        state.data_requested.connect(self._on_requested)

    @property
    def busy(self) -> bool:
        return self.jobs.busy()

    @Slot(str, bool)
    def _on_requested(self, folder: str, download: bool) -> None:
        self.load(Path(folder) if folder else paths.default_mnist_dir(), download=download)

    def load(self, folder: Path | str, download: bool = False) -> None:
        """Start loading ``folder`` (a second request while busy runs after the first)."""
        folder = Path(folder).expanduser()
        self.jobs.post(lambda: self._worker(folder, download))

    def _worker(self, folder: Path, download: bool) -> TaskWorker:
        verb = "Downloading MNIST into" if download else "Loading MNIST from"
        self.state.set_data_loading(f"{verb} {folder} …")
        worker = TaskWorker(lambda ctx: (folder, *_read_mnist(folder, download)), "loading MNIST",
                            thread_name="mnist-load")
        worker.finished.connect(self._on_result)  # a bound method of this GUI-thread object: queued
        worker.failed.connect(on_gui_thread(self, lambda message: self._on_result((folder, "error", message))))
        return worker

    @Slot(object)
    def _on_result(self, result: tuple) -> None:
        folder, kind, value = result
        if kind == "ok":
            self.state.set_data(value, folder)
            sizes = value.sizes()
            self.state.report(
                f"MNIST loaded from {folder}: {sizes['train']:,} train, {sizes['val']:,} validation, "
                f"{sizes['test']:,} test digits"
            )
            if self.on_loaded:
                self.on_loaded(folder)
        elif self.state.data is not None:  # a failed switch keeps the data already shown
            self.state.report(value)
            self.state.data_error = value
            self.state.data_loading.emit(value)
        else:
            self.state.data_missing = kind == "missing"
            self.state.set_data(None, folder, value)
            self.state.report("MNIST was not found; choose a folder or download it in the Dataset panel"
                              if kind == "missing" else f"MNIST could not be read: {value}")

    def wait(self, timeout_s: float = 60.0) -> bool:
        """Block (processing events, so the result reaches the state) until idle; for tests
        and scripted runs. True when idle."""
        import time

        end = time.monotonic() + timeout_s
        app = QApplication.instance()
        while self.busy and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.005)
        return not self.busy


class MainWindow(QMainWindow):
    """The app window. ``panels`` maps objectName -> panel widget; ``tabs`` is the QTabWidget,
    whose pages are ``scroll_areas`` (each holds one panel: ``current_panel()``)."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.state = state
        self.setWindowTitle("Diffusion Studio")
        self._dialogs: list[QMessageBox] = []  # keep non-modal message boxes alive
        self._getting_started: QDialog | None = None
        self.confirm_quit = True  # ask before quitting during a training (off for scripted runs)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("panelTabs")
        self.tabs.setDocumentMode(True)
        self.setCentralWidget(self.tabs)
        self.panels: dict[str, QWidget] = {}
        self.scroll_areas: dict[str, QScrollArea] = {}  # objectName -> the tab that scrolls the panel
        for spec in PANELS:
            cls = _panel_class(spec)
            if cls is None:
                continue
            panel = cls(state)
            if not panel.objectName():
                panel.setObjectName(spec.object_name)
            self.panels[panel.objectName()] = panel
            self.scroll_areas[panel.objectName()] = _scrolling(panel)
            self.tabs.addTab(self.scroll_areas[panel.objectName()], spec.title)

        runs_panel, train_panel = self.panels.get("runsPanel"), self.panels.get("trainPanel")
        if runs_panel is not None and train_panel is not None:
            runs_panel.resume_requested.connect(self._resume_run)

        self.loader = DataLoader(state, self)
        self.loader.on_loaded = self._remember_data_folder
        self._build_menus()
        self._build_status_bar()
        state.status_message.connect(self._show_status)
        state.panel_requested.connect(self.show_panel)
        state.data_changed.connect(self._update_permanent_status)
        state.data_changed.connect(self._on_data_changed)
        state.model_changed.connect(self._update_permanent_status)
        self._loud_opens: set[str] = set()  # models opened from the menu: a failure gets a dialog
        state.model_opening.connect(self._on_model_opening)
        state.model_changed.connect(self._on_model_ready)
        state.model_open_failed.connect(self._on_model_open_failed)
        self._update_permanent_status()
        self.setMinimumSize(MIN_WINDOW)
        self.resize(self.default_size(self._available()))
        self._restore_settings()

    def _available(self) -> QRect:
        """The free area (less taskbars and docks) of the screen the window is on."""
        screen = self.screen() or QApplication.primaryScreen()
        return screen.availableGeometry() if screen is not None else QRect(0, 0, PREFERRED_WINDOW.width() + FRAME_MARGIN.width(),
                                                                   PREFERRED_WINDOW.height() + FRAME_MARGIN.height())

    @staticmethod
    def default_size(available: QRect) -> QSize:
        """1360 x 860, or what a smaller free screen area holds with the window's frame."""
        room = available.size() - FRAME_MARGIN
        return QSize(max(MIN_WINDOW.width(), min(PREFERRED_WINDOW.width(), room.width())),
                     max(MIN_WINDOW.height(), min(PREFERRED_WINDOW.height(), room.height())))

    def fit_to_screen(self) -> None:
        """Shrink and move the window into its screen's free area (a size remembered on a larger
        screen would put the bottom of every panel off-screen)."""
        available = self._available()
        room = available.size() - FRAME_MARGIN
        size = self.size().boundedTo(room).expandedTo(MIN_WINDOW)
        if size != self.size():
            self.resize(size)
        frame = self.frameGeometry()
        if not available.contains(frame):
            x = min(max(frame.x(), available.x()), max(available.x(), available.right() - frame.width()))
            y = min(max(frame.y(), available.y()), max(available.y(), available.bottom() - frame.height()))
            self.move(x, y)

    def current_panel(self) -> QWidget | None:
        """The panel of the current tab (the tab itself is the scroll area around it)."""
        area = self.tabs.currentWidget()
        return area.widget() if isinstance(area, QScrollArea) else area

    def panel_names(self) -> list[str]:
        """The panels' objectNames in tab order."""
        return list(self.panels)

    # ------------------------------------------------------------------ menus
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_data_action = self._action(file_menu, "Open &data folder…", "Ctrl+O", self.open_data_folder)
        self.open_checkpoint_action = self._action(
            file_menu, "Open &checkpoint…", "Ctrl+Shift+O", self.open_checkpoint
        )
        self.save_checkpoint_action = self._action(
            file_menu, "&Save checkpoint as…", QKeySequence.StandardKey.SaveAs, self.save_checkpoint_as
        )
        file_menu.addSeparator()
        self.export_grid_action = self._action(file_menu, "&Export grid…", "Ctrl+E", self.export_grid)
        self.export_strip_action = self._action(
            file_menu, "Export s&trip…", "Ctrl+Shift+E", lambda: self._sampler_export("export_strip")
        )
        self.export_gif_action = self._action(
            file_menu, "Export &animation (GIF)…", None, lambda: self._sampler_export("export_gif")
        )
        file_menu.addSeparator()
        self.quit_action = self._action(file_menu, "&Quit", "Ctrl+Q", self.close)
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)

        view_menu = self.menuBar().addMenu("&View")
        self.panel_actions: list[QAction] = []
        for i, name in enumerate(self.panel_names()):
            shortcut = f"Ctrl+{i + 1}" if i < 9 else None
            act = self._action(view_menu, self.tabs.tabText(i), shortcut, lambda _=False, n=name: self.show_panel(n))
            self.panel_actions.append(act)
        zoom = getattr(self.panels.get("datasetPanel"), "zoom_actions", ())  # the panel's own (Ctrl++ / Ctrl+-)
        if zoom:
            view_menu.addSeparator()
            view_menu.addActions(zoom)

        help_menu = self.menuBar().addMenu("&Help")
        self.getting_started_action = self._action(help_menu, "&Getting started", "F1", self.show_getting_started)
        self.shortcuts_action = self._action(help_menu, "&Keyboard shortcuts", None, self.show_shortcuts)
        self.about_action = self._action(help_menu, "&About Diffusion Studio", None, self.show_about)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)

    def _action(self, menu, text, shortcut, slot) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        self.addAction(act)  # shortcuts work even with the menu bar hidden
        return act

    def _build_status_bar(self) -> None:
        self.data_status = QLabel()
        self.data_status.setObjectName("dataStatusLabel")
        self.model_status = QLabel()
        self.model_status.setObjectName("modelStatusLabel")
        for w in (self.data_status, self.model_status):
            w.setStyleSheet("QLabel { color: #444; padding: 0 8px; }")
            w.setMaximumWidth(STATUS_LABEL_MAX_PX)
            self.statusBar().addPermanentWidget(w)

    def _show_status(self, message: str) -> None:
        self.statusBar().showMessage(message, 10000)

    def _update_permanent_status(self) -> None:
        s = self.state
        _set_elided(self.data_status, f"Data: {s.data_dir}" if s.data is not None else "Data: none")
        _set_elided(self.model_status,
                    f"Model: {s.model_source or 'none'}" if s.model is not None else "Model: none")

    def _on_data_changed(self) -> None:
        if self.state.data is None:  # the dataset panel says what is missing and offers the fixes
            self.show_panel("datasetPanel")

    # --------------------------------------------------------------- actions
    def show_panel(self, object_name: str) -> None:
        panel = self.panels.get(object_name)
        if panel is not None:
            self.tabs.setCurrentWidget(self.scroll_areas[object_name])

    @Slot(str)
    def _resume_run(self, run_dir: str) -> None:
        """The Runs panel asked to continue a run: the training panel does it."""
        self.show_panel("trainPanel")
        self.panels["trainPanel"].resume_training(run_dir)

    def open_data_folder(self) -> None:
        start = self._settings_value(DATA_FOLDER) or str(self.state.data_dir or Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open an MNIST folder", start)
        if folder:
            self.state.request_data(folder)

    def open_checkpoint(self) -> None:
        start = self._settings_value(CHECKPOINT_FOLDER) or str(paths.runs_dir())
        path, _ = QFileDialog.getOpenFileName(self, "Open a checkpoint", start, "Checkpoints (*.pt);;All files (*)")
        if path:
            self.load_checkpoint(path)

    def load_checkpoint(self, path: str | Path, source: str | None = None, quiet: bool = False) -> bool:
        """Open a model as the current one, off the GUI thread (``AppState.open_model``).

        path: what every command takes (``tasks.models.ModelRef``): a .pt file, a run folder
        (its best.pt, else last.pt) or a bundled model's name ("default"). source: what the
        app calls it (default: the file's, the run's or the bundled model's name). False (and
        a message) when it names no checkpoint; otherwise True: the model arrives by
        ``state.model_changed``, or a failure by a message (a dialog unless ``quiet``), never
        an exception.
        """
        from ..engine.storage.checkpoint import CheckpointError
        from ..tasks.models import ModelRef

        ref = ModelRef.of(path)
        label = source or ref.label
        try:
            checkpoint = ref.checkpoint()
        except CheckpointError as exc:
            self._model_open_failed(label, str(exc), quiet=quiet)
            return False
        self._loud_opens.discard(label)
        if not quiet:
            self._loud_opens.add(label)
        if source is None and not ref.is_bundled:
            app_settings().setValue(CHECKPOINT_FOLDER, str(checkpoint.parent))
        self.state.open_model(ref.source, label)
        return True

    @Slot(str)
    def _on_model_opening(self, label: str) -> None:
        self.state.report(f"Opening the model: {label}…")

    @Slot()
    def _on_model_ready(self) -> None:
        """Replace the "Opening the model…" line once a model has arrived."""
        if self.state.model is not None:
            self.state.report(f"Model ready: {self.state.model_source}")

    @Slot(str, str)
    def _on_model_open_failed(self, label: str, reason: str) -> None:
        self._model_open_failed(label, reason, quiet=label not in self._loud_opens)

    def _model_open_failed(self, label: str, reason: str, quiet: bool) -> None:
        self._loud_opens.discard(label)
        if not quiet:
            self.show_message("Could not open the checkpoint", f"{label}: {reason}", QMessageBox.Icon.Warning)
        self.state.report(f"Could not open {label}: {reason}")

    def save_checkpoint_as(self) -> None:
        model = self.state.model
        if model is None:
            self.show_message("No model", "There is no model to save yet: train one or open a checkpoint.")
            return
        src = getattr(model, "path", None)
        if not src or not Path(src).is_file():
            self.show_message("Nothing to save", "This model has no checkpoint file to save.")
            return
        start = Path(self._settings_value(CHECKPOINT_FOLDER) or Path.home()) / Path(src).name
        target, _ = QFileDialog.getSaveFileName(self, "Save checkpoint as", str(start), "Checkpoints (*.pt)")
        if target:
            self.copy_checkpoint(target)

    def copy_checkpoint(self, target: str | Path) -> Path | None:
        """Copy the current model's checkpoint file to ``target``; None (and a message) on failure."""
        model = self.state.model
        src = Path(model.path) if model is not None and getattr(model, "path", None) else None
        if src is None:
            self.state.report("There is no checkpoint file to save")
            return None
        target = Path(target)
        if target.suffix == "":
            target = target.with_suffix(".pt")
        try:
            if target.resolve() != src.resolve():
                tmp = target.with_name(f".{target.name}.tmp")
                shutil.copyfile(src, tmp)
                tmp.replace(target)
        except OSError as exc:
            self.show_message("Could not save the checkpoint", f"{target}: {exc}", QMessageBox.Icon.Warning)
            return None
        app_settings().setValue(CHECKPOINT_FOLDER, str(target.parent))
        self.state.report(f"Checkpoint saved to {target}")
        return target

    def export_grid(self) -> None:
        """File > Export grid…: the sampler panel's ``export_grid()`` (it asks for the file)."""
        self._sampler_export("export_grid")

    def _sampler_export(self, method: str) -> None:
        panel = self.panels.get("samplerPanel")
        fn = getattr(panel, method, None) if panel is not None else None
        if callable(fn):
            self.show_panel("samplerPanel")
            fn()
        else:
            self.show_message("Export", "The sampler panel cannot export this; sample some images there first.")

    def shortcut_list(self) -> list[tuple[str, str]]:
        """(key, what it does) for the window's actions and every panel button with a shortcut."""
        from PySide6.QtWidgets import QAbstractButton

        rows = []
        for act in self.actions():
            if not act.shortcut().isEmpty():
                rows.append((act.shortcut().toString(QKeySequence.SequenceFormat.NativeText),
                             act.text().replace("&", "")))
        for name, panel in self.panels.items():
            title = self.tabs.tabText(self.panel_names().index(name))
            for button in panel.findChildren(QAbstractButton):
                if not button.shortcut().isEmpty():
                    label = button.text().replace("&", "") or button.toolTip() or button.objectName()
                    rows.append((button.shortcut().toString(QKeySequence.SequenceFormat.NativeText),
                                 f"{title}: {label}"))
        return rows

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in self.shortcut_list())
        self.show_message("Keyboard shortcuts", f"<table>{rows}</table>")

    def show_getting_started(self) -> QDialog:
        """Help > Getting started (F1): the first hour in five steps, beside the window."""
        if self._getting_started is None:
            self._getting_started = getting_started_dialog(self)
        self._getting_started.show()
        self._getting_started.raise_()
        return self._getting_started

    def show_about(self) -> None:
        import PySide6
        import pyqtgraph
        import torch

        QMessageBox.about(
            self,
            "About Diffusion Studio",
            f"<h3>Diffusion Studio {__version__}</h3>"
            "<p>Explore Denoising Diffusion Probabilistic Models (Ho et al. 2020) on MNIST: "
            "the data, the forward noise, live training and sampling.</p>"
            f"<p>PyTorch {torch.__version__} · PySide6 {PySide6.__version__} · pyqtgraph {pyqtgraph.__version__}</p>",
        )

    def show_message(self, title: str, text: str, icon=QMessageBox.Icon.Information) -> QMessageBox:
        """A non-modal message box (never blocks the event loop or a scripted run)."""
        box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r, b=box: self._dialogs.remove(b) if b in self._dialogs else None)
        self._dialogs.append(box)
        box.open()
        return box

    # -------------------------------------------------------------- settings
    def _settings_value(self, key: str) -> str:
        value = app_settings().value(key, "")
        return str(value) if value else ""

    def _remember_data_folder(self, folder: Path) -> None:
        app_settings().setValue(DATA_FOLDER, str(folder))

    def _restore_settings(self) -> None:
        s = app_settings()
        geometry = s.value(WINDOW_GEOMETRY)
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        window_state = s.value(WINDOW_STATE)
        if isinstance(window_state, QByteArray) and not window_state.isEmpty():
            self.restoreState(window_state)
        self.fit_to_screen()
        tab = s.value(WINDOW_TAB, "")
        if tab:
            self.show_panel(str(tab))

    def save_settings(self) -> None:
        s = app_settings()
        s.setValue(WINDOW_GEOMETRY, self.saveGeometry())
        s.setValue(WINDOW_STATE, self.saveState())
        current = self.current_panel()
        if current is not None:
            s.setValue(WINDOW_TAB, current.objectName())
        s.sync()

    def shutdown_panels(self) -> None:
        """Call ``shutdown()`` on every panel that has one (stops workers); errors are reported, not raised."""
        for name, panel in self.panels.items():
            fn = getattr(panel, "shutdown", None)
            if callable(fn):
                try:
                    fn()
                except Exception:  # a failing panel must not keep the window open
                    print(f"diffusion-studio: {name}.shutdown() failed:", file=sys.stderr)
                    traceback.print_exc()

    def may_quit(self) -> bool:
        """While a training runs, ask first (Yes: it stops as any close stops it; No: the window
        stays open and the training goes on). True when nothing runs."""
        train = self.panels.get("trainPanel")
        if not self.confirm_quit or train is None or not train.is_training():
            return True
        box = QMessageBox(QMessageBox.Icon.Question, "Quit during training?",
                          "A training is running. Quit and stop it?\n\nIt stops after the current batch "
                          "and keeps its checkpoints: Resume in the Training or Runs panel continues it.",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setObjectName("confirmQuitBox")
        box.setDefaultButton(QMessageBox.StandardButton.No)
        return box.exec() == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        if not self.may_quit():
            event.ignore()
            return
        self.state.wait_for_model()  # a model being read finishes first (it writes nothing)
        self.shutdown_panels()
        self.save_settings()
        event.accept()


def _set_elided(label: QLabel, text: str) -> None:
    """``text`` in ``label``, elided in the middle to the label's maximum width (the whole text
    in its tooltip), so a long path never widens the status bar and with it the window."""
    width = label.maximumWidth() - 16  # the style sheet's padding
    label.setText(label.fontMetrics().elidedText(text, Qt.TextElideMode.ElideMiddle, width))
    label.setToolTip(text)


def _scrolling(panel: QWidget) -> QScrollArea:
    """The panel in a frameless scroll area: a window smaller than the panel's minimum scrolls
    it instead of squeezing its widgets or growing itself (a panel that asks for more room,
    such as a wide strip of digits, gets a scroll bar, never a wider window)."""
    area = QScrollArea()
    area.setObjectName(f"{panel.objectName()}Scroll")
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(panel)
    return area


#: Help > Getting started: the first hour in five steps; a link names the panel it opens
GETTING_STARTED = """
<h3>Your first hour with diffusion</h3>
<ol>
<li><p><b>Look at the data.</b> <a href="#datasetPanel">Dataset</a> (Ctrl+1): browse the MNIST digits,
click one to enlarge it, select a few and press <i>Send to noise panel</i>.</p></li>
<li><p><b>Drag t.</b> <a href="#noisePanel">Forward noise</a> (Ctrl+2): drag the t slider and watch
your digits dissolve into Gaussian noise; the plots show how much of the image is left at each t.</p></li>
<li><p><b>Sample from the bundled model.</b> <a href="#samplerPanel">Sampler</a> (Ctrl+4): press
<i>Sample</i> and watch pure noise become digits, step by step, beside the model's guess of the
final image.</p></li>
<li><p><b>Train for 15 minutes and watch.</b> <a href="#trainPanel">Training</a> (Ctrl+3): press
<i>Start</i> with a 15-minute time budget; the loss falls, and preview digits show what the model
has learnt so far. Stop whenever you like: <i>Resume</i> continues the run.</p></li>
<li><p><b>Evaluate.</b> <a href="#evaluatePanel">Evaluate</a> (Ctrl+5): score your model's digits
against real ones, and compare your trainings in <a href="#runsPanel">Runs</a> (Ctrl+6).</p></li>
</ol>
<p>Every control has a tooltip; F1 opens this page again.</p>
"""


def getting_started_dialog(window: MainWindow) -> QDialog:
    """A non-modal page with the five steps; a link shows its panel, and a button the shortcuts."""
    dialog = QDialog(window, objectName="gettingStartedDialog", windowTitle="Getting started")
    text = QLabel(GETTING_STARTED, objectName="gettingStartedText", wordWrap=True)
    text.setTextFormat(Qt.TextFormat.RichText)
    text.setMinimumWidth(520)
    text.linkActivated.connect(lambda link: window.show_panel(link.lstrip("#")))
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    shortcuts = buttons.addButton("Keyboard shortcuts…", QDialogButtonBox.ButtonRole.HelpRole)
    shortcuts.setObjectName("gettingStartedShortcutsButton")
    shortcuts.clicked.connect(window.show_shortcuts)
    buttons.rejected.connect(dialog.close)
    layout = QVBoxLayout(dialog)
    layout.addWidget(text)
    layout.addWidget(buttons)
    return dialog
