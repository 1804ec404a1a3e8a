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
    checksum:      {"sha256": hex digest of everything above} (``contents_checksum``), written by
                   ``save_checkpoint`` and verified on load; files without one (the bundled models,
                   older versions) still load
    guide:         optional, for autoguidance (Karras et al. 2024): a weaker network trained on
                   the same schedule, {"model": UNetConfig dict, "schedule": ScheduleConfig dict,
                   "weights": state_dict in bfloat16, "epochs_trained": e, "source": file name}
                   (``attach_guide``; sampling-only copies made by ``export_for_sampling`` keep it)
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
import stat
from pathlib import Path
from typing import Any, Iterator

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
    part-way leaves the previous file intact. The file carries a checksum of its
    contents (``contents_checksum``), which ``load_checkpoint`` verifies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": FORMAT_VERSION, "app_version": __version__, "kind": KIND}
    data.update({k: v for k, v in payload.items() if k != CHECKSUM_KEY})
    data[CHECKSUM_KEY] = {"sha256": contents_checksum(data)}
    write_serialized_atomic(path, lambda f: torch.save(data, f))
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``, with ``weights_only=True`` (no code in
    the file can run), and ``validate_checkpoint`` it before anything uses it.

    Refuses, with a one-line CheckpointError that names the file and says what to do: a
    missing file, a folder or a device, a file that is not a Diffusion Studio checkpoint (or
    is damaged, or holds Python objects), one of another kind or a newer format, and every
    problem ``validate_checkpoint`` finds.
    """
    path = Path(path)
    _require_regular_file(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        if isinstance(exc, pickle.UnpicklingError) and re.search(r"GLOBAL|Unsupported global", str(exc)):
            raise CheckpointError(_unpickling_message(path, exc)) from None
        reason = _torch_reason(exc)
        raise CheckpointError(
            f"{path} is not a readable Diffusion Studio checkpoint (it may be damaged or "
            f"from another program){': ' + reason if reason else ''}"
        ) from exc
    return validate_checkpoint(data, path)


def _require_regular_file(path: Path) -> None:
    """CheckpointError unless ``path`` is a regular file (never opens a FIFO or a device)."""
    try:
        mode = path.stat().st_mode  # follows links: a link to /dev/zero is a device
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist; check the path") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path} ({exc.strerror or exc}); check the path") from None
    if stat.S_ISDIR(mode):
        raise CheckpointError(f"{path} is a folder, not a checkpoint file; choose a .pt file in it")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise CheckpointError(f"{path} is {kind}, not a checkpoint file; choose a .pt file")


def _torch_reason(exc: Exception) -> str:
    """The first line of a torch.load error that says what is wrong, never PyTorch's advice
    about ``weights_only`` (the app does not load code, so it must not suggest it)."""
    advice = ("weights_only", "Weights only", "Please file an issue", "Check the documentation")
    for line in str(exc).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and not any(a in line for a in advice):
            return line
    return ""


def _unpickling_message(path: Path, exc: Exception) -> str:
    """One line for a file ``weights_only`` refused, without PyTorch's advice to switch it off."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    what = f" ({found.group(1)})" if found else ""
    return (f"{path} holds Python objects{what}, not only tensors and numbers; loading them could run "
            "code, so the app does not open it: use a checkpoint written by Diffusion Studio")


# ---------------------------------------------------------------- validation
CHECKSUM_KEY = "checksum"
# dtypes a network's floating-point weights may be stored in (a guide's are bfloat16)
WEIGHT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_DAMAGED = "the file is damaged or was altered; use another copy"


_PLAIN = (int, float, str, bool, type(None))


