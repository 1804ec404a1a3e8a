"""The learner's view of a distillation: the same starting noise through the teacher and
through each round's student (``tasks.distill.RoundStrip``), in a window of its own.

``RoundStripView`` shows the strip in an ``ImageView`` (whole-pixel scaling), says what it
shows in plain words, and exports it as a PNG (``engine.storage.images.save_png``);
``RoundStripDialog`` is the non-modal window the Training panel opens it in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..engine.text import first_line
from .widgets import ImageView, WrappingLabel

CAPTION = ("The same starting noise through the teacher ({T} steps) and each student: the digits keep their "
           "shape while the steps fall to {last}.")
EXPORT_SCALE = 2  # pixels per digit pixel in the exported PNG (the task's default)


class RoundStripView(QWidget):
    """The strip, its caption, a status line and "Export PNG…" (objectName ``roundStripView``).

    show_busy(text): a strip is being computed (the old one stays until the new arrives).
    show_strip(strip, folder, teacher): show a ``RoundStrip`` of the distillation in ``folder``.
    show_error(text): one line, in red.
    export_png(path=None) -> Path | None: save the strip (None asks with a save dialog).
    ``strip``: the RoundStrip shown (None before the first).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("roundStripView")
        self.strip = None
        self.folder: Path | None = None
        self.teacher = ""
        self.image = ImageView("The rounds' digits appear here", min_side=120)
        self.image.setObjectName("roundStripImage")
        self.image.setStyleSheet("")  # on the window's background, as the exported PNG
        self.caption = WrappingLabel(objectName="roundStripCaption")
        self.status = QLabel(objectName="roundStripStatus", wordWrap=True)
        self.status.setStyleSheet("color: #444;")
        self.export_button = QPushButton("Export PNG…", objectName="exportRoundStripButton", enabled=False)
        self.export_button.setToolTip("Save this picture as a PNG (twice its size here at 1x)")
        self.export_button.clicked.connect(lambda: self.export_png())
        row = QHBoxLayout()
        row.addWidget(self.status, 1)
        row.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.image, 1)
        layout.addWidget(self.caption)
        layout.addLayout(row)

    def show_busy(self, text: str) -> None:
        self.status.setStyleSheet("color: #444;")
        self.status.setText(text)
        self.export_button.setEnabled(False)

    def show_error(self, text: str) -> None:
        self.status.setStyleSheet("color: #b00020;")
        self.status.setText(text)
        self.export_button.setEnabled(self.strip is not None)

    def show_strip(self, strip, folder: Path, teacher: str) -> None:
        """strip: a ``tasks.distill.RoundStrip``: rows (label, (n, 28, 28) uint8), the teacher's first."""
        self.strip, self.folder, self.teacher = strip, Path(folder), str(teacher)
        self.image.set_array(self.picture(1))
        self.caption.setText(self.caption_text())
        self.status.setStyleSheet("color: #444;")
        self.status.setText(f"Teacher: {Path(teacher).name}; its students: {self.folder}; one starting noise "
                            "(seed 0) per column.")
        self.export_button.setEnabled(True)

    def caption_text(self) -> str:
        """The plain-language caption, with the teacher's steps and the last student's as the strip's rows say."""
        labels = [label for label, _ in self.strip.rows]
        teacher_steps = next((w for w in labels[0].split() if w.isdigit()), "all")
        last = next((w for w in labels[-1].split() if w.isdigit()), "1")
        return CAPTION.format(T=teacher_steps, last=last)

    def picture(self, scale: int = EXPORT_SCALE) -> np.ndarray:
        """The labelled strip as one uint8 image, ``scale`` pixels per digit pixel."""
        return self.strip.picture(scale)

    def export_png(self, path: str | Path | None = None) -> Path | None:
        """Write the strip as a PNG with what made it in its text; returns the path (None:
        nothing to export, cancelled or failed, which the status line says)."""
        from ..engine.storage.images import save_png
        from .settings import export_path

        if self.strip is None:
            self.show_error("Nothing to export yet: the rounds' digits are still being made.")
            return None
        path = export_path(self, path, "rounds", ".png", f"rounds-{self.folder.name}")
        if path is None:
            return None
        text = {"Software": "Diffusion Studio", "Teacher": self.teacher, "Distillation": str(self.folder),
                "Description": self.caption_text()}
        try:
            save_png(self.picture(EXPORT_SCALE), path, text)
        except Exception as exc:  # a full disk or a folder without write access: one line
            self.show_error(f"Could not save the picture to {path}: {first_line(exc)}")
            return None
        self.status.setStyleSheet("color: #444;")
        self.status.setText(f"Saved the picture to {path}")
        return path


class RoundStripDialog(QDialog):
    """A window of its own for the strip (objectName ``roundStripDialog``; non-modal: the
    Training panel stays usable). ``view`` is its ``RoundStripView``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("roundStripDialog")
        self.setWindowTitle("Distillation: the teacher and its students")
        self.setModal(False)
        self.view = RoundStripView()
        close = QPushButton("Close", objectName="closeRoundStripButton")
        close.clicked.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignRight)
        self.resize(1000, 460)

    @Slot()
    def bring_up(self) -> None:
        self.show()
        self.raise_()
        self.activateWindow()
