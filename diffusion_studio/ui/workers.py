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

Every job is a ``TaskWorker`` running one call of the task layer (``tasks``): the panels
build a request, start it here, cancel it, and draw what comes back.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Callable

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from ..engine.text import first_line

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


# ---------------------------------------------------------------- the worker
class TaskWorker(QObject):
    """Runs one task in a worker thread: ``fn(ctx)``, where ``ctx`` is a
    ``tasks.context.TaskContext`` whose stop event is this worker's (``stop()``). ``fn`` is a
    task call (``lambda ctx: tasks.sample.sample_frames(model, request, ctx)``); its result
    and what it reports must be plain data (CPU arrays, numbers, records), never a widget.

    Signals
      progress(stage, done, total): ``ctx.progress``, at most ``MAX_SIGNALS_PER_S`` a second
          (a new stage and a stage's last step always go through).
      partial(list): what fn handed to ``ctx.partial`` since the previous emission, in
          order; none is lost (a list at most ``MAX_SIGNALS_PER_S`` times a second, and
          the rest before ``finished``).
      finished(object): fn's result.
      cancelled(): fn stopped as asked (it raised ``engine.stopping.Stopped``).
      failed(message): one line, "<activity> failed: <why>" (any exception; never a traceback).
      done(): always last, whatever happened, so the thread can quit.
    ``request``: what the task was asked (kept for messages and tests), or None.
    ``thread_name`` names the thread (Qt's objectName and Python's ``threading`` name).
    """

    progress = Signal(str, int, int)
    partial = Signal(object)
    finished = Signal(object)
    cancelled = Signal()
    failed = Signal(str)
    done = Signal()

    def __init__(self, fn: Callable, activity: str = "the job", thread_name: str = "", request=None) -> None:
        super().__init__()
        self.fn = fn
        self._activity = activity
        self.thread_name = thread_name
        self.request = request
        self.stop_event = threading.Event()
        self._pending: list = []
        self._last_partial = 0.0
        self._last_progress = 0.0
        self._stage = None

    def stop(self) -> None:
        """Ask the task to stop at its next check (any thread)."""
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

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self._stage or done >= total or now - self._last_progress >= 1.0 / MAX_SIGNALS_PER_S:
            self._stage, self._last_progress = stage, now
            self.progress.emit(stage, done, total)

    def _on_partial(self, obj) -> None:
        self._pending.append(obj)
        now = time.monotonic()
        if now - self._last_partial >= 1.0 / MAX_SIGNALS_PER_S:
            self._last_partial = now
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.partial.emit(batch)

    def _run(self) -> None:
        from ..engine.stopping import Stopped
        from ..tasks.context import TaskContext

        ctx = TaskContext(self.stop_event, on_progress=self._on_progress, on_partial=self._on_partial)
        try:
            result = self.fn(ctx)
        except Stopped:  # any task's "stopped as asked"
            self._flush()
            self.cancelled.emit()
            return
        finally:
            self._flush()
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
