"""``diffusion-studio install-desktop`` / ``uninstall-desktop``: the app in the desktop's menu.

One module, two subcommands. Both act on the current user's XDG data folder
(``$XDG_DATA_HOME``, default ``~/.local/share``); see ``diffusion_studio.desktop``.
"""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "install-desktop",
        help="add Diffusion Studio to your desktop's application menu",
        description="Install the desktop entry and icons for the current user, in $XDG_DATA_HOME "
                    "(default ~/.local/share). The entry runs this installation's diffusion-studio "
                    "by its absolute path. Run it again after moving the installation.",
    )
    p.add_argument("--exec", dest="exec_path", metavar="PATH",
                   help="the absolute path of the executable the menu entry runs "
                        "(default: this installation's diffusion-studio)")
    p.set_defaults(func=run_install)

    p = sub.add_parser(
        "uninstall-desktop",
        help="remove Diffusion Studio from your desktop's application menu",
        description="Remove the desktop entry and icons that install-desktop wrote. "
                    "Leaves the program itself installed.",
    )
    p.set_defaults(func=run_uninstall)


def _error(exc: Exception, command: str) -> int:
    print(f"diffusion-studio {command}: error: {exc}", file=sys.stderr)
    return 2


def run_install(args: argparse.Namespace) -> int:
    from .. import desktop

    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return _error(desktop.DesktopError(
            "install-desktop is for Linux (freedesktop) desktops; on this system use the "
            "PyInstaller build described in packaging/README.md"), args.command)
    try:
        report = desktop.install(exec_path=args.exec_path)
    except desktop.DesktopError as exc:
        return _error(exc, args.command)
    entry = report.files[-1]
    print(f"installed {entry}")
    print(f"  icons: {len(report.files) - 1} files under {entry.parent.parent / 'icons' / 'hicolor'}")
    print(f"  runs:  {_exec_line(entry)}")
    if report.caches:
        print(f"  refreshed: {', '.join(report.caches)}")
    print("Diffusion Studio is now in your application menu (log out and in if it does not show yet).")
    return 0


def run_uninstall(args: argparse.Namespace) -> int:
    from .. import desktop

    try:
        report = desktop.uninstall()
    except desktop.DesktopError as exc:
        return _error(exc, args.command)
    if not report.files:
        print(f"nothing to remove: no Diffusion Studio desktop entry under {desktop.data_home()}")
        return 0
    for path in report.files:
        print(f"removed {path}")
    return 0


def _exec_line(entry) -> str:
    for line in entry.read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            return line[len("Exec="):]
    return "?"
