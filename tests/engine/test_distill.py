"""Distillation: the trailing grid, v-prediction, the weight input, the round's targets and the
rounds as runs (engine.training.distill, tasks.distill)."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import torch

from diffusion_studio.engine.diffusion.guidance import eps_from_output, guided_eps
from diffusion_studio.engine.diffusion.schedule import NoiseSchedule, ScheduleConfig
from diffusion_studio.engine.diffusion.sampling import sample, sampler_for
from diffusion_studio.engine.diffusion.scheduling import SamplerConfig, reverse_timesteps, trailing_timesteps
from diffusion_studio.engine.diffusion.unet import UNetConfig, build_model
from diffusion_studio.engine.training.config import TrainConfig
from diffusion_studio.engine.training.distill import (
    DistillConfig, Distiller, check_teacher, load_initial_weights, student_config, teacher_entry,
)

TINY = UNetConfig(arch="res", level_channels=(8, 16, 16), level_blocks=(1, 1, 1), norm_groups=4, num_classes=10)


def _network(config: UNetConfig, seed: int = 0):
    torch.manual_seed(seed)
    net = build_model(config)
    with torch.no_grad():  # the last convolutions start at zero: give every layer a say
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def _payload(net, schedule: ScheduleConfig) -> dict:
    return {"model": net.config.to_dict(), "schedule": schedule.to_dict(), "weights": net.state_dict()}


# ------------------------------------------------------------------ the grid
@pytest.mark.parametrize("T", [300, 20, 7])
@pytest.mark.parametrize("factor", [2, 4])
def test_a_grid_divided_by_a_factor_keeps_every_factorth_timestep(T, factor):
    for steps in (1, 2, 3, 4, 8, 16):
        if factor * steps > T:
            continue
        coarse, fine = trailing_timesteps(T, steps), trailing_timesteps(T, factor * steps)
        assert coarse[0] == T and fine[0] == T
        assert fine[::factor] == coarse
        assert len(set(fine)) == factor * steps and fine == sorted(fine, reverse=True) and fine[-1] >= 1


def test_trailing_grid_values_and_a_start_below_T():
    assert trailing_timesteps(300, 1) == [300]
    assert trailing_timesteps(300, 4) == [300, 225, 150, 75]
    assert trailing_timesteps(300, 4, start=160) == [160, 150, 75]
    sampler = SamplerConfig(kind="ddim", steps=4, spacing="trailing")
    assert reverse_timesteps(sampler, 300) == [300, 225, 150, 75]
    assert "trailing" in sampler.describe(300)
    with pytest.raises(ValueError, match="spacing"):
        SamplerConfig(spacing="leading")


# ---------------------------------------------------------- v-prediction
def test_a_v_prediction_gives_back_the_noise_exactly_even_at_t_equals_T():
    schedule = NoiseSchedule(ScheduleConfig())  # x_T keeps 0.6% of the image
    net = build_model(replace(TINY, prediction="v", weight_input="guidance", distilled_steps=4))
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(4, 1, 28, 28, generator=g) * 2 - 1, torch.randn(4, 1, 28, 28, generator=g)
    t = torch.tensor([1, 100, 299, 300])
    a = schedule.sqrt_alphabar[t].view(-1, 1, 1, 1)
    s = schedule.sqrt_one_minus_alphabar[t].view(-1, 1, 1, 1)
    x_t, v = a * x0 + s * eps, a * eps - s * x0
    assert torch.allclose(eps_from_output(net, schedule, x_t, t, v), eps, atol=1e-5)
    # and the x_0 a sampler step derives from that eps is the image, at t = T too
    assert torch.allclose(schedule.predict_x0(x_t, t, eps_from_output(net, schedule, x_t, t, v)), x0, atol=2e-3)
    with pytest.raises(ValueError, match="schedule"):
        eps_from_output(net, None, x_t, t, v)


def test_unknown_prediction_or_weight_input_is_refused():
    with pytest.raises(ValueError, match="prediction"):
        replace(TINY, prediction="x0")
    with pytest.raises(ValueError, match="class-conditional"):
        replace(TINY, num_classes=0, weight_input="guidance")
    with pytest.raises(ValueError, match="distilled_steps"):
        replace(TINY, distilled_steps=-1)


# ------------------------------------------------------------ weight input
def test_a_student_starts_as_its_teachers_network_for_every_weight():
    teacher = _network(TINY)
    student = build_model(student_config(TINY, "guidance", 4)).eval()
    load_initial_weights(student, teacher.state_dict())
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([5, 150, 300]), torch.tensor([1, 2, 10])
    with torch.no_grad():
        for w in (0.0, 0.3, torch.tensor([0.0, 0.2, 0.5])):
            assert torch.equal(student(x, t, y, w), teacher(x, t, y))
        # once the weight's embedding is trained, the weight changes the output
        student.weight_mlp[-1].weight.add_(0.1)
        assert not torch.allclose(student(x, t, y, 0.0), student(x, t, y, 0.5))


def test_a_student_is_called_once_per_step_whatever_the_guidance():
    schedule = NoiseSchedule(ScheduleConfig(timesteps=20))
    student = _network(student_config(TINY, "guidance", 4))
    calls = []
    student.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    out = sample(student, schedule, 6, sampler=SamplerConfig(guidance=0.3), labels=torch.arange(6))
    assert out.shape == (6, 1, 28, 28)
    assert calls == [6, 6, 6, 6]  # four steps, one call of the batch each (the teacher makes two)
    effective = sampler_for(student, SamplerConfig(kind="ddpm", guidance=0.3))
    assert (effective.kind, effective.steps, effective.eta, effective.spacing) == ("ddim", 4, 0.0, "trailing")
    assert effective.guidance == 0.3 and effective.clips_x0


def test_a_students_weight_input_is_the_samplers_weight():
    schedule = NoiseSchedule(ScheduleConfig(timesteps=20))
    student = _network(student_config(TINY, "guidance", 4))
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([20, 20]), torch.tensor([3, 4])
    for w in (0.0, 0.4):
        with torch.no_grad():
            want = eps_from_output(student, schedule, x, t, student(x, t, y, w))
        got = guided_eps(student, x, t, y, w, 10, torch.device("cpu"), "fp32", schedule=schedule)
        assert torch.allclose(got, want, atol=1e-6)


# --------------------------------------------------------------- targets
@pytest.mark.parametrize("stage, factor", [("guidance", 1), ("halve", 2), ("halve", 4)])
def test_one_ddim_step_towards_the_target_lands_where_the_teachers_steps_land(stage, factor):
    """Salimans & Ho's target: the x_0 for which one deterministic step from z_t reaches the
    teacher's z_t'' (two steps when halving, four when a round skips a student, one when folding
    the guidance in)."""
    sc = ScheduleConfig(timesteps=20)
    schedule = NoiseSchedule(sc)
    steps = 2
    if stage == "guidance":
        teacher = _network(TINY)
        config = DistillConfig(stage, steps, "guidance", 0.0, 0.5)
    else:
        teacher = _network(student_config(TINY, "guidance", factor * steps))
        config = DistillConfig(stage, steps, "guidance", 0.0, 0.5, factor=factor)
    d = Distiller(config, teacher_entry(_payload(teacher, sc), "t"), schedule, device=torch.device("cpu"),
                  precision="fp32", memory_format=torch.contiguous_format, label_dropout=0.0)
    g = torch.Generator().manual_seed(1)
    x0, y = torch.rand(8, 1, 28, 28, generator=g) * 2 - 1, torch.arange(8) % 10
    i, z, w, y = d.draw(x0, y, g)
    v = d.target_v(z, i, y, w)
    t, t_next = d.grid[i], d.grid[i + 1]
    a, s = (tab[t].view(-1, 1, 1, 1) for tab in (schedule.sqrt_alphabar, schedule.sqrt_one_minus_alphabar))
    a2, s2 = (tab[t_next].view(-1, 1, 1, 1) for tab in (schedule.sqrt_alphabar, schedule.sqrt_one_minus_alphabar))
    x_target = a * z - s * v
    one_step = a2 * x_target + s2 * (z - a * x_target) / s  # one DDIM (eta 0) step
    # the teacher's own steps, written out: guided eps, x_0 clipped, deterministic DDIM
    zz = z
    teacher_grid = torch.tensor(trailing_timesteps(20, factor * steps) + [0])
    path = [teacher_grid[factor * i + k] for k in range(factor + 1)]
    assert torch.equal(path[0], t) and torch.equal(path[-1], t_next)
    for here, there in zip(path, path[1:]):
        eps = guided_eps(teacher, zz, here, y, w, 10, torch.device("cpu"), "fp32", schedule=schedule)
        ah = schedule.sqrt_alphabar[here].view(-1, 1, 1, 1)
        sh = schedule.sqrt_one_minus_alphabar[here].view(-1, 1, 1, 1)
        x = ((zz - sh * eps) / ah).clamp(-1, 1)
        zz = schedule.sqrt_alphabar[there].view(-1, 1, 1, 1) * x + \
            schedule.sqrt_one_minus_alphabar[there].view(-1, 1, 1, 1) * (zz - ah * x) / sh
    assert torch.allclose(one_step, zz, atol=1e-4)
    assert set(i.tolist()) <= {0, 1} and float(w.min()) >= 0 and float(w.max()) <= 0.5


def test_the_guidance_round_learns_the_guided_prediction_not_the_conditional_one():
    sc = ScheduleConfig(timesteps=20)
    teacher = _network(TINY)
    entry = teacher_entry(_payload(teacher, sc), "t")
    targets = []
    for w in (0.0, 0.5):
        d = Distiller(DistillConfig("guidance", 2, "guidance", w, w), entry, NoiseSchedule(sc),
                      device=torch.device("cpu"), precision="fp32", memory_format=torch.contiguous_format,
                      label_dropout=0.0)
        g = torch.Generator().manual_seed(3)
        i, z, ww, y = d.draw(torch.zeros(4, 1, 28, 28), torch.arange(4), g)
        targets.append(d.target_v(z, i, y, ww))
    assert not torch.allclose(targets[0], targets[1])


@pytest.mark.parametrize("loss", ["v", "eps"])
def test_the_rounds_loss_is_the_students_error_in_v_or_in_eps(loss):
    """"v": ||v - v~||^2; "eps": the same prediction and target turned into eps = sigma z + alpha v,
    whose error at high noise (alpha -> 0) hardly counts."""
    sc = ScheduleConfig(timesteps=20)
    schedule = NoiseSchedule(sc)
    teacher, student = _network(TINY), _network(student_config(TINY, "guidance", 4), seed=5)
    d = Distiller(DistillConfig("guidance", 4, "guidance", 0.0, 0.5, loss=loss),
                  teacher_entry(_payload(teacher, sc), "t"), schedule, device=torch.device("cpu"), precision="fp32",
                  memory_format=torch.contiguous_format, label_dropout=0.0)
    x0, y = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 2 - 1, torch.arange(16) % 10
    got = d.loss(student, x0, y, torch.Generator().manual_seed(7))
    i, z, w, yy = d.draw(x0, y, torch.Generator().manual_seed(7))  # the same draw, written out
    v, v_target = d.predict(student, z, i, yy, w), d.target_v(z, i, yy, w)
    if loss == "eps":
        a = schedule.sqrt_alphabar[d.grid[i]].view(-1, 1, 1, 1)
        s = schedule.sqrt_one_minus_alphabar[d.grid[i]].view(-1, 1, 1, 1)
        v, v_target = s * z + a * v, s * z + a * v_target
    assert torch.allclose(got, (v - v_target).pow(2).mean(), rtol=1e-5)
    first, last = d.loss_weights(torch.tensor([0, 3])).flatten().tolist()  # t = T, the grid's last t
    if loss == "v":
        assert first == last == 1.0
    else:
        assert first == pytest.approx(float(schedule.alphabar[d.grid[0]])) and first < last < 1.0


def test_a_rounds_loss_defaults_to_its_stages_and_older_files_read_as_v():
    assert DistillConfig.from_dict({"stage": "guidance", "steps": 16, "weight_kind": "guidance", "weight_min": 0,
                                    "weight_max": 0.5}).loss == "v"
    with pytest.raises(ValueError, match="unknown distillation loss"):
        DistillConfig("halve", 4, "guidance", 0, 1, loss="x0")


def test_a_round_refuses_a_teacher_it_cannot_learn_from():
    with pytest.raises(ValueError, match="2-step student"):
        check_teacher(DistillConfig("halve", 1, "guidance", 0, 1), TINY, False)
    with pytest.raises(ValueError, match="16-step student"):  # a round that skips the 8-step student
        check_teacher(DistillConfig("halve", 4, "guidance", 0, 1, factor=4), student_config(TINY, "guidance", 8),
                      False)
    with pytest.raises(ValueError, match="factor"):
        DistillConfig("halve", 4, "guidance", 0, 1, factor=1)
    with pytest.raises(ValueError, match="4-step student"):
        check_teacher(DistillConfig("halve", 2, "guidance", 0, 1), student_config(TINY, "guidance", 8), False)
    with pytest.raises(ValueError, match="class-conditional"):
        check_teacher(DistillConfig("guidance", 4, "guidance", 0, 1), replace(TINY, num_classes=0), False)
    with pytest.raises(ValueError, match="guide"):
        check_teacher(DistillConfig("guidance", 4, "autoguidance", 0, 1), replace(TINY, num_classes=0), False)
    with pytest.raises(ValueError, match="not from a student"):
        check_teacher(DistillConfig("guidance", 4, "guidance", 0, 1), student_config(TINY, "guidance", 8), False)
    with pytest.raises(ValueError, match="power of 2"):
        from diffusion_studio.tasks.distill import DistillRequest

        DistillRequest(teacher="default-conditional", out="x", steps=3, start_steps=16)


def test_a_skipped_student_makes_the_next_round_learn_from_the_one_before():
    from diffusion_studio.tasks.distill import DistillRequest

    rounds = DistillRequest(teacher="default-conditional", out="d", steps=1, start_steps=16, skip=(8, 2)).rounds
    assert [(r.stage, r.teacher_steps, r.steps, r.folder.name) for r in rounds] == [
        ("guidance", 16, 16, "guidance-16"), ("halve", 16, 4, "steps-4"), ("halve", 4, 1, "steps-1")]
    assert [r.factor for r in rounds[1:]] == [4, 4]
    for skip in ((16,), (1,), (3,)):
        with pytest.raises(ValueError, match="between the start and the last"):
            DistillRequest(teacher="default-conditional", out="d", steps=1, start_steps=16, skip=skip)


# --------------------------------------------------------- rounds as runs
@pytest.fixture(scope="module")
def tiny_teacher(tiny_data, tmp_path_factory):
    """A class-conditional run of one epoch on the tiny digits (T = 20)."""
    from diffusion_studio.engine.training.plan import plan_new
    from diffusion_studio.engine.training.trainer import Trainer

    run = tmp_path_factory.mktemp("teacher") / "run"
    train = TrainConfig(epochs=1, batch_size=16, precision="fp32", bn_recalibration=0, ema_decay=0.9)
    for _ in Trainer(plan_new(TINY, ScheduleConfig(timesteps=20), train), tiny_data, device="cpu",
                     run_dir=run).run():
        pass
    return run


def _request(teacher, out, **changes):
    from diffusion_studio.tasks.distill import DistillRequest, distill_train_config

    settings = dict(steps=1, start_steps=4, round_minutes=(5,), val_images=8,
                    train=distill_train_config(epochs=1, batch_size=16, precision="fp32"))
    return DistillRequest(teacher=str(teacher), out=out, **{**settings, **changes})


@pytest.mark.slow  # trains a tiny teacher and distils it: whole rounds, tens of seconds
def test_a_distillation_runs_its_rounds_as_runs_and_goes_on_where_it_stopped(tiny_teacher, tiny_data, tmp_path):
    from diffusion_studio.engine.storage.checkpoint import load_checkpoint
    from diffusion_studio.tasks.context import TaskContext
    from diffusion_studio.tasks.distill import distill, student_checkpoints
    from diffusion_studio.tasks.models import open_model
    from diffusion_studio.tasks.sample import SampleRequest, sample_images

    request = _request(tiny_teacher, tmp_path / "d")
    assert [(r.stage, r.steps, r.folder.name) for r in request.rounds] == [
        ("guidance", 4, "guidance-4"), ("halve", 2, "steps-2"), ("halve", 1, "steps-1")]
    ctx = TaskContext()
    kinds = []
    for record in distill(request, tiny_data, ctx):
        kinds.append((record.kind, getattr(record, "status", None)))
        if record.kind == "step" and len([k for k in kinds if k[0] == "round"]) == 2:
            ctx.stop_event.set()  # stop inside the second round
    assert kinds[0] == ("round", "starting") and ("finished", None) in kinds
    assert (tmp_path / "d" / "guidance-4" / "best.pt").is_file()
    assert not (tmp_path / "d" / "steps-1").exists()

    again = [(r.kind, getattr(r, "status", None)) for r in distill(request, tiny_data)]
    assert [k for k in again if k[0] == "round"] == [("round", "done"), ("round", "resuming"), ("round", "starting")]
    assert [s for s, _ in student_checkpoints(tmp_path / "d")] == [4, 2, 1]
    # the runs list shows the rounds as runs; the folder records the teacher as it was named
    from diffusion_studio.engine import runs as R
    from diffusion_studio.tasks.distill import distillation_teacher

    listed = {info.name: info for info in R.list_runs(tmp_path)}
    assert {"d/guidance-4", "d/steps-2", "d/steps-1"} <= set(listed) and "d" not in listed
    assert listed["d/steps-1"].path == tmp_path / "d" / "steps-1"
    assert distillation_teacher(tmp_path / "d") == str(tiny_teacher)
    # every round knows its steps and its teacher; its last.pt carries the teacher for a resume
    best = load_checkpoint(tmp_path / "d" / "steps-1" / "best.pt")
    assert best["distill"]["steps"] == 1 and best["distill"]["teacher"] == "steps-2"
    assert best["distill"]["loss"] == "v"  # the stages' losses (engine.defaults.DISTILL_LOSS)
    assert best["distill"]["origin"] == tiny_teacher.name  # the model the first round distilled
    assert "teacher" not in best and "teacher" in load_checkpoint(tmp_path / "d" / "steps-1" / "last.pt")
    first = load_checkpoint(tmp_path / "d" / "guidance-4" / "best.pt")
    assert first["distill"]["teacher"] == tiny_teacher.name and first["model"]["prediction"] == "v"
    assert first["distill"]["loss"] == "eps"
    # a student samples like any model, with its own one step
    student = open_model(tmp_path / "d" / "steps-1", "cpu")
    assert student.model_config.distilled_steps == 1
    result = sample_images(student, SampleRequest(n=3, sampler=SamplerConfig(guidance=0.2), precision="fp32"))
    assert result.images.shape == (3, 1, 28, 28) and torch.isfinite(result.images).all()
    from diffusion_studio.tasks.sample import describe_model_sampling

    assert describe_model_sampling(student, SamplerConfig(kind="ddpm", guidance=0.2)) == (
        f"a 1-step student distilled from {tiny_teacher.name}: its own 1 deterministic step, one network call "
        "each, guidance w = 0.2")


@pytest.mark.slow  # trains the tiny teacher
def test_the_guidance_rounds_loss_is_the_requests_and_a_bad_one_is_refused(tiny_teacher, tmp_path):
    from diffusion_studio.tasks.distill import plan_distill_round

    assert plan_distill_round(_request(tiny_teacher, tmp_path / "a"), 0).distill.loss == "eps"
    assert plan_distill_round(_request(tiny_teacher, tmp_path / "b", guidance_loss="v"), 0).distill.loss == "v"
    with pytest.raises(ValueError, match="eps or v"):
        _request(tiny_teacher, tmp_path / "c", guidance_loss="x0")


@pytest.mark.slow  # trains a tiny teacher and distils it: whole rounds, tens of seconds
def test_the_learners_strip_has_the_teacher_and_every_student_from_the_same_noise(tiny_teacher, tiny_data, tmp_path):
    from diffusion_studio.tasks.distill import distill, round_strip, student_checkpoints

    request = _request(tiny_teacher, tmp_path / "d", steps=2)
    for _ in distill(request, tiny_data):
        pass
    strip = round_strip(str(tiny_teacher), student_checkpoints(request.out), n=4, device="cpu")
    labels = [label for label, _ in strip.rows]
    assert labels == ["teacher, DDPM 20 steps (40 calls)", "teacher, DDIM 4 steps (8 calls)",
                      "student, 4 steps (4 calls)", "student, 2 steps (2 calls)"]
    picture = strip.picture(scale=1)
    assert picture.dtype.name == "uint8" and picture.shape[0] >= 4 * 28 and picture.shape[1] > 4 * 28


@pytest.mark.slow  # trains a tiny teacher and distils it: whole rounds, tens of seconds
def test_a_student_is_not_continued_as_a_training_run(tiny_teacher, tiny_data, tmp_path):
    from diffusion_studio.engine.training.plan import ResumeConflict, plan_continue
    from diffusion_studio.tasks.distill import distill

    request = _request(tiny_teacher, tmp_path / "d", steps=4)
    for _ in distill(request, tiny_data):
        pass
    with pytest.raises(ResumeConflict, match="distilled student"):
        plan_continue(tmp_path / "d" / "guidance-4")


@pytest.mark.slow  # trains a tiny teacher and distils it: whole rounds, tens of seconds
def test_a_round_whose_teacher_was_damaged_is_refused_in_one_line(tiny_teacher, tiny_data, tmp_path):
    from diffusion_studio.engine.storage.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from diffusion_studio.tasks.distill import distill

    request = _request(tiny_teacher, tmp_path / "d", steps=4)
    for _ in distill(request, tiny_data):
        pass
    last = tmp_path / "d" / "guidance-4" / "last.pt"
    payload = load_checkpoint(last)
    name = next(iter(payload["teacher"]["weights"]))
    payload["teacher"]["weights"][name] = torch.zeros(3)
    save_checkpoint(last, payload)
    with pytest.raises(CheckpointError, match="distillation teacher") as err:
        load_checkpoint(last)
    assert "\n" not in str(err.value)


@pytest.mark.slow  # trains a tiny teacher and distils it: whole rounds, tens of seconds
def test_a_stopped_event_before_the_start_stops_before_any_round(tiny_teacher, tiny_data, tmp_path):
    from diffusion_studio.tasks.context import TaskContext
    from diffusion_studio.tasks.distill import distill

    stop = threading.Event()
    stop.set()
    assert list(distill(_request(tiny_teacher, tmp_path / "d"), tiny_data, TaskContext(stop_event=stop))) == []
