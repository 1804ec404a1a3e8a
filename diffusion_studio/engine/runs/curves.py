"""A run's curves for plots: per-step and per-epoch losses and the validation loss by timestep."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np


from ._common import HISTORY_FILE, RunError
from .catalogue import RunInfo, _check_checkpoint_file


def load_curves(run: RunInfo | str | os.PathLike) -> dict[str, np.ndarray]:
    """The run's loss curves as float64 numpy arrays.

    Per optimiser step (N,), from last.pt (else best.pt):
        step        global step 1..N
        step_epoch  fractional epoch (epoch - 1 + step/steps_per_epoch)
        step_time   training seconds so far (wall time, excluding pauses)
        train_loss  the batch loss ||eps - eps_theta||^2
    Per epoch (E,), from history.json (else the checkpoint):
        epoch       1..E
        epoch_step  global step at the end of the epoch (NaN if unknown)
        epoch_time  training seconds at the end of the epoch
        val_loss    validation loss (NaN where it was not finite)
        epoch_train_loss  mean training loss of the epoch
    Per t bin (B,), the last validation's: t_centre, val_loss_by_t (``engine.train.loss_bins``).

    Missing parts are empty arrays. Raises RunError when nothing can be read.
    """
    path = run.path if isinstance(run, RunInfo) else Path(run)
    epochs: list[dict] = []
    steps: dict = {}
    errors = []
    bins: list = []
    hf = path / HISTORY_FILE
    if hf.is_file():
        try:
            h = json.loads(hf.read_text(encoding="utf-8"))
            epochs = [e for e in h.get("epochs", []) if isinstance(e, dict)]
            bins = h.get("loss_bins") if isinstance(h.get("loss_bins"), list) else []
        except (OSError, ValueError, AttributeError) as exc:
            errors.append(f"{HISTORY_FILE}: {exc}")
    from ..storage.checkpoint import CheckpointError, load_checkpoint

    for name in ("last.pt", "best.pt"):
        f = path / name
        if not f.exists():
            continue
        why = _check_checkpoint_file(f)
        if why:
            errors.append(why)
            continue
        try:
            payload = load_checkpoint(f)
        except CheckpointError as exc:
            errors.append(str(exc))
            continue
        ph = payload.get("history") or {}
        s = ph.get("steps")
        if isinstance(s, dict) and s.get("loss"):
            steps = s
        elif isinstance(s, list) and s:  # an older layout: list of records
            steps = {k: [r.get(k) for r in s if isinstance(r, dict)] for k in ("global_step", "epoch", "loss", "time")}
        pe = [e for e in ph.get("epochs", []) if isinstance(e, dict)]
        if len(pe) > len(epochs):
            epochs = pe
        break
    if not epochs and not steps and errors:
        raise RunError(f"cannot read the curves of {path.name}: " + "; ".join(errors))

    def arr(values) -> np.ndarray:
        try:
            return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        except (TypeError, ValueError) as exc:  # e.g. "val_loss": "abc" in a hand-edited history.json
            raise RunError(f"cannot read the curves of {path.name}: a loss or time in its {HISTORY_FILE} or "
                           f"checkpoint is not a number ({exc})") from None

    n = len(steps.get("loss", []) or [])
    step = arr(steps.get("global_step", [])) if len(steps.get("global_step", []) or []) == n else np.arange(1.0, n + 1)
    step_epoch = arr(steps.get("epoch", [])) if len(steps.get("epoch", []) or []) == n else np.full(n, np.nan)
    step_time = arr(steps.get("time", [])) if len(steps.get("time", []) or []) == n else np.full(n, np.nan)
    train_loss = arr(steps.get("loss", []) or [])
    epoch = arr([e.get("epoch") for e in epochs])
    val = arr([e.get("val_loss") for e in epochs])
    val[~np.isfinite(val)] = np.nan
    etime = arr([e.get("time") for e in epochs])
    if np.isnan(etime).any() and epochs:  # older histories: cumulative seconds
        etime = np.cumsum(arr([e.get("seconds", 0.0) for e in epochs]))
    if n and np.isfinite(step_epoch).any():
        ok = np.isfinite(step_epoch)
        epoch_step = np.interp(epoch, step_epoch[ok], step[ok], left=np.nan, right=np.nan)
    else:
        epoch_step = np.full(len(epochs), np.nan)
    return {
        "step": step,
        "step_epoch": step_epoch,
        "step_time": step_time,
        "train_loss": train_loss,
        "epoch": epoch,
        "epoch_step": epoch_step,
        "epoch_time": etime,
        "val_loss": val,
        "epoch_train_loss": arr([e.get("train_loss") for e in epochs]),
        **_loss_by_t(epochs, bins, arr),
    }


def _loss_by_t(epochs: list[dict], bins: list, arr) -> dict[str, np.ndarray]:
    """t_centre (B,) and val_loss_by_t (B,): the last validation's loss per t bin (empty when the run
    has none, e.g. one trained before this was recorded)."""
    last = next((e.get("val_loss_by_t") for e in reversed(epochs) if isinstance(e.get("val_loss_by_t"), list)), None)
    if not last or len(bins) != len(last) + 1:
        return {"t_centre": np.zeros(0), "val_loss_by_t": np.zeros(0)}
    edges = arr(bins)
    return {"t_centre": (edges[:-1] + edges[1:] - 1) / 2, "val_loss_by_t": arr(last)}


X_AXES = {"step": ("step", "epoch_step"), "epoch": ("step_epoch", "epoch"), "wall time": ("step_time", "epoch_time")}
"""x axis name -> (key of the per-step x values, key of the per-epoch x values) in ``load_curves``."""


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style smoothing: a debiased exponential moving average.

    values: (N,) floats (NaNs are skipped, kept as NaN); weight in [0, 1): 0 = none."""
    values = np.asarray(values, dtype=np.float64)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must lie in [0, 1), got {weight}")
    if weight == 0 or values.size == 0:
        return values.copy()
    out = np.empty_like(values)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values):
        if not math.isfinite(v):
            out[i] = np.nan
            continue
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out
