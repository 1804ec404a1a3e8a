import math

import pytest
import torch

from diffusion_studio.engine.diffusion.schedule import SCHEDULE_KINDS, NoiseSchedule, ScheduleConfig


def test_linear_schedule_matches_closed_form_at_fixed_t():
    s = NoiseSchedule(ScheduleConfig())  # the report's: T=300, 1e-4..0.02
    T = 300
    assert s.beta.shape == (T + 1,)
    assert s.beta[0] == 0 and s.alphabar[0] == 1
    for t in (1, 2, 150, 300):
        beta_t = 1e-4 + (0.02 - 1e-4) * (t - 1) / (T - 1)
        assert s.beta[t].item() == pytest.approx(beta_t, rel=1e-6)
        abar = math.prod(1 - (1e-4 + (0.02 - 1e-4) * (k - 1) / (T - 1)) for k in range(1, t + 1))
        assert s.alphabar[t].item() == pytest.approx(abar, rel=1e-5)
    # the brief's headline: alphabar_T ~ 0.048, sqrt = 0.22 of the image survives
    assert s.alphabar[T].item() == pytest.approx(0.0481, abs=5e-4)
    assert s.signal_at_T() == pytest.approx(0.219, abs=1e-3)


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_schedules_are_monotonic_and_valid(kind):
    s = NoiseSchedule(ScheduleConfig(kind=kind))
    beta = s.beta[1:]
    assert torch.all(beta > 0) and torch.all(beta < 1)
    assert torch.all(torch.diff(s.alphabar) < 0)
    assert torch.all(torch.diff(s.snr[1:]) < 0)
    assert torch.allclose(s.alpha, 1 - s.beta)


def test_rescaled_linear_and_cosine_destroy_the_signal():
    lin = NoiseSchedule(ScheduleConfig(kind="linear"))
    res = NoiseSchedule(ScheduleConfig(kind="rescaled_linear"))
    cos = NoiseSchedule(ScheduleConfig(kind="cosine"))
    assert res.beta[1].item() == pytest.approx(1e-4 * 1000 / 300, rel=1e-6)
    assert res.beta[300].item() == pytest.approx(0.02 * 1000 / 300, rel=1e-6)
    assert res.signal_at_T() < 0.01 and cos.signal_at_T() < 0.001
    x0 = -torch.ones(10)  # background pixels
    assert lin.prior_kl(x0) > 100 * res.prior_kl(x0) > 0


def test_cosine_matches_nichol_dhariwal():
    T, s_ = 300, 0.008
    s = NoiseSchedule(ScheduleConfig(kind="cosine", timesteps=T))
    f = lambda t: math.cos((t / T + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 10, 100, 200):
        assert s.alphabar[t].item() == pytest.approx(f(t) / f(0), rel=1e-5)
    assert s.beta[T].item() == pytest.approx(0.999)  # clipped


def test_posterior_variance_closed_form():
    T = 50
    s = NoiseSchedule(ScheduleConfig(timesteps=T))
    betas = [0.0] + [1e-4 + (0.02 - 1e-4) * (k - 1) / (T - 1) for k in range(1, T + 1)]
    abar = [math.prod(1 - b for b in betas[: t + 1]) for t in range(T + 1)]  # float64 closed form
    for t in (2, 25, 50):
        expected = betas[t] * (1 - abar[t - 1]) / (1 - abar[t])
        assert s.posterior_variance[t].item() == pytest.approx(expected, rel=1e-6)
    assert s.posterior_variance[1].item() == 0.0  # abar_0 = 1
    assert torch.all(s.posterior_variance[2:] < s.beta[2:])


def test_q_sample_statistics_match_q_xt_given_x0():
    s = NoiseSchedule(ScheduleConfig())
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((4000, 1, 4, 4), 0.5)
    t = torch.full((4000,), 100)
    x_t = s.q_sample(x0, t, torch.randn(x0.shape, generator=g))
    mean, var = x_t.mean().item(), x_t.var().item()
    assert mean == pytest.approx(0.5 * s.sqrt_alphabar[100].item(), abs=0.01)
    assert var == pytest.approx(1 - s.alphabar[100].item(), rel=0.02)
    # t = 0 is the image itself; predict_x0 inverts q_sample
    noise = torch.randn(x0.shape, generator=g)
    assert torch.equal(s.q_sample(x0, torch.zeros(4000, dtype=torch.long), noise), x0)
    assert torch.allclose(s.predict_x0(s.q_sample(x0, t, noise), t, noise), x0, atol=1e-5)


def test_config_round_trip_and_errors():
    c = ScheduleConfig(kind="cosine", timesteps=123)
    assert ScheduleConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="linear, cosine, rescaled_linear"):
        ScheduleConfig(kind="sqrt")
    with pytest.raises(ValueError, match="positive integer"):
        ScheduleConfig(timesteps=0)
    with pytest.raises(ValueError, match="unknown ScheduleConfig field"):
        ScheduleConfig.from_dict({"kind": "linear", "bogus": 1})


def test_rescaled_linear_short_chains_clip_at_0999():
    s = NoiseSchedule(ScheduleConfig(kind="rescaled_linear", timesteps=10))
    assert s.beta[10].item() == pytest.approx(0.999)
    assert torch.all(s.beta[1:] < 1) and s.signal_at_T() < 0.05
