"""On a real X server (Xvfb): set_app_identity() gives the window what desktops match on.

GNOME Shell and KDE Plasma find a window's .desktop entry (and so its icon in the dock
and task switcher) through _GTK_APPLICATION_ID / _KDE_NET_WM_DESKTOP_FILE, which Qt
sets from QGuiApplication.desktopFileName, or through WM_CLASS against StartupWMClass.
The app's screenshots under Xvfb are tested in tests/ui/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from pkg_helpers import DESKTOP_FILE, ROOT, read_desktop_entry

from diffusion_studio.desktop import APP_ID

_PROBE = r"""
import sys, os
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
stop_file = sys.argv[1]
sys.argv[0] = "/opt/venv/bin/diffusion-studio"  # as when started through the console script
app = QApplication(sys.argv[:1])
app.setApplicationName("Diffusion Studio")
from diffusion_studio.ui.icon import set_app_identity
set_app_identity(app)
window = QMainWindow()
window.setWindowTitle("Diffusion Studio probe")
window.show()
def poll():
    if os.path.exists(stop_file):
        app.quit()
QTimer.singleShot(0, lambda: print(f"WINDOW {int(window.winId())}", flush=True))
timer = QTimer(); timer.timeout.connect(poll); timer.start(50)
QTimer.singleShot(60000, app.quit)
app.exec()
"""


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package {package})")
    return path


@pytest.fixture
def xvfb():
    """DISPLAY of a private Xvfb server."""
    binary = _tool("Xvfb", "xvfb")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen([binary, "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_x11_window_carries_the_desktop_identity_and_icon(xvfb, tmp_path):
    xprop = _tool("xprop", "x11-utils")
    stop = tmp_path / "stop"
    env = dict(os.environ, DISPLAY=xvfb, QT_QPA_PLATFORM="xcb",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    probe = subprocess.Popen([sys.executable, "-c", _PROBE, str(stop)], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = probe.stdout.readline()
        if not line.startswith("WINDOW "):
            probe.wait(timeout=30)
            pytest.fail(f"the probe window did not appear: {probe.stderr.read()[-3000:]}")
        window = line.split()[1]
        deadline = time.monotonic() + 20
        while True:  # the window manager-less server may take a moment to have the properties
            props = subprocess.run([xprop, "-display", xvfb, "-id", window, "WM_CLASS", "_GTK_APPLICATION_ID",
                                    "_KDE_NET_WM_DESKTOP_FILE", "_NET_WM_ICON"],
                                   capture_output=True, text=True, timeout=60).stdout
            if "Icon (" in props or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        stop.touch()
        try:
            probe.wait(timeout=30)
        except subprocess.TimeoutExpired:
            probe.kill()
            probe.wait()
    assert f'_GTK_APPLICATION_ID(UTF8_STRING) = "{APP_ID}"' in props
    assert f'_KDE_NET_WM_DESKTOP_FILE(UTF8_STRING) = "{APP_ID}"' in props
    instance, klass = re.search(r'WM_CLASS\(STRING\) = "([^"]*)", "([^"]*)"', props).groups()
    assert read_desktop_entry(DESKTOP_FILE)["StartupWMClass"] in (instance, klass)
    sizes = sorted({int(w) for w, h in re.findall(r"Icon \((\d+) x (\d+)\)", props) if w == h})
    # Qt puts the icon's sizes up to 128 px into _NET_WM_ICON (larger ones would bloat the property).
    assert 48 in sizes and set(sizes) <= {48, 128, 256}, props[:500]
