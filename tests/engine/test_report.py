"""evaluate_model / write_report on a tiny checkpoint: protocol fields, files, missing weights, cancel."""

from __future__ import annotations

import json

import pytest

from diffusion_studio.engine.evaluation import report as R
from diffusion_studio.engine.evaluation import report_files as RF
from diffusion_studio.engine.evaluation.classifier import ClassifierConfig
from diffusion_studio.engine.evaluation.metrics import EvaluationStopped
from diffusion_studio.engine.diffusion.scheduling import SamplerConfig

TINY_CLF = ClassifierConfig(epochs=8, batch_size=25, shift=1, lr=3e-3)  # the same recipe as test_classifier


def train_tiny_checkpoint(data, folder):
    from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
    from diffusion_studio.engine.training.config import TrainConfig
    from diffusion_studio.engine.training.plan import plan_new
    from diffusion_studio.engine.training.trainer import Trainer
    from diffusion_studio.engine.diffusion.unet import UNetConfig

    trainer = Trainer(plan_new(UNetConfig(base_channels=4), ScheduleConfig(timesteps=10), TrainConfig(epochs=2, batch_size=50, precision="fp32", patience=5)), data, device="cpu", run_dir=folder)
    for _ in trainer.run():
        pass
    return folder / "best.pt"


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_data, tmp_path_factory):
    return train_tiny_checkpoint(tiny_data, tmp_path_factory.mktemp("run"))


def _config(**kw):
    base = dict(n=12, metric="mnist", sampler=SamplerConfig(kind="ddim", steps=4), seed=3, device="cpu",
                precision="fp32",
                kid_subsets=10, classifier_config=TINY_CLF, strip_rows=3, strip_columns=4)
    base.update(kw)
    return R.EvaluationConfig(**base)


def test_report_with_every_metric_and_protocol_field(tiny_checkpoint, tiny_data, tmp_path):
    stages = []
    ev = R.evaluate_checkpoint(
        tiny_checkpoint, tiny_data, _config(metric="all", random_inception=True, inception_dims=64, split="val"),
        progress=lambda s, d, t: stages.append(s))
    keys = [m["key"] for m in ev.report["metrics"]]
    assert keys == ["fd_classifier", "kid_classifier", "confident_share", "label_histogram", "memorisation",
                    "fid_inception"]
    mem = next(m for m in ev.report["metrics"] if m["key"] == "memorisation")
    assert 0.0 <= mem["value"] <= 1.0
    h = mem["details"]["histograms"]["pixel"]
    assert sum(h["generated"]) == mem["protocol"]["n_generated"] and len(h["edges"]) == len(h["test"]) + 1
    assert "Does the model copy" in RF.render_html(ev)
    for m in ev.report["metrics"]:
        missing = [f for f in R.PROTOCOL_FIELDS if f not in m["protocol"]]
        assert not missing, f"{m['key']} lacks {missing}"
        p = m["protocol"]
        if m["key"] != "memorisation":  # (that one compares with the training split, test digits for scale)
            assert p["n_generated"] == 12 and p["n_real"] == len(tiny_data.val_labels) and p["reference_split"] == "val"
        assert p["sampler"] == "ddim" and p["sampler_steps"] == 4 and p["seed"] == 3
        assert p["checkpoint"].endswith("best.pt") and len(p["checkpoint_sha256"]) == 64
        assert p["weights_sha256"] and p["seconds"] >= 0
    assert ev.metric("fid_inception")["name"] == "FID (Inception, pytorch-fid)"
    assert ev.metric("fid_inception")["value"] > 0
    assert any("RANDOM" in w for w in ev.report["warnings"])
    assert any("n = 12 generated" in w and "not meaningful" in w for w in ev.report["warnings"])
    assert {"sampling", "x_T -> x_0 strip", "classifier features"} <= set(stages)
    assert ev.samples.shape == (12, 28, 28) and ev.samples.dtype.name == "uint8"
    assert ev.strip.shape[0] > 3 * 28 and ev.strip.shape[1] > 4 * 28  # 3 rows, x_T + 3 later columns
    assert len(ev.report["history"]["val_loss"]) == 2

    files = RF.write_report(ev, tmp_path / "rep")
    for f in files.values():
        assert f.is_file() and f.stat().st_size > 0
    data = json.loads(files["json"].read_text())
    assert data["format"] == "diffusion-studio-evaluation" and data["generation"]["n"] == 12
    page = files["html"].read_text()
    assert page.count("data:image/png;base64,") == 2 and "<svg" in page and "<path d=" in page  # the loss chart
    assert "FID (Inception, pytorch-fid)" in page and "FD (MNIST classifier features)" in page
    assert "src='http" not in page and 'src="http' not in page  # self-contained


