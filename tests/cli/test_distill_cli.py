"""``diffusion-studio distill``: rounds as runs from the command line, one-line refusals."""

from __future__ import annotations

import pytest

from diffusion_studio.cli import main


@pytest.fixture(scope="module")
def teachers(tiny_data, tmp_path_factory):
    """A class-conditional run and an unconditional one without a guide (T = 20, one epoch each)."""
    from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
    from diffusion_studio.engine.diffusion.unet import UNetConfig
    from diffusion_studio.engine.training.config import TrainConfig
    from diffusion_studio.engine.training.plan import plan_new
    from diffusion_studio.engine.training.trainer import Trainer

    root = tmp_path_factory.mktemp("teachers")
    out = {}
    for name, classes in (("cond", 10), ("uncond", 0)):
        model = UNetConfig(arch="res", level_channels=(8, 16, 16), level_blocks=(1, 1, 1), norm_groups=4,
                           num_classes=classes)
        train = TrainConfig(epochs=1, batch_size=16, precision="fp32", bn_recalibration=0)
        for _ in Trainer(plan_new(model, ScheduleConfig(timesteps=20), train), tiny_data, device="cpu",
                         run_dir=root / name).run():
            pass
        out[name] = root / name
    return out


def _args(teacher, out, mnist, *extra):
    return ["distill", "--teacher", str(teacher), "--out", str(out), "--data", str(mnist), "--epochs", "1",
            "--batch-size", "16", "--precision", "fp32", "--device", "cpu", *extra]


def test_distill_runs_every_round_writes_the_strip_and_goes_on_where_it_stopped(teachers, tiny_mnist, tmp_path,
                                                                                capsys):
    out = tmp_path / "d"
    strip = tmp_path / "rounds.png"
    assert main(_args(teachers["cond"], out, tiny_mnist, "--steps", "2", "--start-steps", "4",
                      "--strip", str(strip))) == 0
    printed = capsys.readouterr()
    assert "round 1/2 (fold the guidance in, 4 steps): starting" in printed.out
    assert "round 2/2 (4 steps -> 2): starting" in printed.out
    assert (out / "guidance-4" / "best.pt").is_file() and (out / "steps-2" / "best.pt").is_file()
    from PIL import Image

    assert Image.open(strip).size[0] > 2 * 28
    assert main(_args(teachers["cond"], out, tiny_mnist, "--steps", "1", "--start-steps", "4")) == 0
    printed = capsys.readouterr().out
    assert "round 1/3 (fold the guidance in, 4 steps): done" in printed and "round 2/3 (4 steps -> 2): done" in printed
    assert "round 3/3 (2 steps -> 1): starting" in printed
    assert (out / "rounds.png").is_file()  # the default strip goes into the distillation folder
    # a student samples from the command line like any model
    png = tmp_path / "one-step.png"
    assert main(["sample", "--checkpoint", str(out / "steps-1"), "--n", "4", "--out", str(png),
                 "--device", "cpu"]) == 0
    assert png.is_file()


def test_distill_can_skip_a_student_and_refuses_to_mix_its_rounds_with_a_halving(teachers, tiny_mnist, tmp_path,
                                                                                capsys):
    from diffusion_studio.engine.storage.checkpoint import load_checkpoint

    out = tmp_path / "d"
    assert main(_args(teachers["cond"], out, tiny_mnist, "--steps", "1", "--start-steps", "4", "--skip", "2")) == 0
    printed = capsys.readouterr().out
    assert "round 2/2 (4 steps -> 1): starting" in printed and not (out / "steps-2").exists()
    made = load_checkpoint(out / "steps-1" / "best.pt")["distill"]
    assert (made["steps"], made["factor"], made["teacher"]) == (1, 4, "guidance-4")
    # the same folder asked for with every halving: its 1-step round learnt from another teacher
    assert main(_args(teachers["cond"], out, tiny_mnist, "--steps", "1", "--start-steps", "4")) == 2
    err = capsys.readouterr().err.strip()
    assert "learnt from a 4-step teacher" in err and "\n" not in err
    assert not (out / "steps-2").exists()  # refused before anything ran


@pytest.mark.parametrize("extra, words", [
    (["--steps", "3", "--start-steps", "16"], "power of 2"),
    (["--skip", "eight"], "whole numbers separated by commas"),
    (["--start-steps", "16", "--skip", "4"], "only the students between the start and the last can be skipped (8)"),
    (["--round-minutes", "ten"], "numbers separated by commas"),
    (["--round-minutes", "5,5"], "one time budget for all rounds or one per round"),
    (["--weights", "0.5"], "two numbers"),
])
def test_distill_refuses_bad_input_in_one_line(teachers, tiny_mnist, tmp_path, capsys, extra, words):
    assert main(_args(teachers["cond"], tmp_path / "d", tiny_mnist, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err
    assert not (tmp_path / "d").exists()  # nothing written


def test_distill_refuses_a_teacher_without_guidance(teachers, tiny_mnist, tmp_path, capsys):
    assert main(_args(teachers["uncond"], tmp_path / "d", tiny_mnist)) == 2
    err = capsys.readouterr().err.strip()
    assert "no guidance to fold in" in err and "\n" not in err
