"""The state the panels share, as one QObject living in the GUI thread.

Panels receive it in their constructor, read from it, and subscribe to its
signals; they never reach into each other. Everything here is plain data from
the engine (no widgets).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from ..engine.storage.checkpoint import LoadedModel
from ..engine.storage.data import MNISTSplits
from ..engine.diffusion.schedule import ScheduleConfig


class AppState(QObject):
    """Shared, GUI-thread state.

    data:        the loaded MNIST splits, or None when no data folder could be read
    data_dir:    the folder they came from (or the one that failed)
    data_error:  why loading failed (one line for the user), or ""
    selection:   (K, 28, 28) uint8 digits chosen in the dataset browser (K may be 0)
    selection_labels: (K,) int labels of those digits
    schedule_config: the forward-process schedule the noise panel shows: the training
                 form's (which the next run trains), a loaded model's, or one chosen
                 on the noise panel; ``schedule_source`` says which, in words
    model:       the model to sample from (bundled, just trained, or opened), or None
    model_source: a short description of where ``model`` came from; every panel opens
                 a model through ``open_model`` (off the GUI thread, one device policy)
    device:      "auto", "cpu" or "cuda" (the user's choice for heavy work)
    sampler_config: the Sampler tab's reverse process (a SamplerConfig), which the other
                 panels that run it use too ("denoise from here", the evaluation); None
                 until a sampler panel pushes one, or while its form is not valid
    """

    data_changed = Signal()
    selection_changed = Signal()
    schedule_changed = Signal()
    model_changed = Signal()
    sampler_config_changed = Signal()
    status_message = Signal(str)
    # Requests any panel may make; the main window carries them out.
    data_requested = Signal(str, bool)  # folder ("" = the default folder), download if missing
    data_loading = Signal(str)  # a load or download started: one line saying what happens
    panel_requested = Signal(str)  # the objectName of the panel to bring to the front
    model_opening = Signal(str)  # open_model started reading this source (its label)
    model_open_failed = Signal(str, str)  # (label, one line saying why and what to do)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data: MNISTSplits | None = None
        self.data_dir: Path | None = None
        self.data_error: str = ""
        self.data_missing = True  # no data because none was found (False: found but unreadable)
        self.selection = np.zeros((0, 28, 28), dtype=np.uint8)
        self.selection_labels = np.zeros((0,), dtype=np.int64)
        from ..engine.training.presets import get_preset

        self.schedule_config: ScheduleConfig = get_preset("default").schedule
        self.schedule_source: str = "the training form"
        self.model: LoadedModel | None = None
        self.model_source: str = ""
        self.device: str = "auto"
        self.sampler_config = None  # SamplerConfig | None: see set_sampler_config
        self._opener = None  # LatestRunner of open_model, made on first use

    def set_sampler_config(self, config) -> None:
        """The Sampler tab's settings changed to ``config`` (a SamplerConfig; None: its form
        holds no valid one)."""
        if config != self.sampler_config:
            self.sampler_config = config
            self.sampler_config_changed.emit()

    def current_sampler_config(self):
        """The reverse process the panels run: the Sampler tab's SamplerConfig, else the defaults."""
        from ..engine.diffusion.scheduling import SamplerConfig

        return self.sampler_config if self.sampler_config is not None else SamplerConfig()

    def set_data(self, data: MNISTSplits | None, folder: Path | None, error: str = "") -> None:
        self.data, self.data_dir, self.data_error = data, folder, error
        self.data_changed.emit()

    def set_selection(self, images: np.ndarray, labels: np.ndarray) -> None:
        """images: (K, 28, 28) uint8; labels: (K,) ints."""
        self.selection = np.ascontiguousarray(images, dtype=np.uint8).reshape(-1, 28, 28)
        self.selection_labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.selection_changed.emit()

    def set_schedule_config(self, config: ScheduleConfig, source: str | None = None) -> None:
        """Show ``config`` (from ``source``: "the training form", "the loaded model (…)", …)."""
        changed = config != self.schedule_config or (source is not None and source != self.schedule_source)
        self.schedule_config = config
        if source is not None:
            self.schedule_source = source
        if changed:
            self.schedule_changed.emit()

    def set_model(self, model: LoadedModel | None, source: str) -> None:
        self.model, self.model_source = model, source
        self.model_changed.emit()
        if model is not None:  # the noise panel shows the schedule this model was trained with
            self.set_schedule_config(model.schedule_config, f"the loaded model ({source})")

    def open_model(self, source: str | Path, label: str) -> None:
        """Open a model off the GUI thread and make it the current one.

        source: a .pt file, a run folder (its best.pt, else last.pt) or a bundled model's
        name ("default"); it goes to ``self.device`` by ``tasks.models.model_device``
        (the CPU when that device is missing). ``set_model(model, label)`` follows when it
        is read; ``model_open_failed(label, reason)`` when it cannot be. A request made
        while another is being read waits for it, and only the newest waiting one runs.
        """
        from .workers import LatestRunner

        if self._opener is None:
            self._opener = LatestRunner(self)
        device = self.device
        self._opener.post(lambda: self._open_worker(source, label, device))

    def _open_worker(self, source, label: str, device: str):
        from ..tasks.models import open_model
        from .workers import TaskWorker, on_gui_thread

        worker = TaskWorker(lambda ctx: open_model(source, device), "opening the model", thread_name="open-model")
        worker.finished.connect(on_gui_thread(self, lambda loaded: self.set_model(loaded, label)))
        # the worker's line reads "opening the model failed: <why>"; the label says which
        worker.failed.connect(on_gui_thread(
            self, lambda message: self.model_open_failed.emit(label, message.split(": ", 1)[-1])))
        self.model_opening.emit(label)
        return worker

    def is_opening_model(self) -> bool:
        return self._opener is not None and self._opener.busy()

    def wait_for_model(self, timeout_ms: int = 15000) -> bool:
        """Block until no model is being opened (the main window's close; tests). True when none is."""
        return self._opener is None or self._opener.wait(timeout_ms)

    def request_data(self, folder: str | Path | None = None, download: bool = False) -> None:
        """Ask the main window to load MNIST from ``folder`` (None: the default folder),
        downloading it first when ``download`` is true. The result arrives via ``set_data``."""
        self.data_requested.emit(str(folder) if folder else "", bool(download))

    def set_data_loading(self, message: str) -> None:
        """Announce that a data load/download runs in the background (``message`` for the user)."""
        self.data_loading.emit(message)

    def show_panel(self, object_name: str) -> None:
        """Ask the main window to switch to the panel with this objectName (e.g. "noisePanel")."""
        self.panel_requested.emit(object_name)

    def report(self, message: str) -> None:
        """Show a one-line message in the status bar."""
        self.status_message.emit(message)


def cuda_available() -> bool:
    """Whether this machine has a CUDA GPU torch can use (False when asking fails)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False
