"""The trained models that ship inside the package (``--checkpoint default``,
``--checkpoint default-conditional``)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .checkpoint import CheckpointError

DEFAULT_CHECKPOINT = "default.pt"
# name (as the CLI's --checkpoint takes it) -> (file, title in the app)
BUNDLED = {
    "default": (DEFAULT_CHECKPOINT, "Bundled default model"),
    "default-conditional": ("default-conditional.pt", "Bundled class-conditional model"),
}


def _models_dir() -> Path:
    return Path(str(resources.files("diffusion_studio") / "resources" / "models"))


def bundled_checkpoint_path(name: str = "default") -> Path:
    """Path of a bundled model; CheckpointError if the name is unknown or the install lacks it."""
    if name not in BUNDLED:
        raise CheckpointError(f"no bundled model is called {name!r}; choose one of {', '.join(BUNDLED)}")
    path = _models_dir() / BUNDLED[name][0]
    if not path.is_file():
        raise CheckpointError(
            f"the bundled model {name!r} is missing from this installation ({path}); "
            "reinstall Diffusion Studio or pass a checkpoint file"
        )
    return path


def default_checkpoint_path() -> Path:
    """Path of the bundled default (unconditional) model."""
    return bundled_checkpoint_path("default")


def available_bundled() -> list[tuple[str, str, Path]]:
    """(name, title, path) of every bundled model this installation has."""
    out = []
    for name, (file, title) in BUNDLED.items():
        path = _models_dir() / file
        if path.is_file():
            out.append((name, title, path))
    return out


def resolve_checkpoint(value: str | os.PathLike) -> Path:
    """A bundled model's name ("default", "default-conditional") -> its file; anything else is a path."""
    if isinstance(value, str) and value in BUNDLED:
        return bundled_checkpoint_path(value)
    return Path(value)
