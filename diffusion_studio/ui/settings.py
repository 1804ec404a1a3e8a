"""The app's one settings store (QSettings, per user).

Every panel reads and writes through ``app_settings()``, so a folder chosen in one
place is the one offered in another. Tests point XDG_CONFIG_HOME elsewhere.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings

ORGANISATION = APPLICATION = "diffusion-studio"

#: keys, in one list
CHECKPOINT_FOLDER = "checkpoint/lastFolder"  # where checkpoints were last opened or saved
DATA_FOLDER = "data/lastFolder"  # the MNIST folder last opened
EXPORT_FOLDER = "export/lastFolder"  # where images were last exported
WINDOW_GEOMETRY, WINDOW_STATE, WINDOW_TAB = "window/geometry", "window/state", "window/tab"


def app_settings() -> QSettings:
    """The app's settings store."""
    return QSettings(ORGANISATION, APPLICATION)
