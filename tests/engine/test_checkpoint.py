import os

import numpy as np
import pytest
import torch

from diffusion_studio.engine.storage import checkpoint as ck
from diffusion_studio.engine.storage.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
from diffusion_studio.engine.diffusion.unet import UNet, UNetConfig


def payload():
    net = UNet(UNetConfig(base_channels=4, time_embed_dim=16))
    return {
        "model": net.config.to_dict(),
        "schedule": ScheduleConfig(timesteps=10).to_dict(),
        "train": {},
        "weights": net.state_dict(),
        "ema_weights": None,
        "history": {"epochs": [{"epoch": 1, "val_loss": 0.5}]},
    }


def test_round_trip_with_weights_only(tmp_path):
    p = payload()
    save_checkpoint(tmp_path / "m.pt", p)
    back = load_checkpoint(tmp_path / "m.pt")
    assert back["format"] == ck.FORMAT and back["version"] == ck.FORMAT_VERSION
    assert back["history"] == p["history"]
    for k, v in p["weights"].items():
        assert torch.equal(back["weights"][k], v)
    loaded = load_model(tmp_path / "m.pt")
    assert not loaded.uses_ema and loaded.schedule.timesteps == 10
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_failure_mid_save_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "m.pt"
    save_checkpoint(target, payload())
    before = target.read_bytes()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(target, payload())
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]
    load_checkpoint(target)


def test_refuses_garbage_newer_versions_and_other_kinds(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable Diffusion Studio checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": ck.FORMAT, "version": ck.FORMAT_VERSION + 1, "kind": "ddpm"}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="newer Diffusion Studio"):
        load_checkpoint(tmp_path / "new.pt")
    torch.save({"format": ck.FORMAT, "version": 1, "kind": "vae"}, tmp_path / "vae.pt")
    with pytest.raises(CheckpointError, match="'vae'"):
        load_checkpoint(tmp_path / "vae.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a Diffusion Studio checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_code_objects_are_not_loaded(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": ck.FORMAT, "version": 1, "kind": "ddpm", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")


def test_weights_that_do_not_fit_the_config(tmp_path):
    p = payload()
    p["model"] = UNetConfig(base_channels=8, time_embed_dim=16).to_dict()
    save_checkpoint(tmp_path / "bad.pt", p)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "bad.pt")


def test_export_for_sampling_keeps_the_ema_weights_and_drops_training_state(tmp_path):
    from diffusion_studio.engine.storage.checkpoint import export_for_sampling

    p = payload()
    ema = {k: (v + 1 if v.is_floating_point() else v) for k, v in p["weights"].items()}
    p.update(ema_weights=ema, optimizer={"state": {}, "param_groups": []}, rng={"torch": torch.get_rng_state()})
    save_checkpoint(tmp_path / "full.pt", p)
    export_for_sampling(tmp_path / "full.pt", tmp_path / "slim.pt")
    slim = load_checkpoint(tmp_path / "slim.pt")
    assert "optimizer" not in slim and "rng" not in slim
    assert slim["meta"]["weights_are_ema"] is True
    loaded = load_model(tmp_path / "slim.pt")
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, ema[k])
    assert slim["history"] == p["history"]


def test_export_thins_a_long_step_history_to_window_means(tmp_path):
    """A shipped model keeps its training curve, not every one of its steps: 10,001 steps
    become at most EXPORT_STEP_POINTS window means, with the same mean loss and the same end."""
    from diffusion_studio.engine.storage.checkpoint import EXPORT_STEP_POINTS, export_for_sampling, thin_step_history

    n = 10_001
    steps = {"global_step": list(range(1, n + 1)), "epoch": [s / 1000 for s in range(1, n + 1)],
             "loss": [1.0 / s for s in range(1, n + 1)], "time": [0.5 * s for s in range(1, n + 1)]}
    p = payload()
    p["history"] = {"epochs": [{"epoch": 10, "val_loss": 0.1}], "steps": steps}
    save_checkpoint(tmp_path / "full.pt", p)
    export_for_sampling(tmp_path / "full.pt", tmp_path / "slim.pt")
    slim = load_checkpoint(tmp_path / "slim.pt")["history"]
    assert slim["epochs"] == p["history"]["epochs"]
    thinned = slim["steps"]
    m = len(thinned["loss"])
    assert EXPORT_STEP_POINTS // 2 < m <= EXPORT_STEP_POINTS
    assert all(len(v) == m for v in thinned.values())
    assert thinned["global_step"][-1] == n and thinned["time"][-1] == 0.5 * n and thinned["epoch"][-1] == n / 1000
    assert thinned["global_step"] == sorted(thinned["global_step"])
    # each point is its window's mean: the first window is steps 1..width
    width = thinned["global_step"][0]
    assert thinned["loss"][0] == pytest.approx(sum(1.0 / s for s in range(1, width + 1)) / width)
    # step-weighted, the window means give back the overall mean loss
    sizes = np.diff([0] + thinned["global_step"])
    assert np.dot(sizes, thinned["loss"]) / n == pytest.approx(sum(steps["loss"]) / n)
    # short histories, and ones of another shape, are kept as they are
    assert thin_step_history({"loss": [0.3, 0.2], "global_step": [1, 2]}) == {"loss": [0.3, 0.2], "global_step": [1, 2]}
    assert thin_step_history([{"loss": 0.3}]) == [{"loss": 0.3}]


def test_loaded_models_sample_in_channels_last_with_the_same_result(tmp_path):
    """The layout that bench/run.py measures: the loaded network is channels_last,
    and its outputs equal the same weights' in the default layout."""
    from diffusion_studio.engine.diffusion.guidance import _channels_last

    p = payload()
    save_checkpoint(tmp_path / "m.pt", p)
    loaded = load_model(tmp_path / "m.pt")
    assert _channels_last(loaded.model)
    plain = UNet(UNetConfig(base_channels=4, time_embed_dim=16)).eval()
    plain.load_state_dict(p["weights"])
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([1, 5, 10])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x.contiguous(memory_format=torch.channels_last), t), plain(x, t),
                                   rtol=1e-4, atol=1e-5)


def test_epochs_trained_counts_an_epoch_a_time_budget_cut_short(tmp_path):
    p = payload()
    p["epoch"] = 5  # five whole epochs, then 12% of the sixth before the budget ended
    p["history"] = {"epochs": [{"epoch": e, "val_loss": 0.1} for e in (1, 2, 3, 4, 5, 5.12)]}
    save_checkpoint(tmp_path / "m.pt", p)
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.epoch == 5 and loaded.epochs_trained == 5.12
    p["history"] = {}  # no history: the counter
    save_checkpoint(tmp_path / "m.pt", p)
    assert load_model(tmp_path / "m.pt").epochs_trained == 5.0
