"""The trained model that ships inside the package (``--checkpoint default``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .checkpoint import CheckpointError

DEFAULT_CHECKPOINT = "default.pt"


def default_checkpoint_path() -> Path:
    """Path of the bundled default model; CheckpointError if the install lacks it."""
    ref = resources.files("diffusion_studio") / "resources" / "models" / DEFAULT_CHECKPOINT
    path = Path(str(ref))
    if not path.is_file():
        raise CheckpointError(
            f"the bundled default model is missing from this installation ({path}); "
            "reinstall Diffusion Studio or pass a checkpoint file"
        )
    return path
