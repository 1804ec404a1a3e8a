"""Autoguidance (Karras et al. 2024): a model steered away from a weaker version of itself,
its guide network, which a checkpoint carries (``attach_guide``)."""

import pytest
import torch
from torch import nn

from diffusion_studio.engine.storage.checkpoint import (
    GUIDE_DTYPE, CheckpointError, attach_guide, export_for_sampling, load_checkpoint, load_model, save_checkpoint,
)
from diffusion_studio.engine.diffusion.scheduling import SamplerConfig, ddim_step
from diffusion_studio.engine.diffusion.sampling import sample, sample_steps
from diffusion_studio.engine.diffusion.schedule import NoiseSchedule, ScheduleConfig
from diffusion_studio.engine.diffusion.unet import UNet, UNetConfig


class Constant(nn.Module):
    """A 'network' that predicts the same noise everywhere (and records the labels it was given)."""

    def __init__(self, value: float, num_classes: int = 0):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))
        self.config = UNetConfig(base_channels=4, time_embed_dim=16, num_classes=num_classes)
        self.seen_labels = []

    def forward(self, x, t, y=None):
        self.seen_labels.append(None if y is None else y.clone())
        return self.value.expand_as(x).clone()


def _one_ddim_step(model, schedule, guide, sampler, x_T, labels=None):
    steps = list(sample_steps(model, schedule, len(x_T), sampler=sampler, x_T=x_T, guide=guide, labels=labels))
    return steps[0].x


def test_autoguidance_steps_with_eps_plus_g_times_the_difference_from_the_guide():
    schedule = NoiseSchedule(ScheduleConfig(timesteps=20))
    model, guide = Constant(0.3), Constant(-0.1)
    x_T = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    sampler = SamplerConfig(kind="ddim", steps=1, eta=0.0, autoguidance=0.5)
    got = _one_ddim_step(model, schedule, guide, sampler, x_T)
    eps = torch.full_like(x_T, 0.3 + 0.5 * (0.3 - (-0.1)))  # 0.5
    want = ddim_step(schedule, x_T, eps, 20, 0, eta=0.0).prev_sample
    torch.testing.assert_close(got, want)
    # g = 0, or no guide at all: the model alone, and the guide is never called
    plain = ddim_step(schedule, x_T, torch.full_like(x_T, 0.3), 20, 0, eta=0.0).prev_sample
    guide.seen_labels.clear()
    torch.testing.assert_close(_one_ddim_step(model, schedule, guide, SamplerConfig(kind="ddim", steps=1, eta=0.0,
                                                                                   autoguidance=0.0), x_T), plain)
    assert guide.seen_labels == []
    torch.testing.assert_close(_one_ddim_step(model, schedule, None, sampler, x_T), plain)


class RecordsT(Constant):
    """A Constant that records the timesteps it was called at."""

    def __init__(self, value: float):
        super().__init__(value)
        self.seen_t = []

    def forward(self, x, t, y=None):
        self.seen_t.append(int(t[0]))
        return super().forward(x, t, y)


def test_the_guidance_interval_guides_only_steps_above_min_t_and_leaves_the_rest_to_the_model():
    schedule = NoiseSchedule(ScheduleConfig(timesteps=10))
    model, guide = RecordsT(0.3), RecordsT(-0.1)
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    sampler = SamplerConfig(kind="ddim", steps=10, eta=0.0, autoguidance=0.5, autoguidance_min_t=4)
    got = list(sample_steps(model, schedule, 2, sampler=sampler, x_T=x_T, guide=guide))
    assert model.seen_t == list(range(10, 0, -1))
    assert guide.seen_t == [10, 9, 8, 7, 6, 5]  # t > 4 only
    # the same chain by hand: eps + g (eps - eps_guide) above t = 4, the model's eps from there on
    x = x_T
    for t in range(10, 0, -1):
        eps = 0.3 + 0.5 * (0.3 - (-0.1)) if t > 4 else 0.3
        x = ddim_step(schedule, x, torch.full_like(x, eps), t, t - 1, eta=0.0).prev_sample
    torch.testing.assert_close(got[-1].x, x)
    # 0 guides every step, as before the interval existed
    guide.seen_t.clear()
    list(sample_steps(model, schedule, 2, sampler=SamplerConfig(kind="ddim", steps=10, eta=0.0, autoguidance=0.5,
                                                                autoguidance_min_t=0), x_T=x_T, guide=guide))
    assert guide.seen_t == list(range(10, 0, -1))


