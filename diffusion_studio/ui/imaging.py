"""Converting engine tensors / numpy arrays to Qt images."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage, QPixmap

from ..engine.storage.images import tile  # noqa: F401 (the panels' mosaics: the engine's)


def model_to_uint8(x) -> np.ndarray:
    """A tensor or array in [-1, 1], shape (N, 1, H, W), (N, H, W) or (H, W) ->
    uint8 of the same shape without the channel axis, 0 = black."""
    arr = x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float32)
    if arr.ndim == 4:
        arr = arr[:, 0]
    return np.clip(np.rint((arr + 1.0) * 127.5), 0, 255).astype(np.uint8)


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
