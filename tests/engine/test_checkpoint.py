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


# ---------------------------------- issue 31: checkpoints that are wrong but loaded
def one_line_refusal(path, *, loader=load_checkpoint) -> str:
    """The CheckpointError ``loader`` raises for ``path``: one line that names the file."""
    with pytest.raises(CheckpointError) as info:
        loader(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "weights_only" not in message  # the app never advises turning it off
    return message


def raw_save(path, data):
    """A file as another program (or an edit) would leave it: no checksum of ours."""
    torch.save({"format": ck.FORMAT, "version": ck.FORMAT_VERSION, "kind": ck.KIND, **data}, path)
    return path


@pytest.mark.parametrize("change, words", [
    ({"weights": [1, 2, 3]}, "'weights' is a list, not a dict of tensors"),
    ({"weights": None}, "'weights' is None, not a dict of tensors"),
    ({"weights": torch.zeros(3)}, "'weights' is a Tensor, not a dict of tensors"),
    ({"history": "epochs"}, "'history' is a str, not a dict"),
    ({"history": {"epochs": [{"val_loss": 0.5}]}}, "history record 1 has no epoch number"),
    ({"history": {"epochs": [{"epoch": 1, "val_loss": "low"}]}}, "history record 1's val_loss ('low')"),
    ({"meta": "finished"}, "'meta' is a str, not a dict"),
    ({"best": "epoch 3"}, "'best' is a str, not a dict"),
    ({"best": {"epoch": "3"}}, "best epoch is a str, not a number"),
    ({"epoch": "3"}, "'epoch' is a str, not a whole number"),
    ({"model": "unet"}, "'model' configuration is a str, not a dict"),
])
def test_malformed_contents_are_one_line_not_a_traceback(tmp_path, change, words):
    """Item 7: weights as a list, None or a bare tensor, string or missing history, meta or best
    fields gave TypeError, AttributeError and KeyError in sample, evaluate and --continue-from."""
    path = raw_save(tmp_path / "odd.pt", {**payload(), **change})
    message = one_line_refusal(path)
    assert words in message and "damaged" in message
    one_line_refusal(path, loader=load_model)


@pytest.mark.parametrize("section", ["weights", "ema_weights", "guide"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_infinite_weights_are_refused(tmp_path, section, value):
    """Item 8: NaN or Inf weights (in the model or its guide) sampled all-black digits with rc 0."""
    from diffusion_studio.engine.storage.checkpoint import attach_guide

    p = payload()
    p["ema_weights"] = {k: v.clone() for k, v in p["weights"].items()}
    if section == "guide":
        p = attach_guide(p, payload(), "weak.pt")
        target = p["guide"]["weights"]
    else:
        target = p[section]
    name = next(k for k, v in target.items() if v.is_floating_point() and v.numel() > 1)
    target[name] = target[name].clone()
    target[name].view(-1)[1] = value
    save_checkpoint(tmp_path / "bad.pt", p)
    message = one_line_refusal(tmp_path / "bad.pt", loader=load_model)
    assert "NaN or infinite values" in message and "best.pt" in message


def _flip_bytes_inside(path, tensor: torch.Tensor, count: int = 4) -> None:
    """Flip the lowest bit of ``count`` float32 values of ``tensor`` where the file stores them
    (torch's archive stores tensors uncompressed and never checks its CRCs); values stay finite."""
    data = bytearray(path.read_bytes())
    at = data.find(tensor.contiguous().numpy().tobytes())
    assert at > 0
    for i in range(count):
        data[at + 4 * (i + 1)] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_bytes_are_caught_by_the_checksum_naming_the_file(tmp_path):
    """Item 9: 4 flipped bytes inside a weight tensor loaded and sampled with rc 0."""
    p = payload()
    save_checkpoint(tmp_path / "m.pt", p)
    assert load_checkpoint(tmp_path / "m.pt")["checksum"]["sha256"] == ck.contents_checksum(load_checkpoint(
        tmp_path / "m.pt"))
    big = max(p["weights"].values(), key=lambda t: t.numel())
    _flip_bytes_inside(tmp_path / "m.pt", big)
    back = torch.load(tmp_path / "m.pt", weights_only=True)  # torch itself notices nothing
    assert not torch.equal(back["weights"][next(k for k, v in p["weights"].items() if v is big)], big)
    message = one_line_refusal(tmp_path / "m.pt", loader=load_model)
    assert "is corrupted" in message and "checksum" in message


def test_the_bundled_models_load_unchanged_with_or_without_a_checksum():
    """The first two were exported before checksums existed; the students carry one, which
    load_checkpoint verifies. Weights stored in bf16 load exactly into the float32 network."""
    from diffusion_studio.engine.storage.bundled import BUNDLED, bundled_checkpoint_path

    for name in BUNDLED:
        path = bundled_checkpoint_path(name)
        data = load_checkpoint(path)
        assert ("checksum" in data) == name.endswith("step")
        raw = torch.load(path, weights_only=True)
        loaded = load_model(path)
        for k, v in loaded.model.state_dict().items():
            assert torch.equal(v, raw["weights"][k].to(v.dtype))


def test_a_configuration_asking_for_far_more_weights_than_the_file_holds_is_refused_before_building(
        tmp_path, monkeypatch):
    """Item 14: a 1.6 MB file whose configuration stays inside the limits made sample allocate 4.6 GB."""
    from diffusion_studio.engine.diffusion import unet

    p = payload()
    p["model"] = UNetConfig(arch="res", level_channels=(1024, 1024, 1024), level_blocks=(8, 8, 8),
                            time_embed_dim=1024).to_dict()
    raw_save(tmp_path / "greedy.pt", p)
    built = []
    real = unet.build_model
    monkeypatch.setattr(unet, "build_model", lambda cfg: built.append(torch.get_default_device()) or real(cfg))
    message = one_line_refusal(tmp_path / "greedy.pt", loader=load_model)
    assert "describes a network of 1,055,298,561 parameters" in message and "do not fit" in message
    assert built == [torch.device("meta")]  # only the shapes: no network was allocated


def test_a_non_numeric_guide_field_names_the_file(tmp_path):
    from diffusion_studio.engine.storage.checkpoint import attach_guide

    p = attach_guide(payload(), payload(), "weak.pt")
    p["guide"]["epochs_trained"] = "six"
    save_checkpoint(tmp_path / "g.pt", p)
    message = one_line_refusal(tmp_path / "g.pt")
    assert "guide network cannot be used" in message and "'six'" in message


def test_a_version_written_as_text_is_not_called_newer(tmp_path):
    raw_save(tmp_path / "v.pt", {**payload(), "version": "1"})
    message = one_line_refusal(tmp_path / "v.pt")
    assert "as text ('1')" in message and "newer" not in message


def test_folders_fifos_and_devices_named_like_checkpoints_are_not_called_missing(tmp_path):
    (tmp_path / "dir.pt").mkdir()
    assert "is a folder, not a checkpoint file" in one_line_refusal(tmp_path / "dir.pt")
    os.mkfifo(tmp_path / "fifo.pt")
    assert "is a FIFO" in one_line_refusal(tmp_path / "fifo.pt")  # and it did not wait for a writer
    if os.path.exists("/dev/zero"):
        (tmp_path / "zero.pt").symlink_to("/dev/zero")
        assert "is a device" in one_line_refusal(tmp_path / "zero.pt")
    assert "does not exist" in one_line_refusal(tmp_path / "missing.pt")


def test_python_objects_are_refused_without_pytorchs_advice(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": ck.FORMAT, "version": 1, "kind": "ddpm", "x": Evil()}, tmp_path / "evil.pt")
    message = one_line_refusal(tmp_path / "evil.pt")
    assert "holds Python objects (posix.system)" in message and "does not open it" in message
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint")
    assert "not a readable Diffusion Studio checkpoint" in one_line_refusal(tmp_path / "junk.pt")


def test_every_save_carries_a_checksum_that_survives_a_reload_and_a_resave(tmp_path):
    p = payload()
    p.update(optimizer={"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-3}]},
             rng={"torch": torch.get_rng_state()}, best_weights={"weights": p["weights"], "ema_weights": None})
    save_checkpoint(tmp_path / "a.pt", p)
    again = load_checkpoint(tmp_path / "a.pt")
    save_checkpoint(tmp_path / "b.pt", again)  # a loaded payload, its old checksum replaced
    assert load_checkpoint(tmp_path / "b.pt")["checksum"] == again["checksum"]
    # a change anywhere, not only in the weights, is a different checksum
    assert ck.contents_checksum({**again, "history": {"epochs": [{"epoch": 2, "val_loss": 0.5}]}}) != \
        again["checksum"]["sha256"]
