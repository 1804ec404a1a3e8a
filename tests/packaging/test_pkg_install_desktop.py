"""``diffusion-studio install-desktop`` / ``uninstall-desktop`` under a private XDG_DATA_HOME."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pkg_helpers import ROOT, desktop_file_validate, read_desktop_entry

from diffusion_studio import desktop
from diffusion_studio.desktop import APP_ID, ICON_SIZES, icon_resource


def _fake_script(folder: Path) -> Path:
    """An executable stand-in for the installed ``diffusion-studio`` script."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "diffusion-studio"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def _cli(*args: str, data_home: Path, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_DATA_HOME=str(data_home), HOME=str(home),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "diffusion_studio", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def _expected(data_home: Path) -> list[Path]:
    icons = data_home / "icons" / "hicolor"
    return ([data_home / "applications" / f"{APP_ID}.desktop"]
            + [icons / f"{s}x{s}" / "apps" / f"{APP_ID}.png" for s in ICON_SIZES]
            + [icons / "scalable" / "apps" / f"{APP_ID}.svg"])


def test_install_then_uninstall_writes_and_removes_exactly_our_files(tmp_path):
    data_home, home = tmp_path / "xdg data", tmp_path / "home"
    script = _fake_script(tmp_path / "venv with space" / "bin")
    # Someone else's files in the same folders must survive uninstall.
    other = data_home / "applications" / "org.example.Other.desktop"
    other.parent.mkdir(parents=True)
    other.write_text("[Desktop Entry]\n")

    result = _cli("install-desktop", "--exec", str(script), data_home=data_home, home=home)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    files = _expected(data_home)
    assert all(p.is_file() for p in files), [str(p) for p in files if not p.is_file()]
    assert str(files[0]) in result.stdout
    for size, png in zip(ICON_SIZES, files[1:4]):
        assert png.read_bytes() == icon_resource(size).read_bytes()
    assert files[4].read_bytes() == icon_resource("scalable").read_bytes()
    assert not (home / ".local").exists()  # XDG_DATA_HOME was honoured

    entry = read_desktop_entry(files[0])
    # A path with a space is quoted in Exec (desktop entry spec); TryExec takes it as is.
    assert entry["Exec"] == f'"{script}"'
    assert entry["TryExec"] == str(script)
    assert entry["Icon"] == APP_ID
    validated = desktop_file_validate(files[0])
    assert validated.returncode == 0, validated.stdout + validated.stderr

    result = _cli("uninstall-desktop", data_home=data_home, home=home)
    assert result.returncode == 0, result.stderr
    assert not any(p.exists() for p in files)
    assert other.is_file()
    assert result.stdout.count("removed ") == len(files)

    again = _cli("uninstall-desktop", data_home=data_home, home=home)
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_relative_xdg_data_home_falls_back_to_local_share(tmp_path):
    home = tmp_path / "home"
    script = _fake_script(tmp_path / "bin")
    result = _cli("install-desktop", "--exec", str(script), data_home=Path("relative/ignored"), home=home)
    assert result.returncode == 0, result.stderr
    assert all(p.is_file() for p in _expected(home / ".local" / "share"))


