"""Text for people, in one place: durations and one-line error messages.

Torch-free, so the CLI's ``--help`` and the GUI can import it at no cost.
"""

from __future__ import annotations

import math


def format_duration(seconds: float | None, *, words: bool = False) -> str:
    """A duration for people ("" when unknown).

    Clock style (tables, the terminal): "0:12", "4:05", "1:02:05".
    Words (the GUI's status lines): "12 s", "4 min 05 s", "1 h 02 min".
    """
    if seconds is None or not math.isfinite(seconds):
        return ""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if words:
        if s < 60:
            return f"{s} s"
        return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s"
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def guided_above(min_t: int | None) -> str:
    """The autoguidance interval for people: " above t = 50", or "" when every step is guided
    (``SamplerConfig.autoguidance_min_t`` 0 or unrecorded)."""
    return f" above t = {min_t}" if min_t else ""


def resuming_at(epoch: int, lr: float) -> str:
    """Where a resumed training starts, for people: "resuming at epoch 50, lr 0.00051".

    ``epoch`` counts from 1 (the first epoch still to run); ``lr`` is the rate its first
    step uses (``Trainer.next_lr()``), where the cosine's warm restart begins.
    """
    return f"resuming {_at(epoch, lr)}"


def _at(epoch: int, lr: float) -> str:
    return f"at epoch {epoch}, lr {lr:.2g}"


def continuing_from(source: str, epochs: float, epoch: int, lr: float) -> str:
    """Where a run that continues a checkpoint starts, for people: "continuing default.pt
    (67.2 epochs) at epoch 68, lr 2.5e-06" (``resuming_at``'s epoch and rate; a fresh Adam's
    first rate is the warm-up's first step)."""
    return f"continuing {source} ({epochs:.3g} epochs) {_at(epoch, lr)}"


def baseline_validated(val_loss: float, seconds: float | None) -> str:
    """What a continued run's first validation found, for people: "the weights it continues
    from: validation 0.02069 (1 min 12 s), the loss to beat" (``engine.train.BaselineRecord``)."""
    took = format_duration(seconds, words=True)
    return f"the weights it continues from: validation {val_loss:.5f}{f' ({took})' if took else ''}, the loss to beat"


def first_line(error: BaseException | str) -> str:
    """The first non-empty line of an error's message, or its type's name when it has none:
    what a status line or a one-line CLI error shows (never a traceback)."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0].strip()
    return type(error).__name__ if isinstance(error, BaseException) else ""