def test_the_guidance_interval_is_a_whole_timestep():
    for bad in (-1, 2.5, True, "50"):
        with pytest.raises(ValueError, match="autoguidance_min_t must be a whole timestep"):
            SamplerConfig(autoguidance_min_t=bad)
    assert "autoguidance 2 above t = 50" in SamplerConfig(autoguidance=2, autoguidance_min_t=50).describe(300)
    assert SamplerConfig.from_dict(SamplerConfig(autoguidance_min_t=7).to_dict()).autoguidance_min_t == 7


def test_with_labels_the_guide_sees_them_and_both_guidances_add_up():
    """eps = (1 + w) eps(x, t, y) - w eps(x, t, none) + g (eps(x, t, y) - eps_guide(x, t, y))."""

    class ByLabel(Constant):
        def forward(self, x, t, y=None):
            self.seen_labels.append(y.clone())
            # 0.2 for a digit, -0.4 for "no label" (class 10)
            return torch.where(y == 10, -0.4, 0.2).float().view(-1, 1, 1, 1).expand_as(x).clone()

    schedule = NoiseSchedule(ScheduleConfig(timesteps=20))
    model, guide = ByLabel(0, num_classes=10), Constant(0.05, num_classes=10)
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([3, 7])
    sampler = SamplerConfig(kind="ddim", steps=1, eta=0.0, guidance=2.0, autoguidance=1.5)
    got = _one_ddim_step(model, schedule, guide, sampler, x_T, labels=labels)
    eps = (1 + 2.0) * 0.2 - 2.0 * (-0.4) + 1.5 * (0.2 - 0.05)
    torch.testing.assert_close(got, ddim_step(schedule, x_T, torch.full_like(x_T, eps), 20, 0, eta=0.0).prev_sample)
    assert [y.tolist() for y in guide.seen_labels] == [[3, 7]]


def test_a_guide_conditioned_unlike_its_model_is_refused():
    schedule = NoiseSchedule(ScheduleConfig(timesteps=5))
    with pytest.raises(ValueError, match="conditioned like its model"):
        list(sample_steps(Constant(0.0), schedule, 1, guide=Constant(0.0, num_classes=10),
                          sampler=SamplerConfig(autoguidance=1.0)))
    with pytest.raises(ValueError, match="autoguidance must be"):
        SamplerConfig(autoguidance=-1.0)
    with pytest.raises(ValueError, match="autoguidance must be"):
        SamplerConfig(autoguidance=float("nan"))


def _payload(seed: int, *, timesteps: int = 10, num_classes: int = 0, epochs: float = 1.0, base: int = 4) -> dict:
    torch.manual_seed(seed)
    net = UNet(UNetConfig(base_channels=base, time_embed_dim=16, num_classes=num_classes))
    return {
        "model": net.config.to_dict(),
        "schedule": ScheduleConfig(timesteps=timesteps).to_dict(),
        "train": {},
        "weights": net.state_dict(),
        "ema_weights": {k: v + 0.01 if v.is_floating_point() else v for k, v in net.state_dict().items()},
        "history": {"epochs": [{"epoch": epochs, "val_loss": 0.5}]},
    }


