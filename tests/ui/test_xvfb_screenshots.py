"""Run the real app on an X server (Xvfb) and screenshot every panel.

The app honours DIFFUSION_STUDIO_SCREENSHOTS=DIR: once the data is loaded it
shows each tab, saves DIR/<objectName>.png and quits. The PNGs are kept in
pytest's tmp folder (the path is printed) so a person can look at them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusion_studio.ui.main_window import PANELS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("xvfb-run") is None,
    reason="xvfb-run is not installed (Debian/Ubuntu: apt-get install xvfb); this test needs a virtual X server",
)


def expected_panels() -> list[str]:
    return [s.object_name for s in PANELS if not s.optional or importlib.util.find_spec(s.module) is not None]


def test_real_app_under_xvfb_saves_a_screenshot_per_panel(tmp_path, tiny_mnist):
    shots = tmp_path / "screenshots"
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)  # the real xcb platform, not offscreen
    env.update(
        QT_QPA_PLATFORM="xcb",
        DIFFUSION_STUDIO_SCREENSHOTS=str(shots),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    proc = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24",
         sys.executable, "-m", "diffusion_studio", "--data", str(tiny_mnist)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    print(f"\nscreenshots in {shots}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    pngs = sorted(p.stem for p in shots.glob("*.png"))
    assert pngs == sorted(expected_panels())
    for name in pngs:
        img = np.asarray(Image.open(shots / f"{name}.png").convert("L"), dtype=np.float32)
        assert img.shape[0] >= 600 and img.shape[1] >= 1000, (name, img.shape)
        # the panel's area (below the menu and tabs, above the status bar) must show something
        body = img[80:-40]
        assert body.std() > 12, f"{name}.png looks blank (pixel std {body.std():.1f} in the panel area)"