def test_missing_inception_weights_keep_the_offline_metric(tiny_checkpoint, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ev = R.evaluate_checkpoint(tiny_checkpoint, tiny_data, _config(metric="all"))
    assert ev.metric("fd_classifier") is not None and ev.metric("fid_inception") is None
    (err,) = ev.errors
    assert err["metric"] == "FID (Inception, pytorch-fid)"
    assert "pt_inception-2015-12-05-6726825d.pth" in err["message"] and str(tmp_path / "torch") in err["message"]
    page = RF.render_html(ev)
    assert "was not computed" in page and "pt_inception-2015-12-05-6726825d.pth" in page

    from diffusion_studio.engine.evaluation.fid import InceptionWeightsMissing

    calls = []
    with pytest.raises(InceptionWeightsMissing):  # before any sampling
        R.evaluate_checkpoint(tiny_checkpoint, tiny_data, _config(metric="inception"),
                              progress=lambda *a: calls.append(a))
    assert calls == []


def test_an_evaluation_of_a_model_with_a_guide_samples_and_says_with_autoguidance(tiny_checkpoint, tiny_data,
                                                                                    tmp_path, monkeypatch):
    from diffusion_studio.engine.diffusion import sampling as S
    from diffusion_studio.engine.storage.checkpoint import attach_guide, load_checkpoint, save_checkpoint

    payload = load_checkpoint(tiny_checkpoint)
    save_checkpoint(tmp_path / "guided.pt", attach_guide(payload, payload, "early/best.pt"))
    guides = []
    real = S.sample_steps

    def spy(*args, **kwargs):
        guides.append(kwargs.get("guide"))
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "sample_steps", spy)
    sampler = SamplerConfig(kind="ddim", steps=4, autoguidance=0.75)
    ev = R.evaluate_checkpoint(tmp_path / "guided.pt", tiny_data, _config(sampler=sampler))
    gen = ev.report["generation"]
    assert gen["autoguidance"] == 0.75 and gen["guide"] == "2 epochs, from early/best.pt"
    assert guides and all(g is not None for g in guides)  # the digits and the strip both
    assert "autoguidance g = 0.75 (guide: 2 epochs, from early/best.pt)" in RF.render_html(ev)
    plain = R.evaluate_checkpoint(tiny_checkpoint, tiny_data, _config(sampler=sampler))
    assert plain.report["generation"]["autoguidance"] is None and "autoguidance" not in RF.render_html(plain)


def test_evaluation_can_be_cancelled(tiny_checkpoint, tiny_data):
    seen = []
    with pytest.raises(EvaluationStopped):
        R.evaluate_checkpoint(tiny_checkpoint, tiny_data, _config(n=40, batch_size=10),
                              progress=lambda s, d, t: seen.append(s), should_stop=lambda: len(seen) >= 3)
    assert len(seen) < 10


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of inception, mnist, all"):
        R.EvaluationConfig(metric="fid")
    with pytest.raises(ValueError, match="at least 2"):
        R.EvaluationConfig(n=1)


def test_one_chart_renderer_for_every_page():
    from diffusion_studio.engine.evaluation.charts import bar_chart, line_plot

    assert "no data" in line_plot([{"name": "train", "x": [], "y": []}])
    svg = line_plot([{"name": "a", "x": [1, 2, 3], "y": [0.5, None, 0.1]}, {"name": "b", "x": [1, 2], "y": [1, 2]}],
                    "t", "epoch", legend=True)
    assert svg.count("<path") == 2 and ">a</text>" in svg and ">b</text>" in svg and "log scale" in svg
    assert svg.count("<rect") >= 2 and "#1f77b4" in svg and "#d62728" in svg  # palette colours
    bars = bar_chart([1, 3])
    assert bars.count("<rect") == 2 and "25%" in bars and "75%" in bars
