import gzip
import os
import shutil

import pytest
import torch

from diffusion_studio.engine.storage.data import (
    MNIST_FILES,
    DataError,
    MNISTNotFoundError,
    load_mnist,
    split_indices,
    to_model_range,
    to_uint8,
    write_idx,
)
from conftest import make_digits, write_mnist_folder


def test_load_flat_gz_folder_and_split(tiny_mnist, tmp_path):
    d = load_mnist(tiny_mnist, cache_dir=tmp_path)
    assert d.sizes() == {"train": 100, "val": 20, "test": 30}
    assert d.train_images.dtype == torch.uint8 and d.train_images.shape == (100, 28, 28)
    # train and val partition the official training set, with a fixed seed
    both = torch.cat([d.train_index, d.val_index]).sort().values
    assert torch.equal(both, torch.arange(120))
    tr, va = split_indices(120)
    assert torch.equal(tr, d.train_index) and torch.equal(va, d.val_index)
    images, labels = make_digits(120, seed=1)
    assert torch.equal(d.train_images, images[d.train_index])
    assert torch.equal(d.val_labels, labels[d.val_index])


def test_full_size_split_is_50000_10000():
    tr, va = split_indices(60000)
    assert len(tr) == 50000 and len(va) == 10000
    assert len(set(tr.tolist()) & set(va.tolist())) == 0


def test_torchvision_raw_layout_uncompressed(tmp_path):
    folder = write_mnist_folder(tmp_path / "tv", gz=False, layout="torchvision")
    d = load_mnist(folder, cache_dir=tmp_path / "cache")
    assert d.sizes()["test"] == 30


