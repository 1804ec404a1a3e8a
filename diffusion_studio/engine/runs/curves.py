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
    errors: list[str] = []
    epochs, bins = _history_epochs(path, errors)
    steps, epochs = _checkpoint_steps(path, epochs, errors)
    if not epochs and not steps and errors:
        raise RunError(f"cannot read the curves of {path.name}: " + "; ".join(errors))
    curves = _step_curves(steps, path.name)
    curves.update(_epoch_curves(epochs, curves["step"], curves["step_epoch"], path.name))
    return {**curves, **_loss_by_t(epochs, bins, path.name)}


def _history_epochs(path: Path, errors: list[str]) -> tuple[list[dict], list]:
    """history.json's epoch records and loss-bin edges ([], [] when it is missing or unreadable:
    then the reason is appended to ``errors``)."""
    hf = path / HISTORY_FILE
    if not hf.is_file():
        return [], []
    try:
        h = json.loads(hf.read_text(encoding="utf-8"))
        epochs = [e for e in h.get("epochs", []) if isinstance(e, dict)]
        bins = h.get("loss_bins") if isinstance(h.get("loss_bins"), list) else []
    except (OSError, ValueError, AttributeError) as exc:
        errors.append(f"{HISTORY_FILE}: {exc}")
        return [], []
    return epochs, bins


def _checkpoint_steps(path: Path, epochs: list[dict], errors: list[str]) -> tuple[dict, list[dict]]:
    """The per-step records of the first readable checkpoint (last.pt, else best.pt) as
    {"global_step", "epoch", "loss", "time"} lists, and its epoch records when it holds more
    than ``epochs`` (a history.json behind the checkpoint). Unreadable ones go to ``errors``."""
    from ..storage.checkpoint import CheckpointError, load_checkpoint

    steps: dict = {}
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
    return steps, epochs


def _floats(values, name: str) -> np.ndarray:
    """values as float64 (None -> NaN); RunError naming the run ``name`` when one is not a number."""
    try:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError) as exc:  # e.g. "val_loss": "abc" in a hand-edited history.json
        raise RunError(f"cannot read the curves of {name}: a loss or time in its {HISTORY_FILE} or "
                       f"checkpoint is not a number ({exc})") from None


def _step_curves(steps: dict, name: str) -> dict[str, np.ndarray]:
    """step, step_epoch, step_time, train_loss (N,): a column of another length than the
    losses counts as missing (steps 1..N, else NaN)."""
    n = len(steps.get("loss", []) or [])

    def column(key: str, missing: np.ndarray) -> np.ndarray:
        return _floats(steps.get(key, []), name) if len(steps.get(key, []) or []) == n else missing

    return {
        "step": column("global_step", np.arange(1.0, n + 1)),
        "step_epoch": column("epoch", np.full(n, np.nan)),
        "step_time": column("time", np.full(n, np.nan)),
        "train_loss": _floats(steps.get("loss", []) or [], name),
    }


def _epoch_curves(epochs: list[dict], step: np.ndarray, step_epoch: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """epoch, epoch_step, epoch_time, val_loss, epoch_train_loss (E,); epoch_step is read off
    the per-step curves (NaN without them)."""
    epoch = _floats([e.get("epoch") for e in epochs], name)
    val = _floats([e.get("val_loss") for e in epochs], name)
    val[~np.isfinite(val)] = np.nan
    etime = _floats([e.get("time") for e in epochs], name)
    if np.isnan(etime).any() and epochs:  # older histories: cumulative seconds
        etime = np.cumsum(_floats([e.get("seconds", 0.0) for e in epochs], name))
    if len(step) and np.isfinite(step_epoch).any():
        ok = np.isfinite(step_epoch)
        epoch_step = np.interp(epoch, step_epoch[ok], step[ok], left=np.nan, right=np.nan)
    else:
        epoch_step = np.full(len(epochs), np.nan)
    return {
        "epoch": epoch,
        "epoch_step": epoch_step,
        "epoch_time": etime,
        "val_loss": val,
        "epoch_train_loss": _floats([e.get("train_loss") for e in epochs], name),
    }


def _loss_by_t(epochs: list[dict], bins: list, name: str) -> dict[str, np.ndarray]:
    """t_centre (B,) and val_loss_by_t (B,): the last validation's loss per t bin (empty when the run
    has none, e.g. one trained before this was recorded)."""
    last = next((e.get("val_loss_by_t") for e in reversed(epochs) if isinstance(e.get("val_loss_by_t"), list)), None)
    if not last or len(bins) != len(last) + 1:
        return {"t_centre": np.zeros(0), "val_loss_by_t": np.zeros(0)}
    edges = _floats(bins, name)
    return {"t_centre": (edges[:-1] + edges[1:] - 1) / 2, "val_loss_by_t": _floats(last, name)}


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
