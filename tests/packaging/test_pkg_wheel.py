"""Build the wheel (via the sdist, like ``python -m build``), install it apart from the repo, use it.

The installed copy goes into a ``pip install --no-deps --target`` folder and runs on
this interpreter (torch & co. come from its site-packages): a fresh virtual
environment would need a 5 GB torch download. PYTHONPATH holds only that folder
and the working directory is elsewhere, so the repository cannot leak in.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pkg_helpers import ROOT, desktop_file_validate, read_desktop_entry

from diffusion_studio.desktop import APP_ID, ICON_SIZES

pytestmark = pytest.mark.slow

_SKIP_PARTS = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache"}


def _source_files() -> list[Path]:
    """Repository files a checkout would have: git's tracked + untracked-not-ignored."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                             capture_output=True, check=True, timeout=60).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()]
    return [Path(n) for n in names
            if not _SKIP_PARTS.intersection(Path(n).parts) and not n.endswith(".egg-info")
            and (ROOT / n).is_file()]


def _build_wheel(src: Path, out: Path) -> Path:
    env = dict(os.environ, PIP_NO_INPUT="1")
    env.pop("PYTHONPATH", None)
    if importlib.util.find_spec("build") is not None:
        # sdist first, then the wheel from the sdist: package data must survive both steps.
        cmd = [sys.executable, "-m", "build", "--no-isolation", "--skip-dependency-check", "--outdir", str(out), "."]
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
               "--wheel-dir", str(out)]
    result = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    wheels = list(out.glob("diffusion_studio-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, target folder, source files under diffusion_studio/resources)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    files = _source_files()
    for rel in files:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    wheel = _build_wheel(src, base / "dist")
    target = base / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
                             "--disable-pip-version-check", "--target", str(target), str(wheel)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The copied sources, the build folders and the sdist are not needed any more: about
    # 80 MB (the bundled models three times over) freed for the tests that follow.
    shutil.rmtree(src, ignore_errors=True)
    for sdist in (base / "dist").glob("*.tar.gz"):
        sdist.unlink()
    resources = sorted(str(p) for p in files if p.parts[:2] == ("diffusion_studio", "resources"))
    yield wheel, target, resources
    shutil.rmtree(base, ignore_errors=True)


def _env(target: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(target), QT_QPA_PLATFORM="offscreen", **extra)
    return env


def test_wheel_contains_icons_desktop_entry_and_bundled_files(installed):
    wheel, _, resources = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for size in ICON_SIZES:
        assert f"diffusion_studio/resources/icons/hicolor/{size}x{size}/apps/{APP_ID}.png" in names
    assert f"diffusion_studio/resources/icons/hicolor/scalable/apps/{APP_ID}.svg" in names
    assert f"diffusion_studio/resources/desktop/{APP_ID}.desktop" in names
    # Every file of the package's resources folder, the bundled model folder included when present.
    missing = [r for r in resources if r not in names]
    assert not missing, f"package data left out of the wheel: {missing}"
    if (ROOT / "diffusion_studio" / "resources" / "models").is_dir():
        assert any(n.startswith("diffusion_studio/resources/models/") for n in names)
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "diffusion-studio = diffusion_studio.cli:main" in entry_points


def test_installed_copy_imports_and_finds_its_resources(installed, tmp_path):
    _, target, resources = installed
    code = r"""
import json, sys
from importlib import resources
import diffusion_studio, diffusion_studio.app
from diffusion_studio.desktop import ICON_SIZES, icon_resource, desktop_template
from PySide6.QtWidgets import QApplication
app = QApplication([])
from diffusion_studio.ui.icon import app_icon
icon = app_icon()
root = resources.files("diffusion_studio") / "resources"
def walk(ref, prefix):
    for child in ref.iterdir():
        if child.is_dir():
            yield from walk(child, prefix + child.name + "/")
        else:
            yield prefix + child.name
print(json.dumps({
    "file": diffusion_studio.__file__,
    "app": diffusion_studio.app.__file__,
    "icon_null": icon.isNull(),
    "icon_sizes": sorted(s.width() for s in icon.availableSizes()),
    "png_bytes": {s: len(icon_resource(s).read_bytes()) for s in ICON_SIZES},
    "desktop_exec": [l for l in desktop_template().splitlines() if l.startswith("Exec=")],
    "resources": sorted(walk(root, "diffusion_studio/resources/")),
}))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(target),
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(info["file"]).is_relative_to(target), info["file"]
    assert Path(info["app"]).is_relative_to(target)
    assert info["icon_null"] is False
    assert info["icon_sizes"] == list(ICON_SIZES)
    assert all(n > 1000 for n in info["png_bytes"].values())
    assert info["desktop_exec"] == ["Exec=diffusion-studio"]
    assert set(resources) <= set(info["resources"])


def test_installed_script_puts_itself_in_the_menu(installed, tmp_path):
    _, target, _ = installed
    script = target / "bin" / "diffusion-studio"
    assert script.is_file(), "pip did not create the diffusion-studio script"
    data_home = tmp_path / "data"
    env = _env(target, XDG_DATA_HOME=str(data_home))
    result = subprocess.run([str(script), "install-desktop"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    entry_file = data_home / "applications" / f"{APP_ID}.desktop"
    entry = read_desktop_entry(entry_file)
    assert entry["Exec"] == str(script.absolute())  # no PATH needed from the desktop
    validated = desktop_file_validate(entry_file)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    for size in ICON_SIZES:
        assert (data_home / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png").is_file()

    result = subprocess.run([str(script), "uninstall-desktop"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not entry_file.exists()


def test_installed_app_starts_and_quits(installed, tmp_path):
    _, target, _ = installed
    app_source = (target / "diffusion_studio" / "app.py").read_text(encoding="utf-8")
    if "DIFFUSION_STUDIO_QUIT_AFTER_MS" not in app_source:
        pytest.skip("app.main does not support DIFFUSION_STUDIO_QUIT_AFTER_MS yet (GUI issue)")
    script = target / "bin" / "diffusion-studio"
    env = _env(target, DIFFUSION_STUDIO_QUIT_AFTER_MS="1500")
    result = subprocess.run([str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
