"""MNIST: locating, validating and loading it, and the fixed train/validation split.

Loading goes through ``torchvision.datasets.MNIST``. A data folder may be:

- a folder holding the four original files (``train-images-idx3-ubyte.gz`` ...),
  compressed or not, like ``shared/data/mnist``;
- torchvision's layout: ``DIR/MNIST/raw/<the four files>``;
- an empty or missing folder, into which ``download=True`` fetches MNIST.

Compressed files are checked and decompressed into the user cache (the data
folder may be read-only), then handed to torchvision in its own layout.

Splits (fixed, the same on every machine): the official 60,000 training digits
are permuted with ``SPLIT_SEED`` and cut into 50,000 train and 10,000 validation;
the official 10,000 test digits are the test split. Smaller files (the tests'
tiny IDX files) are split in the same 5:1 proportion.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import torch

from . import paths
from .atomic import write_bytes_atomic

SPLIT_SEED = 20200619  # the day Ho et al. put DDPM on arXiv; never change it
SplitName = Literal["train", "val", "test"]
from ..defaults import SPLITS  # noqa: E402 (the Literal above names the same values)

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049


class DataError(RuntimeError):
    """MNIST could not be found or read; the message says what to do."""


class MNISTNotFoundError(DataError):
    """The data folder does not hold MNIST."""


def _missing_message(folder: Path, missing: list[str], reason: str = "") -> str:
    names = ", ".join(f + ".gz" for f in MNIST_FILES)
    text = (
        f"MNIST was not found in {folder}"
        + (f" (missing: {', '.join(m + '.gz' for m in missing)})" if missing else "")
        + f". Put the four original files there ({names}), or torchvision's MNIST/raw folder,"
        " or let the app download them (needs internet)."
    )
    return text + (f" {reason}" if reason else "")


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (
        folder / name,
        folder / (name + ".gz"),
        folder / "MNIST" / "raw" / name,
        folder / "MNIST" / "raw" / (name + ".gz"),
        folder / "raw" / name,
        folder / "raw" / (name + ".gz"),
    ):
        if candidate.is_file():
            return candidate
    return None


def locate_mnist(folder: str | os.PathLike) -> dict[str, Path]:
    """Map each of the four MNIST file names to the file that holds it.

    Raises MNISTNotFoundError naming the folder and the missing files.
    """
    folder = Path(folder).expanduser()
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in MNIST_FILES:
        path = _find_file(folder, name)
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        raise MNISTNotFoundError(_missing_message(folder, missing))
    return found


# The most items an IDX file may declare: MNIST has 60,000 and 10,000, and this bounds what
# a damaged or hostile header can make the app read (784 MB of images at most).
MAX_IDX_ITEMS = 1_000_000


def _open_idx(path: Path) -> BinaryIO:
    """The file's bytes as a stream: decompressed as it is read when it is gzipped."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        chunk = f.read(min(left, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_idx(path: Path, name: str) -> tuple[bytes, int]:
    """Read and check an IDX file, header first: the 16 (images) or 8 (labels) header bytes
    are read and checked (magic, 28x28, a count of at most MAX_IDX_ITEMS), and then exactly
    the size they declare, plus one byte to notice padding. A gzip bomb or a huge sparse file
    is refused after its header, never read whole. Returns (the file's bytes, the item count)."""
    is_images = "images" in name
    want_magic = _IMAGES_MAGIC if is_images else _LABELS_MAGIC
    header_size = 16 if is_images else 8
    hint = f"Replace {path} with a fresh copy of {name}.gz."
    try:
        with _open_idx(path) as f:
            header = _read_exactly(f, header_size)
            if len(header) >= 8:
                magic, count = struct.unpack(">II", header[:8])
                if magic != want_magic:
                    raise DataError(
                        f"{path} is not an MNIST {'image' if is_images else 'label'} file "
                        f"(IDX magic {magic}, expected {want_magic}). {hint}"
                    )
            if len(header) < header_size:
                raise DataError(f"{path} is truncated: {len(header)} bytes, too short for an IDX header. {hint}")
            if count > MAX_IDX_ITEMS:
                raise DataError(f"{path} declares {count:,} items, more than the {MAX_IDX_ITEMS:,} an MNIST file "
                                f"may hold. {hint}")
            size = count
            if is_images:
                rows, cols = struct.unpack(">II", header[8:16])
                if (rows, cols) != (28, 28):
                    raise DataError(f"{path} holds {rows}x{cols} images; MNIST images are 28x28. {hint}")
                size *= rows * cols
            if path.suffix != ".gz" and path.stat().st_size != header_size + size:
                held = path.stat().st_size - header_size
                raise DataError(f"{path} is truncated or padded: its header announces {count} items "
                                f"({size} bytes) but it holds {held}. {hint}")
            body = _read_exactly(f, size)
            extra = f.read(1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(
            f"{path} is damaged ({exc}). Replace it with a fresh copy of {path.name} "
            "(or delete it and let the app download MNIST again)."
        ) from exc
    if len(body) != size or extra:
        held = f"{len(body)}" if len(body) != size else f"more than {size}"
        raise DataError(
            f"{path} is truncated or padded: its header announces {count} items "
            f"({size} bytes) but it holds {held}. {hint}"
        )
    if not is_images and count:
        top = max(body)
        if top > 9:
            raise DataError(f"{path} holds a label {top}; MNIST labels are the digits 0-9. {hint}")
    return header + body, count


def _prepare_raw_folder(files: dict[str, Path], cache: Path) -> Path:
    """Return a torchvision root whose MNIST/raw holds the four decompressed, checked files."""
    # Key the cache on where the files are and their size and time, so a replaced file is re-read.
    key = hashlib.sha256()
    for name in MNIST_FILES:
        st = files[name].stat()
        key.update(f"{files[name].resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    root = cache / "mnist" / key.hexdigest()[:16]
    raw = root / "MNIST" / "raw"
    if all((raw / n).is_file() for n in MNIST_FILES) and (raw / ".ok").is_file():
        return root
    raw.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in MNIST_FILES:
        data, counts[name] = _read_idx(files[name], name)
        # atomic: never leave a half-written file that a later run would trust
        write_bytes_atomic(raw / name, data)
    for split, (img, lab) in {"train": MNIST_FILES[:2], "test": MNIST_FILES[2:]}.items():
        if counts[img] != counts[lab]:
            raise DataError(
                f"the {split} files disagree: {counts[img]} images but {counts[lab]} labels "
                f"({files[img]}, {files[lab]}). Replace them with matching original files."
            )
    write_bytes_atomic(raw / ".ok", b"checked\n")
    return root


@dataclass
class MNISTSplits:
    """The three splits as uint8 tensors.

    images: (N, 28, 28) uint8, 0 = black background; labels: (N,) int64 in 0..9.
    ``train_index``/``val_index`` give each train/val digit's position in the
    official training set.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    train_index: torch.Tensor
    val_index: torch.Tensor
    source: Path

    def images(self, split: SplitName) -> torch.Tensor:
        return getattr(self, f"{_check_split(split)}_images")

    def labels(self, split: SplitName) -> torch.Tensor:
        return getattr(self, f"{_check_split(split)}_labels")

    def sizes(self) -> dict[str, int]:
        return {s: len(self.labels(s)) for s in SPLITS}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return split


# The fewest digits in the training files that split into at least one to train and one to
# validate (round(4 / 6) = 1): with fewer, a validation loss would be that of no digit at all.
MIN_TRAINING_DIGITS = 4


def split_indices(n: int, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the train and validation parts of the official training set.

    For n = 60,000: 50,000 and 10,000. Smaller sets keep the 5:1 ratio.
    """
    n_val = round(n / 6)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n - n_val].sort().values, perm[n - n_val :].sort().values


def download_mnist(folder: str | os.PathLike) -> Path:
    """Download MNIST into ``folder`` (torchvision layout) with a progress bar on stderr."""
    import torchvision

    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            torchvision.datasets.MNIST(str(folder), train=train, download=True)
    except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError on no network
        raise MNISTNotFoundError(
            _missing_message(folder, [], f"The download failed ({exc}); check the internet connection.")
        ) from exc
    return folder


def load_mnist(
    folder: str | os.PathLike,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> MNISTSplits:
    """Load MNIST from ``folder`` and split it (see the module docstring).

    download: when the files are missing, fetch them into ``folder`` first.
    Raises MNISTNotFoundError when the files are missing (and cannot be fetched)
    and DataError when a file is damaged.
    """
    import torchvision

    folder = Path(folder).expanduser()
    try:
        files = locate_mnist(folder)
    except MNISTNotFoundError:
        if not download:
            raise
        download_mnist(folder)
        files = locate_mnist(folder)
    root = _prepare_raw_folder(files, Path(cache_dir) if cache_dir else paths.cache_dir())
    try:
        train = torchvision.datasets.MNIST(str(root), train=True, download=False)
        test = torchvision.datasets.MNIST(str(root), train=False, download=False)
    except Exception as exc:
        raise DataError(f"torchvision could not read MNIST from {folder}: {exc}") from exc
    for split, targets in (("training", train.targets), ("test", test.targets)):
        if len(targets) and not (0 <= int(targets.min()) and int(targets.max()) <= 9):
            raise DataError(f"the {split} labels in {folder} hold values outside 0-9; "
                            "replace the label files with original MNIST copies")
    train_idx, val_idx = split_indices(len(train.targets))
    if len(train_idx) < 1 or len(val_idx) < 1:
        raise DataError(
            f"the training files in {folder} hold {len(train.targets)} digit{'s' if len(train.targets) != 1 else ''}: "
            f"{len(train_idx)} to train and {len(val_idx)} to validate; a split needs at least "
            f"{MIN_TRAINING_DIGITS} (one in six is kept to validate; MNIST has 60,000): put the full MNIST files there"
        )
    return MNISTSplits(
        train_images=train.data[train_idx].contiguous(),
        train_labels=train.targets[train_idx].contiguous(),
        val_images=train.data[val_idx].contiguous(),
        val_labels=train.targets[val_idx].contiguous(),
        test_images=test.data.contiguous(),
        test_labels=test.targets.contiguous(),
        train_index=train_idx,
        val_index=val_idx,
        source=folder,
    )


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) in 0..255 -> float32 (N, 1, 28, 28) in [-1, 1]."""
    return images.unsqueeze(1).float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float (N, 1, H, W) or (N, H, W) in [-1, 1] -> uint8 (N, H, W), clipped; 0 = black."""
    if x.dim() == 4:
        x = x[:, 0]
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def write_idx(path: str | os.PathLike, array: torch.Tensor, *, compress: bool | None = None) -> Path:
    """Write uint8 images (N, 28, 28) or labels (N,) as an IDX file (gzip if the name ends .gz).

    Used by the tests and by anyone who wants to hand-make a small MNIST folder.
    """
    path = Path(path)
    array = array.to(torch.uint8).contiguous()
    if array.dim() == 3:
        header = struct.pack(">IIII", _IMAGES_MAGIC, *array.shape)
    elif array.dim() == 1:
        header = struct.pack(">II", _LABELS_MAGIC, array.shape[0])
    else:
        raise ValueError(f"expected (N, 28, 28) images or (N,) labels, got shape {tuple(array.shape)}")
    payload = header + array.numpy().tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path
