"""The app icon: generated SVG master, PNG exports, the package-data copies and app_icon()."""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from pkg_helpers import ROOT

from diffusion_studio.desktop import APP_ID, ICON_SIZES, icon_resource

MASTER = ROOT / "resources" / f"{APP_ID}.svg"


def _png(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGBA"))


@pytest.mark.parametrize("size", ICON_SIZES)
def test_packaged_png_loads_through_importlib_resources_at_its_size(size):
    rgba = _png(icon_resource(size).read_bytes())
    assert rgba.shape == (size, size, 4)
    alpha = rgba[..., 3]
    # A rounded tile: transparent corners, opaque middle, and a drawing (not one flat colour).
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0
    assert alpha[size // 2, size // 2] == 255
    middle = rgba[size // 4: 3 * size // 4, size // 4: 3 * size // 4, :3].astype(float)
    assert middle.std() > 20


@pytest.mark.parametrize("size", ICON_SIZES)
def test_packaged_png_is_the_resources_export(size):
    export = ROOT / "resources" / f"{APP_ID}-{size}.png"
    assert icon_resource(size).read_bytes() == export.read_bytes()


def test_packaged_svg_is_the_master_and_well_formed():
    svg = icon_resource("scalable").read_bytes()
    assert svg == MASTER.read_bytes()
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and root.get("viewBox") == "0 0 256 256"


def test_master_is_what_make_icon_generates():
    # The SVG is generated: edits belong in resources/make_icon.py, then rerun it.
    spec = importlib.util.spec_from_file_location("make_icon", ROOT / "resources" / "make_icon.py")
    make_icon = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_icon)
    assert make_icon.APP_ID == APP_ID and tuple(make_icon.SIZES) == ICON_SIZES
    assert make_icon.build_svg() == MASTER.read_text(encoding="utf-8")


@pytest.mark.parametrize("size", [48, 256])
def test_png_exports_match_the_master(tmp_path, size):
    rsvg = shutil.which("rsvg-convert")
    if rsvg is None:
        pytest.skip("rsvg-convert not installed (Debian package librsvg2-bin)")
    out = tmp_path / "render.png"
    subprocess.run([rsvg, "-w", str(size), "-h", str(size), "-o", str(out), str(MASTER)], check=True, timeout=60)
    fresh = _png(out.read_bytes()).astype(int)
    shipped = _png(icon_resource(size).read_bytes()).astype(int)
    assert np.abs(fresh - shipped).mean() < 2.0


def test_app_icon_has_every_size(qapp):
    from diffusion_studio.ui.icon import app_icon

    icon = app_icon()
    assert not icon.isNull()
    assert sorted(s.width() for s in icon.availableSizes()) == list(ICON_SIZES)
    assert all(s.width() == s.height() for s in icon.availableSizes())
    image = icon.pixmap(48, 48).toImage()
    assert image.width() == 48 and image.pixelColor(24, 24).alpha() == 255


def test_set_app_identity_sets_desktop_file_name_and_icon(qapp):
    from diffusion_studio.ui.icon import set_app_identity

    old_name, old_icon = qapp.desktopFileName(), qapp.windowIcon()
    try:
        set_app_identity(qapp)
        assert qapp.desktopFileName() == APP_ID
        assert not qapp.windowIcon().isNull()
    finally:
        qapp.setDesktopFileName(old_name)
        qapp.setWindowIcon(old_icon)
