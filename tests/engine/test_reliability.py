"""Nothing lost, nothing half-done: atomic writes, a full disk, bounded sizes, finite numbers."""

import errno
import gzip
import math

import numpy as np
import pytest
import torch

from diffusion_studio.engine.storage import atomic
from diffusion_studio.engine.storage.atomic import (
    DiskFullError, NotWritableError, check_writable, write_json_atomic, write_text_atomic,
)
from diffusion_studio.engine.storage.checkpoint import CheckpointError, LoadedModel, load_checkpoint, save_checkpoint
from diffusion_studio.engine.diffusion.scheduling import SamplerConfig
from diffusion_studio.engine.diffusion.sampling import sample
from diffusion_studio.engine.diffusion.schedule import NoiseSchedule, ScheduleConfig
from diffusion_studio.engine.training.config import TrainConfig
from diffusion_studio.engine.diffusion.unet import UNet, UNetConfig


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "page.html"
    write_text_atomic(target, "the old page")

    def half_then_fail(f):
        f.write(b"<html>half")
        raise OSError(errno.EIO, "the device broke")

    with pytest.raises(OSError, match="device broke"):
        atomic.write_atomic(target, half_then_fail)
    assert target.read_text() == "the old page"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def tiny_payload() -> dict:
    net = UNet(UNetConfig(base_channels=4, time_embed_dim=16))
    return {"model": net.config.to_dict(), "schedule": ScheduleConfig(timesteps=10).to_dict(),
            "weights": net.state_dict()}


def test_a_full_disk_is_one_line_naming_the_folder_and_the_size(tmp_path, monkeypatch):
    ckpt = tmp_path / "last.pt"
    save_checkpoint(ckpt, tiny_payload())
    before = ckpt.read_bytes()
    real = atomic.write_atomic

    def disk_full(path, write):
        def partial(f):
            f.write(b"x" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, partial)

    monkeypatch.setattr(atomic, "write_atomic", disk_full)
    with pytest.raises(DiskFullError) as info:
        save_checkpoint(ckpt, {**tiny_payload(), "history": {"epochs": [{"epoch": 2}]}})
    message = str(info.value)
    assert str(tmp_path) in message and "is full" in message and "last.pt needs" in message and " MB" in message
    assert "\n" not in message
    assert ckpt.read_bytes() == before  # the previous checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    monkeypatch.setattr(atomic, "write_atomic", real)
    assert "history" not in load_checkpoint(ckpt)


def test_json_refuses_nan_rather_than_writing_invalid_json(tmp_path):
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "h.json", {"loss": math.nan})
    assert not any(tmp_path.iterdir())


def test_outputs_are_checked_before_the_work(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "x.png")  # would be created: fine, and nothing is left
    check_writable(tmp_path / "report", is_dir=True)
    assert not any(tmp_path.iterdir())
    (tmp_path / "new").mkdir()
    with pytest.raises(NotWritableError, match="is a folder"):
        check_writable(tmp_path / "new")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NotWritableError, match="choose another output location"):
        check_writable(blocker / "sub" / "x.png")


@pytest.mark.parametrize("fields, message", [
    ({"base_channels": 1_000_000}, "base_channels must be an integer of at most 1024"),
    ({"num_classes": 1_000_000_000}, "num_classes must be an integer of at most 1000"),
    ({"arch": "res", "level_channels": (32, 64, 100_000)}, "1..1024"),
])
def test_absurd_network_sizes_are_refused_before_allocating(fields, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**fields)


def test_absurd_sizes_in_a_checkpoint_are_one_clear_error():
    payload = {"model": {**UNetConfig().to_dict(), "base_channels": 1_000_000},
               "schedule": ScheduleConfig().to_dict(), "weights": {}}
    with pytest.raises(CheckpointError, match="invalid configuration.*at most 1024"):
        LoadedModel(payload, None, torch.device("cpu"))
    payload = {"model": UNetConfig().to_dict(), "schedule": {**ScheduleConfig().to_dict(), "timesteps": 10**9},
               "weights": {}}
    with pytest.raises(CheckpointError, match="at most 10000"):
        LoadedModel(payload, None, torch.device("cpu"))


def test_absurd_training_sizes_are_refused():
    with pytest.raises(ValueError, match="at most 8192"):
        TrainConfig(batch_size=100_000_000)
    with pytest.raises(ValueError, match="at most 10000"):
        ScheduleConfig(timesteps=100_000_000)


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
def test_non_finite_or_negative_numbers_are_refused(value):
    with pytest.raises(ValueError, match="guidance"):
        SamplerConfig(guidance=value)
    with pytest.raises(ValueError, match="eta"):
        SamplerConfig(eta=value)
    with pytest.raises(ValueError):
        TrainConfig(lr=value)
    with pytest.raises(ValueError):
        TrainConfig(grad_clip=value)
    if not value < 0:
        with pytest.raises(ValueError, match="finite"):
            ScheduleConfig(beta_end=value)


def test_sample_refuses_an_empty_batch():
    net = UNet(UNetConfig(base_channels=4, time_embed_dim=16))
    sched = NoiseSchedule(ScheduleConfig(timesteps=5))
    for bs in (0, -1):
        with pytest.raises(ValueError, match="batch size of at least 1"):
            sample(net, sched, 4, sampler=SamplerConfig(kind="ddim", steps=2), batch_size=bs)


def test_labels_outside_0_to_9_are_a_data_error(tmp_path):
    from conftest import write_mnist_folder
    from diffusion_studio.engine.storage.data import DataError, load_mnist

    folder = write_mnist_folder(tmp_path / "mnist", n_train=30, n_test=10)
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[8 + 3] = 200
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="label 200; MNIST labels are the digits 0-9"):
        load_mnist(folder, cache_dir=tmp_path / "cache")


def test_npz_and_png_writes_are_atomic(tmp_path, monkeypatch):
    from diffusion_studio.engine.storage.images import save_grid, save_npz

    x = torch.zeros(4, 1, 28, 28)
    save_npz(x, tmp_path / "a.npz")
    save_grid(x, tmp_path / "a.png")
    assert np.load(tmp_path / "a.npz")["images"].shape == (4, 28, 28)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "a.png"]


def test_atomic_files_get_the_usual_permissions_not_mkstemps_private_ones(tmp_path):
    import os
    import stat

    new = write_text_atomic(tmp_path / "new.json", "{}")
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~atomic._umask()
    os.chmod(new, 0o640)
    write_text_atomic(new, "{ }")  # a replaced file keeps its mode
    assert stat.S_IMODE(new.stat().st_mode) == 0o640
