"""Where Diffusion Studio keeps its files.

Everything lives under the platform's per-user folders (platformdirs). Set
``DIFFUSION_STUDIO_HOME`` to put data, cache and runs under one folder instead
(the tests do, so they never touch a real user's files).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "diffusion-studio"


def _home() -> Path | None:
    value = os.environ.get("DIFFUSION_STUDIO_HOME")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    """Per-user data: the default MNIST download folder, trained helper models."""
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    """Per-user cache: decompressed MNIST, cached feature statistics."""
    home = _home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME))


def runs_dir() -> Path:
    """Default folder holding one sub-folder per training run."""
    return data_dir() / "runs"


def default_mnist_dir() -> Path:
    """Where MNIST is downloaded to when the user names no folder."""
    return data_dir() / "mnist"
