"""PyInstaller's entry script for diffusion-studio.spec: the same ``main`` as the console script."""

import multiprocessing
import sys

from diffusion_studio.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # DataLoader workers re-run the frozen executable
    sys.exit(main())
