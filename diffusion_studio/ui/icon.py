"""The application icon and desktop identity, from package data (works from an installed wheel).

Call once, right after creating the QApplication::

    from diffusion_studio.ui.icon import set_app_identity
    set_app_identity(app)   # setDesktopFileName(APP_ID) + setWindowIcon(app_icon())

``setDesktopFileName`` is what lets GNOME/KDE (X11 and Wayland) match the windows to
the installed ``<APP_ID>.desktop`` entry, so the dock and task switcher show its icon.
"""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QGuiApplication, QIcon, QPixmap

from ..desktop import APP_ID, ICON_SIZES, icon_resource


def app_icon() -> QIcon:
    """The app icon with a 48, 128 and 256 px PNG each (Qt scales between them).

    The PNGs are read with importlib.resources and decoded in memory, so this also
    works when the package is not a plain folder. Raises RuntimeError when the
    package data is missing or unreadable (a broken installation).
    """
    icon = QIcon()
    for size in ICON_SIZES:
        ref = icon_resource(size)
        try:
            data = ref.read_bytes()
        except OSError as exc:
            raise RuntimeError(f"the app icon is missing from this installation ({exc}); "
                               "reinstall Diffusion Studio") from None
        pixmap = QPixmap()
        if not pixmap.loadFromData(data, "PNG") or pixmap.size() != QSize(size, size):
            raise RuntimeError(f"the packaged {size} px app icon is damaged; reinstall Diffusion Studio")
        icon.addPixmap(pixmap)
    return icon


def set_app_identity(app: QGuiApplication) -> None:
    """Give ``app`` its desktop file name (``APP_ID``) and window icon (``app_icon()``).

    Needs a QGuiApplication (pixmaps need one); call before showing windows.
    """
    app.setDesktopFileName(APP_ID)
    app.setWindowIcon(app_icon())
