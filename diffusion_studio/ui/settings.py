"""The app's one settings store (QSettings, per user).

Every panel reads and writes through ``app_settings()``, so a folder chosen in one
place is the one offered in another (``export_path``: every picture export's save dialog
opens where the last export went). Tests keep their own store: XDG_CONFIG_HOME (tests/conftest.py)
and QSettings.setPath (the UI tests' fixture there) point it at a temporary folder.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QWidget

ORGANISATION = APPLICATION = "diffusion-studio"

#: keys, in one list
CHECKPOINT_FOLDER = "checkpoint/lastFolder"  # where checkpoints were last opened or saved
DATA_FOLDER = "data/lastFolder"  # the MNIST folder last opened
EXPORT_FOLDER = "export/lastFolder"  # where images were last exported
WINDOW_GEOMETRY, WINDOW_STATE, WINDOW_TAB = "window/geometry", "window/state", "window/tab"
#: the training form's choices (ui/train_form.py), under one group so tests can forget them at once
TRAIN_FORM_GROUP = "trainForm"
TRAIN_PRESET, TRAIN_BUDGET = "trainForm/preset", "trainForm/budgetMinutes"
TRAIN_CONDITIONAL, TRAIN_DEVICE = "trainForm/conditional", "trainForm/device"
#: the Dataset panel's thumbnail zoom (a whole-pixel factor)
DATASET_GROUP = "dataset"
DATASET_THUMB_ZOOM = "dataset/thumbnailZoom"


def app_settings() -> QSettings:
    """The app's settings store."""
    return QSettings(ORGANISATION, APPLICATION)


def stored_int(store: QSettings, key: str) -> int | None:
    """A whole number kept under ``key`` (the settings file keeps it as text), or None when it is
    missing or is not one (an edited file): the caller keeps its default."""
    try:
        return int(str(store.value(key)))
    except ValueError:
        return None


def export_path(parent: QWidget, path, what: str, suffix: str, name: str) -> Path | None:
    """``path`` with ``suffix``; None asks with a save dialog in the last export folder (and
    remembers the folder chosen). None when the dialog was cancelled. ``what`` names the export
    in the dialog's title, ``name`` the file it offers."""
    if path is not None:
        path = Path(path)
        return path if path.suffix.lower() == suffix else path.with_name(path.name + suffix)
    settings = app_settings()
    folder = settings.value(EXPORT_FOLDER, "") or str(Path.home())
    filt = "GIF animations (*.gif)" if suffix == ".gif" else "PNG images (*.png)"
    chosen, _ = QFileDialog.getSaveFileName(parent, f"Export {what}", str(Path(folder) / f"{name}{suffix}"), filt)
    if not chosen:
        return None
    chosen = Path(chosen)
    if chosen.suffix.lower() != suffix:
        chosen = chosen.with_name(chosen.name + suffix)
    settings.setValue(EXPORT_FOLDER, str(chosen.parent))
    return chosen
