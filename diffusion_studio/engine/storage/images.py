"""Turning model-range tensors and uint8 digits into pictures and files.

The pictures the app exports are made here, for the GUI and the CLI alike: grids,
the labelled x_T -> x_0 strip, the x_t | predicted x_0 animation. torch is imported
only by the functions that take tensors, so the GUI can import this module at start.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np


def grid(images, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """(N, 1, H, W) floats in [-1, 1] -> one (H', W') uint8 grid, via torchvision's make_grid.

    nrow defaults to a near-square grid; the padding is white (pad_value in [0, 1]).
    """
    import torch
    import torchvision

    n = images.shape[0]
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2
    g = torchvision.utils.make_grid(x, nrow=nrow, padding=padding, pad_value=pad_value)
    return (g[0] * 255).round().to(torch.uint8).numpy()


def save_png(array: np.ndarray, path: str | os.PathLike, text: dict | None = None) -> Path:
    """Write a uint8 picture as a PNG, atomically; ``text`` (str -> value) goes into its text chunks
    (the provenance of exported digits: model, sampler, seed)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from .atomic import write_atomic

    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, str(value))
    return write_atomic(path, lambda f: Image.fromarray(array).save(f, format="PNG", pnginfo=info))


def save_grid(images, path: str | os.PathLike, nrow: int | None = None, text: dict | None = None) -> Path:
    """Save (N, 1, H, W) images in [-1, 1] as a PNG grid (``text``: as ``save_png``)."""
    return save_png(grid(images, nrow=nrow), path, text)


def save_npz(images, path: str | os.PathLike) -> Path:
    """Save as an .npz with key ``images``: uint8 (N, 28, 28), 0 = black background."""
    from .atomic import write_atomic
    from .data import to_uint8

    array = to_uint8(images).numpy()
    return write_atomic(path, lambda f: np.savez_compressed(f, images=array))


def strip(rows: list, padding: int = 2) -> np.ndarray:
    """Rows of images side by side: a list of (N, 1, H, W) tensors, one per column
    (for example x_t at several t) -> uint8 grid with N rows and len(rows) columns."""
    import torch

    stacked = torch.stack([r.detach().float().cpu() for r in rows], dim=1)  # (N, K, 1, H, W)
    n, k = stacked.shape[:2]
    return grid(stacked.reshape(n * k, *stacked.shape[2:]), nrow=k, padding=padding)


# ------------------------------------------------------- uint8 digits (N, H, W)
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


def labelled_strip(columns: Sequence[tuple[int, np.ndarray]], rows: int, scale: int = 3) -> np.ndarray:
    """The x_T -> x_0 strip: one column per (t, (N, H, W) uint8 digits), headed "t = ...",
    ``rows`` digits down, each enlarged ``scale`` times; white background -> (H', W') uint8."""
    from PIL import Image, ImageDraw, ImageFont

    if not columns:
        raise ValueError("a strip needs at least one column")
    rows = min(rows, min(len(x) for _, x in columns))
    h, w = columns[0][1].shape[1:]
    cell_h, cell_w, pad, head = h * scale, w * scale, 6, 22
    width = len(columns) * (cell_w + pad) + pad
    height = head + rows * (cell_h + pad) + pad
    out = np.full((height, width), 255, dtype=np.uint8)
    for c, (_, x) in enumerate(columns):
        left = pad + c * (cell_w + pad)
        for r in range(rows):
            top = head + pad // 2 + r * (cell_h + pad)
            out[top : top + cell_h, left : left + cell_w] = enlarge(x[r], scale)
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    for c, (t, _) in enumerate(columns):
        centre = pad + c * (cell_w + pad) + cell_w / 2
        draw.text((centre, head / 2), f"t = {t}", fill=34, font=font, anchor="mm")
    return np.asarray(img)


def enlarge(picture: np.ndarray, scale: int) -> np.ndarray:
    """(H, W) uint8 with each pixel ``scale`` x ``scale`` (nearest neighbour: digits stay sharp)."""
    scale = int(scale)
    return np.kron(np.asarray(picture, np.uint8), np.ones((scale, scale), np.uint8))


def labelled_grid(images: np.ndarray, columns: int, column_labels=(), row_labels=(), scale: int = 1) -> np.ndarray:
    """(k, 28, 28) uint8 digits in ``columns`` columns with 2-px white gaps, enlarged ``scale``
    times, under a header of ``column_labels`` and right of a margin of ``row_labels`` when given
    (the columns widen to hold their labels); white background -> (H', W') uint8."""
    from PIL import Image, ImageDraw, ImageFont

    scale = max(1, int(scale))
    images = np.asarray(images, dtype=np.uint8)
    if not column_labels and not row_labels:
        return enlarge(tile(images, ncols=columns, pad=2, pad_value=255), scale)
    font = ImageFont.load_default(size=11 * scale)
    cell, pad = 28 * scale, 2 * scale
    stride = max(cell + pad, int(max((font.getlength(c) for c in column_labels), default=0)) + 6 * scale)
    head = 16 * scale if column_labels else pad
    left = int(max(font.getlength(r) for r in row_labels)) + 8 * scale if row_labels else pad
    rows = -(-len(images) // columns)
    out = Image.new("L", (left + columns * stride, head + rows * (cell + pad)), 255)
    draw = ImageDraw.Draw(out)
    for i, digit in enumerate(images):
        r, c = divmod(i, columns)
        out.paste(Image.fromarray(enlarge(digit, scale)),
                  (left + c * stride + (stride - cell) // 2, head + r * (cell + pad)))
    for c, text in enumerate(column_labels[:columns]):
        draw.text((left + c * stride + stride / 2, head / 2), text, fill=34, font=font, anchor="mm")
    for r, text in enumerate(row_labels[:rows]):
        draw.text((left - 4 * scale, head + r * (cell + pad) + cell / 2), text, fill=34, font=font, anchor="rm")
    return np.asarray(out)


GIF_SCALE = 3  # pixels per digit pixel in the exported animation


def animation_frames(frames: Sequence[tuple[np.ndarray, np.ndarray]], scale: int = GIF_SCALE) -> list[np.ndarray]:
    """Each (x_t, predicted x_0) pair of (N, H, W) uint8 digits -> one picture: the two
    mosaics side by side, enlarged ``scale`` times."""
    out = []
    for x, x0 in frames:
        a, b = tile(x, pad=2, pad_value=255), tile(x0, pad=2, pad_value=255)
        gap = np.full((a.shape[0], 8), 255, np.uint8)
        out.append(enlarge(np.concatenate([a, gap, b], axis=1), scale))
    return out


def save_gif(pictures: Sequence[np.ndarray], path: str | os.PathLike, frame_ms: int = 80,
             hold_last_ms: int = 1500) -> Path:
    """(H, W) uint8 pictures -> an animated GIF that loops, the last one held ``hold_last_ms``."""
    from PIL import Image

    from .atomic import write_atomic

    if not pictures:
        raise ValueError("an animation needs at least one frame")
    images = [Image.fromarray(np.asarray(p, np.uint8)) for p in pictures]
    durations = [frame_ms] * len(images)
    durations[-1] = hold_last_ms
    return write_atomic(path, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                                                       duration=durations, loop=0))
