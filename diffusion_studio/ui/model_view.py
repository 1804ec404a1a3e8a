"""What the network believes at a given t, computed off the GUI thread.

``PredictionService`` runs each request (``tasks.explore.model_view``) as a ``TaskWorker``
on a ``LatestRunner``: the noise panel posts the newest (digits, noise, t) on every slider
move, and a request that has not started when a newer one arrives is dropped, so dragging
never queues up work and the slider stays smooth. The worker holds the model and tensors
only; its result comes back by a queued signal into the GUI thread.
"""

from __future__ import annotations

import torch
from PySide6.QtCore import QObject, Signal, Slot

from ..tasks.explore import ModelViewRequest, model_view
from .workers import LatestRunner, TaskWorker


class PredictionService(QObject):
    """Runs ``tasks.explore.model_view`` for the newest request in a background thread.

    request(loaded, x0, noise, t): post a request (returns at once); an earlier one
        that has not started is replaced. x0, noise: (K, 1, 28, 28); t in 1..T.
    shutdown(timeout_s): stop and wait for the running request.
    Signals: ready(dict) with model_view's result; failed(str), one line.
    ``computed``: requests run (the others were dropped as stale).
    """

    ready = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.jobs = LatestRunner(self)
        self.computed = 0

    def request(self, loaded, x0: torch.Tensor, noise: torch.Tensor, t: int) -> None:
        self.post(loaded, ModelViewRequest(x0, noise, int(t)))

    def post(self, loaded, request: ModelViewRequest) -> None:
        """Compute ``tasks.explore.model_view(loaded, request)``; the newest request wins."""
        self.jobs.post(lambda: self._worker(loaded, request))

    def _worker(self, loaded, request: ModelViewRequest) -> TaskWorker:
        worker = TaskWorker(lambda ctx: model_view(loaded, request), "the model's view", thread_name="model-view",
                            request=request)
        worker.finished.connect(self._on_ready)  # bound methods of this GUI-thread object: queued
        worker.failed.connect(self.failed)
        return worker

    @Slot(object)
    def _on_ready(self, result: dict) -> None:
        self.computed += 1
        self.ready.emit(result)

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        return self.jobs.stop_and_wait(int(timeout_s * 1000))
