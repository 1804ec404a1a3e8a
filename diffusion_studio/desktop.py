"""Desktop integration on Linux: install the menu entry and icons for the current user.

``install()`` writes, under ``$XDG_DATA_HOME`` (default ``~/.local/share``):

* ``applications/<APP_ID>.desktop``      the menu entry, ``Exec=`` the absolute path of
  the ``diffusion-studio`` script of this installation (a virtual environment's
  ``bin/`` is rarely on the desktop session's PATH);
* ``icons/hicolor/<N>x<N>/apps/<APP_ID>.png`` for N in ``ICON_SIZES`` and
  ``icons/hicolor/scalable/apps/<APP_ID>.svg``.

``uninstall()`` removes exactly those files. Both refresh the desktop database and
icon cache when the tools exist. The files come from package data
(``diffusion_studio/resources``) through ``importlib.resources``, so this works from
an installed wheel. No Qt here: the CLI uses it headless.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+; the annotation is enough
    from importlib.resources.abc import Traversable

#: Reverse-DNS application id: the .desktop file's basename, the icon name, the AppStream id,
#: and what the GUI passes to ``QGuiApplication.setDesktopFileName``.
APP_ID = "io.github.diffusion_studio.DiffusionStudio"
#: The console script the desktop entry launches.
SCRIPT_NAME = "diffusion-studio"
#: Sizes (pixels) of the PNG icons shipped in the package.
ICON_SIZES = (48, 128, 256)


class DesktopError(Exception):
    """Desktop integration cannot proceed; the message says what to do."""


@dataclass
class Report:
    """What ``install``/``uninstall`` did: files written or removed, cache tools that ran."""

    files: list[Path] = field(default_factory=list)
    caches: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Package data
# ---------------------------------------------------------------------------------------------

def resource(*parts: str) -> Traversable:
    """``diffusion_studio/resources/<parts...>`` as an importlib.resources Traversable."""
    ref = resources.files("diffusion_studio").joinpath("resources")
    for part in parts:
        ref = ref.joinpath(part)
    return ref


def icon_resource(size: int | str) -> Traversable:
    """The packaged icon: ``size`` in ``ICON_SIZES`` gives the PNG, ``"scalable"`` the SVG."""
    if size == "scalable":
        return resource("icons", "hicolor", "scalable", "apps", f"{APP_ID}.svg")
    if size not in ICON_SIZES:
        raise ValueError(f"icon size must be one of {ICON_SIZES} or 'scalable', got {size!r}")
    return resource("icons", "hicolor", f"{size}x{size}", "apps", f"{APP_ID}.png")


def desktop_template() -> str:
    """The packaged .desktop entry (``Exec=diffusion-studio``, to be made absolute)."""
    ref = resource("desktop", f"{APP_ID}.desktop")
    if not ref.is_file():
        raise DesktopError(
            "the desktop entry is missing from this installation; reinstall Diffusion Studio"
        )
    return ref.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Locations
# ---------------------------------------------------------------------------------------------

def data_home() -> Path:
    """``$XDG_DATA_HOME``, or ``~/.local/share`` when it is unset, empty or relative (XDG spec)."""
    value = os.environ.get("XDG_DATA_HOME", "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / ".local" / "share"


def installed_paths(base: Path | None = None) -> list[Path]:
    """Every file ``install()`` writes under ``base`` (default ``data_home()``): entry first."""
    base = data_home() if base is None else Path(base)
    icons = base / "icons" / "hicolor"
    return (
        [base / "applications" / f"{APP_ID}.desktop"]
        + [icons / f"{s}x{s}" / "apps" / f"{APP_ID}.png" for s in ICON_SIZES]
        + [icons / "scalable" / "apps" / f"{APP_ID}.svg"]
    )


def find_script() -> Path:
    """Absolute path of the ``diffusion-studio`` script that belongs to this installation.

    Tries, in order: the script being run (``sys.argv[0]``), the scripts folder of this
    interpreter (a venv's ``bin/``), the user scheme's scripts folder (``pip install --user``),
    then ``PATH``. Raises DesktopError when none exists.
    """
    candidates: list[Path] = []
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == SCRIPT_NAME:
        candidates.append(argv0)
    candidates.append(Path(sys.executable).parent / SCRIPT_NAME)
    for scheme in (None, f"{os.name}_user"):
        try:
            scripts = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        if scripts:
            candidates.append(Path(scripts) / SCRIPT_NAME)
    on_path = shutil.which(SCRIPT_NAME)
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path.absolute()
    raise DesktopError(
        f"cannot find the '{SCRIPT_NAME}' command of this installation; install Diffusion Studio "
        "with pip (which creates it), or pass --exec PATH"
    )


# ---------------------------------------------------------------------------------------------
# The entry
# ---------------------------------------------------------------------------------------------

def _exec_argument(path: str) -> str:
    """``path`` as one argument of an ``Exec=`` key (Desktop Entry spec, 'The Exec key')."""
    if any(c in path for c in "\n\r\t"):
        raise DesktopError(f"the command path contains a control character: {path!r}")
    if any(c in path for c in ' "\'\\><~|&;$*?#()`'):
        path = '"' + "".join("\\" + c if c in '"`$\\' else c for c in path) + '"'
    # General string escaping applies on top of Exec quoting; '%' starts a field code.
    return path.replace("\\", "\\\\").replace("%", "%%")


def desktop_entry(exec_path: str | os.PathLike[str]) -> str:
    """The .desktop text with ``Exec=``/``TryExec=`` pointing at ``exec_path`` (absolute)."""
    exec_path = os.fspath(exec_path)
    if not os.path.isabs(exec_path):
        raise DesktopError(f"the command path must be absolute, got {exec_path!r}")
    lines = []
    for line in desktop_template().splitlines():
        if line.startswith("Exec="):
            line = "Exec=" + _exec_argument(exec_path)
        elif line.startswith("TryExec="):
            line = "TryExec=" + exec_path.replace("\\", "\\\\")
        lines.append(line)
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, data: bytes) -> None:
    """The app's one atomic writer: on any failure (a full disk) the temporary file is
    removed and the previous file is intact; a full disk is one line with the space needed."""
    from .engine.storage.atomic import write_bytes_atomic

    write_bytes_atomic(path, data)


def check_exec_path(exec_path: str | os.PathLike[str]) -> Path:
    """The command a menu entry runs, refused in one line unless it is an absolute path to an
    existing executable file: a desktop starts the entry from its own folder, so anything
    else gives an entry that silently does nothing."""
    text = os.fspath(exec_path)
    path = Path(text)
    if not os.path.isabs(text):
        hint = f" (here that is {path.absolute()})" if path.exists() else ""
        raise DesktopError(f"--exec must be an absolute path, got {text!r}{hint}")
    if not path.exists():
        raise DesktopError(f"--exec {text} does not exist; give the path of the diffusion-studio command")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise DesktopError(f"--exec {text} is not an executable file; give the path of the diffusion-studio command")
    return path


def _run_quiet(cmd: list[str]) -> bool:
    """Run a cache tool; True when it succeeded. Never raises (caches are an optimisation)."""
    try:
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def update_caches(base: Path, report: Report) -> None:
    """Refresh the desktop database and the hicolor icon cache under ``base`` when possible.

    The icon cache is rebuilt only where one exists: creating one would hide icons
    that other programs later add without updating it. Otherwise touching the theme
    folder tells icon loaders to rescan it.
    """
    apps = base / "applications"
    tool = shutil.which("update-desktop-database")
    if tool and apps.is_dir() and _run_quiet([tool, "-q", str(apps)]):
        report.caches.append("update-desktop-database")
    hicolor = base / "icons" / "hicolor"
    if hicolor.is_dir():
        tool = shutil.which("gtk-update-icon-cache")
        if (hicolor / "icon-theme.cache").exists() and tool:
            if _run_quiet([tool, "-q", "-f", "-t", str(hicolor)]):
                report.caches.append("gtk-update-icon-cache")
        else:
            os.utime(hicolor)


def install(base: Path | None = None, exec_path: str | os.PathLike[str] | None = None) -> Report:
    """Install the desktop entry and icons for the current user; returns what was written.

    base: the XDG data folder (default ``data_home()``). exec_path: the command the entry
    runs (default ``find_script()``; else ``check_exec_path``: absolute, existing, executable).
    Overwrites an earlier installation; a failure part-way (a full disk) leaves no temporary
    file and is one DesktopError line.
    """
    base = data_home() if base is None else Path(base)
    exec_path = find_script() if exec_path is None else check_exec_path(exec_path)
    report = Report()
    entry, *pngs, svg = installed_paths(base)
    try:
        for size, target in zip(ICON_SIZES, pngs):
            _write_atomic(target, icon_resource(size).read_bytes())
            report.files.append(target)
        _write_atomic(svg, icon_resource("scalable").read_bytes())
        report.files.append(svg)
        _write_atomic(entry, desktop_entry(exec_path).encode("utf-8"))
        report.files.append(entry)
    except FileNotFoundError as exc:
        raise DesktopError(f"a packaged file is missing ({exc.filename}); reinstall Diffusion Studio") from None
    except PermissionError as exc:
        raise DesktopError(f"cannot write {exc.filename}: permission denied; check XDG_DATA_HOME") from None
    except OSError as exc:  # a full disk (DiskFullError's one line says the space needed), a read-only one
        reason = str(exc) if exc.errno in (errno.ENOSPC, errno.EDQUOT) else f"{exc.strerror or exc}; check XDG_DATA_HOME"
        raise DesktopError(f"the menu entry was not installed: {reason}") from None
    update_caches(base, report)
    return report


def uninstall(base: Path | None = None) -> Report:
    """Remove the files ``install()`` writes under ``base``; returns those that existed.

    Leaves folders in place (other applications share them).
    """
    base = data_home() if base is None else Path(base)
    report = Report()
    for path in installed_paths(base):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except PermissionError:
            raise DesktopError(f"cannot remove {path}: permission denied") from None
        report.files.append(path)
    if report.files:
        update_caches(base, report)
    return report
