"""UI tests share one settings store for the session, in the session's private folder (never the
user's, even where XDG_CONFIG_HOME is set in the environment). The choices a panel remembers in
it are forgotten before each test, so a test that picks a preset or a zoom does not change the
next test's form."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import QSettings

from diffusion_studio.ui import settings as S

#: tests/conftest.py made DIFFUSION_STUDIO_HOME a fresh temporary folder for the session
SETTINGS_DIR = os.path.join(os.environ["DIFFUSION_STUDIO_HOME"], "config")
for _format in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
    QSettings.setPath(_format, QSettings.Scope.UserScope, SETTINGS_DIR)


@pytest.fixture(autouse=True)
def _forget_remembered_choices():
    store = S.app_settings()
    for group in (S.TRAIN_FORM_GROUP, S.DATASET_GROUP):
        store.remove(group)
    yield
