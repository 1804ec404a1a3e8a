"""Turning model-range tensors into pictures and files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from .data import to_uint8


def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """(N, 1, H, W) floats in [-1, 1] -> one (H', W') uint8 grid, via torchvision's make_grid.

    nrow defaults to a near-square grid; the padding is white (pad_value in [0, 1]).
    """
    import torchvision

    n = images.shape[0]
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2
    g = torchvision.utils.make_grid(x, nrow=nrow, padding=padding, pad_value=pad_value)
    return (g[0] * 255).round().to(torch.uint8).numpy()


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    from PIL import Image

    from .atomic import write_atomic

    return write_atomic(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Save (N, 1, H, W) images in [-1, 1] as a PNG grid."""
    return save_png(grid(images, nrow=nrow), path)


def save_npz(images: torch.Tensor, path: str | os.PathLike) -> Path:
    """Save as an .npz with key ``images``: uint8 (N, 28, 28), 0 = black background."""
    from .atomic import write_atomic

    array = to_uint8(images).numpy()
    return write_atomic(path, lambda f: np.savez_compressed(f, images=array))


def strip(rows: list[torch.Tensor], padding: int = 2) -> np.ndarray:
    """Rows of images side by side: a list of (N, 1, H, W) tensors, one per column
    (for example x_t at several t) -> uint8 grid with N rows and len(rows) columns."""
    stacked = torch.stack([r.detach().float().cpu() for r in rows], dim=1)  # (N, K, 1, H, W)
    n, k = stacked.shape[:2]
    return grid(stacked.reshape(n * k, *stacked.shape[2:]), nrow=k, padding=padding)