def contents_checksum(data: dict) -> str:
    """SHA-256 of a checkpoint's contents: every tensor's name, dtype, shape and bytes and every
    plain value, in the file's order, except the checksum entry itself. torch.load does not
    check the CRCs of the archive it reads, so this is what notices bytes changed on disk."""
    h = hashlib.sha256()
    plain: list[str] = []

    def walk(obj: Any, where: str) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{where}|{t.dtype}|{tuple(obj.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(obj, dict):
            plain.append(f"{where}:{type(obj).__name__}{len(obj)}")
            for k, v in obj.items():
                walk(v, f"{where}/{k!r}")
        elif isinstance(obj, (list, tuple)):
            if all(type(v) in _PLAIN for v in obj):  # a history's numbers: one repr, at C speed
                plain.append(f"{where}={obj!r}")
                return
            plain.append(f"{where}:{type(obj).__name__}{len(obj)}")
            for i, v in enumerate(obj):
                walk(v, f"{where}/{i}")
        else:
            plain.append(f"{where}={obj!r}")

    for key, value in data.items():
        if key != CHECKSUM_KEY:
            walk(value, repr(key))
    h.update("\x00".join(plain).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def validate_checkpoint(data: Any, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The one check a checkpoint passes before anything uses it; returns ``data``.

    ``load_checkpoint`` runs it on every file it reads, so the CLI, the GUI and the
    Trainer (resume, continue) all get it, and it runs before any network is built:

    1. the header: format, an integer version this app reads, the kind;
    2. the structure: each entry's type (weights a dict of tensors, history a dict whose
       epochs are records with numbers, meta, best, guide ...);
    3. the checksum ``save_checkpoint`` stored, when there is one (older files have none);
    4. the tensors: floating-point weights, finite everywhere (model, EMA, guide, optimizer);
    5. the size: the parameter count and shapes that the configuration describes, against
       the tensors in the file (``check_network_fits``).

    Raises a one-line CheckpointError naming the file and what to do.
    """
    where = str(path) if path is not None else "the checkpoint"
    _check_header(data, where)
    _check_structure(data, where)
    tensors = list(_tensors(data))
    for name, t in tensors:
        if t.layout != torch.strided or t.is_quantized:
            raise CheckpointError(f"{where} holds a {t.layout} tensor at {name}; {_DAMAGED}")
    _check_checksum(data, where)
    for name, t in tensors:
        if (t.is_floating_point() or t.is_complex()) and t.numel() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"{where} holds NaN or infinite values in {name}: the training had diverged when it was "
                "saved, or the file was altered; use an earlier checkpoint of the run (best.pt)")
    check_network_fits(data, where)
    return data


def _check_header(data: Any, where: str) -> None:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a Diffusion Studio checkpoint")
    version = data.get("version")
    if isinstance(version, str):
        raise CheckpointError(
            f"{where} gives its format version as text ({version!r}) where Diffusion Studio writes a whole "
            f"number: {_DAMAGED}, or export it again with this app")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{where} has no valid format version ({version!r}); {_DAMAGED}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{where} was written by a newer Diffusion Studio (checkpoint format {version}, "
            f"this app reads up to {FORMAT_VERSION}); update the app to open it"
        )
    if data.get("kind") != KIND:
        raise CheckpointError(f"{where} holds a {data.get('kind')!r} model; this app reads {KIND!r} checkpoints")
    for key in ("model", "schedule", "weights"):
        if key not in data:
            raise CheckpointError(f"{where} is incomplete: it has no {key!r} entry")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _type_name(v: Any) -> str:
    return "None" if v is None else f"a {type(v).__name__}"


# per-epoch fields that must be numbers (or None) in a history record
_EPOCH_NUMBERS = ("epoch", "train_loss", "val_loss", "seconds", "images_per_s", "best_val_loss", "time")


def _damaged(where: str, entry: str, value: Any, expected: str) -> CheckpointError:
    return CheckpointError(f"{where} is damaged: its {entry} is {_type_name(value)}, not {expected}; {_DAMAGED}")


def _check_weights(where: str, entry: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, dict):
        raise _damaged(where, entry, value, "a dict of tensors")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise _damaged(where, f"{entry} entry {k!r}", v, "a tensor")


def _check_structure(data: dict, where: str) -> None:
    """Every entry a reader uses has the type it expects (a traceback otherwise)."""
    for key in ("model", "schedule"):
        if not isinstance(data[key], dict):
            raise _damaged(where, f"{key!r} configuration", data[key], "a dict")
    _check_weights(where, "'weights'", data["weights"])
    _check_weights(where, "'ema_weights'", data.get("ema_weights"), optional=True)
    for key in ("train", "meta", "best", "position", "rng", "optimizer", "distill"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise _damaged(where, repr(key), data[key], "a dict")
    for key in ("epoch", "seed", "global_step", "warmup_origin", "epochs_without_improvement"):
        if key in data and not (isinstance(data[key], int) and not isinstance(data[key], bool)):
            raise _damaged(where, repr(key), data[key], "a whole number")
    numbers = [("'partial_loss_sum'", data.get("partial_loss_sum"))]
    numbers += [(f"best {k}", (data.get("best") or {}).get(k)) for k in ("epoch", "val_loss")]
    numbers += [(f"position {k}", (data.get("position") or {}).get(k)) for k in ("epoch", "step")]
    numbers += [("meta train_seconds", (data.get("meta") or {}).get("train_seconds"))]
    for entry, value in numbers:
        if value is not None and not _is_number(value):
            raise _damaged(where, entry, value, "a number")
    best_weights = data.get("best_weights")
    if best_weights is not None:
        if not isinstance(best_weights, dict):
            raise _damaged(where, "'best_weights'", best_weights, "a dict")
        _check_weights(where, "best epoch's 'weights'", best_weights.get("weights"))
        _check_weights(where, "best epoch's 'ema_weights'", best_weights.get("ema_weights"), optional=True)
    _check_history(data.get("history"), where)
    _check_guide_structure(data.get("guide"), where)
    _check_teacher_structure(data.get("teacher"), where)


def _check_teacher_structure(teacher: Any, where: str) -> None:
    """A distillation round's teacher (its last.pt keeps it): configs, weights, maybe a guide."""
    if teacher is None:
        return
    if not isinstance(teacher, dict) or not all(isinstance(teacher.get(k), dict) for k in ("model", "schedule")):
        raise _damaged(where, "'teacher'", teacher, "a dict with the teacher's configuration")
    _check_weights(where, "teacher's weights", teacher.get("weights"))
    _check_guide_structure(teacher.get("guide"), where)


def _check_guide_structure(guide: Any, where: str) -> None:
    if guide is None:
        return
    if not isinstance(guide, dict):
        raise _guide_error(where, f"it is {_type_name(guide)}, not a dict")
    for key in ("model", "schedule"):
        if not isinstance(guide.get(key), dict):
            raise _guide_error(where, f"its {key!r} configuration is {_type_name(guide.get(key))}, not a dict")
    weights = guide.get("weights")
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in weights.items()):
        raise _guide_error(where, "its weights are not a dict of tensors")
    if guide.get("epochs_trained") is not None and not _is_number(guide["epochs_trained"]):
        raise _guide_error(where, f"its epochs_trained is {guide['epochs_trained']!r}, not a number")


def _check_history(history: Any, where: str) -> None:
    if history is None:
        return
    if not isinstance(history, dict):
        raise _damaged(where, "'history'", history, "a dict")
    epochs = history.get("epochs", [])
    if not isinstance(epochs, list):
        raise _damaged(where, "history's epochs", epochs, "a list")
    for i, record in enumerate(epochs, 1):
        if not isinstance(record, dict):
            raise _damaged(where, f"history record {i}", record, "a dict")
        if not _is_number(record.get("epoch")):
            raise CheckpointError(f"{where} is damaged: its history record {i} has no epoch number; {_DAMAGED}")
        for key in _EPOCH_NUMBERS:
            value = record.get(key)
            if value is not None and not _is_number(value):
                raise _damaged(where, f"history record {i}'s {key} ({value!r})", value, "a number")
    steps = history.get("steps")
    if isinstance(steps, dict):
        for key, values in steps.items():
            if not isinstance(values, list):
                raise _damaged(where, f"history's {key} steps", values, "a list")
            wrong = next((v for v in values if not (_is_number(v) or v is None)), None)
            if wrong is not None:
                raise _damaged(where, f"history's {key} steps ({wrong!r})", wrong, "a number")
    elif steps is not None and not isinstance(steps, list):
        raise _damaged(where, "history's steps", steps, "a dict of lists")


def _tensors(data: dict) -> Iterator[tuple[str, torch.Tensor]]:
    """(a readable name, tensor) for every tensor in a checkpoint."""
    labels = {"weights": "the model weights", "ema_weights": "the EMA weights", "guide": "the guide network",
              "optimizer": "the optimizer state", "best_weights": "the best epoch's weights", "rng": "the RNG state"}

    def walk(obj: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
        if isinstance(obj, torch.Tensor):
            yield name, obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from walk(v, f"{name} ({k})" if name.endswith(("weights", "network")) else name)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                yield from walk(v, name)

    for key, value in data.items():
        yield from walk(value, labels.get(key, repr(key)))


def _check_checksum(data: dict, where: str) -> None:
    stored = data.get(CHECKSUM_KEY)
    if stored is None:
        return  # written before checksums (the bundled models, older versions)
    if not isinstance(stored, dict) or not isinstance(stored.get("sha256"), str):
        raise CheckpointError(f"{where} is damaged: its checksum entry is unreadable; {_DAMAGED}")
    if contents_checksum(data) != stored["sha256"]:
        raise CheckpointError(
            f"{where} is corrupted: its contents no longer match the checksum saved with it (bytes changed "
            "on disk after it was written); use another copy, e.g. the run's other checkpoint")


def _guide_error(where: str, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{where}: its guide network cannot be used ({reason}); export the model again "
        "without --guide, or with a guide of the same recipe"
    )


def expected_weights(model_config: Any) -> dict[str, tuple[tuple[int, ...], bool]]:
    """{name: (shape, floating point?)} of the state dict a network of ``model_config`` has,
    from a network on the meta device: shapes only, no memory, so a configuration that
    asks for gigabytes costs nothing to check."""
    from ..diffusion.unet import build_model

    with torch.device("meta"):
        net = build_model(model_config)
    return {k: (tuple(v.shape), v.is_floating_point()) for k, v in net.state_dict().items()}


def _check_fits(expected: dict, tensors: dict, what: str) -> str:
    """Why ``tensors`` cannot be a state dict of the network ``expected`` describes, or ""."""
    want = sum(math.prod(shape) for shape, _ in expected.values())
    have = sum(t.numel() for t in tensors.values())
    if want != have:
        return (f"its configuration describes a network of {want:,} parameters but {what} hold {have:,} "
                "values")
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        return ", ".join(([f"missing {', '.join(missing[:3])}"] if missing else [])
                         + ([f"unexpected {', '.join(extra[:3])}"] if extra else []))
    for k, (shape, floating) in expected.items():
        t = tensors[k]
        if tuple(t.shape) != shape:
            return f"{k} has shape {tuple(t.shape)} where the network has {shape}"
        if floating and t.dtype not in WEIGHT_DTYPES or not floating and t.dtype != torch.int64:
            return f"{k} is stored as {t.dtype}, which no network weight is"
    return ""


def check_network_fits(payload: dict, where: str | os.PathLike = "the checkpoint") -> None:
    """Refuse, before any network is built, a checkpoint whose configuration is invalid or whose
    weights (model, EMA, best epoch's, guide) are not the ones that configuration describes:
    the parameter count first (a small file whose configuration asks for gigabytes), then
    the names, shapes and dtypes. One-line CheckpointError."""
    from ..diffusion.schedule import ScheduleConfig
    from ..diffusion.unet import UNetConfig

    where = str(where)
    try:
        model_config = UNetConfig.from_dict(payload["model"])
        schedule_config = ScheduleConfig.from_dict(payload["schedule"])
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{where} has an invalid configuration: {first_line(exc)}") from exc
    expected = expected_weights(model_config)
    best = payload.get("best_weights") or {}
    for what, tensors in (("the weights", payload["weights"]), ("the EMA weights", payload.get("ema_weights")),
                          ("the best epoch's weights", best.get("weights")),
                          ("the best epoch's EMA weights", best.get("ema_weights"))):
        why = _check_fits(expected, tensors, what) if isinstance(tensors, dict) else ""
        if why:
            raise CheckpointError(f"{where}: the weights do not fit the network it describes ({why}); {_DAMAGED}")
    _check_teacher_fits(payload.get("teacher"), schedule_config, where)
    guide = payload.get("guide")
    if guide is None:
        return
    try:
        guide_config = UNetConfig.from_dict(guide["model"])
        if ScheduleConfig.from_dict(guide["schedule"]) != schedule_config:
            raise ValueError("it was trained on another noise schedule than the model")
        if guide_config.num_classes != model_config.num_classes:
            raise ValueError("it is conditioned unlike the model")
        why = _check_fits(expected_weights(guide_config), guide["weights"], "its weights")
        if why:
            raise ValueError(why)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _guide_error(where, first_line(exc)) from None


def _check_teacher_fits(teacher: dict | None, schedule_config, where: str) -> None:
    """A distillation round's teacher has the weights its configuration describes, on the same schedule."""
    if teacher is None:
        return
    from ..diffusion.schedule import ScheduleConfig
    from ..diffusion.unet import UNetConfig

    try:
        if ScheduleConfig.from_dict(teacher["schedule"]) != schedule_config:
            raise ValueError("it was trained on another noise schedule than the student")
        config = UNetConfig.from_dict(teacher["model"])
        why = _check_fits(expected_weights(config), teacher["weights"], "its weights")
        if not why and teacher.get("guide") is not None:
            guide = teacher["guide"]
            why = _check_fits(expected_weights(UNetConfig.from_dict(guide["model"])), guide["weights"],
                              "its guide's weights")
        if why:
            raise ValueError(why)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{where}: its distillation teacher cannot be used ({first_line(exc)}); "
                              "start the round again") from None


def sha256_file(path: str | os.PathLike) -> str:
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
        check_network_fits(payload, path or "checkpoint")  # before any network is built
        self.model_config = UNetConfig.from_dict(payload["model"])
        self.schedule_config = ScheduleConfig.from_dict(payload["schedule"])
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
        for key in ("model", "schedule", "train", "epoch", "seed", "best", "meta", "guide", "distill")
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
