"""Where a training run stands: its position, its best weights, early stopping's count, its
history and its time. What last.pt keeps of it is what a resume continues from exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def empty_history() -> dict:
    """{"epochs": [per-epoch records], "steps": {"global_step", "epoch", "loss", "time": [...]}}"""
    return {"epochs": [], "steps": {"global_step": [], "epoch": [], "loss": [], "time": []}}


@dataclass
class RunState:
    """The run's position and record.

    epoch: completed epochs; step_in_epoch: completed steps of the next one; partial_loss_sum:
    their summed per-image loss; global_step: optimiser steps in all; warmup_origin: the step a
    fresh Adam's warm-up counts from; best_*: the best validation so far and its weights
    ({"weights", "ema_weights"}); baseline_pending: a continued run still owes the validation
    of the weights it brought.
    """

    epoch: int = 0
    step_in_epoch: int = 0
    partial_loss_sum: float = 0.0
    global_step: int = 0
    warmup_origin: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    best_state: dict | None = None
    epochs_without_improvement: int = 0
    baseline_pending: bool = False
    history: dict = field(default_factory=empty_history)
    finished_reason: str | None = None
    train_seconds: float = 0.0

    def log_step(self, epoch_position: float, loss: float, seconds: float) -> None:
        """One optimiser step: ``epoch_position`` in epochs (2.5: half-way through the third)."""
        h = self.history["steps"]
        h["global_step"].append(self.global_step)
        h["epoch"].append(epoch_position)
        h["loss"].append(loss)
        h["time"].append(seconds)

    def improve(self, val_loss: float, epoch: int, snapshot) -> bool:
        """Keep ``snapshot()`` as the best weights when ``val_loss`` beats the best so far."""
        improved = math.isfinite(val_loss) and val_loss < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_epoch = val_loss, epoch
            self.best_state = snapshot()
        return improved

    def end_epoch(self, epoch: int) -> None:
        """``epoch`` is complete: the position moves to the start of the next one."""
        self.epoch, self.step_in_epoch, self.partial_loss_sum = epoch, 0, 0.0

    def checkpoint_fields(self) -> dict:
        """What every checkpoint of the run records about it."""
        return {"epoch": self.epoch, "history": self.history,
                "best": {"epoch": self.best_epoch, "val_loss": self.best_val_loss}}

    def resume_fields(self) -> dict:
        """What last.pt adds so a resume continues exactly."""
        return {"position": {"epoch": self.epoch, "step": self.step_in_epoch},
                "partial_loss_sum": self.partial_loss_sum, "global_step": self.global_step,
                "warmup_origin": self.warmup_origin, "baseline_pending": self.baseline_pending,
                "epochs_without_improvement": self.epochs_without_improvement, "best_weights": self.best_state}

    @classmethod
    def from_payload(cls, p: dict, steps_per_epoch: int, *, baseline_pending: bool = False) -> "RunState":
        """The state a checkpoint records: a run's last.pt (exact), or a best.pt or an export
        (no position within an epoch, no optimizer: the warm-up starts again from its step)."""
        epoch = int(p.get("epoch", 0))
        history = p.get("history") or empty_history()
        # an export keeps no step counter: its history's last step, else whole epochs of this batch size
        logged = (history.get("steps") or {}).get("global_step") or []
        global_step = int(p.get("global_step", logged[-1] if logged else epoch * steps_per_epoch))
        best = p.get("best") or {}
        return cls(
            epoch=epoch,
            step_in_epoch=int((p.get("position") or {}).get("step", 0)),
            partial_loss_sum=float(p.get("partial_loss_sum", 0.0)),
            global_step=global_step,
            # Adam restarting from zero moments warms up again, from this step
            warmup_origin=int(p.get("warmup_origin", 0 if p.get("optimizer") is not None else global_step)),
            best_val_loss=float(best.get("val_loss", math.inf)),
            best_epoch=int(best.get("epoch", 0)),
            best_state=p.get("best_weights"),
            epochs_without_improvement=int(p.get("epochs_without_improvement", 0)),
            # a continued run stopped before its baseline validation still owes it
            baseline_pending=baseline_pending or bool(p.get("baseline_pending", False)),
            history=history,
            train_seconds=float((p.get("meta") or {}).get("train_seconds", 0.0)),
        )
