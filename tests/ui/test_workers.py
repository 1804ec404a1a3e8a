"""Workers: training and sampling off the GUI thread, stop, and the thread lifecycle."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QObject, Slot

from diffusion_studio.engine.storage.checkpoint import load_model
from diffusion_studio.engine.diffusion.scheduling import SamplerConfig
from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
from diffusion_studio.engine.training.config import TrainConfig
from diffusion_studio.engine.diffusion.unet import UNetConfig
from diffusion_studio.ui.workers import SampleJob, SampleWorker, TrainJob, TrainWorker, WorkerRunner

TINY_MODEL = UNetConfig(base_channels=4)
TINY_SCHEDULE = ScheduleConfig(timesteps=10)


def tiny_job(data, run_dir, epochs=2, **kw):
    return TrainJob(
        data=data, model=TINY_MODEL, schedule=TINY_SCHEDULE,
        train=TrainConfig(epochs=epochs, batch_size=16, precision="fp32", **kw),
        device="cpu", run_dir=run_dir, preview_every=1, preview_count=4, preview_steps=5,
    )


class Recorder(QObject):
    """Collects worker signals in the GUI thread (slots of a GUI-thread object)."""

    def __init__(self):
        super().__init__()
        self.steps, self.losses, self.epochs, self.previews, self.finished, self.failed = [], [], [], [], [], []
        self.progress, self.frames, self.baselines = [], [], []

    @Slot(int, int, int, float, float)
    def on_step(self, *args):
        self.steps.append(args)

    @Slot(object)
    def on_losses(self, arr):
        self.losses.append(arr)

    @Slot(dict)
    def on_epoch(self, d):
        self.epochs.append(d)

    @Slot(dict)
    def on_baseline(self, d):
        self.baselines.append(d)

    @Slot(object)
    def on_preview(self, a):
        self.previews.append(a)

    @Slot(str, str)
    def on_finished(self, reason, message):
        self.finished.append((reason, message))

    @Slot(object)
    def on_sample_finished(self, frames):
        self.finished.append(frames)

    @Slot(str)
    def on_failed(self, message):
        self.failed.append(message)

    @Slot(int, int)
    def on_progress(self, done, total):
        self.progress.append((done, total))

    @Slot(int, object, object)
    def on_frame(self, t, x, x0):
        self.frames.append((t, x, x0))


def wire_train(worker, rec):
    worker.step_done.connect(rec.on_step)
    worker.step_losses.connect(rec.on_losses)
    worker.epoch_done.connect(rec.on_epoch)
    worker.baseline_done.connect(rec.on_baseline)
    worker.preview_ready.connect(rec.on_preview)
    worker.finished.connect(rec.on_finished)
    worker.failed.connect(rec.on_failed)


def test_train_worker_streams_all_steps_and_finishes(qtbot, tiny_data, tmp_path):
    rec, runner = Recorder(), WorkerRunner()
    worker = TrainWorker(tiny_job(tiny_data, tmp_path / "run"))
    wire_train(worker, rec)
    with qtbot.waitSignal(runner.stopped, timeout=60000):
        runner.start(worker)
    assert not runner.is_running()
    assert rec.failed == []
    assert [r for r, _ in rec.finished] == ["completed"]
    assert [e["epoch"] for e in rec.epochs] == [1, 2]
    assert all(isinstance(e["val_loss"], float) for e in rec.epochs)
    # every step arrives (throttling batches them, it drops none): 100 images / 16 = 7 steps per epoch
    steps = np.concatenate(rec.losses)
    assert steps[:, 0].tolist() == list(range(1, 15))
    assert np.isfinite(steps[:, 1]).all()
    assert rec.steps and rec.steps[-1][:3] == (2, 7, 7)
    assert rec.previews and rec.previews[-1].dtype == np.uint8 and rec.previews[-1].shape == (4, 28, 28)
    assert (tmp_path / "run" / "best.pt").is_file()


def test_train_worker_reports_the_baseline_of_a_continued_export(qtbot, tiny_data, tmp_path):
    """Continuing an export (no best weights): baseline_done carries the validation of the weights
    it brought, once, before the first epoch; a fresh run sends none."""
    from dataclasses import replace

    from diffusion_studio.engine.storage.checkpoint import export_for_sampling

    rec, runner = Recorder(), WorkerRunner()
    worker = TrainWorker(tiny_job(tiny_data, tmp_path / "run", epochs=1))
    wire_train(worker, rec)
    with qtbot.waitSignal(runner.stopped, timeout=60000):
        runner.start(worker)
    assert rec.baselines == [] and rec.failed == []
    exported = export_for_sampling(tmp_path / "run" / "best.pt", tmp_path / "exported.pt")

    rec = Recorder()
    job = replace(tiny_job(tiny_data, tmp_path / "more", epochs=2), continue_from=exported)
    worker = TrainWorker(job)
    wire_train(worker, rec)
    with qtbot.waitSignal(runner.stopped, timeout=60000):
        runner.start(worker)
    assert rec.failed == [] and [r for r, _ in rec.finished] == ["completed"]
    assert len(rec.baselines) == 1 and rec.baselines[0]["epoch"] == 1
    assert 0 < rec.baselines[0]["val_loss"] < 10 and rec.baselines[0]["seconds"] >= 0
    assert [e["epoch"] for e in rec.epochs] == [2]


def test_train_worker_bad_settings_fail_with_one_line(qtbot, tiny_data, tmp_path):
    rec, runner = Recorder(), WorkerRunner()
    job = tiny_job(tiny_data, tmp_path / "run")
    job.device = "no-such-device"
    worker = TrainWorker(job)
    wire_train(worker, rec)
    with qtbot.waitSignal(runner.stopped, timeout=20000):
        runner.start(worker)
    assert len(rec.failed) == 1 and "no-such-device" in rec.failed[0] and "\n" not in rec.failed[0]
    assert rec.finished == []


def test_stop_and_wait_ends_within_a_batch(qtbot, tiny_data, tmp_path):
    rec, runner = Recorder(), WorkerRunner()
    worker = TrainWorker(tiny_job(tiny_data, tmp_path / "run", epochs=50, patience=50))
    wire_train(worker, rec)
    runner.start(worker)
    qtbot.waitUntil(lambda: len(rec.epochs) >= 1, timeout=30000)
    assert runner.stop_and_wait(10000)
    assert not runner.is_running()
    qtbot.waitUntil(lambda: bool(rec.finished), timeout=5000)
    assert rec.finished[0][0] == "stopped"
    loaded = load_model(tmp_path / "run" / "last.pt")
    assert loaded.epoch >= 1
    assert (tmp_path / "run" / "best.pt").is_file()


@pytest.fixture(scope="module")
def tiny_model(tiny_data, tmp_path_factory):
    from diffusion_studio.engine.training.plan import plan_new
    from diffusion_studio.engine.training.trainer import Trainer

    run = tmp_path_factory.mktemp("tiny_run")
    trainer = Trainer(plan_new(TINY_MODEL, TINY_SCHEDULE, TrainConfig(epochs=1, batch_size=32, precision="fp32")), tiny_data, device="cpu", run_dir=run)
    for _ in trainer.run():
        pass
    return load_model(run / "best.pt")


def test_sample_worker_keeps_frames_in_order(qtbot, tiny_model):
    rec, runner = Recorder(), WorkerRunner()
    worker = SampleWorker(SampleJob(tiny_model, n=6, sampler=SamplerConfig(kind="ddpm"), seed=3, max_frames=5,
                                    precision="fp32"))  # the reference below samples in fp32
    worker.progress.connect(rec.on_progress)
    worker.frame.connect(rec.on_frame)
    worker.finished.connect(rec.on_sample_finished)
    worker.failed.connect(rec.on_failed)
    with qtbot.waitSignal(runner.stopped, timeout=30000):
        runner.start(worker)
    assert rec.failed == []
    frames = rec.finished[0]
    ts = [f.t for f in frames]
    assert ts[0] == 10 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    assert len(frames) <= 5 + 6  # bounded: every k-th step plus the strip's timesteps
    assert all(f.x.shape == (6, 28, 28) and f.x.dtype == np.uint8 and f.x0.shape == (6, 28, 28) for f in frames)
    np.testing.assert_array_equal(frames[-1].x, frames[-1].x0)
    assert rec.progress[-1] == (10, 10)
    # the kept result is the engine's own sample for this seed
    from diffusion_studio.engine.diffusion.sampling import sample
    from diffusion_studio.ui.imaging import model_to_uint8

    ref = model_to_uint8(sample(tiny_model.model, tiny_model.schedule, 6, seed=3))
    np.testing.assert_array_equal(frames[-1].x, ref)


class SlowSampler(SampleWorker):
    def _keep(self, t, x, x0):
        import time

        time.sleep(0.05)
        super()._keep(t, x, x0)


def test_sample_worker_stops_on_request(qtbot, tiny_model):
    rec, runner = Recorder(), WorkerRunner()
    worker = SlowSampler(SampleJob(tiny_model, n=2, sampler=SamplerConfig(kind="ddpm"), max_frames=100))
    worker.finished.connect(rec.on_sample_finished)
    worker.cancelled.connect(rec.on_sample_finished)
    worker.progress.connect(rec.on_progress)
    runner.start(worker)
    qtbot.waitUntil(lambda: bool(rec.progress), timeout=10000)
    assert runner.stop_and_wait(5000)
    qtbot.waitUntil(lambda: bool(rec.finished), timeout=5000)
    assert len(rec.finished[0]) < 11


class VerySlowSampler(SampleWorker):
    def __init__(self, job):
        import threading

        super().__init__(job)
        self.keeping = threading.Event()  # set while a (slow) frame is being kept

    def _keep(self, t, x, x0):
        import time

        self.keeping.set()
        time.sleep(0.4)
        super()._keep(t, x, x0)


def test_stop_and_wait_times_out_without_killing_the_thread(qtbot, tiny_model):
    runner = WorkerRunner()
    worker = VerySlowSampler(SampleJob(tiny_model, n=1, sampler=SamplerConfig(kind="ddpm")))
    rec = Recorder()
    worker.cancelled.connect(rec.on_sample_finished)
    runner.start(worker)
    qtbot.waitUntil(worker.keeping.is_set, timeout=30000)  # inside a 0.4 s step (a busy machine starts late)
    assert runner.stop_and_wait(10) is False  # the step in progress takes longer than that
    assert runner.is_running()  # left to finish on its own, never terminated
    with qtbot.waitSignal(runner.stopped, timeout=5000):
        pass
    assert not runner.is_running()
    qtbot.waitUntil(lambda: bool(rec.finished), timeout=2000)  # it ended through its stop event


def test_callbacks_through_on_gui_thread_run_in_the_gui_thread(qtbot):
    """A lambda connected straight to a worker's signal runs in the worker's thread
    (PySide6); wrapped by on_gui_thread it runs in the GUI thread, in order."""
    import threading

    from PySide6.QtWidgets import QWidget

    from diffusion_studio.ui.workers import TaskWorker, WorkerRunner, on_gui_thread

    widget = QWidget()
    qtbot.addWidget(widget)
    runner = WorkerRunner(widget)
    seen, raw = [], []
    worker = TaskWorker(lambda should_stop, report: [report(i, force=True) for i in range(3)] and "done")
    worker.partial.connect(on_gui_thread(widget, lambda i: seen.append((i, threading.current_thread()))))
    worker.finished.connect(on_gui_thread(widget, lambda r: seen.append((r, threading.current_thread()))))
    worker.finished.connect(lambda r: raw.append(threading.current_thread()))
    with qtbot.waitSignal(runner.stopped, timeout=10000):
        runner.start(worker)
    qtbot.waitUntil(lambda: len(seen) == 4, timeout=5000)
    assert [v for v, _ in seen] == [0, 1, 2, "done"]
    assert all(thread is threading.main_thread() for _, thread in seen)
    assert raw and raw[0] is not threading.main_thread()  # why the wrapper exists
