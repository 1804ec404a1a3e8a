"""What the network believes at a given t, computed off the GUI thread.

``PredictionService`` keeps one background thread. The noise panel posts the
newest (digits, noise, t) on every slider move; a request that has not started
when a newer one arrives is dropped, so dragging never queues up work and the
slider stays smooth. Results come back by a signal (queued into the GUI thread).
"""

from __future__ import annotations

import threading

import torch
from PySide6.QtCore import QObject, Signal

from ..engine.text import first_line
from .imaging import model_to_uint8

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
    x0_pred = schedule.predict_x0(x_t.cpu(), tt, eps).clamp(-1, 1)
    err = (eps - noise).abs()
    mse = (eps - noise).pow(2).mean(dim=(1, 2, 3))
    err_map = (err[:, 0].clamp(0, ERROR_FULL_SCALE) / ERROR_FULL_SCALE * 255).round().to(torch.uint8).numpy()
    return {"t": int(t), "x0_pred": model_to_uint8(x0_pred), "error": err_map, "mse": mse.numpy().astype(float)}


class PredictionService(QObject):
    """Runs ``predict_at`` for the newest request in a background thread.

    request(loaded, x0, noise, t): post a request (returns at once); an earlier one
        that has not started is replaced.
    shutdown(timeout_s): stop the thread (cooperatively) and wait for it.
    Signals: ready(dict) with predict_at's result; failed(str), one line.
    """

    ready = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: tuple | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.computed = 0  # requests run (the others were dropped as stale)

    def request(self, loaded, x0: torch.Tensor, noise: torch.Tensor, t: int) -> None:
        with self._cond:
            self._pending = (loaded, x0, noise, int(t))
            self._cond.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="model-view", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        from .workers import lower_thread_priority

        # the window's own thread wins the CPU while a drag asks for a new t every frame
        lower_thread_priority()
        while not self._stop.is_set():
            with self._cond:
                while self._pending is None and not self._stop.is_set():
                    self._cond.wait(0.5)
                job, self._pending = self._pending, None
            if job is None:
                continue
            try:
                result = predict_at(*job)
            except Exception as exc:  # one line for the user, never a traceback
                self.failed.emit(first_line(exc))
                continue
            self.computed += 1
            if not self._stop.is_set():
                self.ready.emit(result)

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            return not self._thread.is_alive()
        return True
