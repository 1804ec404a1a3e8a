"""Converting engine tensors / numpy arrays to Qt images."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage, QPixmap


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


def tile(images: np.ndarray, ncols: int | None = None, pad: int = 2, pad_value: int = 40) -> np.ndarray:
    """(N, H, W) uint8 -> one (rows*(H+pad)+pad, cols*(W+pad)+pad) uint8 mosaic."""
    images = np.asarray(images, dtype=np.uint8)
    n, h, w = images.shape
    if n == 0:
        return np.full((h + 2 * pad, w + 2 * pad), pad_value, dtype=np.uint8)
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), pad_value, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y : y + h, x : x + w] = images[i]
    return out
