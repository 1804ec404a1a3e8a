"""Terminal progress through tqdm (on stderr, drawn only on a terminal)."""

from __future__ import annotations

import sys


def progress_bar(total: int, desc: str):
    """A tqdm bar of ``total`` steps; ``advance_to(bar, done)`` moves it to an absolute count.
    Not drawn when stderr is not a terminal (logs, CI, pipes)."""
    from tqdm import tqdm

    return tqdm(total=max(1, int(total)), desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=None, mininterval=0.1)


def advance_to(bar, done: int) -> None:
    """Move ``bar`` to ``done`` steps (the engine reports counts, tqdm takes increments)."""
    if done > bar.n:
        bar.update(done - bar.n)
