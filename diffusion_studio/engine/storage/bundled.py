"""The trained models that ship inside the package (``--checkpoint default``,
``--checkpoint default-conditional``)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..defaults import BUNDLED_STUDENT_STEPS, DEFAULT_MODEL
from .checkpoint import CheckpointError

DEFAULT_CHECKPOINT = "default.pt"
# name (as the CLI's --checkpoint takes it) -> (file, title in the app); a title says what the
# model is (unconditional or class-conditional, its steps), as the Sampler's model list shows it
BUNDLED = {
    "default": (DEFAULT_CHECKPOINT, "Bundled unconditional model (300 steps)"),
    "default-conditional": ("default-conditional.pt", "Bundled class-conditional model (300 steps)"),
    # few-step students distilled from each (docs/distillation.md)
    **{f"{teacher}-{k}step": (f"{teacher}-{k}step.pt", f"Bundled {kind} {k}-step student")
       for teacher, kind in (("default-conditional", "class-conditional"), ("default", "unconditional"))
       for k in BUNDLED_STUDENT_STEPS},
}
# what the app opens at start-up, the first one installed: the default model (engine.defaults.DEFAULT_MODEL),
# else its teacher, the default recipe as it is (class-conditional: its digits are recognisable far more
# often, docs/quality.md, "The bundled models' scores"), else the unconditional one
STARTUP_MODELS = (DEFAULT_MODEL, "default-conditional", "default")


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


def bundled_name(path: str | os.PathLike) -> str | None:
    """The bundled model's name ("default") when ``path`` is its installed file, else None."""
    target = Path(path).expanduser().resolve()
    return next((name for name, _, file in available_bundled() if file.resolve() == target), None)


def startup_model() -> tuple[str, str, Path] | None:
    """(name, title, path) of the bundled model the app opens at start-up, or None if none is installed."""
    installed = {name: (name, title, path) for name, title, path in available_bundled()}
    return next((installed[name] for name in STARTUP_MODELS if name in installed), None)


def resolve_checkpoint(value: str | os.PathLike) -> Path:
    """A bundled model's name ("default", "default-conditional") -> its file; anything else is a path."""
    if isinstance(value, str) and value in BUNDLED:
        return bundled_checkpoint_path(value)
    return Path(value)


def checkpoint_file(source: str | os.PathLike, prefer: tuple[str, ...] = ("best.pt", "last.pt")) -> Path:
    """The checkpoint file a model source names: a bundled model's (by its name), a .pt file, or
    a run folder's first of ``prefer`` that exists. CheckpointError (one line) when there is none."""
    if isinstance(source, str) and source in BUNDLED:
        return bundled_checkpoint_path(source)
    path = Path(source).expanduser()
    if path.is_dir():
        for name in prefer:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds no checkpoint (best.pt or last.pt): has this run saved an epoch yet?")
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; choose a .pt checkpoint, a run folder or a bundled model "
                              f"({', '.join(BUNDLED)})")
    return path
