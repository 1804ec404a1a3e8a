"""Workers: any task (training, sampling) off the GUI thread, stop, and the thread lifecycle."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import QObject, Slot

from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
from diffusion_studio.engine.diffusion.scheduling import SamplerConfig
from diffusion_studio.engine.diffusion.unet import UNetConfig
from diffusion_studio.engine.storage.checkpoint import load_model
from diffusion_studio.engine.training.config import TrainConfig
from diffusion_studio.engine.training.plan import plan_new
from diffusion_studio.tasks.sample import SampleRequest, sample_frames
from diffusion_studio.tasks.train import TrainRequest, plan_train, train
from diffusion_studio.ui.workers import LatestRunner, TaskWorker, WorkerRunner

TINY_MODEL = UNetConfig(base_channels=4)
TINY_SCHEDULE = ScheduleConfig(timesteps=10)


def tiny_training(data, run_dir, epochs=2, device="cpu", **kw) -> TaskWorker:
    """A TaskWorker that trains a new tiny run into ``run_dir``, handing over every record."""
    request = TrainRequest(mode="new", out=run_dir, device=device, preview_every=1, preview_count=4, preview_steps=5)
    plan = plan_new(TINY_MODEL, TINY_SCHEDULE, TrainConfig(epochs=epochs, batch_size=16, precision="fp32", **kw))
    return training_worker(request, plan, data)


def training_worker(request, plan, data) -> TaskWorker:
    def run(ctx):
        for record in train(request, plan or plan_train(request), data, ctx):
            ctx.partial(record)

    return TaskWorker(run, "training")


class Recorder(QObject):
    """Collects worker signals in the GUI thread (slots of a GUI-thread object)."""

    def __init__(self):
        super().__init__()
        self.records, self.results, self.failed, self.progress, self.cancelled = [], [], [], [], []

    @Slot(object)
    def on_partial(self, items):
        self.records.extend(items)

    @Slot(object)
    def on_finished(self, result):
        self.results.append(result)

    @Slot(str)
    def on_failed(self, message):
        self.failed.append(message)

    @Slot(str, int, int)
    def on_progress(self, stage, done, total):
        self.progress.append((done, total))

    @Slot()
    def on_cancelled(self):
        self.cancelled.append(True)

    def of(self, kind):
        return [r for r in self.records if getattr(r, "kind", None) == kind]

    @property
    def finished(self):
        return [(r.reason, r.message) for r in self.of("finished")]


def wire(worker, rec):
    worker.partial.connect(rec.on_partial)
    worker.finished.connect(rec.on_finished)
    worker.failed.connect(rec.on_failed)
    worker.progress.connect(rec.on_progress)
    worker.cancelled.connect(rec.on_cancelled)
    return worker


def test_the_training_task_streams_all_steps_and_finishes(qtbot, tiny_data, tmp_path):
    rec, runner = Recorder(), WorkerRunner()
    worker = wire(tiny_training(tiny_data, tmp_path / "run"), rec)
    with qtbot.waitSignal(runner.stopped, timeout=60000):
        runner.start(worker)
    assert not runner.is_running()
    assert rec.failed == []
    assert [r for r, _ in rec.finished] == ["completed"]
    assert [e.epoch for e in rec.of("epoch")] == [1, 2]
    assert all(isinstance(e.val_loss, float) for e in rec.of("epoch"))
    # every step arrives (the worker batches them, it drops none): 100 images / 16 = 7 steps per epoch
    steps = np.array([(r.global_step, r.loss) for r in rec.of("step")])
    assert steps[:, 0].tolist() == list(range(1, 15))
    assert np.isfinite(steps[:, 1]).all()
    last = rec.of("step")[-1]
    assert (last.epoch, last.step, last.steps_per_epoch) == (2, 7, 7)
    previews = [p.images for p in rec.of("preview")]
    assert previews and previews[-1].dtype == np.uint8 and previews[-1].shape == (4, 28, 28)
    assert (tmp_path / "run" / "best.pt").is_file()


def test_the_training_task_reports_the_baseline_of_a_continued_export(qtbot, tiny_data, tmp_path):
    """Continuing an export (no best weights): a BaselineRecord carries the validation of the weights
    it brought, once, before the first epoch; a fresh run sends none."""
    from diffusion_studio.engine.storage.checkpoint import export_for_sampling

    rec, runner = Recorder(), WorkerRunner()
    with qtbot.waitSignal(runner.stopped, timeout=60000):
        runner.start(wire(tiny_training(tiny_data, tmp_path / "run", epochs=1), rec))
    assert rec.of("baseline") == [] and rec.failed == []
    exported = export_for_sampling(tmp_path / "run" / "best.pt", tmp_path / "exported.pt")

    rec = Recorder()
    request = TrainRequest(mode="continue", source=exported, out=tmp_path / "more", settings={"epochs": 2},
                           device="cpu", preview_every=1, preview_count=4, preview_steps=5)
    with qtbot.waitSignal(runner.stopped, timeout=60000):
        runner.start(wire(training_worker(request, None, tiny_data), rec))
    assert rec.failed == [] and [r for r, _ in rec.finished] == ["completed"]
    baselines = rec.of("baseline")
    assert len(baselines) == 1 and baselines[0].epoch == 1
    assert 0 < baselines[0].val_loss < 10 and baselines[0].seconds >= 0
    assert [e.epoch for e in rec.of("epoch")] == [2]


def test_bad_settings_fail_with_one_line(qtbot, tiny_data, tmp_path):
    rec, runner = Recorder(), WorkerRunner()
    worker = wire(tiny_training(tiny_data, tmp_path / "run", device="no-such-device"), rec)
    with qtbot.waitSignal(runner.stopped, timeout=20000):
        runner.start(worker)
    assert len(rec.failed) == 1 and "no-such-device" in rec.failed[0] and "\n" not in rec.failed[0]
    assert rec.finished == []


def test_stop_and_wait_ends_within_a_batch(qtbot, tiny_data, tmp_path):
    rec, runner = Recorder(), WorkerRunner()
    runner.start(wire(tiny_training(tiny_data, tmp_path / "run", epochs=50, patience=50), rec))
    qtbot.waitUntil(lambda: len(rec.of("epoch")) >= 1, timeout=30000)
    assert runner.stop_and_wait(10000)
    assert not runner.is_running()
    qtbot.waitUntil(lambda: bool(rec.finished), timeout=5000)
    assert rec.finished[0][0] == "stopped"
    loaded = load_model(tmp_path / "run" / "last.pt")
    assert loaded.epoch >= 1
    assert (tmp_path / "run" / "best.pt").is_file()


@pytest.fixture(scope="module")
def tiny_model(tiny_data, tmp_path_factory):
    from diffusion_studio.engine.training.trainer import Trainer

    run = tmp_path_factory.mktemp("tiny_run")
    trainer = Trainer(plan_new(TINY_MODEL, TINY_SCHEDULE, TrainConfig(epochs=1, batch_size=32, precision="fp32")),
                      tiny_data, device="cpu", run_dir=run)
    for _ in trainer.run():
        pass
    return load_model(run / "best.pt")


def sampling_worker(model, n, max_frames=120, delay=0.0, seed=0, precision="auto", started=None) -> TaskWorker:
    """A TaskWorker sampling ``n`` digits by DDPM, keeping frames; ``delay`` seconds per kept frame."""
    request = SampleRequest(n=n, sampler=SamplerConfig(kind="ddpm"), seed=seed, precision=precision)

    def run(ctx):
        if delay:
            hand_over = ctx.on_partial

            def slowly(frame):
                if started is not None:
                    started.set()
                time.sleep(delay)
                hand_over(frame)

            ctx.on_partial = slowly
        return sample_frames(model, request, ctx, max_frames=max_frames)

    return TaskWorker(run, "sampling")


def test_the_sampling_task_keeps_frames_in_order(qtbot, tiny_model):
    rec, runner = Recorder(), WorkerRunner()
    # the reference below samples in fp32
    worker = wire(sampling_worker(tiny_model, 6, max_frames=5, seed=3, precision="fp32"), rec)
    with qtbot.waitSignal(runner.stopped, timeout=30000):
        runner.start(worker)
    assert rec.failed == []
    frames = rec.results[0].frames
    ts = [f.t for f in frames]
    assert ts[0] == 10 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    assert len(frames) <= 5 + 6  # bounded: every k-th step plus the strip's timesteps
    assert all(f.x.shape == (6, 28, 28) and f.x.dtype == np.uint8 and f.x0.shape == (6, 28, 28) for f in frames)
    np.testing.assert_array_equal(frames[-1].x, frames[-1].x0)
    assert rec.progress[-1] == (10, 10)
    assert [f.t for f in rec.records] == ts  # each kept frame was handed over as it was made
    # the kept result is the engine's own sample for this seed
    from diffusion_studio.engine.diffusion.sampling import sample
    from diffusion_studio.engine.storage.data import to_uint8

    ref = to_uint8(sample(tiny_model.model, tiny_model.schedule, 6, seed=3)).numpy()
    np.testing.assert_array_equal(frames[-1].x, ref)


def test_the_sampling_task_stops_on_request(qtbot, tiny_model):
    rec, runner = Recorder(), WorkerRunner()
    runner.start(wire(sampling_worker(tiny_model, 2, max_frames=100, delay=0.05), rec))
    qtbot.waitUntil(lambda: bool(rec.progress), timeout=10000)
    assert runner.stop_and_wait(5000)
    qtbot.waitUntil(lambda: bool(rec.results), timeout=5000)
    assert rec.results[0].stopped and len(rec.results[0].frames) < 11


def test_stop_and_wait_times_out_without_killing_the_thread(qtbot, tiny_model):
    runner, rec = WorkerRunner(), Recorder()
    keeping = threading.Event()  # set once the worker is inside a (slow) kept frame
    runner.start(wire(sampling_worker(tiny_model, 1, delay=0.4, started=keeping), rec))
    qtbot.waitUntil(keeping.is_set, timeout=30000)  # inside a 0.4 s step (a busy machine starts late)
    assert runner.stop_and_wait(10) is False  # the step in progress takes longer than that
    assert runner.is_running()  # left to finish on its own, never terminated
    with qtbot.waitSignal(runner.stopped, timeout=5000):
        pass
    assert not runner.is_running()
    qtbot.waitUntil(lambda: bool(rec.results), timeout=2000)
    assert rec.results[0].stopped  # it ended through its stop event


def test_callbacks_through_on_gui_thread_run_in_the_gui_thread(qtbot):
    """A lambda connected straight to a worker's signal runs in the worker's thread
    (PySide6); wrapped by on_gui_thread it runs in the GUI thread, in order."""
    from PySide6.QtWidgets import QWidget

    from diffusion_studio.ui.workers import on_gui_thread

    widget = QWidget()
    qtbot.addWidget(widget)
    runner = WorkerRunner(widget)
    seen, raw = [], []
    worker = TaskWorker(lambda ctx: [ctx.partial(i) for i in range(3)] and "done")
    worker.partial.connect(on_gui_thread(widget, lambda items: seen.extend((i, threading.current_thread())
                                                                           for i in items)))
    worker.finished.connect(on_gui_thread(widget, lambda r: seen.append((r, threading.current_thread()))))
    worker.finished.connect(lambda r: raw.append(threading.current_thread()))
    with qtbot.waitSignal(runner.stopped, timeout=10000):
        runner.start(worker)
    qtbot.waitUntil(lambda: len(seen) == 4, timeout=5000)
    assert [v for v, _ in seen] == [0, 1, 2, "done"]
    assert all(thread is threading.main_thread() for _, thread in seen)
    assert raw and raw[0] is not threading.main_thread()  # why the wrapper exists


def test_the_newest_request_wins(qtbot):
    """A LatestRunner runs one job at a time; of the jobs posted while one runs, only the newest
    runs after it (a drag posts one request per frame: the others are dropped unstarted)."""
    jobs = LatestRunner()
    gate, ran = threading.Event(), []

    def job(i):
        def run(ctx):
            if i == 0:
                gate.wait(10)  # the first job runs while the others are posted
            ran.append(i)
            return i

        return lambda: TaskWorker(run, f"job {i}", thread_name="model-view")

    for i in range(5):
        jobs.post(job(i))
    assert jobs.busy()
    gate.set()
    with qtbot.waitSignal(jobs.idle, timeout=10000):
        pass
    assert ran == [0, 4] and not jobs.busy()


def test_a_worker_thread_is_a_named_qthread(qtbot):
    """Every background job runs on a QThread (the model's view and the MNIST loader included),
    named after its job, never on a bare threading.Thread."""
    from PySide6.QtCore import QThread

    names, runner = [], WorkerRunner()
    worker = TaskWorker(lambda ctx: names.append((threading.current_thread().name, QThread.currentThread()
                                                  .objectName())), "the job", thread_name="mnist-load")
    with qtbot.waitSignal(runner.stopped, timeout=10000):
        runner.start(worker)
    assert names == [("mnist-load", "mnist-load")]
