"""Checkpoints: one versioned file, written atomically, read with ``weights_only=True``.

A checkpoint is a plain dict of tensors and JSON-like values (so that
``torch.load(weights_only=True)`` can read it without running any code):

    format:        "diffusion-studio-checkpoint"
    version:       FORMAT_VERSION
    app_version:   the writing app's version
    kind:          "ddpm"
    model:         UNetConfig as a dict
    schedule:      ScheduleConfig as a dict
    train:         TrainConfig as a dict
    weights:       the U-Net's state_dict
    ema_weights:   the EMA copy's state_dict, or None
    optimizer:     the optimizer's state_dict, or None
    epoch:         completed epochs
    position:      {"epoch": e, "step": s} where training stopped (s = 0 at an epoch boundary)
    history:       {"epochs": [per-epoch records], "steps": [per-step records]}
    rng:           generator states for an exact resume
    seed:          the run's seed
    best:          {"epoch": e, "val_loss": v}
    guide:         optional, for autoguidance (Karras et al. 2024): a weaker network trained on
                   the same schedule, {"model": UNetConfig dict, "schedule": ScheduleConfig dict,
                   "weights": state_dict in bfloat16, "epochs_trained": e, "source": file name}
                   (``attach_guide``; sampling-only copies made by ``export_for_sampling`` keep it)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ... import __version__
from .atomic import write_serialized_atomic
from ..text import first_line

FORMAT = "diffusion-studio-checkpoint"
FORMAT_VERSION = 1
KIND = "ddpm"


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or written; the message says what to do."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same
    folder, flushed to disk, then renamed over the target. A crash or a stop
    part-way leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": FORMAT_VERSION, "app_version": __version__, "kind": KIND}
    data.update(payload)
    write_serialized_atomic(path, lambda f: torch.save(data, f))
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``.

    Refuses, with a CheckpointError that says why: a missing file, a file that
    is not a Diffusion Studio checkpoint (or is damaged), one of another kind,
    or one written by a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a readable Diffusion Studio checkpoint (it may be damaged or "
            f"from another program): {first_line(exc)}"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a Diffusion Studio checkpoint")
    version = data.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer Diffusion Studio (checkpoint format {version}, "
            f"this app reads up to {FORMAT_VERSION}); update the app to open it"
        )
    if data.get("kind") != KIND:
        raise CheckpointError(f"{path} holds a {data.get('kind')!r} model; this app reads {KIND!r} checkpoints")
    for key in ("model", "schedule", "weights"):
        if key not in data:
            raise CheckpointError(f"{path} is incomplete: it has no {key!r} entry")
    return data


def sha256_file(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# a guide's weights are stored in bfloat16: half the bytes, the range of float32, and a guide
# is a deliberately weaker network (the bundled one's guide scored the same from bf16 weights)
GUIDE_DTYPE = torch.bfloat16


def payload_epochs_trained(payload: dict) -> float:
    """The training behind a checkpoint's weights in epochs, fractional when a time budget ended
    the last one early (5.12: 12% into epoch 6); the epoch counter if there is no history."""
    epochs = (payload.get("history") or {}).get("epochs") or []
    return float(epochs[-1]["epoch"]) if epochs else float(payload.get("epoch", 0))


def attach_guide(payload: dict, guide_payload: dict, source: str) -> dict:
    """``payload`` with ``guide_payload``'s network attached as its autoguidance guide.

    The guide's weights are its EMA copy when it has one (as sampling uses), stored in
    ``GUIDE_DTYPE``. It may be smaller than the model, but it must have been trained on the
    same noise schedule and take the same labels, or its predictions mean something else:
    a CheckpointError says which differs. ``source`` names it (a file name) in the app.
    """
    for key in ("model", "schedule", "weights"):
        if key not in guide_payload:
            raise CheckpointError(f"the guide {source} is incomplete: it has no {key!r} entry")
    from ..diffusion.schedule import ScheduleConfig

    if ScheduleConfig.from_dict(guide_payload["schedule"]) != ScheduleConfig.from_dict(payload["schedule"]):
        raise CheckpointError(f"the guide {source} was trained on another noise schedule than the model; "
                              "choose a checkpoint of the same recipe")
    classes = [int((p["model"] or {}).get("num_classes", 0)) for p in (payload, guide_payload)]
    if classes[0] != classes[1]:
        raise CheckpointError(f"the guide {source} takes {classes[1] or 'no'} classes and the model "
                              f"{classes[0] or 'none'}; choose a guide conditioned like the model")
    ema = guide_payload.get("ema_weights")
    weights = ema if ema is not None else guide_payload["weights"]
    entry = {
        "model": dict(guide_payload["model"]),
        "schedule": dict(guide_payload["schedule"]),
        "weights": {k: (v.detach().to(GUIDE_DTYPE) if v.is_floating_point() else v.detach()).clone()
                    for k, v in weights.items()},
        "epochs_trained": payload_epochs_trained(guide_payload),
        "source": str(source),
    }
    return {**payload, "guide": entry}


class LoadedModel:
    """A network ready to sample from, with its schedule and the checkpoint's contents.

    model: the U-Net in eval mode on ``device``, holding the EMA weights when the
    checkpoint has them (``use_ema=True``), else the raw weights.
    guide: the checkpoint's guide network for autoguidance (``attach_guide``), in eval
    mode on ``device`` in float32, or None; ``guide_info`` says what it is.
    """

    def __init__(self, payload: dict, path: Path | None, device: torch.device, use_ema: bool = True) -> None:
        from ..diffusion.schedule import NoiseSchedule, ScheduleConfig
        from ..diffusion.unet import UNetConfig, build_model

        self.payload = payload
        self.path = path
        self.device = device
        try:
            self.model_config = UNetConfig.from_dict(payload["model"])
            self.schedule_config = ScheduleConfig.from_dict(payload["schedule"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path or 'checkpoint'} has an invalid configuration: {exc}") from exc
        self.schedule = NoiseSchedule(self.schedule_config)
        self.model = build_model(self.model_config)
        ema = payload.get("ema_weights")
        self.uses_ema = bool(use_ema and ema is not None)
        try:
            self.model.load_state_dict(ema if self.uses_ema else payload["weights"])
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path or 'checkpoint'}: the weights do not fit the network it describes ({first_line(exc)})"
            ) from exc
        # channels_last: 1.6x faster inference on a 2-core AVX2 CPU (bench/run.py
        # measured sampling in this layout; sample_steps follows the model's layout)
        self.model.to(device, memory_format=torch.channels_last).eval()
        self.guide = self._build_guide(payload.get("guide"))

    def _build_guide(self, entry):
        from ..diffusion.schedule import ScheduleConfig
        from ..diffusion.unet import UNetConfig, build_model

        if entry is None:
            return None
        where = f"{self.path or 'checkpoint'}"
        try:
            config = UNetConfig.from_dict(entry["model"])
            if ScheduleConfig.from_dict(entry["schedule"]) != self.schedule_config:
                raise ValueError("it was trained on another noise schedule than the model")
            if config.num_classes != self.model_config.num_classes:
                raise ValueError("it is conditioned unlike the model")
            guide = build_model(config)
            guide.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in entry["weights"].items()})
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(
                f"{where}: its guide network cannot be used ({first_line(exc)}); export the model again "
                "without --guide, or with a guide of the same recipe"
            ) from exc
        return guide.to(self.device, memory_format=torch.channels_last).eval()

    @property
    def guide_epochs(self) -> float | None:
        """The training behind the guide network's weights in epochs, or None without one."""
        entry = self.payload.get("guide")
        return None if self.guide is None or entry is None else float(entry.get("epochs_trained", 0))

    @property
    def guide_info(self) -> str | None:
        """One line about the guide network ("6.7 epochs, from best.pt"), or None without one."""
        entry = self.payload.get("guide")
        if self.guide is None or entry is None:
            return None
        return f"{self.guide_epochs:.3g} epochs, from {entry.get('source', 'another checkpoint')}"

    @property
    def history(self) -> dict:
        return self.payload.get("history") or {"epochs": [], "steps": {}}

    @property
    def epoch(self) -> int:
        return int(self.payload.get("epoch", 0))

    @property
    def epochs_trained(self) -> float:
        """The training behind these weights in epochs, fractional when a time budget ended the
        last one early (5.12: 12% into epoch 6); the epoch counter if there is no history."""
        return payload_epochs_trained(self.payload)

    def copy_to(self, device: str | torch.device) -> "LoadedModel":
        """A private copy on ``device``: its own networks (the model and, when it has one, its
        guide), sharing the read-only payload and schedule. For a job that must not share the
        networks with another thread (an evaluation beside the sampler), or another device."""
        import copy

        clone = copy.copy(self)
        clone.device = torch.device(device)
        clone.model = copy.deepcopy(self.model).to(clone.device)
        clone.guide = None if self.guide is None else copy.deepcopy(self.guide).to(clone.device)
        return clone


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", use_ema: bool = True) -> LoadedModel:
    """Load a checkpoint file and build its network on ``device`` (see LoadedModel)."""
    device = torch.device(device)
    payload = load_checkpoint(path, map_location="cpu")
    return LoadedModel(payload, Path(path), device, use_ema=use_ema)


