"""The freedesktop files in packaging/linux: validators pass, ids agree, the wheel ships the entry."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

from pkg_helpers import DESKTOP_FILE, METAINFO_FILE, desktop_file_validate, read_desktop_entry, require_tool

from diffusion_studio.desktop import APP_ID, desktop_template


def test_desktop_file_passes_desktop_file_validate():
    result = desktop_file_validate(DESKTOP_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()


def test_desktop_entry_launches_the_app_with_its_icon():
    entry = read_desktop_entry(DESKTOP_FILE)
    assert entry["Type"] == "Application"
    assert entry["Exec"] == "diffusion-studio"
    assert entry["Icon"] == APP_ID
    assert entry["Terminal"] == "false"
    categories = entry["Categories"].rstrip(";").split(";")
    assert {"Science", "Education", "Qt"} <= set(categories)


def test_packaged_entry_is_the_packaging_copy():
    # install-desktop reads the package-data copy; it must not drift from packaging/linux.
    assert desktop_template() == DESKTOP_FILE.read_text(encoding="utf-8")


def test_metainfo_passes_appstreamcli_validate():
    tool = require_tool("appstreamcli", "appstream")
    result = subprocess.run([tool, "validate", "--no-net", str(METAINFO_FILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_metainfo_ids_match_the_desktop_entry():
    root = ET.parse(METAINFO_FILE).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.find("launchable").text == DESKTOP_FILE.name
    assert root.find("launchable").get("type") == "desktop-id"
    assert root.find("provides/binary").text == read_desktop_entry(DESKTOP_FILE)["Exec"]
    assert root.findtext("name") == read_desktop_entry(DESKTOP_FILE)["Name"]
