"""Stopping on request: the one exception every cancellable engine job raises.

Long engine functions take a ``should_stop()`` callback and raise a subclass of
``Stopped`` when it returns True (``sample.SamplingStopped``,
``metrics.EvaluationStopped``). A front end catches ``Stopped`` once, whatever the
job, and reports "cancelled" rather than "failed". Torch-free.
"""

from __future__ import annotations


class Stopped(Exception):
    """The caller's should_stop() returned True: the work ended early, as asked."""
