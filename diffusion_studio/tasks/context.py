"""The one stop/progress convention every task follows (Orange3's ``state`` object).

A task function takes its request and a ``TaskContext``. It checks ``should_stop()``
between steps (or calls ``check()``, which raises ``engine.stopping.Stopped``), reports
how far it is with ``progress(stage, done, total)`` and hands over partial results with
``partial(obj)``. The CLI builds a context whose stop event its signal handler sets and
whose progress draws a terminal bar; the GUI's worker builds one whose callbacks become
throttled Qt signals. Nothing here knows which front end runs it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from ..engine.stopping import Stopped

ProgressFn = Callable[[str, int, int], None]
PartialFn = Callable[[object], None]


@dataclass
class TaskContext:
    """How a running task talks to whoever started it.

    stop_event: set from any thread to ask the task to stop at its next check.
    on_progress(stage, done, total): how far the task is ("sampling", 120, 300).
    on_partial(obj): a partial result (a frame of the reverse process, a training record).
    """

    stop_event: threading.Event = field(default_factory=threading.Event)
    on_progress: ProgressFn | None = None
    on_partial: PartialFn | None = None

    def should_stop(self) -> bool:
        return self.stop_event.is_set()

    def check(self) -> None:
        """Raise ``Stopped`` when a stop was asked for."""
        if self.stop_event.is_set():
            raise Stopped()

    def progress(self, stage: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(stage, int(done), int(total))

    def partial(self, obj) -> None:
        if self.on_partial is not None:
            self.on_partial(obj)


def context_or_default(ctx: TaskContext | None) -> TaskContext:
    """``ctx``, or a context nobody stops and nobody listens to."""
    return ctx if ctx is not None else TaskContext()
