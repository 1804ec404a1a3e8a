"""Background work for the GUI: one thread pattern for every job.

The pattern (Qt's worker pattern, as Orange3 uses it): a ``QObject`` worker is moved
to a ``QThread``; the thread's ``started`` signal runs the worker's ``run`` slot,
which reports through signals carrying only ints, floats, strings, dicts of those,
and CPU numpy arrays. A worker is stopped by setting its ``threading.Event``
(``stop()``, safe from any thread); it is never terminated. A failure is one
``failed`` line, and every worker emits ``done`` as its very last signal, whatever
happened, so its thread can quit. A worker holds no widget: what it reports reaches
the panels by queued signals.

``WorkerRunner`` owns one worker and its thread: ``start(worker)``, ``stop()``,
``wait(timeout_ms)``, ``stop_and_wait(timeout_ms)``, ``is_running()``.
``LatestRunner`` runs one job at a time where only the newest request matters
(opening a model, loading MNIST, the model's view during a drag): a job posted
while one runs waits, and a newer one replaces it before it starts.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from ..engine import runs
from ..engine.device import choose_precision
from ..engine.diffusion.sampling import initial_noise, sample_steps
from ..engine.diffusion.scheduling import SamplerConfig, kept_frames, reverse_timesteps
from ..engine.storage.data import to_uint8
from ..engine.text import first_line
from ..engine.training.config import loss_bins
from ..engine.training.trainer import Trainer

#: at most this many step / frame signals per second reach the GUI
MAX_SIGNALS_PER_S = 30.0


class _GuiRelay(QObject):
    """A child of a GUI-thread object; a call posted to it from any thread runs in its thread."""

    call = Signal(object, object)  # (fn, args)

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.call.connect(self._run)  # a bound method: emitted from a worker, Qt queues it here

    @Slot(object, object)
    def _run(self, fn, args) -> None:
        fn(*args)


def on_gui_thread(context: QObject, fn):
    """``fn`` wrapped so that, connected to a worker's signal, it runs in ``context``'s
    thread (the GUI thread for a panel), in order with the signals queued before it.

    PySide6 queues a signal to a *bound method* of a QObject living in another thread,
    but calls a lambda or a functools.partial in the thread that emits, even with
    Qt.QueuedConnection: connected straight to a worker's signal, a lambda touches
    widgets from the worker. Connect ``on_gui_thread(self, lambda ...: ...)`` instead.
    Call it from the GUI thread; nothing runs once ``context`` is deleted, and no Qt
    object is made in the worker (its garbage would be collected in the wrong thread).
    """
    relay = context.findChild(_GuiRelay, "", Qt.FindChildOption.FindDirectChildrenOnly)
    if relay is None:
        relay = _GuiRelay(context)
    call = relay.call
    return lambda *args: call.emit(fn, args)


#: niceness added to a worker thread (and the torch threads it starts), so the
#: window keeps the CPU it needs to stay responsive while training uses the rest
WORKER_NICENESS = 5


def lower_thread_priority(increment: int = WORKER_NICENESS) -> bool:
    """Make the calling thread ``increment`` nicer (Linux: per-thread nice values,
    inherited by threads it starts, such as its OpenMP team). True when it worked;
    elsewhere a no-op. Call it from the worker thread before the first torch op."""
    import os

    if not hasattr(os, "setpriority") or increment <= 0:
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
        return True
    except OSError:
        return False


def _error_text(exc: BaseException) -> str:
    """One line for the user (never a traceback)."""
    text = first_line(exc)
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return f"ran out of memory ({text}); try a smaller batch size or fewer images"
    return text


# ---------------------------------------------------------------- the worker contract
class _StoppableWorker(QObject):
    """What every worker shares: a stop Event checked by its loop, and a ``run`` slot
    that names its thread, turns any failure into one ``failed`` line and always ends
    with ``done``. Subclasses define the ``failed``/``done`` signals and ``_run``;
    ``_activity`` is the word of the failure line, ``thread_name`` names the thread
    (Qt's objectName and Python's ``threading`` name; the class's name by default)."""

    _activity = "work"
    thread_name = ""

    def stop(self) -> None:
        """Ask the run to stop at its next check (any thread)."""
        self.stop_event.set()

    @Slot()
    def run(self) -> None:
        threading.current_thread().name = self.thread_name or type(self).__name__
        lower_thread_priority()
        try:
            self._run()
        except Exception as exc:  # the GUI shows one line, never a traceback
            self.failed.emit(f"{self._activity} failed: {_error_text(exc)}")
        finally:
            self.done.emit()


class TaskWorker(_StoppableWorker):
    """Runs ``fn(should_stop, report)`` in a worker thread: any engine job (an opened
    model, an interpolation, a sweep, denoise from here, an evaluation, MNIST loading).
    ``fn`` returns a plain result (CPU arrays, numbers, dicts), calls ``should_stop()``
    between steps (the engine raises ``engine.stopping.Stopped`` then) and may call
    ``report(obj)`` with partial results, which reach the GUI at most
    ``MAX_SIGNALS_PER_S`` times a second (``force=True`` always goes through).

    Signals
      partial(object): what fn reported.
      finished(object): fn's result.
      cancelled(): stopped before the end.
      failed(message): one line, "<activity> failed: <why>".
      done(): always last.
    """

    partial = Signal(object)
    finished = Signal(object)
    cancelled = Signal()
    failed = Signal(str)
    done = Signal()

    def __init__(self, fn: Callable, activity: str = "the job", thread_name: str = "") -> None:
        super().__init__()
        self.fn = fn
        self._activity = activity
        self.thread_name = thread_name
        self.stop_event = threading.Event()
        self._last_report = 0.0

    def report(self, obj, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_report >= 1.0 / MAX_SIGNALS_PER_S:
            self._last_report = now
            self.partial.emit(obj)

    def _run(self) -> None:
        from ..engine.stopping import Stopped

        try:
            result = self.fn(self.stop_event.is_set, self.report)
        except Stopped:  # any engine job's "stopped as asked"
            self.cancelled.emit()
            return
        self.finished.emit(result)


# ---------------------------------------------------------------- threads
class _ThreadWatch(QObject):
    """Lives in the GUI thread; tells its runner which run's thread finished."""

    def __init__(self, runner: "WorkerRunner", generation: int) -> None:
        super().__init__()
        self.runner, self.generation = runner, generation

    @Slot()
    def on_finished(self) -> None:
        self.runner._release(self.generation)


class WorkerRunner(QObject):
    """Owns one worker and the QThread it runs on (both live until it ends).

    start(worker): move it to a new thread, run ``worker.run`` there, and wire
        ``worker.done -> thread.quit``; when the thread has finished, the
        worker and thread are released and ``stopped`` is emitted.
    stop(): ask the worker to stop (returns at once).
    wait(timeout_ms): block at most that long for the thread, without asking it to
        stop; True when it ended (and was released).
    stop_and_wait(timeout_ms): stop(), then wait(timeout_ms).
    """

    stopped = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: QObject | None = None
        self.thread: QThread | None = None
        self._generation = 0
        self._watch: _ThreadWatch | None = None

    def is_running(self) -> bool:
        return self.thread is not None

    def start(self, worker: QObject) -> None:
        if self.thread is not None:
            raise RuntimeError("a worker is already running; stop it first")
        # Every object alive now is exempt from later garbage collections (gc.freeze is
        # O(1)). A collection runs in whichever thread allocates at the time, so without
        # this the worker's thread could collect a widget left unreachable in the GUI
        # thread and destroy it there (a deadlock was seen: ~QObject waiting for the GIL).
        # It also spares the GUI a full pass over the app's millions of long-lived objects
        # (torch, Qt wrappers), which held the GIL for about a second on a slow CPU.
        gc.freeze()
        self._generation += 1
        thread = QThread()
        thread.setObjectName(getattr(worker, "thread_name", "") or type(worker).__name__)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        # direct: quit() is thread-safe, and a queued call would wait for the GUI
        # thread, which may be blocked in wait()
        worker.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        self._watch = _ThreadWatch(self, self._generation)
        thread.finished.connect(self._watch.on_finished)
        self.worker, self.thread = worker, thread
        _keep_alive(thread, worker)
        thread.start()

    def _release(self, generation: int) -> None:
        if generation != self._generation or self.thread is None:
            return  # an older run, already released
        thread, worker = self.thread, self.worker
        thread.wait()  # 'finished' is emitted just before the thread really ends
        # The Python wrappers own both objects: dropping the last reference deletes
        # them now that the thread has ended (an extra deleteLater would delete twice).
        # The watch may be the caller: it is dropped on the next start().
        self.worker = self.thread = None
        _LIVE.pop(id(thread), None)
        del thread, worker
        try:
            self.stopped.emit()
        except RuntimeError:  # the runner's owner was deleted while its thread ran: nobody to tell
            pass

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def wait(self, timeout_ms: int = 15000) -> bool:
        """Block at most ``timeout_ms`` for the thread; True when nothing runs any more.
        On a timeout the thread is left to finish on its own (never terminated)."""
        if self.thread is None:
            return True
        if not self.thread.wait(int(timeout_ms)):
            _keep_until_done(self.thread, self.worker)
            return False
        self._release(self._generation)
        return True

    def stop_and_wait(self, timeout_ms: int = 15000) -> bool:
        """Stop the worker and block at most ``timeout_ms`` for its thread (``wait``)."""
        self.stop()
        return self.wait(timeout_ms)


class LatestRunner(QObject):
    """One job at a time, and only the newest request matters.

    post(make_worker): run ``make_worker()`` now when nothing runs; else keep it as the
        next job, replacing one posted earlier that has not started (a drag posts a
        request per frame: the ones never started are dropped).
    busy(): a job runs or waits.
    wait(timeout_ms): block until nothing runs or waits (a waiting job runs first).
    stop_and_wait(timeout_ms): drop the waiting job, stop the running one and wait.
    Signal idle(): the last job ended and none waits.
    """

    idle = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = WorkerRunner(self)
        self.runner.stopped.connect(self._start_next)
        self._next: Callable[[], QObject] | None = None

    def post(self, make_worker: Callable[[], QObject]) -> None:
        self._next = make_worker
        if not self.runner.is_running():
            self._start_next()

    def busy(self) -> bool:
        return self.runner.is_running() or self._next is not None

    @Slot()
    def _start_next(self) -> None:
        make, self._next = self._next, None
        if make is None:
            self.idle.emit()
            return
        self.runner.start(make())

    def wait(self, timeout_ms: int = 15000) -> bool:
        # each release starts the job waiting behind it (``stopped`` -> ``_start_next``)
        while self.runner.is_running():
            if not self.runner.wait(timeout_ms):
                return False
        return True

    def stop_and_wait(self, timeout_ms: int = 15000) -> bool:
        self._next = None
        return self.runner.stop_and_wait(timeout_ms)


# Threads that did not end within a wait() timeout (a long validation pass on a slow
# device, say). They were asked to stop; they are kept referenced so that nothing
# destroys a running QThread, and the interpreter waits for them at exit, so the run
# still writes its checkpoints.
_ORPHANS: list[tuple[QThread, QObject]] = []


def _keep_until_done(thread: QThread, worker: QObject) -> None:
    _wait_at_exit()
    _ORPHANS.append((thread, worker))


def _wait_at_exit(_registered=[]) -> None:  # noqa: B006 (a once-only flag)
    if not _registered:
        import atexit

        atexit.register(_wait_for_orphans)
        _registered.append(True)


# Every started thread, until its runner releases it. A running QThread must not be
# destroyed (Qt aborts the process), and its runner's owner can go first: a panel
# closed, or garbage-collected, while its worker still runs. Kept here, such a thread
# outlives its owner, ends on its own, and is dropped at the next start() (at exit,
# it is asked to stop and waited for).
_LIVE: dict[int, tuple[QThread, QObject]] = {}


def _keep_alive(thread: QThread, worker: QObject) -> None:
    for key, (t, _w) in list(_LIVE.items()):  # forget the threads that have ended
        try:
            ended = t.isFinished()
        except RuntimeError:  # deleted by Qt
            ended = True
        if ended:
            _LIVE.pop(key, None)
    _wait_at_exit()
    _LIVE[id(thread)] = (thread, worker)


def _wait_for_orphans() -> None:
    for thread, worker in list(_LIVE.values()):
        try:
            worker.stop()
        except (RuntimeError, AttributeError):
            pass
    for thread, _worker in _ORPHANS + list(_LIVE.values()):
        try:
            thread.wait()
        except RuntimeError:  # already deleted by Qt
            pass


def _uint8(x) -> np.ndarray:
    """A model-range tensor (N, 1, H, W) in [-1, 1] -> (N, H, W) uint8 (``engine.storage.data.to_uint8``)."""
    return to_uint8(x.detach().cpu()).numpy()


# ---------------------------------------------------------------- training
@dataclass
class TrainJob:
    """What to train. ``resume`` is a last.pt path (its settings win, except that
    ``train.epochs`` and ``train.patience`` may raise the run's); ``continue_from`` a checkpoint
    a new run in ``run_dir`` continues, with the same rule (``Trainer(continue_from=...)``), and may
    train with other ``continue_settings`` (its fresh Adam's lr, the EMA decay)."""

    data: object  # engine.data.MNISTSplits
    model: object  # UNetConfig
    schedule: object  # ScheduleConfig
    train: object  # TrainConfig
    device: str = "auto"
    run_dir: Path | None = None
    resume: Path | None = None
    continue_from: Path | None = None
    continue_settings: dict = field(default_factory=dict)  # with continue_from: lr, ema_decay, ... to train with
    extra_meta: dict = field(default_factory=dict)
    preview_every: int = 5  # epochs between preview samples (0 = never)
    max_seconds: float | None = None  # wall-clock budget (Trainer's max_seconds)
    preview_count: int = 8  # digits per preview
    preview_steps: int = 20  # DDIM steps per preview


class TrainWorker(_StoppableWorker):
    """Runs ``engine.train.Trainer.run()`` in a worker thread.

    Signals
      started(dict): device, precision, epochs, start_epoch, steps_per_epoch,
          batch_size, patience, run_dir, and ``history`` (the per-epoch records
          of a resumed run, list of dicts, and its per-step losses as lists).
      step_done(epoch, step, steps_per_epoch, loss, images_per_s): the latest
          step, at most ``MAX_SIGNALS_PER_S`` times a second.
      step_losses(np.ndarray (n, 2) float64): [global_step, loss] of *every*
          step since the previous emission (sent with each step_done and before
          each epoch_done, so no step is lost to the throttling).
      epoch_done(dict): the EpochRecord's fields (plain ints / floats / bool), plus
          ``val_loss_by_t`` (the validation loss per t bin, None for an empty bin)
          and ``loss_bins`` (the bins' edges, ``engine.train.loss_bins``).
      baseline_done(dict): a run continuing a checkpoint without best weights validated the
          weights it brought first: the BaselineRecord's epoch, val_loss and seconds.
      preview_ready(np.ndarray uint8 (K, 28, 28)): digits sampled (DDIM) from
          the current model every ``preview_every`` epochs and at the end.
      finished(reason, message): "completed", "early_stopped", "stopped",
          "budget" or "diverged", and the trainer's one-line message.
      failed(message): the run could not start or crashed (one line).
      done(): always last.
    """

    started = Signal(dict)
    step_done = Signal(int, int, int, float, float)
    step_losses = Signal(object)
    epoch_done = Signal(dict)
    baseline_done = Signal(dict)
    preview_ready = Signal(object)
    finished = Signal(str, str)
    failed = Signal(str)
    done = Signal()

    def __init__(self, job: TrainJob) -> None:
        super().__init__()
        self.job = job
        self.stop_event = threading.Event()
        self._pending: list[tuple[float, float]] = []
        self._last_emit = 0.0
        self._last_step = None  # the latest StepRecord

    _activity = "training"  # stop() takes effect after the current batch

    def _flush_steps(self) -> None:
        if self._pending:
            self.step_losses.emit(np.asarray(self._pending, dtype=np.float64).reshape(-1, 2))
            self._pending = []

    def _run(self) -> None:
        # running.pid in the run folder while this trains, so the Runs panel shows "running"
        marker = runs.mark_running(self.job.run_dir) if self.job.run_dir else contextlib.nullcontext()
        with marker:
            self._train()

    def _train(self) -> None:
        job = self.job
        trainer = Trainer(_plan_of(job), job.data, device=job.device, run_dir=job.run_dir,
                          stop_event=self.stop_event, max_seconds=job.max_seconds)
        self.started.emit(_started_info(trainer, job))
        for record in trainer.run():
            if record.kind == "step":
                self._on_step(record)
            elif record.kind == "epoch":
                self._on_epoch(trainer, record)
            elif record.kind == "baseline":
                self.baseline_done.emit(_plain(record.__dict__))
            else:
                self._flush_steps()
                if record.best_epoch and record.reason != "stopped" and job.preview_every:
                    self._preview(trainer)  # the restored best model
                self.finished.emit(record.reason, record.message)

    def _on_step(self, record) -> None:
        """Keep every step's loss; send them (and the latest step) at most MAX_SIGNALS_PER_S a second."""
        self._pending.append((float(record.global_step), float(record.loss)))
        self._last_step = record
        now = time.monotonic()
        if now - self._last_emit >= 1.0 / MAX_SIGNALS_PER_S:
            self._last_emit = now
            self._flush_steps()
            self._emit_step(record)

    def _emit_step(self, r) -> None:
        self.step_done.emit(r.epoch, r.step, r.steps_per_epoch, r.loss, r.images_per_s)

    def _on_epoch(self, trainer, record) -> None:
        self._flush_steps()
        if self._last_step is not None:
            self._emit_step(self._last_step)
        info = _plain(record.__dict__)
        info["val_loss_by_t"] = [None if v is None else float(v) for v in (trainer.last_val_by_t or [])]
        info["loss_bins"] = loss_bins(trainer.schedule.timesteps)
        self.epoch_done.emit(info)
        every = self.job.preview_every
        if every and record.epoch % every == 0 and not self.stop_event.is_set():
            self._preview(trainer)

    def _preview(self, trainer) -> None:
        job = self.job
        T = trainer.schedule.timesteps
        cfg = SamplerConfig(kind="ddim", steps=max(1, min(job.preview_steps, T)))
        x = None
        for step in sample_steps(
            trainer.sampling_model(), trainer.schedule, job.preview_count, sampler=cfg,
            seed=1234, device=trainer.device, precision=trainer.precision,
        ):
            if self.stop_event.is_set():
                return
            x = step.x
        if x is not None:
            self.preview_ready.emit(_uint8(x))


def _plan_of(job: TrainJob):
    """The engine's TrainPlan for a job: a resumed or continued run keeps its own settings but
    the epochs and patience the form raises, and a continued one trains with ``continue_settings``."""
    from dataclasses import replace

    from ..engine.training.plan import plan_continue, plan_new, plan_resume

    if job.resume is None and job.continue_from is None:
        return plan_new(job.model, job.schedule, job.train, meta=job.extra_meta)
    if job.resume is not None:
        plan = plan_resume(Path(job.resume).parent)
    else:
        plan = plan_continue(job.continue_from, {("train", k): v for k, v in (job.continue_settings or {}).items()})
    if job.train is None:
        return plan
    raised = {k: max(getattr(plan.train, k), getattr(job.train, k)) for k in ("epochs", "patience")}
    return replace(plan, train=replace(plan.train, **raised))


def _started_info(trainer, job: TrainJob) -> dict:
    """What ``TrainWorker.started`` carries: the run's device, position and settings
    (a resumed run's own, whatever the form said) and the history it brings."""
    steps_hist = trainer.history.get("steps") or {}
    return {
        "device": str(trainer.device),
        "precision": trainer.precision,
        "precision_detail": trainer.precision_choice.describe(),
        "max_seconds": job.max_seconds or 0.0,
        "validation_images": len(trainer.val_x) + trainer.config.bn_recalibration * trainer.config.batch_size,
        "epochs": trainer.config.epochs,
        "start_epoch": trainer.epoch,
        "start_step": trainer.step_in_epoch,
        "start_lr": trainer.next_lr(),  # where a resume's warm restart begins
        "steps_per_epoch": trainer.steps_per_epoch,
        "batch_size": trainer.config.batch_size,
        "patience": trainer.config.patience,
        "timesteps": trainer.schedule.timesteps,
        "train_config": trainer.config.to_dict(),
        "model_config": trainer.model_config.to_dict(),
        "schedule_config": trainer.schedule_config.to_dict(),
        "run_dir": str(job.run_dir) if job.run_dir else "",
        # a new run from a checkpoint: {"source": path, "epochs": its training}
        "continued_from": trainer.extra_meta.get("continued_from") if job.continue_from else None,
        "history": {
            "epochs": [_plain(e) for e in trainer.history.get("epochs", [])],
            "global_step": [int(s) for s in steps_hist.get("global_step", [])],
            "loss": [float(v) for v in steps_hist.get("loss", [])],
        },
    }


def _plain(d: dict) -> dict:
    """Only JSON-like scalars (numpy / torch numbers become float / int)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, bool) or v is None or isinstance(v, str):
            out[k] = v
        elif isinstance(v, int):
            out[k] = int(v)
        else:
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                continue
    return out


# ---------------------------------------------------------------- sampling
@dataclass
class SampleJob:
    """What to sample: ``loaded`` is an engine LoadedModel (model, schedule, device)."""

    loaded: object
    n: int = 16
    sampler: object = None  # SamplerConfig
    seed: int = 0
    max_frames: int = 120  # keep about this many frames (plus the strip's)
    precision: str = "auto"  # "auto" is resolved (measured once, then cached) in the worker
    labels: object = None  # (n,) int64 digits for a class-conditional model
    x_start: object = None  # (n, C, 28, 28) x_t to start from (with start_t), instead of noise from the seed
    start_t: int | None = None  # "denoise from here": run the reverse process from start_t, not T


@dataclass(frozen=True)
class Frame:
    """One kept moment of the reverse process.

    t:  the timestep of ``x`` (T for pure noise, 0 for the result)
    x:  (n, 28, 28) uint8, x_t (0 = black)
    x0: (n, 28, 28) uint8, the network's prediction of x_0 from x_t (at t = 0: x_0 itself)
    """

    t: int
    x: np.ndarray
    x0: np.ndarray


class SampleWorker(_StoppableWorker):
    """Runs ``engine.sample.sample_steps`` in a worker thread, keeping frames.

    Frames are kept for t = T, every k-th step (k chosen so about ``max_frames``
    are kept), the strip's timesteps (300, 100, 50, 20 or the nearest step
    reached) and t = 0, so memory stays bounded (n x frames x 2 x 784 bytes).

    Signals
      precision_chosen(str): the precision used and, for "auto", the measured
          rates ("bf16 (measured: bf16 2843 img/s, fp32 952 img/s)"); first.
      progress(done, total): steps done, at most ``MAX_SIGNALS_PER_S`` a second
          (and always at the end).
      frame(t, x_t, x0): the newest kept frame, (n, 28, 28) uint8 each, throttled.
      finished(list[Frame]): all kept frames in order, t descending.
      cancelled(list[Frame]): stopped early; the frames kept so far.
      failed(message): one line.
      done(): always last.
    """

    precision_chosen = Signal(str)
    progress = Signal(int, int)
    frame = Signal(int, object, object)
    finished = Signal(object)
    cancelled = Signal(object)
    failed = Signal(str)
    done = Signal()

    def __init__(self, job: SampleJob) -> None:
        super().__init__()
        self.job = job
        self.stop_event = threading.Event()
        self.frames: list[Frame] = []

    _activity = "sampling"  # stop() takes effect before the next step

    def _run(self) -> None:
        import torch

        job = self.job
        loaded = job.loaded
        sampler = job.sampler or SamplerConfig()
        T = loaded.schedule.timesteps
        if job.n < 1:
            raise ValueError(f"the number of images must be at least 1, got {job.n}")
        ts = reverse_timesteps(sampler, loaded.schedule, job.start_t)
        total = len(ts)
        device = torch.device(loaded.device)
        choice = choose_precision(job.precision, device, mode="sample", model_config=loaded.model_config)
        self.precision_chosen.emit(choice.describe())
        channels = getattr(loaded.model_config, "image_channels", 1)
        if job.x_start is not None:  # denoise from a given x_t (start_t)
            x_T = job.x_start.to(device=device, dtype=torch.float32)
        else:  # the same x_T that sample_steps draws from this seed
            x_T = initial_noise(job.n, job.seed, channels=channels, device=device)
        wanted = kept_frames(ts, job.max_frames, T)  # the engine's plan: evenly spaced, the strip's, x_0
        pending_t, pending_x = ts[0], x_T  # x_t waiting for the prediction made from it
        min_gap, last_emit = 1.0 / MAX_SIGNALS_PER_S, 0.0
        done = 0
        for step in sample_steps(
            loaded.model, loaded.schedule, job.n, sampler=sampler, seed=job.seed,
            device=device, precision=choice.precision, labels=job.labels, x_T=x_T, start_t=job.start_t,
            guide=loaded.guide,
        ):
            if self.stop_event.is_set():
                self.progress.emit(done, total)
                self.cancelled.emit(list(self.frames))
                return
            done = step.index + 1
            if pending_x is not None:  # step.x0_pred was predicted from pending_x
                self._keep(pending_t, pending_x, step.x0_pred)
            pending_t, pending_x = (step.t_prev, step.x) if step.t_prev in wanted else (step.t_prev, None)
            now = time.monotonic()
            if now - last_emit >= min_gap or done == total:
                last_emit = now
                self.progress.emit(done, total)
                if self.frames:
                    f = self.frames[-1]
                    self.frame.emit(f.t, f.x, f.x0)
        if pending_x is not None:  # t = 0: the result is its own x_0
            self._keep(pending_t, pending_x, pending_x)
            f = self.frames[-1]
            self.frame.emit(f.t, f.x, f.x0)
        self.progress.emit(total, total)
        self.finished.emit(list(self.frames))

    def _keep(self, t: int, x, x0) -> None:
        self.frames.append(Frame(int(t), _uint8(x), _uint8(x0)))
