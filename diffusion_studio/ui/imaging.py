"""Converting uint8 images to Qt images. Model-range tensors become uint8 by the engine's
one conversion, ``engine.storage.data.to_uint8``; mosaics are the engine's ``engine.storage.images.tile``."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage, QPixmap


def gray_qimage(array: np.ndarray) -> QImage:
    """(H, W) uint8 -> an owned QImage (Format_Grayscale8)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = a.shape
    return QImage(a.data, w, h, a.strides[0], QImage.Format.Format_Grayscale8).copy()


def gray_pixmap(array: np.ndarray, scale: int = 1) -> QPixmap:
    """(H, W) uint8 -> QPixmap, enlarged ``scale`` times with nearest-neighbour pixels."""
    pix = QPixmap.fromImage(gray_qimage(array))
    if scale != 1:
        pix = pix.scaled(pix.width() * scale, pix.height() * scale)
    return pix
