"""Precision "auto": chosen by measuring the network, never the slower one."""

import json

import pytest
import torch

from diffusion_studio.engine import device as D
from diffusion_studio.engine.diffusion.unet import UNetConfig

TINY = UNetConfig(base_channels=4, time_embed_dim=16)


@pytest.fixture
def timed(monkeypatch, tmp_path):
    """Patch the timer: each precision's measured rate comes from ``rates``; the cache
    goes to a fresh folder; oneDNN claims bf16 kernels (as on every AVX-512 CPU)."""
    rates = {}
    calls = []

    def fake_measure(precision, mode, model_config, device):
        calls.append((precision, mode))
        return rates[precision]

    monkeypatch.setattr(D, "network_rate", fake_measure)
    monkeypatch.setattr(D, "precision_cache_file", lambda: tmp_path / "precision.json")
    monkeypatch.setattr(D, "cpu_has_fast_bf16", lambda: True)
    return rates, calls, tmp_path / "precision.json"


def test_auto_picks_fp32_where_bf16_is_emulated_and_slower(timed):
    rates, calls, _ = timed
    rates.update(fp32=391.0, bf16=104.0)  # the AVX-512 Xeon without native bf16 in the issue
    choice = D.choose_precision("auto", torch.device("cpu"), mode="train", model_config=TINY)
    assert choice.precision == "fp32"
    assert choice.rates == {"fp32": 391.0, "bf16": 104.0}
    assert "fp32 391 img/s" in choice.describe() and "bf16 104 img/s" in choice.describe()
    assert sorted(calls) == [("bf16", "train"), ("fp32", "train")]


def test_auto_picks_bf16_where_it_is_really_faster(timed):
    rates, _, _ = timed
    rates.update(fp32=300.0, bf16=620.0)  # native AMX / AVX512-BF16
    assert D.resolve_precision("auto", torch.device("cpu"), mode="sample", model_config=TINY) == "bf16"


def test_a_tie_keeps_fp32(timed):
    rates, _, _ = timed
    rates.update(fp32=300.0, bf16=310.0)
    assert D.resolve_precision("auto", torch.device("cpu"), model_config=TINY) == "fp32"


def test_the_answer_is_cached_per_mode_and_network(timed):
    rates, calls, cache = timed
    rates.update(fp32=100.0, bf16=300.0)
    first = D.choose_precision("auto", torch.device("cpu"), mode="train", model_config=TINY)
    again = D.choose_precision("auto", torch.device("cpu"), mode="train", model_config=TINY)
    assert (first.precision, first.cached) == ("bf16", False)
    assert (again.precision, again.cached, again.rates) == ("bf16", True, first.rates)
    assert len(calls) == 2  # measured once
    D.choose_precision("auto", torch.device("cpu"), mode="sample", model_config=TINY)
    D.choose_precision("auto", torch.device("cpu"), mode="train", model_config=UNetConfig(base_channels=8))
    assert len(calls) == 6  # another mode and another network are measured anew
    keys = list(json.loads(cache.read_text()))
    assert len(keys) == 3 and all(D.cpu_model_name() in k and torch.__version__ in k for k in keys)


def test_explicit_choices_and_cpus_without_bf16_kernels_measure_nothing(timed, monkeypatch):
    rates, calls, _ = timed
    assert D.choose_precision("fp32", torch.device("cpu")).precision == "fp32"
    assert D.choose_precision("bf16", torch.device("cpu")).precision == "bf16"
    monkeypatch.setattr(D, "cpu_has_fast_bf16", lambda: False)  # AVX2-only: bf16 emulated 65x slower
    assert D.choose_precision("auto", torch.device("cpu")).precision == "fp32"
    assert calls == []
    with pytest.raises(ValueError, match="choose one of auto, fp32, bf16"):
        D.choose_precision("fp16", torch.device("cpu"))


def test_the_real_timer_measures_a_positive_rate():
    rate = D.images_per_second(lambda: torch.ones(8).sum(), batch=8, min_seconds=0.01)
    assert rate > 0


def test_the_real_measurement_runs_the_network(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "images_per_second", lambda step, batch, **kw: (step(), float(batch))[1])
    assert D.network_rate("fp32", "train", TINY, torch.device("cpu")) == 32.0
    assert D.network_rate("bf16", "sample", TINY, torch.device("cpu")) == 64.0
