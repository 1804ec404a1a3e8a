"""Opening a model: one function for every front end, one device rule.

A user names a model three ways, and every command and panel takes all three: a
bundled model ("default", "default-conditional"), a .pt checkpoint, or a run folder
(its best.pt, else last.pt). ``open_model`` reads it onto the device asked for, or
onto the CPU when that device is missing here (a checkpoint trained on a GPU opens
on a laptop).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.device import resolve_device
from ..engine.storage.bundled import BUNDLED, checkpoint_file
from ..engine.storage.checkpoint import LoadedModel, load_model


def model_device(requested: str | torch.device = "auto") -> torch.device:
    """The device a model to sample from goes to: the one asked for, or the CPU when
    that one is not available here. Unknown names are an error."""
    if isinstance(requested, torch.device):
        requested = str(requested)
    try:
        return resolve_device(requested)
    except ValueError:
        if requested.startswith("cuda"):
            return torch.device("cpu")
        raise


@dataclass(frozen=True)
class ModelRef:
    """A model as a user names it: a bundled model's name, a checkpoint file or a run folder."""

    source: str

    @classmethod
    def of(cls, value: "ModelRef | str | os.PathLike") -> "ModelRef":
        return value if isinstance(value, ModelRef) else cls(os.fspath(value))

    @property
    def is_bundled(self) -> bool:
        return self.source in BUNDLED

    @property
    def label(self) -> str:
        """What the app calls it: the bundled model's title, a run's name or a file's name."""
        if self.is_bundled:
            return BUNDLED[self.source][1]
        path = Path(self.source).expanduser()
        return path.name if path.is_dir() else f"{path.parent.name}/{path.name}" if path.stem in ("best", "last") \
            else path.name

    def checkpoint(self) -> Path:
        """The checkpoint file it names (a run folder: its best.pt, else last.pt).
        CheckpointError (one line) when there is none."""
        return checkpoint_file(self.source)


def checkpoint_of(source: "ModelRef | str | os.PathLike") -> Path:
    """The checkpoint file ``source`` names (``ModelRef.checkpoint``)."""
    return ModelRef.of(source).checkpoint()


def open_model(source: "ModelRef | str | os.PathLike", device: str | torch.device = "auto") -> LoadedModel:
    """Read the model ``source`` names onto ``model_device(device)``.
    Slow (reads the file and builds the network): front ends call it off their GUI thread."""
    return load_model(checkpoint_of(source), model_device(device))