def test_missing_files_name_the_folder_and_files(tmp_path):
    with pytest.raises(MNISTNotFoundError) as err:
        load_mnist(tmp_path / "nowhere", cache_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg
    for name in MNIST_FILES:
        assert name + ".gz" in msg


def _copy(tiny_mnist, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(tiny_mnist, dst)
    return dst


def test_truncated_gzip_gives_clear_error(tiny_mnist, tmp_path):
    folder = _copy(tiny_mnist, tmp_path)
    f = folder / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(DataError, match="damaged.*train-images-idx3-ubyte"):
        load_mnist(folder, cache_dir=tmp_path / "c")


def test_wrong_magic_and_count_mismatch(tiny_mnist, tmp_path):
    folder = _copy(tiny_mnist, tmp_path)
    labels = torch.zeros(5, dtype=torch.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", labels)  # a label file where images belong
    with pytest.raises(DataError, match="not an MNIST image file"):
        load_mnist(folder, cache_dir=tmp_path / "c1")
    folder2 = _copy(tiny_mnist, tmp_path / "b")
    with gzip.open(folder2 / "t10k-images-idx3-ubyte.gz", "rb") as f:
        data = f.read()
    with gzip.open(folder2 / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(data[:-100])
    with pytest.raises(DataError, match="truncated or padded"):
        load_mnist(folder2, cache_dir=tmp_path / "c2")
    folder3 = _copy(tiny_mnist, tmp_path / "c")
    write_idx(folder3 / "t10k-labels-idx1-ubyte.gz", torch.zeros(7, dtype=torch.uint8))
    with pytest.raises(DataError, match="disagree: 30 images but 7 labels"):
        load_mnist(folder3, cache_dir=tmp_path / "c3")


def test_replaced_file_is_read_again(tiny_mnist, tmp_path):
    folder = _copy(tiny_mnist, tmp_path)
    cache = tmp_path / "cache"
    first = load_mnist(folder, cache_dir=cache)
    images, _ = make_digits(30, seed=99)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    os.utime(folder / "t10k-images-idx3-ubyte.gz", ns=(1, 10**18))
    second = load_mnist(folder, cache_dir=cache)
    assert not torch.equal(first.test_images, second.test_images)
    assert torch.equal(second.test_images, images)


def test_range_conversions_round_trip():
    u = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16).repeat(2, 1, 1)
    x = to_model_range(u)
    assert x.shape == (2, 1, 16, 16) and x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), u)


# ------------------------------------------------- pictures (engine.images)
def test_labelled_strip_and_animation_pictures(tmp_path):
    import numpy as np
    from PIL import Image

    from diffusion_studio.engine.storage.images import animation_frames, labelled_strip, save_gif, tile

    digits = [(t, np.full((5, 28, 28), v, np.uint8)) for t, v in ((300, 0), (50, 128), (0, 255))]
    strip = labelled_strip(digits, rows=4, scale=2)
    pad, head, cell = 6, 22, 56
    assert strip.shape == (head + 4 * (cell + pad) + pad, 3 * (cell + pad) + pad)
    # each column holds its digits; the header row carries dark label pixels
    top = head + pad // 2
    for c, (_, x) in enumerate(digits):
        left = pad + c * (cell + pad)
        assert (strip[top : top + cell, left : left + cell] == x[0, 0, 0]).all()
    assert strip[:head].min() < 128
    frames = animation_frames([(digits[0][1], digits[2][1]), (digits[1][1], digits[2][1])], scale=2)
    assert frames[0].shape == (2 * tile(digits[0][1], pad=2).shape[0], 2 * (2 * tile(digits[0][1], pad=2).shape[1] + 8))
    path = save_gif(frames, tmp_path / "a.gif")
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 2 and im.info.get("loop") == 0


# ----------------------------------------- issue 31, items 10 and 11: bad data
class _CountingReads:
    """Wraps a file object and counts the bytes it hands out."""

    def __init__(self, f, counter):
        self.f, self.counter = f, counter

    def read(self, n=-1):
        data = self.f.read(n)
        self.counter[0] += len(data)
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _counting(monkeypatch):
    from diffusion_studio.engine.storage import data as D

    counter = [0]
    real = D._open_idx
    monkeypatch.setattr(D, "_open_idx", lambda path: _CountingReads(real(path), counter))
    return counter


def _bomb(path, header: bytes, megabytes: int) -> None:
    """A small .gz that decompresses to ``header`` and then ``megabytes`` MB of zeros."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(header)
        zeros = bytes(1 << 20)
        for _ in range(megabytes):
            f.write(zeros)


def test_a_gzip_bomb_is_refused_after_its_header(tiny_mnist, tmp_path, monkeypatch):
    """A 6 MB gzip bomb posing as train-images was decompressed to 3.2 GB before a MemoryError."""
    import struct

    folder = _copy(tiny_mnist, tmp_path)
    bomb = folder / "train-images-idx3-ubyte.gz"
    counter = _counting(monkeypatch)
    _bomb(bomb, b"\x00" * 16, 64)  # no IDX header at all
    with pytest.raises(DataError, match="not an MNIST image file"):
        load_mnist(folder, cache_dir=tmp_path / "c1")
    assert counter[0] == 16
    # a valid header that declares more digits than any MNIST file holds
    _bomb(bomb, struct.pack(">IIII", 2051, 4_000_000, 28, 28), 64)
    counter[0] = 0
    with pytest.raises(DataError, match="declares 4,000,000 items, more than the 1,000,000"):
        load_mnist(folder, cache_dir=tmp_path / "c2")
    assert counter[0] == 16
    # a header that declares 120 digits, followed by 64 MB: read up to the declared size, plus one byte
    _bomb(bomb, struct.pack(">IIII", 2051, 120, 28, 28), 64)
    counter[0] = 0
    with pytest.raises(DataError, match="truncated or padded: its header announces 120 items"):
        load_mnist(folder, cache_dir=tmp_path / "c3")
    assert counter[0] == 16 + 120 * 784 + 1


def test_a_huge_sparse_file_is_refused_by_its_header_and_size(tiny_mnist, tmp_path, monkeypatch):
    """A 2 GB sparse file was read in full (2.8 GB resident) before its clear error."""
    import struct

    folder = _copy(tiny_mnist, tmp_path)
    (folder / "train-images-idx3-ubyte.gz").unlink()
    sparse = folder / "train-images-idx3-ubyte"
    with open(sparse, "wb") as f:
        f.truncate(2 << 30)  # 2 GB of holes: no disk space used
    counter = _counting(monkeypatch)
    with pytest.raises(DataError, match="not an MNIST image file"):
        load_mnist(folder, cache_dir=tmp_path / "c1")
    with open(sparse, "r+b") as f:
        f.write(struct.pack(">IIII", 2051, 120, 28, 28))
    with pytest.raises(DataError, match="truncated or padded: its header announces 120 items"):
        load_mnist(folder, cache_dir=tmp_path / "c2")
    assert counter[0] == 32  # two headers, nothing more


@pytest.mark.parametrize("n_train, message", [
    (1, "hold 1 digit: 1 to train and 0 to validate"),
    (3, "hold 3 digits: 3 to train and 0 to validate"),
])
def test_splits_too_small_to_validate_are_refused_in_one_line(tmp_path, n_train, message):
    """One training image gave "1 train / 0 val digits" and a best validation loss of 0.00000."""
    folder = write_mnist_folder(tmp_path / "few", n_train=n_train, n_test=2)
    with pytest.raises(DataError) as info:
        load_mnist(folder, cache_dir=tmp_path / "c")
    text = str(info.value)
    assert message in text and "needs at least 4" in text and "\n" not in text


def test_the_smallest_split_that_validates_loads(tmp_path):
    from diffusion_studio.engine.storage.data import MIN_TRAINING_DIGITS

    assert len(split_indices(MIN_TRAINING_DIGITS - 1)[1]) == 0
    folder = write_mnist_folder(tmp_path / "few", n_train=MIN_TRAINING_DIGITS, n_test=2)
    sizes = load_mnist(folder, cache_dir=tmp_path / "c").sizes()
    assert sizes["train"] >= 1 and sizes["val"] >= 1
