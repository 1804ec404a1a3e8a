"""How responsive the GUI is, measured the way the issues state their targets.

    python bench/gui_latency.py --data DIR [--digits 64] [--out bench/gui_latency.jsonl]

1. Forward-noise slider: the main window at 1400x900 with every panel built, the
   bundled default model loaded (so the model's view runs too) and ``--digits``
   training digits selected; ``timestepSlider`` is driven through its whole range
   (0..T) and back with ``setValue`` and one ``processEvents`` per value. The time of
   each value is one frame. Target (the "one source of truth" issue): median <= 16 ms.
2. Dataset browser: 25 jumps of the scroll bar over the 50,000 training digits,
   each followed by ``processEvents`` and a repaint.
3. Event-loop latency while training: a 5 ms QTimer in the GUI thread records the
   largest gap between its ticks while the Training panel trains a small network
   for one epoch on 2,000 digits.

Prints the CPU model and one JSON line per measurement (appended to --out).
Timing lives here, not in the unit tests: a busy 2-core CI machine would make a
timed test fail at random.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms, dtype=float)
    return {"frames": int(a.size), "median_ms": round(float(np.median(a)), 2),
            "p90_ms": round(float(np.percentile(a, 90)), 2), "max_ms": round(float(a.max()), 2)}


def slider(app, data, digits: int) -> dict:
    from diffusion_studio.engine.storage.bundled import default_checkpoint_path
    from diffusion_studio.engine.storage.checkpoint import load_model
    from diffusion_studio.ui.main_window import MainWindow
    from diffusion_studio.ui.state import AppState

    state = AppState()
    window = MainWindow(state)
    window.resize(1400, 900)
    window.show()
    state.set_data(data, data.source)
    state.set_model(load_model(default_checkpoint_path()), "bundled default model")
    state.set_selection(data.images("train")[:digits].numpy(), data.labels("train")[:digits].numpy())
    window.show_panel("noisePanel")
    panel = window.panels["noisePanel"]
    slider = panel.slider
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    values = list(range(slider.minimum(), slider.maximum() + 1)) + list(range(slider.maximum(), -1, -1))
    times = []
    for v in values:
        t0 = time.perf_counter()
        slider.setValue(v)
        app.processEvents()
        times.append((time.perf_counter() - t0) * 1000)
    panel.predictions.shutdown()
    window.close()
    return {"what": "noise slider, 1400x900 main window, model view on", "digits": digits, **stats(times[1:])}


def dataset_scroll(app, data) -> dict:
    from diffusion_studio.ui.dataset_panel import DatasetPanel
    from diffusion_studio.ui.state import AppState

    state = AppState()
    state.set_data(data, data.source)
    panel = DatasetPanel(state)
    panel.resize(1400, 900)
    panel.show()
    app.processEvents()
    bar = panel.view.verticalScrollBar()
    times = []
    for frac in np.linspace(0, 1, 25):
        t0 = time.perf_counter()
        bar.setValue(int(frac * bar.maximum()))
        app.processEvents()
        panel.view.viewport().repaint()
        times.append((time.perf_counter() - t0) * 1000)
    panel.close()
    return {"what": "dataset browser, 25 scroll jumps over 50,000 digits", **stats(times)}


def training_gaps(app, data) -> dict:
    from dataclasses import replace

    from PySide6.QtCore import QTimer

    from diffusion_studio.engine.storage.data import MNISTSplits
    from diffusion_studio.engine.training.presets import get_preset
    from diffusion_studio.ui.state import AppState
    from diffusion_studio.ui.train_panel import TrainPanel

    small = MNISTSplits(train_images=data.train_images[:2000], train_labels=data.train_labels[:2000],
                        val_images=data.val_images[:500], val_labels=data.val_labels[:500],
                        test_images=data.test_images[:500], test_labels=data.test_labels[:500],
                        train_index=data.train_index[:2000], val_index=data.val_index[:500], source=data.source)
    state = AppState()
    state.set_data(small, data.source)
    panel = TrainPanel(state)
    preset = get_preset("default")
    panel.add_preset(replace(preset, name="bench", title="bench", train=replace(preset.train, epochs=1)))
    panel.set_run_dir(Path(os.environ.get("TMPDIR", "/tmp")) / f"gui-latency-{os.getpid()}")
    panel.resize(1400, 900)
    panel.show()
    gaps, last = [], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1000)
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    assert panel.start_training()
    timer.start()
    while panel.is_training():
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    return {"what": "GUI event loop while training (5 ms timer)", "ticks": len(gaps),
            "median_gap_ms": round(float(np.median(gaps)), 2), "max_gap_ms": round(float(max(gaps)), 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="MNIST folder (the four IDX files)")
    p.add_argument("--digits", type=int, default=64, help="digits on the noise panel (default %(default)s)")
    p.add_argument("--only", choices=("slider", "scroll", "training"), help="run one measurement")
    p.add_argument("--out", default=str(Path(__file__).with_name("gui_latency.jsonl")))
    args = p.parse_args(argv)

    import torch
    from PySide6.QtWidgets import QApplication

    from diffusion_studio.engine.storage.data import load_mnist
    from diffusion_studio.engine.device import cpu_model_name

    app = QApplication.instance() or QApplication(sys.argv[:1])
    data = load_mnist(args.data)
    machine = {"cpu": cpu_model_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "python": platform.python_version(), "qpa": os.environ.get("QT_QPA_PLATFORM")}
    print(f"machine: {machine['cpu']}, {machine['threads']} threads, Qt platform {machine['qpa']}", flush=True)
    todo = {"slider": lambda: slider(app, data, args.digits), "scroll": lambda: dataset_scroll(app, data),
            "training": lambda: training_gaps(app, data)}
    for name, run in todo.items():
        if args.only and name != args.only:
            continue
        row = {**run(), "machine": machine}
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
