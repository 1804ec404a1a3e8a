"""The task layer: one function per use case, the same for both front ends."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from diffusion_studio.engine.diffusion.scheduling import SamplerConfig
from diffusion_studio.engine.evaluation.classifier import ClassifierConfig
from diffusion_studio.engine.evaluation.report import EvaluationConfig
from diffusion_studio.engine.storage.data import to_uint8
from diffusion_studio.tasks.context import TaskContext
from diffusion_studio.tasks.evaluate import EvaluateRequest, evaluate
from diffusion_studio.tasks.explore import GuidanceSweepRequest, InterpolateRequest, guidance_sweep, interpolate
from diffusion_studio.tasks.models import ModelRef, open_model
from diffusion_studio.tasks.sample import SampleRequest, sample_frames, sample_images
from diffusion_studio.tasks.train import TrainRequest, plan_train, train

TINY_CLF = ClassifierConfig(epochs=8, batch_size=25, shift=1, lr=3e-3)
FEW_STEPS = SamplerConfig(kind="ddim", steps=3)  # the bundled default's autoguidance g stays the app's


@pytest.fixture(scope="module")
def bundled_default():
    return open_model("default", "cpu")


def test_evaluating_the_loaded_model_keeps_its_guide_and_scores_what_the_sampler_makes(bundled_default, tiny_data):
    """The Evaluate panel's "Current model" hands the loaded handle over: the evaluation samples
    with its guide network (autoguidance 1.5 on the bundled default), exactly the pixels that
    sampling the same handle at the same settings makes."""
    assert bundled_default.guide is not None and FEW_STEPS.autoguidance == 1.5
    config = EvaluationConfig(n=4, metric="mnist", sampler=FEW_STEPS, seed=5, device="cpu", precision="fp32",
                              kid_subsets=2, classifier_config=TINY_CLF, strip_rows=2, strip_columns=3)
    result = evaluate(EvaluateRequest(bundled_default, config, label="Bundled default model"), tiny_data)
    generation = result.evaluation.report["generation"]
    assert generation["autoguidance"] == 1.5 and result.files is None
    sampled = sample_images(bundled_default, SampleRequest(n=4, sampler=FEW_STEPS, seed=5, precision="fp32"))
    assert np.array_equal(result.evaluation.samples, to_uint8(sampled.images).numpy())


def test_a_model_is_named_the_same_three_ways_everywhere(tiny_checkpoint_run):
    run, best = tiny_checkpoint_run
    assert ModelRef("default").is_bundled and ModelRef("default").checkpoint().name == "default.pt"
    assert ModelRef.of(run).checkpoint() == best and ModelRef.of(best).label == f"{run.name}/best.pt"
    assert open_model(run, "cpu").path == best


@pytest.fixture(scope="module")
def tiny_checkpoint_run(tiny_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tasks") / "run"
    request = TrainRequest(settings={"epochs": 1, "batch_size": 50, "precision": "fp32"}, width=4, timesteps=10,
                           preset="plain", out=folder)
    records = list(train(request, plan_train(request), tiny_data))
    assert records[0].kind == "started" and records[-1].kind == "finished"
    return folder, folder / "best.pt"


def test_training_starts_with_a_record_that_says_everything_and_previews_on_request(tiny_data, tmp_path):
    request = TrainRequest(settings={"epochs": 2, "batch_size": 50, "precision": "fp32"}, width=4, timesteps=10,
                           preset="plain", out=tmp_path / "run", preview_every=1, preview_count=3, preview_steps=2)
    records = list(train(request, plan_train(request), tiny_data))
    started = records[0]
    assert started.kind == "started" and started.mode == "new" and started.run_dir == str(tmp_path / "run")
    assert (started.epochs, started.start_epoch, started.timesteps, started.preset) == (2, 0, 10, "plain")
    assert "preset plain" in started.describe() and "T=10" in started.describe()
    previews = [r for r in records if r.kind == "preview"]
    finished = next(r for r in records if r.kind == "finished")
    assert [p.epoch for p in previews] == [1, 2, finished.best_epoch]  # and the restored best at the end
    assert records[-1] is previews[-1]
    assert all(p.images.shape == (3, 28, 28) and p.images.dtype == np.uint8 for p in previews)

    resume = TrainRequest(mode="resume", source=tmp_path / "run", settings={"epochs": 3})
    plan = plan_train(resume)
    assert plan.mode == "resume" and plan.train.epochs == 3
    first = next(iter(train(resume, plan, tiny_data)))
    assert first.mode == "resume" and first.start_epoch == 2 and len(first.history["epochs"]) == 2
    assert "resuming at epoch 3" in first.describe()


def test_an_early_preview_comes_after_the_first_steps_from_the_ema_weights(tiny_data, tmp_path):
    """A learner sees digits after a few hundred steps, not only when the first epoch ends."""
    request = TrainRequest(settings={"epochs": 1, "batch_size": 25, "precision": "fp32", "ema_decay": 0.9},
                           width=4, timesteps=10, preset="plain", out=tmp_path / "run", preview_every=1,
                           preview_count=2, preview_steps=2, preview_first_steps=2)
    records = list(train(request, plan_train(request), tiny_data))
    kinds = [r.kind for r in records]
    early = records[kinds.index("preview")]
    assert early.step == 2 and early.epoch == 1 and early.images.shape == (2, 28, 28)
    assert kinds[:kinds.index("preview")].count("step") == 2  # right after the second step
    assert kinds.index("preview") < kinds.index("epoch")
    assert TrainRequest().preview_first_steps > 0  # on by default, where previews are on
    quiet = TrainRequest(settings={"epochs": 1, "batch_size": 25, "precision": "fp32"}, width=4, timesteps=10,
                         preset="plain", out=tmp_path / "quiet", preview_first_steps=2)
    assert not [r for r in train(quiet, plan_train(quiet), tiny_data) if r.kind == "preview"]  # the CLI's


def test_a_refused_plan_leaves_no_run_folder_behind(tmp_path):
    """Everything is checked before anything is written (the GUI used to make the folder first)."""
    runs = tmp_path / "runs"
    with pytest.raises(ValueError, match="timesteps"):
        plan_train(TrainRequest(timesteps=0, runs_dir=runs))
    with pytest.raises(ValueError, match="would ignore: epochs 1"):
        plan_train(TrainRequest(mode="continue", source="default", settings={"epochs": 1}))
    assert not runs.exists()


def test_sample_frames_keep_the_strip_and_x0_and_a_stop_keeps_what_was_made(bundled_default):
    ctx = TaskContext()
    seen = []
    ctx.on_partial = seen.append
    request = SampleRequest(n=2, sampler=SamplerConfig(kind="ddim", steps=6), seed=1, precision="fp32")
    result = sample_frames(bundled_default, request, ctx, max_frames=2)
    ts = [f.t for f in result.frames]
    assert ts[0] == 300 and ts[-1] == 0 and ts == sorted(ts, reverse=True) and not result.stopped
    assert np.array_equal(result.frames[-1].x, result.frames[-1].x0) and [f.t for f in seen] == ts
    # the last frame is the digits sample_images makes from the same request
    assert np.array_equal(result.frames[-1].x, to_uint8(sample_images(bundled_default, request).images).numpy())

    stop = threading.Event()
    stopping = TaskContext(stop_event=stop, on_progress=lambda stage, done, total: done >= 2 and stop.set())
    cut = sample_frames(bundled_default, request, stopping, max_frames=6)
    assert cut.stopped and 0 < len(cut.frames) < len(result.frames) + 4 and cut.frames[-1].t > 0


def test_explorations_take_the_handle_and_its_sampler(bundled_default):
    sampler = SamplerConfig(autoguidance=1.25, autoguidance_min_t=3)
    strip = interpolate(bundled_default, InterpolateRequest(0, 1, sampler=sampler, steps=2, count=3,
                                                            precision="fp32"))
    assert strip.images.shape == (3, 28, 28) and strip.columns == 3
    assert "autoguidance g = 1.25 above t = 3" in strip.caption and strip.name == "interpolation-seed0-seed1"
    sweep = guidance_sweep(bundled_default, GuidanceSweepRequest(2, sampler=sampler, steps=2, weights=(0.0, 1.0),
                                                                 precision="fp32"))
    assert sweep.images.shape == (2, 28, 28) and sweep.caption.startswith("seed 2: autoguidance g = 0, 1 above t = 3")
    no_guide = bundled_default.copy_to("cpu")
    no_guide.guide = None
    with pytest.raises(ValueError, match="class-conditional model or one with a guide network"):
        guidance_sweep(no_guide, GuidanceSweepRequest(2, steps=2))


def test_a_digit_asked_of_an_unconditional_model_is_refused(bundled_default):
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        sample_images(bundled_default, SampleRequest(n=2, digit=3, sampler=FEW_STEPS))
    with pytest.raises(ValueError, match=r"number of images must lie in 1\.\.1,000,000"):
        SampleRequest(n=10**20)
    assert torch.equal(SampleRequest(n=3).labels(open_model("default-conditional", "cpu")), torch.tensor([0, 1, 2]))


# ------------------------------------------------------------------ issue 32, item 6: the model's view
@pytest.fixture(scope="module")
def bundled_conditional():
    return open_model("default-conditional", "cpu")


def test_the_models_view_gives_a_conditional_model_the_digits_labels(bundled_conditional, bundled_default, tiny_data):
    """A class-conditional model's view of x_t is computed with each digit's label (without it a 7
    at t = 151 was "predicted" as a 9); an unconditional model ignores the labels."""
    from diffusion_studio.engine.storage.data import to_model_range
    from diffusion_studio.tasks.explore import ModelViewRequest, model_view

    x0 = to_model_range(tiny_data.images("train")[:4])
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    labels = tiny_data.labels("train")[:4].numpy()
    given = model_view(bundled_conditional, ModelViewRequest(x0, noise, 151, labels))
    blind = model_view(bundled_conditional, ModelViewRequest(x0, noise, 151))
    assert given["conditioned"] and not blind["conditioned"]
    assert not np.allclose(given["mse"], blind["mse"])
    tt = torch.full((4,), 151, dtype=torch.long)
    x_t = bundled_conditional.schedule.q_sample(x0, tt, noise)
    with torch.inference_mode():
        eps = bundled_conditional.model(x_t, tt, torch.as_tensor(labels))
    np.testing.assert_allclose(given["mse"], (eps - noise).pow(2).mean(dim=(1, 2, 3)).numpy(), rtol=1e-4, atol=1e-6)
    plain = model_view(bundled_default, ModelViewRequest(x0, noise, 151, labels))
    assert not plain["conditioned"]
    with pytest.raises(ValueError, match="one label per digit"):
        model_view(bundled_conditional, ModelViewRequest(x0, noise, 151, labels[:2]))


def test_the_guidance_sweep_is_a_grid_with_its_weights_and_rows_labelled(bundled_conditional, bundled_default):
    """Issue 32, item 6: rows of digits (or seeds) against the weights, each column labelled "w = ..."
    ("g = ..." for autoguidance), drawn in the picture an export writes."""
    sweep = guidance_sweep(bundled_conditional, GuidanceSweepRequest(0, steps=2, weights=(0.0, 2.0), digits=(1, 7),
                                                                     precision="fp32"))
    assert sweep.images.shape == (4, 28, 28) and sweep.columns == 2
    assert sweep.column_labels == ("w = 0", "w = 2") and sweep.row_labels == ("digit 1", "digit 7")
    assert sweep.caption.startswith("digits 1, 7 (rows), seed 0: classifier-free guidance w = 0, 2")
    plain = sweep.picture()
    assert plain.shape[0] > 2 * 30 + 2 and plain.shape[1] > 2 * 30 + 2  # a header and a margin for the labels
    big = sweep.picture(scale=3)
    assert big.shape[0] >= 3 * (2 * 30 + 2) and big.shape[1] >= 3 * (2 * 30 + 2)
    auto = guidance_sweep(bundled_default, GuidanceSweepRequest(5, steps=2, weights=(0.0, 1.0), seeds=2,
                                                                precision="fp32"))
    assert auto.images.shape == (4, 28, 28) and auto.column_labels == ("g = 0", "g = 1")
    assert auto.row_labels == ("seed 5", "seed 6") and auto.caption.startswith("seeds 5–6 (rows): autoguidance")


def test_the_early_preview_waits_for_the_early_estimate_of_the_same_step(tiny_data, tmp_path):
    """The plain preset's preview samples with BatchNorm statistics the estimate recalibrates first,
    so at the same step the estimate comes first, and the preview right after it."""
    request = TrainRequest(settings={"epochs": 1, "batch_size": 25, "precision": "fp32"}, width=4, timesteps=10,
                           preset="plain", out=tmp_path / "run", preview_every=1, preview_count=2,
                           preview_steps=2, preview_first_steps=2, early_validation_steps=2)
    kinds = [r.kind for r in train(request, plan_train(request), tiny_data)]
    i = kinds.index("early_validation")
    assert kinds[:i].count("step") == 2 and kinds[i + 1] == "preview" and kinds.count("preview") == 3


def test_an_early_validation_estimate_comes_after_the_early_steps_for_both_front_ends(tiny_data, tmp_path):
    """Before the first epoch's validation, an estimate of its loss on the first validation digits:
    one record, after the same first steps as the early preview, with or without previews (the CLI)."""
    import json

    from diffusion_studio.engine.defaults import DEFAULT_EARLY_STEPS

    assert TrainRequest().early_validation_steps == TrainRequest().preview_first_steps == DEFAULT_EARLY_STEPS > 0
    with pytest.raises(ValueError, match="early validation"):
        TrainRequest(early_validation_steps=-1)
    request = TrainRequest(settings={"epochs": 1, "batch_size": 25, "precision": "fp32"}, width=4, timesteps=10,
                           preset="plain", out=tmp_path / "run", early_validation_steps=2)
    records = list(train(request, plan_train(request), tiny_data))
    kinds = [r.kind for r in records]
    assert kinds.count("early_validation") == 1
    i = kinds.index("early_validation")
    early = records[i]
    assert kinds[:i].count("step") == 2 and i < kinds.index("epoch") and kinds[-1] == "finished"
    assert np.isfinite(early.val_loss) and early.position == 0.5 and early.images == early.val_images == 20
    assert early.describe().startswith("early estimate after 2 steps (0.50 epoch): validation loss ")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["early_validation"]["val_loss"] == early.val_loss and len(history["epochs"]) == 1
