"""The Training panel's "Distil a model" box: few-step students of a trained model.

The form (``distill_form.DistillForm``) builds a ``tasks.distill.DistillRequest``; this box
checks it (``check_request``: one line in the panel's error area), then runs
``tasks.distill.distill`` as the panel's run (``TrainPanel.start_job``: the same worker, the
same Stop, the same curves and progress lines). Each round is a training run of its own, so
the plots show the current round only, its name above them; the box keeps a line per round.
A distillation that ends with every round done opens the learner's view
(``distill_view.RoundStripDialog``): the same x_T through the teacher and every student,
computed by ``tasks.distill.round_strip`` in a worker of its own. "Show rounds…" opens it for
any distillation folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..engine.defaults import DISTILL_VAL_IMAGES
from ..engine.storage import paths
from .distill_form import DistillForm
from .distill_view import RoundStripDialog
from .widgets import WrappingLabel
from .workers import TaskWorker, WorkerRunner, on_gui_thread

# a round's loss (RoundRecord.loss): the student's v against the one its teacher's steps imply,
# or that error in ε, the guidance round's default
ROUND_LOSS_FORMULAS = {"v": "‖v − ṽ‖²", "eps": "ᾱ_t·‖v − ṽ‖² (the same error in ε: ‖ε − ε̃‖²)"}
PLOTS_CAPTION = ("Each round is a training run of its own, so the plots start afresh for every round, named above "
                 "them. Its loss is how far the student's step lands from where its teacher's steps land "
                 "(two steps, four in one round from 16 to 4; in the first round, one guided step): lower is "
                 "better.")
PLOTS_TOOLTIP = (f"The loss of a round is {ROUND_LOSS_FORMULAS['v']}: v is the student's output, ṽ the one that "
                 "would take its one step to where the teacher's two steps land (Salimans & Ho 2022). The first "
                 "round's target is the teacher's guided output (Meng et al. 2023), and its loss "
                 f"{ROUND_LOSS_FORMULAS['eps']}, the error the teacher was trained on.")
STATUS_WORDS = {"waiting": "to come", "starting": "training…", "resuming": "resuming…", "done": "done earlier",
                "completed": "done", "early_stopped": "done (early stopping)", "budget": "done (time budget)",
                "stopped": "stopped", "diverged": "diverged", "failed": "failed"}


def round_title(index: int, rounds: int, stage: str, steps: int, teacher_steps: int) -> str:
    """"Round 1 of 3: fold the guidance in, 16 steps" or "Round 2 of 3: 16 steps -> 8"."""
    from ..tasks.distill import round_what

    return f"Round {index + 1} of {rounds}: {round_what(stage, steps, teacher_steps)}"


class DistillBox(QGroupBox):
    """See the module docstring (objectName ``distillBox``); part of a ``TrainPanel``.

    start() -> bool: distil with the form's settings (Start; a folder that holds a stopped
        distillation goes on where it stopped). stop(): the panel's Stop.
    show_rounds(folder=None, teacher=None) -> bool: the learner's view of a distillation
        folder (None asks with a folder dialog); ``teacher`` (a model source) is read from the
        first student's checkpoint when not given.
    is_distilling(), update_enabled(), shutdown(timeout_ms) -> bool.
    ``round_lines``: one line per round of the distillation running or last run.
    ``train_changes`` (keyword arguments of ``tasks.distill.distill_train_config``) and
    ``val_images`` make each round's training, ``strip_digits`` the learner's view (tests make them tiny).
    """

    train_changes: dict = {}
    val_images = DISTILL_VAL_IMAGES
    strip_digits = 10  # the learner's view: digits per row (one x_T each)

    def __init__(self, panel, parent: QWidget | None = None) -> None:
        super().__init__("Distil a model", parent)
        self.setObjectName("distillBox")
        self.panel, self.state = panel, panel.state
        self.request = None
        self.round_lines: list[str] = []
        self.outcome = ""  # "complete", "stopped", "failed" once a distillation has ended
        self._distilling = False
        self.strip_runner = WorkerRunner(self)
        self.strip_runner.stopped.connect(self.update_enabled)
        self.dialog: RoundStripDialog | None = None
        self.form = DistillForm(paths.runs_dir())
        self.start_button = QPushButton("Start distilling", objectName="startDistillButton")
        self.start_button.setToolTip("Teach few-step students the teacher's digits, round by round; with the folder "
                                     "of a stopped distillation, go on where it stopped")
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button = QPushButton("Stop", objectName="stopDistillButton", enabled=False)
        self.stop_button.setToolTip("Stop after the current batch; Start with the same folder goes on from there")
        self.stop_button.clicked.connect(self.stop)
        self.rounds_button = QPushButton("Show rounds…", objectName="showRoundsButton")
        self.rounds_button.setToolTip("The same starting noise through the teacher and each student of a "
                                      "distillation folder")
        self.rounds_button.clicked.connect(lambda: self.show_rounds())
        self.status_label = QLabel(objectName="distillStatus", wordWrap=True)
        self.status_label.setStyleSheet("color: #444;")
        self.status_label.setVisible(False)  # until a distillation starts: a line per round
        self.caption = WrappingLabel(text=PLOTS_CAPTION, objectName="distillCaption")
        self.caption.setToolTip(PLOTS_TOOLTIP)
        self.caption.setStyleSheet("color: palette(mid); font-size: 11px;")
        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.rounds_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        layout.addWidget(self.caption)
        panel.runner.stopped.connect(self._on_thread_stopped)
        self.state.data_changed.connect(self.update_enabled)
        self.update_enabled()

    # ------------------------------------------------------------ state
    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        """Shown ("Distil a model…"): list the runs trained since as teachers too."""
        super().showEvent(event)
        if not self.panel.is_training():
            self.form.fill_teachers()

    def is_distilling(self) -> bool:
        return self._distilling

    @Slot()
    def update_enabled(self) -> None:
        busy = self.panel.is_training()
        self.start_button.setEnabled(self.state.data is not None and not busy)
        self.stop_button.setEnabled(self._distilling)
        self.rounds_button.setEnabled(not self.strip_runner.is_running())
        for w in self.form.fields():
            w.setEnabled(not busy)

    def _show_rounds_status(self) -> None:
        self.status_label.setText("\n".join(self.round_lines))
        self.status_label.setVisible(bool(self.round_lines))

    # ------------------------------------------------------------ distilling
    def start(self) -> bool:
        """Distil with the form's settings; False (and one line in the panel) when it cannot."""
        from ..engine.runs import RunError
        from ..engine.storage.checkpoint import CheckpointError
        from ..tasks.distill import check_request, distill_train_config

        if self.panel.is_training():
            return False
        if self.state.data is None:
            self.panel._show_error("No MNIST data is loaded: open a data folder first.")
            return False
        try:
            request = self.form.request(self.panel.form.device_combo.currentText(),
                                        train=distill_train_config(**self.train_changes), val_images=self.val_images)
            check_request(request)  # reads the teacher: a wrong one is one line now, not in the worker
        except (ValueError, CheckpointError, RunError) as exc:
            self.panel._show_error(f"Cannot distil: {exc}")
            return False
        self.request, self.outcome = request, ""
        self.round_lines = [f"{round_title(i, len(request.rounds), r.stage, r.steps, r.teacher_steps)}: {STATUS_WORDS['waiting']}"
                            for i, r in enumerate(request.rounds)]
        self._show_rounds_status()
        self.form.set_out_dir(request.out)  # Start again with this folder goes on where it stops
        self._distilling = True
        self.panel.start_job(_distill_job(request, self.state.data), "distillation", request, self._on_records)
        self.panel.view.stopping_label.setText(f"Distilling {Path(request.teacher).name} into {request.out.name}…")
        return True

    @Slot()
    def stop(self) -> None:
        if self._distilling:
            self.panel.stop_training()
            self.stop_button.setEnabled(False)

    @Slot(object)
    def _on_records(self, records: list) -> None:
        """A batch of the distillation's records: a round's start here, its training records
        drawn by the panel as any run's."""
        batch = []
        for record in records:
            if record.kind == "round":
                self.panel._on_records(batch)
                batch = []
                self._on_round(record)
            elif record.kind == "started" and record.mode != "new":
                # a resumed round trains with the distillation's settings: the training form keeps the user's
                batch.append(replace(record, mode="new"))
            else:
                batch.append(record)
                if record.kind == "finished" and self._round is not None:
                    self._set_round_status(self._round, record.reason)
        self.panel._on_records(batch)

    _round: int | None = None  # the round training now

    def _set_round_status(self, index: int, status: str) -> None:
        head = self.round_lines[index].rsplit(": ", 1)[0]
        self.round_lines[index] = f"{head}: {STATUS_WORDS.get(status, status)}"
        self._show_rounds_status()

    def _on_round(self, rec) -> None:
        self._set_round_status(rec.index, rec.status)
        if rec.status == "done":
            return
        self._round = rec.index
        title = round_title(rec.index, rec.rounds, rec.stage, rec.steps, rec.teacher_steps)
        self.panel.view.reset()  # each round is a run of its own: its curves start afresh
        self.panel.view.set_round(f"{title} (this round's curves)", ROUND_LOSS_FORMULAS[rec.loss])
        self.state.report(f"{title}: {rec.status}, {rec.folder}")

    @Slot()
    def _on_thread_stopped(self) -> None:
        if not self._distilling:
            self.update_enabled()
            return
        from ..engine.runs import RunError
        from ..tasks.distill import round_status

        self._distilling, self._round = False, None
        reason = self.panel.last_reason
        try:
            complete = all(round_status(r.folder) == "done" for r in self.request.rounds)
        except RunError:
            complete = False
        self.outcome = "complete" if complete else ("failed" if reason in ("failed", "diverged") else "stopped")
        if self.outcome == "stopped":
            self.round_lines.append("Stopped: Start with the same folder goes on from here.")
            self._show_rounds_status()
        self.update_enabled()
        if self.outcome == "complete":
            self.round_lines.append(f"Every round is done; the students are in {self.request.out}.")
            self._show_rounds_status()
            self.form.use_new_out_dir()
            self.show_rounds(self.request.out, self.request.teacher)

    # ------------------------------------------------------------ the learner's view
    def show_rounds(self, folder: str | Path | None = None, teacher: str | None = None) -> bool:
        """The same x_T through the teacher and each student of ``folder`` (None: a folder
        dialog), in the learner's window; computed in a worker. False when it cannot start."""
        from ..tasks.distill import student_checkpoints

        if self.strip_runner.is_running():
            return False
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Show the rounds of which distillation?",
                                                      str(paths.runs_dir()))
            if not folder:
                return False
        folder = Path(folder)
        students = student_checkpoints(folder)
        if not students:
            self.panel._show_error(f"No student in {folder}: choose a distillation folder (with guidance-16, "
                                  "steps-8, … inside).")
            return False
        if self.dialog is None:
            self.dialog = RoundStripDialog(self)
        view = self.dialog.view
        view.show_busy(f"Sampling the same digits with the teacher and {len(students)} "
                       f"student{'s' if len(students) > 1 else ''}…")
        self.dialog.bring_up()
        job = _strip_job(folder, students, teacher, self.state.device, self.strip_digits)
        worker = TaskWorker(job, "comparing the rounds")
        worker.progress.connect(on_gui_thread(
            self, lambda _stage, done, total: view.show_busy(f"Sampling row {done} of {total}…")))
        worker.finished.connect(on_gui_thread(self, lambda result: view.show_strip(result[0], folder, result[1])))
        worker.failed.connect(on_gui_thread(self, lambda message: view.show_error(message[:1].upper() + message[1:])))
        worker.failed.connect(self.state.report)
        self.strip_runner.start(worker)
        self.update_enabled()
        return True

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """Stop the comparison (the distillation is the panel's run) and wait at most ``timeout_ms``."""
        return self.strip_runner.stop_and_wait(timeout_ms)


