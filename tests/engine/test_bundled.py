"""The trained model shipped inside the package (``--checkpoint default``)."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from diffusion_studio.engine.storage.bundled import default_checkpoint_path
from diffusion_studio.engine.storage.checkpoint import load_checkpoint, load_model
from diffusion_studio.engine.training.presets import PRESETS
from diffusion_studio.engine.diffusion.scheduling import DEFAULT_GUIDANCE, SamplerConfig
from diffusion_studio.engine.diffusion.sampling import sample


def test_bundled_model_is_the_default_recipe_and_samples():
    path = default_checkpoint_path()
    assert path.stat().st_size < 12 * 2**20  # a few MB: the model, and its guide in bfloat16
    payload = load_checkpoint(path)
    assert "optimizer" not in payload and payload["meta"]["weights_are_ema"] is True
    loaded = load_model(path)
    default = PRESETS["default"]  # the default recipe, trained without labels (train --no-conditional)
    assert loaded.model_config == replace(default.model, num_classes=0)
    assert loaded.schedule_config == default.schedule
    epochs = loaded.history["epochs"]
    best = min(epochs, key=lambda e: e["val_loss"])
    # (an epoch the time budget cut short is logged at its fraction, 6.7 for 70% of epoch 7)
    assert len(epochs) >= 3 and payload["best"]["epoch"] == math.ceil(best["epoch"])
    assert payload["best"]["val_loss"] == best["val_loss"]
    # its autoguidance guide: the same network, an early state of the same run (README "The bundled models")
    assert loaded.guide is not None and loaded.guide.config == loaded.model_config
    assert payload["guide"]["epochs_trained"] < loaded.epochs_trained / 4
    x = sample(loaded.model, loaded.schedule, 4, sampler=SamplerConfig(kind="ddim", steps=3), seed=0,
               guide=loaded.guide)
    assert x.shape == (4, 1, 28, 28) and torch.isfinite(x).all()


def test_bundled_conditional_model_samples_the_asked_digit_path():
    from diffusion_studio.engine.storage.bundled import available_bundled, bundled_checkpoint_path, resolve_checkpoint

    students = [f"{teacher}-{k}step" for teacher in ("default-conditional", "default") for k in (8, 4, 2, 1)]
    assert [name for name, _, _ in available_bundled()] == ["default", "default-conditional", *students]
    path = bundled_checkpoint_path("default-conditional")
    assert resolve_checkpoint("default-conditional") == path and path.stat().st_size < 8 * 2**20
    loaded = load_model(path)
    default = PRESETS["default"]
    assert loaded.model_config == default.model  # the default recipe as it is: class-conditional
    assert loaded.guide is None  # classifier-free guidance is its guidance
    x = sample(loaded.model, loaded.schedule, 2, sampler=SamplerConfig(kind="ddim", steps=3),
               labels=torch.tensor([3, 7]), seed=0)
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()


def test_the_app_starts_with_the_default_student_else_its_teacher_else_the_unconditional_model(monkeypatch,
                                                                                                 tmp_path):
    from diffusion_studio.engine.storage import bundled

    name, title, path = bundled.startup_model()
    assert (name, path) == ("default-conditional-4step", bundled.bundled_checkpoint_path("default-conditional-4step"))
    assert title == "Bundled class-conditional 4-step student"
    teacher = [("default-conditional", "Bundled class-conditional model (300 steps)",
                tmp_path / "default-conditional.pt")]
    monkeypatch.setattr(bundled, "available_bundled", lambda: teacher)
    assert bundled.startup_model() == teacher[0]
    # an installation without the conditional files opens the unconditional one; without either, none
    only_default = [("default", "Bundled unconditional model (300 steps)", tmp_path / "default.pt")]
    monkeypatch.setattr(bundled, "available_bundled", lambda: only_default)
    assert bundled.startup_model() == only_default[0]
    monkeypatch.setattr(bundled, "available_bundled", lambda: [])
    assert bundled.startup_model() is None


def test_a_bundled_model_is_known_by_its_name_not_its_install_path(tmp_path):
    from diffusion_studio.engine.storage.bundled import bundled_checkpoint_path, bundled_name

    for name in ("default", "default-conditional", "default-conditional-4step"):
        assert bundled_name(bundled_checkpoint_path(name)) == name
    copy = tmp_path / "default.pt"  # the same name elsewhere is a file of the user's, not the bundled one
    copy.write_bytes(bundled_checkpoint_path("default").read_bytes())
    assert bundled_name(copy) is None


def test_every_bundled_student_knows_its_steps_teacher_and_weights_and_samples_with_one_call_per_step():
    from diffusion_studio.engine.diffusion.scheduling import DEFAULT_AUTOGUIDANCE
    from diffusion_studio.engine.storage.bundled import BUNDLED
    from diffusion_studio.tasks.models import open_model

    for origin, weight, default_weight, labels in (("default-conditional", "guidance", DEFAULT_GUIDANCE,
                                                    torch.tensor([3, 7])),
                                                   ("default", "autoguidance", DEFAULT_AUTOGUIDANCE, None)):
        for steps in (8, 4, 2, 1):
            name = f"{origin}-{steps}step"
            assert name in BUNDLED
            student = open_model(name, "cpu")
            config, distill = student.model_config, student.payload["distill"]
            assert (config.distilled_steps, config.prediction, config.weight_input) == (steps, "v", weight), name
            assert config.conditional == (labels is not None) and student.guide is None  # one call a step
            assert distill["origin"] == origin and distill["steps"] == steps
            assert distill["weight_min"] <= default_weight <= distill["weight_max"]
            calls = []
            hook = student.model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
            x = sample(student.model, student.schedule, 2, labels=labels, seed=0)
            hook.remove()
            assert calls == [2] * steps and torch.isfinite(x).all()