def test_a_guide_travels_in_the_checkpoint_through_export_in_bfloat16(tmp_path):
    main, weak = _payload(0, epochs=12.0), _payload(1, epochs=2.5, base=8)  # a guide may be smaller or larger
    save_checkpoint(tmp_path / "full.pt", attach_guide(main, weak, "early/best.pt"))
    export_for_sampling(tmp_path / "full.pt", tmp_path / "slim.pt")
    entry = load_checkpoint(tmp_path / "slim.pt")["guide"]
    assert entry["epochs_trained"] == 2.5 and entry["source"] == "early/best.pt"
    assert all(v.dtype == GUIDE_DTYPE for v in entry["weights"].values() if v.is_floating_point())

    loaded = load_model(tmp_path / "slim.pt")
    assert loaded.guide is not None and loaded.guide_info == "2.5 epochs, from early/best.pt"
    assert not loaded.guide.training and loaded.guide.config.base_channels == 8
    # the guide holds the weak model's EMA weights, rounded to bfloat16 and back
    for k, v in loaded.guide.state_dict().items():
        want = weak["ema_weights"][k]
        assert v.dtype == want.dtype and torch.equal(v, want.to(GUIDE_DTYPE).to(want.dtype))

    sampler = SamplerConfig(kind="ddim", steps=3)
    guided = sample(loaded.model, loaded.schedule, 2, sampler=sampler, guide=loaded.guide, seed=0)
    plain = sample(loaded.model, loaded.schedule, 2, sampler=sampler, seed=0)
    off = sample(loaded.model, loaded.schedule, 2, sampler=SamplerConfig(kind="ddim", steps=3, autoguidance=0.0),
                 guide=loaded.guide, seed=0)
    assert not torch.allclose(guided, plain) and torch.equal(off, plain)
    assert load_model(tmp_path / "full.pt").guide is not None
    # without a guide nothing changes
    save_checkpoint(tmp_path / "plain.pt", main)
    assert load_model(tmp_path / "plain.pt").guide is None and load_model(tmp_path / "plain.pt").guide_info is None


def test_a_guide_of_another_schedule_or_conditioning_is_refused_with_what_to_do(tmp_path):
    main = _payload(0)
    with pytest.raises(CheckpointError, match="another noise schedule.*same recipe"):
        attach_guide(main, _payload(1, timesteps=20), "other.pt")
    with pytest.raises(CheckpointError, match="takes 10 classes and the model none"):
        attach_guide(main, _payload(1, num_classes=10), "other.pt")
    with pytest.raises(CheckpointError, match="no 'weights' entry"):
        attach_guide(main, {"model": main["model"], "schedule": main["schedule"]}, "other.pt")


def test_a_damaged_guide_entry_fails_to_load_in_one_line(tmp_path):
    bad = attach_guide(_payload(0), _payload(1), "early.pt")
    bad["guide"]["weights"] = {k: v[..., :1] if v.dim() else v for k, v in bad["guide"]["weights"].items()}
    save_checkpoint(tmp_path / "bad.pt", bad)
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "bad.pt")
    message = str(info.value)
    assert "guide network cannot be used" in message and "export the model again" in message
    assert "\n" not in message


def test_the_autoguidance_sweep_differs_only_in_g():
    from diffusion_studio.engine.diffusion.explore import GUIDANCE_SWEEP, autoguidance_sweep
    from diffusion_studio.engine.diffusion.sampling import initial_noise

    torch.manual_seed(0)
    net, guide = UNet(UNetConfig(base_channels=4, time_embed_dim=16)), UNet(UNetConfig(base_channels=4,
                                                                                      time_embed_dim=16))
    sched = NoiseSchedule(ScheduleConfig(timesteps=20))
    strip = autoguidance_sweep(net, guide, sched, seed=5, steps=4)
    assert strip.shape == (len(GUIDANCE_SWEEP), 1, 28, 28)
    for i, g in enumerate(GUIDANCE_SWEEP):  # each image is that weight's own run from the same x_T
        x = None
        for step in sample_steps(net, sched, 1, sampler=SamplerConfig(kind="ddim", steps=4, eta=0.0, autoguidance=g,
                                                                      clip_x0=True),
                                 x_T=initial_noise(1, 5), guide=guide):
            x = step.x
        assert torch.allclose(strip[i], x[0], atol=1e-5)
    assert not torch.allclose(strip[0], strip[-1])
    with pytest.raises(ValueError, match="needs a model with a guide network"):
        autoguidance_sweep(net, None, sched, 5)
    with pytest.raises(ValueError, match="autoguidance must be"):
        autoguidance_sweep(net, guide, sched, 5, weights=(0.0, -1.0))