def test_exec_must_be_an_absolute_existing_executable(tmp_path, monkeypatch, capsys):
    """Issue 31, item 15: --exec with a relative or missing path was accepted, and the menu
    entry was then broken. Each is refused in one line, before anything is written."""
    from diffusion_studio.cli import main

    script = _fake_script(tmp_path / "bin")
    (tmp_path / "bin" / "plain").write_text("not executable")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for exec_path, words in (("bin/diffusion-studio", f"must be an absolute path, got 'bin/diffusion-studio' "
                                                       f"(here that is {script})"),
                             (str(tmp_path / "missing"), "does not exist"),
                             (str(tmp_path / "bin"), "is not an executable file"),
                             (str(tmp_path / "bin" / "plain"), "is not an executable file")):
        assert main(["install-desktop", "--exec", exec_path]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    """Issue 31, item 15: install-desktop on a full disk gave a raw [Errno 28] and left a .png.tmp."""
    import errno

    from diffusion_studio.cli import main
    from diffusion_studio.engine.storage import atomic

    script = _fake_script(tmp_path / "bin")
    data = tmp_path / "data"
    real, calls = atomic.write_atomic, []

    def fills_up_at_the_second_file(path, write):
        calls.append(path)
        if len(calls) < 2:
            return real(path, write)

        def partial(f):
            f.write(b"\x89PNG half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, partial)

    monkeypatch.setattr(atomic, "write_atomic", fills_up_at_the_second_file)
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    assert main(["install-desktop", "--exec", str(script)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Errno" not in err
    assert "the menu entry was not installed: the disk holding" in err and "is full" in err
    assert [p for p in data.rglob("*") if p.name.endswith(".tmp")] == []
    assert not (data / "applications").exists()  # the entry is written last: no entry without its icons


def test_exec_quoting_escapes_special_characters():
    # Exec quoting (\" \` \$ \\ inside quotes) then string escaping (\\ -> \\\\), and %% for %.
    assert desktop._exec_argument("/opt/ds/bin/diffusion-studio") == "/opt/ds/bin/diffusion-studio"
    assert desktop._exec_argument('/a b/"x"') == '"/a b/\\\\"x\\\\""'
    assert desktop._exec_argument("/a$b/100%") == '"/a\\\\$b/100%%"'
    with pytest.raises(desktop.DesktopError, match="control character"):
        desktop._exec_argument("/a\nb")


def test_find_script_prefers_the_running_script(tmp_path, monkeypatch):
    script = _fake_script(tmp_path / "bin")
    monkeypatch.setattr(sys, "argv", [str(script), "install-desktop"])
    assert desktop.find_script() == script


def test_find_script_uses_this_interpreters_scripts_folder(tmp_path, monkeypatch):
    script = _fake_script(tmp_path / "venv" / "bin")
    monkeypatch.setattr(sys, "argv", ["-c"])
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    assert desktop.find_script() == script


def test_missing_script_is_a_clear_error_without_traceback(tmp_path):
    # A fresh interpreter whose scripts folders and PATH hold no diffusion-studio.
    code = (
        "import sys, sysconfig, shutil\n"
        "sys.executable = sys.argv[1] + '/python'\n"
        "sysconfig.get_path = lambda *a, **k: sys.argv[1]\n"
        "shutil.which = lambda *a, **k: None\n"
        "sys.argv = ['diffusion_studio', 'install-desktop']\n"
        "from diffusion_studio.cli import main\n"
        "raise SystemExit(main())\n"
    )
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("diffusion-studio install-desktop: error: cannot find the 'diffusion-studio'")
    assert "--exec" in result.stderr
    assert not (tmp_path / "data").exists()


def test_glib_launches_the_installed_entry_with_an_awkward_path(tmp_path):
    # GLib (GNOME's menu) parses Exec like a shell after the key-file unescaping: the quoted path must survive.
    gio = shutil.which("gio")
    if gio is None:
        pytest.skip("gio not installed (Debian package libglib2.0-bin)")
    folder = tmp_path / "my venv $HOME \"x\" it's" / "bin"
    folder.mkdir(parents=True)
    marker = tmp_path / "launched"
    script = folder / "diffusion-studio"
    script.write_text(f'#!/bin/sh\nprintf "%s|%s" "$0" "$#" > "{marker}"\n')
    script.chmod(0o755)
    data_home = tmp_path / "data"
    result = _cli("install-desktop", "--exec", str(script), data_home=data_home, home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    entry = data_home / "applications" / f"{APP_ID}.desktop"
    launched = subprocess.run([gio, "launch", str(entry)], env=dict(os.environ, XDG_DATA_HOME=str(data_home)),
                              capture_output=True, text=True, timeout=60)
    assert launched.returncode == 0, launched.stderr
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == f"{script}|0"  # the script itself, with no stray arguments


def test_installed_icons_resolve_through_the_hicolor_theme(tmp_path):
    # What a desktop does with Icon=<APP_ID>: look it up in the hicolor theme under $XDG_DATA_HOME/icons.
    hicolor_index = Path("/usr/share/icons/hicolor/index.theme")
    if not hicolor_index.is_file():
        pytest.skip("the hicolor theme index is missing (Debian package hicolor-icon-theme)")
    data_home = tmp_path / "data"
    desktop.install(base=data_home, exec_path=_fake_script(tmp_path / "bin"))
    code = (
        "import sys\n"
        "from PySide6.QtGui import QIcon\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "QIcon.setThemeSearchPaths([sys.argv[1], '/usr/share/icons'])\n"
        "QIcon.setThemeName('hicolor')\n"
        "icon = QIcon.fromTheme(sys.argv[2])\n"
        "print(sorted({s.width() for s in icon.availableSizes()}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(data_home / "icons"), APP_ID],
                            env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(list(ICON_SIZES))