# A shipped model's training curve: more points than a plot has pixels add nothing but bytes
# (22 epochs of batch 32 are 34,000 steps, about 1 MB in the file).
EXPORT_STEP_POINTS = 2000


def thin_step_history(steps: dict, max_points: int = EXPORT_STEP_POINTS) -> dict:
    """The per-step history ``{"global_step": [...], "epoch": [...], "loss": [...], "time": [...]}``
    in at most ``max_points`` points: consecutive windows of equal length, each one point with
    the window's mean loss and its last step, epoch and time (the curve a plot draws, and the
    same mean loss). A history that short already, or of another shape, is returned as it is."""
    if not isinstance(steps, dict) or not isinstance(steps.get("loss"), list):
        return steps
    n = len(steps["loss"])
    if n <= max_points or any(not isinstance(v, list) or len(v) != n for v in steps.values()):
        return steps
    width = -(-n // max_points)  # ceil: at most max_points windows
    windows = [slice(i, min(i + width, n)) for i in range(0, n, width)]
    thinned = {key: [values[w.stop - 1] for w in windows] for key, values in steps.items()}
    thinned["loss"] = [sum(steps["loss"][w]) / (w.stop - w.start) for w in windows]
    return thinned


def export_for_sampling(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write a slim copy of checkpoint ``src`` for sampling and shipping.

    Keeps the configs, the weights to sample from (the EMA copy when present,
    stored as ``weights``), the guide network if it has one, the per-epoch history (and the per-step losses, thinned
    to at most EXPORT_STEP_POINTS window means), the best epoch and the metadata;
    drops the optimizer and the generator states. The result loads with
    ``load_model`` but cannot resume.
    """
    data = load_checkpoint(src)
    ema = data.get("ema_weights")
    slim = {
        key: data[key]
        for key in ("model", "schedule", "train", "epoch", "seed", "best", "meta", "guide")
        if key in data
    }
    slim["weights"] = {k: v.clone() for k, v in (ema if ema is not None else data["weights"]).items()}
    slim["ema_weights"] = None
    history = dict(data.get("history") or {})
    if "steps" in history:
        history["steps"] = thin_step_history(history["steps"])
    slim["history"] = history
    slim["meta"] = {**(data.get("meta") or {}), "exported_from": Path(src).name, "weights_are_ema": ema is not None}
    return save_checkpoint(dst, slim)
