"""Screenshots of the views that connect the forward and reverse processes (README).

    QT_QPA_PLATFORM=offscreen python scripts/screenshot_views.py --data DIR \
        [--history RUN/history.json [--steps-from RUN/best.pt]] [--out docs/screenshots]
        [--views noise,sampler,autoguidance,guidance,training]

Opens the app's main window at 1360x860 with the bundled default model, selects 16
training digits, and saves:
  noise_model_view.png   the noise panel at t = 150: x_t, the model's predicted x_0 and
                         eps error, "denoise from here" and the identity-vs-t curve
  sampler_views.png      the sampler after an interpolation between two seeds
  sampler_autoguidance.png  the bundled default model: 64 DDIM-50 samples (seed 3) at the
                         default autoguidance weight, then its autoguidance sweep
  sampler_guidance.png   the bundled class-conditional model's guidance sweep (if present)
  train_loss_by_t.png    the training panel replaying RUN/history.json's curves and
                         its validation loss by timestep (train_panel.png: the panel alone)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


VIEWS = ("noise", "sampler", "autoguidance", "guidance", "training")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--history", help="a run's history.json to replay in the training panel")
    p.add_argument("--steps-from", metavar="PT", help="a checkpoint of the same run (RUN/best.pt or the "
                   "bundled file) whose per-step losses the replay draws too")
    p.add_argument("--out", default="docs/screenshots")
    p.add_argument("--views", default=",".join(VIEWS), help="which screenshots to make, comma-separated "
                   f"(default: all of {', '.join(VIEWS)}; training needs --history)")
    args = p.parse_args(argv)
    views = {v.strip() for v in args.views.split(",") if v.strip()}
    if not views <= set(VIEWS):
        p.error(f"unknown view(s) {', '.join(sorted(views - set(VIEWS)))}: choose from {', '.join(VIEWS)}")
    shots = Shots(Path(args.data), Path(args.out))
    for view in VIEWS:  # in this order: the sampler's views share its form
        if view in views and (view != "training" or args.history):
            getattr(shots, view)(args)
    shots.window.close()
    print(f"wrote the screenshots to {shots.out}")
    return 0


class Shots:
    """The main window at 1360x860 with MNIST, the bundled default model and 16 training digits
    selected; one method per screenshot."""

    def __init__(self, data_dir: Path, out: Path) -> None:
        import numpy as np
        from PySide6.QtWidgets import QApplication

        from diffusion_studio.engine.storage.bundled import available_bundled
        from diffusion_studio.engine.storage.checkpoint import load_model
        from diffusion_studio.engine.storage.data import load_mnist
        from diffusion_studio.ui.main_window import MainWindow
        from diffusion_studio.ui.state import AppState

        self.app = QApplication.instance() or QApplication(sys.argv[:1])
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.state = AppState()
        self.window = MainWindow(self.state)
        self.window.resize(1360, 860)
        self.window.show()
        data = load_mnist(data_dir)
        self.state.set_data(data, data_dir)
        self.bundled = {name: path for name, _title, path in available_bundled()}
        self.state.set_model(load_model(self.bundled["default"]), "bundled default model")
        idx = np.arange(16)
        self.state.set_selection(data.train_images[idx].numpy(), data.train_labels[idx].numpy())
        self.sampler_panel = self.window.panels["samplerPanel"]

    def wait(self, condition, timeout: float = 600.0) -> None:
        """Process events until ``condition()``, then a little longer (the last redraws)."""
        end = time.monotonic() + timeout
        while not condition():
            self.app.processEvents()
            time.sleep(0.02)
            if time.monotonic() > end:
                raise TimeoutError("the app did not finish in time")
        for _ in range(20):
            self.app.processEvents()
            time.sleep(0.01)

    def save(self, name: str) -> None:
        self.window.grab().save(str(self.out / name))

    def _sampled(self, *actions) -> None:
        """Run each sampler action (sample, interpolate, guidance_sweep) to its end."""
        for action in actions:
            action()
            self.wait(lambda: not self.sampler_panel.runner.is_running())

    def noise(self, _args) -> None:
        noise = self.window.panels["noisePanel"]
        self.window.show_panel("noisePanel")
        noise.set_t(150)
        self.wait(lambda: noise.last_prediction is not None and noise.last_prediction["t"] == 150)
        noise.identity_curve()
        self.wait(lambda: noise.identity_points is not None and not noise.denoise_runner.is_running())
        noise.denoise_from_here()
        self.wait(lambda: noise.denoise_result is not None and not noise.denoise_runner.is_running())
        self.save("noise_model_view.png")

    def sampler(self, _args) -> None:
        self.window.show_panel("samplerPanel")
        self.sampler_panel.seed_b_spin.setValue(7)
        self._sampled(self.sampler_panel.sample, self.sampler_panel.interpolate)
        self.save("sampler_views.png")

    def autoguidance(self, _args) -> None:
        """The form's own autoguidance weight (the engine's default), 64 DDIM-50 digits of seed 3."""
        form = self.sampler_panel.form
        self.window.show_panel("samplerPanel")
        before = (form.count_spin.value(), form.sampler_combo.currentIndex(), form.steps_spin.value(),
                  form.seed_spin.value())
        form.count_spin.setValue(64)
        form.sampler_combo.setCurrentIndex(form.sampler_combo.findData("ddim"))
        form.steps_spin.setValue(50)
        form.seed_spin.setValue(3)
        self._sampled(self.sampler_panel.sample, self.sampler_panel.guidance_sweep)
        self.save("sampler_autoguidance.png")
        count, kind, steps, seed = before  # the other views keep the form's own settings
        form.count_spin.setValue(count)
        form.sampler_combo.setCurrentIndex(kind)
        form.steps_spin.setValue(steps)
        form.seed_spin.setValue(seed)

    def guidance(self, _args) -> None:
        from diffusion_studio.engine.storage.checkpoint import load_model

        if "default-conditional" not in self.bundled:
            return
        self.state.set_model(load_model(self.bundled["default-conditional"]), "bundled class-conditional model")
        self.sampler_panel.form.digit_combo.setCurrentIndex(self.sampler_panel.form.digit_combo.findData(4))
        self._sampled(self.sampler_panel.sample, self.sampler_panel.guidance_sweep)
        self.save("sampler_guidance.png")

    def training(self, args) -> None:
        """The training panel replaying a run's history.json (and its per-step losses from a checkpoint)."""
        h = json.loads(Path(args.history).read_text())
        steps = {"global_step": [], "loss": []}
        if args.steps_from:  # the per-step losses live in the run's checkpoints, not in history.json
            from diffusion_studio.engine.storage.checkpoint import load_checkpoint

            saved = (load_checkpoint(args.steps_from).get("history") or {}).get("steps") or {}
            steps = {"global_step": list(saved.get("global_step", [])), "loss": list(saved.get("loss", []))}
        train = self.window.panels["trainPanel"]
        self.window.show_panel("trainPanel")
        train._on_records([replayed_start(h, steps)])  # the run's own settings show in the form
        for e in h["epochs"]:
            if e.get("val_loss_by_t"):
                train.view.add_loss_by_timestep(h["loss_bins"], e["val_loss_by_t"])
        train.view.stopping_label.setText(f"Replayed from {Path(args.history).parent.name}/history.json")
        train.view.redraw()
        self.wait(lambda: True)
        self.save("train_loss_by_t.png")
        train.grab().save(str(self.out / "train_panel.png"))  # the panel alone, for the README's first table


def replayed_start(history: dict, steps: dict):
    """The StartedRecord a resume of this history.json would begin with: its settings, epochs
    and curves (the per-step losses, when given, from a checkpoint of the run)."""
    from diffusion_studio.engine.training.config import StartedRecord

    cfg = history.get("train") or {}
    batch = int(cfg.get("batch_size", 32))
    return StartedRecord(
        mode="resume", device="cpu", precision="fp32", precision_detail="fp32", train_images=50_000,
        val_images=10_000, validation_images=10_000, epochs=int(cfg.get("epochs", 50)), start_epoch=0,
        start_step=0, start_lr=float(cfg.get("lr", 1e-3)), steps_per_epoch=-(-50_000 // batch),
        timesteps=int((history.get("schedule") or {}).get("timesteps", 300)), train_config=cfg,
        model_config=history.get("model") or {}, schedule_config=history.get("schedule") or {},
        preset=str((history.get("meta") or {}).get("preset", "")), run_dir="", max_seconds=None,
        history={"epochs": history["epochs"], **steps})


if __name__ == "__main__":
    raise SystemExit(main())
