"""Precision "auto": chosen by measuring the network, never the slower one."""

import json
import os
import time

import pytest
import torch

from diffusion_studio.engine import device as D
from diffusion_studio.engine.diffusion.unet import UNetConfig

TINY = UNetConfig(base_channels=4, time_embed_dim=16)


@pytest.fixture
def load(monkeypatch):
    """Patch the load average of a 2-core machine: set ``load["now"]`` (1-minute average,
    whole machine); quiet (0.2, i.e. 0.1 per core) unless a test says otherwise."""
    state = {"now": 0.2}
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (state["now"], state["now"], state["now"]))
    return state


@pytest.fixture
def timed(monkeypatch, tmp_path, load):
    """Patch the timer: each precision's measured rate comes from ``rates``; the cache
    goes to a fresh folder; oneDNN claims bf16 kernels (as on every AVX-512 CPU); the
    machine is quiet (see ``load``)."""
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


BUSY, QUIET = 2.4, 0.4  # 1-minute load averages of the 2-core machine: 1.2 and 0.2 per core
DAY = 24 * 3600


def _write_entry(cache, mode, **entry):
    cache.write_text(json.dumps({D._cache_key(mode, TINY): entry}))


def test_a_choice_taken_under_load_is_measured_again_when_quiet(timed, load):
    rates, calls, cache = timed
    load["now"] = BUSY
    rates.update(fp32=57.0, bf16=48.0)  # the busy EPYC in the issue
    busy = D.choose_precision("auto", torch.device("cpu"), mode="sample", model_config=TINY)
    assert (busy.precision, busy.cached, busy.quiet) == ("fp32", False, False)
    assert "measured under load" in busy.describe()
    stored = json.loads(cache.read_text())[D._cache_key("sample", TINY)]
    assert stored["load_per_core"] == pytest.approx(1.2) and stored["cpus"] == 2
    assert abs(stored["measured_at"] - time.time()) < 60

    load["now"] = QUIET
    rates.update(fp32=695.0, bf16=902.0)  # the same machine, quiet
    quiet = D.choose_precision("auto", torch.device("cpu"), mode="sample", model_config=TINY)
    assert (quiet.precision, quiet.cached, quiet.rates) == ("bf16", False, {"fp32": 695.0, "bf16": 902.0})
    assert len(calls) == 4
    again = D.choose_precision("auto", torch.device("cpu"), mode="sample", model_config=TINY)
    assert (again.precision, again.cached, len(calls)) == ("bf16", True, 4)  # now trusted
    assert "cached, measured " + time.strftime("%Y-%m-%d") in again.describe()


def test_a_busy_machine_uses_the_cached_choice_instead_of_timing_under_load(timed, load):
    rates, calls, cache = timed
    when = time.time() - 2 * DAY
    _write_entry(cache, "train", fp32=57.0, bf16=48.0, choice="fp32", measured_at=when, load_per_core=1.5, cpus=2)
    load["now"] = BUSY
    rates.update(fp32=1.0, bf16=1.0)
    choice = D.choose_precision("auto", torch.device("cpu"), mode="train", model_config=TINY)
    assert calls == []
    assert (choice.precision, choice.cached, choice.rates) == ("fp32", True, {"fp32": 57.0, "bf16": 48.0})
    assert choice.measured_at == when and not choice.quiet
    assert f"cached, measured {time.strftime('%Y-%m-%d', time.localtime(when))} under load" in choice.describe()


def test_the_best_rate_of_each_precision_is_kept(timed, load):
    rates, calls, cache = timed
    _write_entry(cache, "train", fp32=400.0, bf16=500.0, choice="bf16",
                 measured_at=time.time() - DAY, load_per_core=0.9, cpus=2)
    rates.update(fp32=380.0, bf16=900.0)  # fp32 measured lower this time: the 400 stays
    choice = D.choose_precision("auto", torch.device("cpu"), mode="train", model_config=TINY)
    assert len(calls) == 2
    assert (choice.precision, choice.rates) == ("bf16", {"fp32": 400.0, "bf16": 900.0})
    stored = json.loads(cache.read_text())[D._cache_key("train", TINY)]
    assert (stored["fp32"], stored["bf16"], stored["choice"]) == (400.0, 900.0, "bf16")


def test_cached_rates_still_need_bf16_to_win_clearly(timed):
    _, calls, cache = timed
    _write_entry(cache, "train", fp32=300.0, bf16=310.0, choice="fp32",
                 measured_at=time.time() - DAY, load_per_core=0.1, cpus=2)
    choice = D.choose_precision("auto", torch.device("cpu"), mode="train", model_config=TINY)
    assert (choice.precision, choice.cached, calls) == ("fp32", True, [])  # 3% faster is a tie


def test_an_old_entry_is_measured_again_and_replaced(timed, load):
    rates, calls, cache = timed
    old = time.time() - 31 * DAY
    _write_entry(cache, "sample", fp32=300.0, bf16=900.0, choice="bf16", measured_at=old, load_per_core=0.1, cpus=2)
    load["now"] = BUSY
    assert D.choose_precision("auto", torch.device("cpu"), mode="sample", model_config=TINY).cached  # busy: kept
    assert calls == []
    load["now"] = QUIET
    rates.update(fp32=500.0, bf16=400.0)
    choice = D.choose_precision("auto", torch.device("cpu"), mode="sample", model_config=TINY)
    assert len(calls) == 2
    assert (choice.precision, choice.cached, choice.rates) == ("fp32", False, {"fp32": 500.0, "bf16": 400.0})
    assert json.loads(cache.read_text())[D._cache_key("sample", TINY)]["measured_at"] > old


def test_an_entry_from_an_older_cache_loads_and_is_measured_again_when_quiet(timed, load):
    rates, calls, cache = timed
    _write_entry(cache, "sample", fp32=57.0, bf16=48.0, choice="fp32")  # no date, no load
    load["now"] = BUSY
    kept = D.choose_precision("auto", torch.device("cpu"), mode="sample", model_config=TINY)
    assert (kept.precision, kept.cached, kept.measured_at, calls) == ("fp32", True, None, [])
    assert "cached, measured at an unknown date" in kept.describe()
    load["now"] = QUIET
    rates.update(fp32=695.0, bf16=902.0)
    fresh = D.choose_precision("auto", torch.device("cpu"), mode="sample", model_config=TINY)
    assert (fresh.precision, fresh.cached, len(calls)) == ("bf16", False, 2)
    stored = json.loads(cache.read_text())[D._cache_key("sample", TINY)]
    assert {"measured_at", "load_per_core", "cpus"} <= set(stored)


def test_without_a_load_average_a_recent_entry_is_trusted(timed, monkeypatch):
    rates, calls, _ = timed
    monkeypatch.delattr(os, "getloadavg")  # Windows
    rates.update(fp32=300.0, bf16=620.0)
    first = D.choose_precision("auto", torch.device("cpu"), model_config=TINY)
    again = D.choose_precision("auto", torch.device("cpu"), model_config=TINY)
    assert (first.cached, again.cached, again.precision, len(calls)) == (False, True, "bf16", 2)
