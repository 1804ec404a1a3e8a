"""Two-process DistributedDataParallel training on CPU (gloo) through torchrun."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion_studio.engine.storage.checkpoint import load_checkpoint, load_model

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["train", "--epochs", "2", "--batch-size", "16", "--width", "4", "--timesteps", "10",
         "--precision", "fp32", "--device", "cpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1")
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


@pytest.mark.timeout(600)
def test_two_process_ddp_matches_single_process_step_count(tiny_mnist, tmp_path):
    single = tmp_path / "single"
    r = subprocess.run([sys.executable, "-m", "diffusion_studio", *TRAIN, "--data", tiny_mnist, "--out", single],
                       capture_output=True, text=True, env=env(), timeout=300)
    assert r.returncode == 0, r.stderr
    ddp = tmp_path / "ddp"
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
         "-m", "diffusion_studio", *TRAIN, "--data", tiny_mnist, "--out", ddp],
        capture_output=True, text=True, env=env(), timeout=500,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # one process (rank 0) printed and wrote; the other stayed quiet
    assert r.stdout.count("epoch   2/2") == 1
    a, b = load_checkpoint(single / "last.pt"), load_checkpoint(ddp / "last.pt")
    assert b["global_step"] == a["global_step"] == 2 * 7  # 100 images, global batch 16
    assert len(b["history"]["epochs"]) == 2
    loaded = load_model(ddp / "best.pt")
    assert loaded.model_config.level_channels == (4, 8, 16)  # --width 4 of the default (residual) network
    assert not any(k.startswith("module.") for k in b["weights"])  # plain weights, not DDP's wrapper
