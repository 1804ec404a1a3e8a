"""The desktop app's entry point (PySide6 is imported here, not at package import)."""

from __future__ import annotations

import sys


def main(data: str | None = None, checkpoint: str | None = None) -> int:
    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

    from . import __version__

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Diffusion Studio")
    app.setApplicationVersion(__version__)
    window = QMainWindow()
    window.setWindowTitle("Diffusion Studio")
    window.setCentralWidget(QLabel("Diffusion Studio (the panels arrive with the GUI issue)"))
    window.resize(900, 600)
    window.show()
    return app.exec()
