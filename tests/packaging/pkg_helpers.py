"""Shared paths and tool lookups for the packaging tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from diffusion_studio.desktop import APP_ID

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "packaging" / "linux"
DESKTOP_FILE = LINUX / f"{APP_ID}.desktop"
METAINFO_FILE = LINUX / f"{APP_ID}.metainfo.xml"


def require_tool(name: str, debian_package: str) -> str:
    """Path of ``name``, or skip the test saying which Debian package provides it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package {debian_package})")
    return path


def desktop_file_validate(path: Path) -> subprocess.CompletedProcess:
    tool = require_tool("desktop-file-validate", "desktop-file-utils")
    return subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)


def read_desktop_entry(path: Path) -> dict[str, str]:
    """Keys of the [Desktop Entry] group (no locale handling: the tests need none)."""
    entry: dict[str, str] = {}
    group = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            group = line
            continue
        if group == "[Desktop Entry]":
            key, _, value = line.partition("=")
            entry[key] = value
    return entry
