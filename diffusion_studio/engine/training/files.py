"""A training run's files: best.pt, last.pt and history.json, each written atomically, by one
process only (rank 0 under torchrun).

The order is part of the promise. best.pt and history.json are written before last.pt, and
last.pt is what marks an epoch (or the run) done: a kill between two writes leaves a last.pt
that is at most as far as the others, so a resume redoes the missing epoch instead of finding
the run finished with its best weights lost; and on a nearly full disk the smaller best.pt is
kept first.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..storage.atomic import write_json_atomic
from ..storage.checkpoint import save_checkpoint
from .config import loss_bins
from .state import RunState

BEST, LAST, HISTORY = "best.pt", "last.pt", "history.json"


def history_document(state: RunState, model: dict, schedule: dict, train: dict, timesteps: int,
                     meta: dict) -> dict:
    """history.json: the per-epoch records and what the Runs panel lists a run by; a run's early
    estimate of the validation loss (``Trainer.early_validation``) apart from its epochs, so that
    what reads the epochs (best epoch, curves, resume) never takes it for one."""
    early = state.history.get("early_validation")
    return {
        "epochs": state.history["epochs"],
        **({"early_validation": early} if early else {}),
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val_loss if math.isfinite(state.best_val_loss) else None,
        "finished_reason": state.finished_reason,
        "loss_bins": loss_bins(timesteps),
        "train_seconds": state.train_seconds,
        "model": model,
        "schedule": schedule,
        "train": train,
        **({"meta": meta} if meta else {}),
    }


class RunFiles:
    """Writes a run's files in ``run_dir`` (nothing when it is None or this is not rank 0)."""

    def __init__(self, run_dir: str | Path | None, rank: int = 0) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.active = self.run_dir is not None and rank == 0

    def save(self, name: str, payload: dict) -> None:
        if self.active:
            save_checkpoint(self.run_dir / name, payload)

    def write(self, *, best: dict | None = None, history: dict | None = None, last: dict | None = None) -> None:
        """Write what is given in the safe order: best.pt, history.json, then last.pt."""
        if not self.active:
            return
        if best is not None:
            self.save(BEST, best)
        if history is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.run_dir / HISTORY, history)
        if last is not None:
            self.save(LAST, last)