def _distill_job(request, data):
    """fn(ctx) for a TaskWorker: every record of ``tasks.distill.distill`` to the panel."""

    def run(ctx) -> None:
        from ..tasks.distill import distill

        for record in distill(request, data, ctx):
            ctx.partial(record)

    return run


def _strip_job(folder: Path, students, teacher, device: str, n: int):
    """fn(ctx) for a TaskWorker: (``tasks.distill.round_strip``, the teacher it used)."""

    def run(ctx):
        from ..tasks.distill import round_strip

        source = teacher or teacher_of(folder, students)
        return round_strip(source, students, n=n, seed=0, device=device, ctx=ctx), source

    return run


def teacher_of(folder: Path, students) -> str:
    """The model the distillation in ``folder`` started from, as a model source: the first
    student's checkpoint names it (a bundled model, or a run folder beside the distillation's
    or in the runs folder), unless the folder's distill.json records it. ValueError, one line, when it is not found."""
    from ..engine.storage.bundled import BUNDLED
    from ..engine.storage.checkpoint import load_checkpoint
    from ..tasks.distill import distillation_teacher

    recorded = distillation_teacher(folder)  # distill.json: the teacher as the user named it
    if recorded is not None and (recorded in BUNDLED or Path(recorded).exists()):
        return recorded
    distilled = load_checkpoint(students[0][1]).get("distill") or {}
    name = distilled.get("origin") or distilled.get("teacher", "")
    if name in BUNDLED:
        return name
    for candidate in (folder.parent / name, paths.runs_dir() / name):
        if name and (candidate / "best.pt").is_file():
            return str(candidate)
    raise ValueError(f"cannot find the teacher {name!r} of {folder.name}; it was a run in a folder no longer "
                     "beside the distillation")
