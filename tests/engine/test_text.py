"""The one duration formatter and the one one-line error helper."""

import io

import pytest

from diffusion_studio.engine.text import (
    baseline_validated,
    first_line,
    format_duration,
    resuming_at,
)


@pytest.mark.parametrize("seconds, clock, words", [
    (0, "0:00", "0 s"),
    (12.4, "0:12", "12 s"),
    (245, "4:05", "4 min 05 s"),
    (3725, "1:02:05", "1 h 02 min"),
])
def test_format_duration_in_both_styles(seconds, clock, words):
    assert format_duration(seconds) == clock
    assert format_duration(seconds, words=True) == words


def test_unknown_durations_are_empty():
    assert format_duration(None) == "" and format_duration(float("nan")) == "" and format_duration(float("inf")) == ""
    assert format_duration(-5) == "0:00"  # a clock never runs backwards


def test_first_line_of_an_error():
    assert first_line(ValueError("bad value\n  at line 3\nTraceback ...")) == "bad value"
    assert first_line(ValueError("\n\n  indented first\nsecond")) == "indented first"
    assert first_line(KeyError()) == "KeyError"
    assert first_line("plain text\nmore") == "plain text"
    assert first_line("") == ""


def test_terminal_progress_moves_to_absolute_counts():
    from tqdm import tqdm

    from diffusion_studio.commands._progress import advance_to, progress_bar

    out = io.StringIO()
    bar = tqdm(total=10, file=out, disable=False, mininterval=0)
    advance_to(bar, 3)
    advance_to(bar, 3)  # a repeated count adds nothing
    advance_to(bar, 7)
    assert bar.n == 7 and "7/10" in out.getvalue()
    bar.close()
    quiet = progress_bar(5, "x")  # stderr is not a terminal under pytest: nothing is drawn
    assert quiet.disable
    quiet.close()


def test_resuming_at_names_the_epoch_and_the_restart_rate_in_two_digits():
    assert resuming_at(50, 5.1e-4) == "resuming at epoch 50, lr 0.00051"
    assert resuming_at(2, 4e-05) == "resuming at epoch 2, lr 4e-05"
    assert resuming_at(68, 0.00023962) == "resuming at epoch 68, lr 0.00024"


def test_baseline_validated_gives_the_loss_to_beat_and_how_long_it_took():
    assert baseline_validated(0.0206891, 72.4) == (
        "the weights it continues from: validation 0.02069 (1 min 12 s), the loss to beat")
    assert baseline_validated(0.5, None) == "the weights it continues from: validation 0.50000, the loss to beat"
