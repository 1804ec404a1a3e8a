"""What the network believes at a given t, computed off the GUI thread.

``PredictionService`` runs each request as a ``TaskWorker`` on a ``LatestRunner``: the
noise panel posts the newest (digits, noise, t) on every slider move, and a request
that has not started when a newer one arrives is dropped, so dragging never queues up
work and the slider stays smooth. The worker holds the model and tensors only; its
result comes back by a queued signal into the GUI thread.
"""

from __future__ import annotations

import torch
from PySide6.QtCore import QObject, Signal, Slot

from ..engine.storage.data import to_uint8
from .workers import LatestRunner, TaskWorker

#: error maps: |eps_theta - eps| of 0 is black, ERROR_FULL_SCALE or more is white
ERROR_FULL_SCALE = 2.0


def predict_at(loaded, x0: torch.Tensor, noise: torch.Tensor, t: int) -> dict:
    """The network's view of x_t = q_sample(x0, t, noise) under the model's own schedule.

    x0, noise: (K, 1, 28, 28) float, x0 in [-1, 1]. Returns {"t", "x0_pred": (K, 28, 28)
    uint8, "error": (K, 28, 28) uint8 map of |eps_theta - eps|, "mse": (K,) float, the
    mean squared error of the predicted eps per digit}.
    """
    schedule = loaded.schedule
    tt = torch.full((len(x0),), int(t), dtype=torch.long)
    device = torch.device(loaded.device)
    with torch.inference_mode():
        x_t = schedule.q_sample(x0, tt, noise).to(device)
        eps = loaded.model(x_t.contiguous(memory_format=torch.channels_last), tt.to(device)).float().cpu()
    x0_pred = schedule.predict_x0(x_t.cpu(), tt, eps)
    err = (eps - noise).abs()
    mse = (eps - noise).pow(2).mean(dim=(1, 2, 3))
    err_map = (err[:, 0].clamp(0, ERROR_FULL_SCALE) / ERROR_FULL_SCALE * 255).round().to(torch.uint8).numpy()
    return {"t": int(t), "x0_pred": to_uint8(x0_pred).numpy(), "error": err_map, "mse": mse.numpy().astype(float)}


class PredictionService(QObject):
    """Runs ``predict_at`` for the newest request in a background thread.

    request(loaded, x0, noise, t): post a request (returns at once); an earlier one
        that has not started is replaced.
    shutdown(timeout_s): stop and wait for the running request.
    Signals: ready(dict) with predict_at's result; failed(str), one line.
    ``computed``: requests run (the others were dropped as stale).
    """

    ready = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.jobs = LatestRunner(self)
        self.computed = 0

    def request(self, loaded, x0: torch.Tensor, noise: torch.Tensor, t: int) -> None:
        t = int(t)
        self.jobs.post(lambda: self._worker(loaded, x0, noise, t))

    def _worker(self, loaded, x0, noise, t) -> TaskWorker:
        worker = TaskWorker(lambda should_stop, report: predict_at(loaded, x0, noise, t), "the model's view",
                            thread_name="model-view")
        worker.finished.connect(self._on_ready)  # bound methods of this GUI-thread object: queued
        worker.failed.connect(self._on_failed)
        return worker

    @Slot(object)
    def _on_ready(self, result: dict) -> None:
        self.computed += 1
        self.ready.emit(result)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.failed.emit(message)

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        return self.jobs.stop_and_wait(int(timeout_s * 1000))
