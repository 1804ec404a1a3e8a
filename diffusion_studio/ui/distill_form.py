"""The "Distil a model" form, and the models the distillation and the Sampler list.

``DistillForm`` turns its widgets into a ``tasks.distill.DistillRequest``: the teacher (a
bundled model or a run with a best.pt), the last student's steps, the first student's steps,
each round's minutes and the distillation's folder. Every default comes from
``engine.defaults`` (the CLI's ``distill`` reads the same).

``teacher_models(runs_dir)`` and ``student_models(runs_dir)`` are the (key, title, path) lists
the form and the Sampler's model list show; they only look at folder names and files, so a
model list is rebuilt without reading a checkpoint.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QWidget,
)

from ..engine.defaults import DISTILL_ROUND_MINUTES, DISTILL_START_STEPS, DISTILL_STEP_CHOICES, DISTILL_STEPS

#: the last student's steps the form offers (each round halves the steps, so powers of 2)
DEFAULT_TEACHER = "default-conditional"


def teacher_models(runs_dir: Path) -> list[tuple[str, str, Path]]:
    """(source, title, path) of every model a distillation can start from: the bundled models
    (source: the name), then the runs in ``runs_dir`` with a best.pt, newest name first (source:
    the run folder). A student's own folders sit inside a distillation folder, so none is listed."""
    from ..engine.storage.bundled import available_bundled

    out = list(available_bundled())
    try:
        runs = sorted((p for p in Path(runs_dir).iterdir() if (p / "best.pt").is_file()),
                      key=lambda p: p.name, reverse=True)
    except OSError:
        runs = []
    out += [(str(p), f"Run: {p.name}", p / "best.pt") for p in runs]
    return out


def student_models(runs_dir: Path) -> list[tuple[str, str, Path]]:
    """(key, title, best.pt) of every student of the distillation folders in ``runs_dir``
    (``tasks.distill.student_checkpoints``), fewest steps first within each folder, newest
    folder first; the key is the checkpoint's path."""
    from ..tasks.distill import student_checkpoints

    out = []
    try:
        folders = sorted((p for p in Path(runs_dir).iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True)
    except OSError:
        return []
    for folder in folders:
        if (folder / "best.pt").exists():  # a run, not a distillation
            continue
        for steps, path in reversed(student_checkpoints(folder)):
            out.append((str(path), f"Student, {steps} step{'s' if steps > 1 else ''}: {folder.name}", path))
    return out


class DistillForm(QWidget):
    """The distillation's settings (objectName ``distillForm``). Signal ``changed()``.

    request(device, **more) -> DistillRequest (ValueError, one line, when the fields cannot make one).
    fill_teachers(runs_dir): list the teachers (``teacher_models``), keeping the choice.
    out_dir() -> Path: the distillation's folder; until a folder is typed or chosen it is a new
        one in the runs folder named after the teacher, the steps and the time, and a Start with
        the same folder goes on where that distillation stopped.
    """

    changed = Signal()

    def __init__(self, runs_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("distillForm")
        self.runs_dir = Path(runs_dir)
        self.out_auto = True  # the folder follows the teacher and the steps until one is typed
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.teacher_combo = QComboBox(objectName="distillTeacherCombo")
        self.teacher_combo.setToolTip("The trained model whose digits the students learn to make in fewer steps")
        # long model names (the bundled students') must not widen the box past a laptop screen
        self.teacher_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.teacher_combo.setMinimumContentsLength(22)
        form.addRow("Teacher", self.teacher_combo)
        self.steps_combo = QComboBox(objectName="distillStepsCombo")
        for steps in DISTILL_STEP_CHOICES:
            self.steps_combo.addItem(f"{steps} step{'s' if steps > 1 else ''}", steps)
        self.steps_combo.setCurrentIndex(self.steps_combo.findData(DISTILL_STEPS))
        self.steps_combo.setToolTip("The last student's steps: one network call each")
        form.addRow("Final steps", self.steps_combo)
        self.start_spin = QSpinBox(objectName="distillStartStepsSpin", minimum=1, maximum=1000,
                                   value=DISTILL_START_STEPS)
        self.start_spin.setToolTip("The first student learns the teacher's deterministic DDIM with this many steps "
                                   "(guidance folded in); each later round halves them. The final steps times a "
                                   "power of 2")
        self.one_round_check = QCheckBox("in one round", objectName="distillOneRoundCheck")
        self.one_round_check.setToolTip("Skip the students between: the final student learns straight from the "
                                        "first (16 -> 4: four teacher steps per student step). Fewer rounds "
                                        "compound fewer errors; the bundled 4-step student was made this way")
        start_row = QHBoxLayout()
        start_row.addWidget(self.start_spin, 1)
        start_row.addWidget(self.one_round_check)
        form.addRow("Start steps", start_row)
        self.minutes_spin = QDoubleSpinBox(objectName="distillMinutesSpin", decimals=1, minimum=0.1,
                                           maximum=24 * 60.0, value=DISTILL_ROUND_MINUTES, suffix=" min")
        self.minutes_spin.setToolTip("Each round's time budget; a round may end sooner (its epochs, early stopping)")
        form.addRow("Per round", self.minutes_spin)
        self.out_edit = QLineEdit(objectName="distillOutEdit")
        self.out_edit.setToolTip("The distillation's folder: one run folder per round inside it. Start again "
                                 "with the same folder to go on where it stopped")
        self.out_button = QToolButton(objectName="distillOutButton", text="…")
        self.out_button.setToolTip("Choose the distillation's folder")
        row = QHBoxLayout()
        row.addWidget(self.out_edit, 1)
        row.addWidget(self.out_button)
        form.addRow("Folder", row)
        self.out_edit.textEdited.connect(self._on_out_typed)
        self.out_button.clicked.connect(self._choose_out)
        for combo in (self.teacher_combo, self.steps_combo):
            combo.currentIndexChanged.connect(self._rename_out)
            combo.currentIndexChanged.connect(self.changed)
        for spin in (self.start_spin, self.minutes_spin):
            spin.valueChanged.connect(self.changed)
        self.one_round_check.toggled.connect(self.changed)
        self.fill_teachers(self.runs_dir)

    def fields(self) -> tuple[QWidget, ...]:
        """Every input, to disable while a run trains."""
        return (self.teacher_combo, self.steps_combo, self.start_spin, self.one_round_check, self.minutes_spin,
                self.out_edit, self.out_button)

    # ------------------------------------------------------------ teacher
    def fill_teachers(self, runs_dir: Path | None = None) -> None:
        """List the bundled models and the runs with a best.pt; keep the one chosen (else the
        bundled class-conditional model, else the first)."""
        if runs_dir is not None:
            self.runs_dir = Path(runs_dir)
        combo = self.teacher_combo
        chosen = combo.currentData() or DEFAULT_TEACHER
        combo.blockSignals(True)
        combo.clear()
        for source, title, _path in teacher_models(self.runs_dir):
            combo.addItem(title, source)
        combo.setCurrentIndex(max(0, combo.findData(chosen)))
        combo.blockSignals(False)
        self._rename_out()

    def teacher(self) -> str | None:
        """The teacher as ``DistillRequest`` takes it: a bundled name or a run folder (None: none listed)."""
        return self.teacher_combo.currentData()

    def set_teacher(self, source: str) -> None:
        """Choose the teacher ``source`` (a bundled name or a run folder), adding it when not listed."""
        index = self.teacher_combo.findData(str(source))
        if index < 0:
            self.teacher_combo.addItem(f"Run: {Path(source).name}", str(source))
            index = self.teacher_combo.count() - 1
        self.teacher_combo.setCurrentIndex(index)

    def steps(self) -> int:
        return int(self.steps_combo.currentData())

    # ------------------------------------------------------------ folder
    def out_dir(self) -> Path:
        """The distillation's folder (ValueError when the field was cleared)."""
        text = self.out_edit.text().strip()
        if not text:
            raise ValueError("Choose a folder for the distillation.")
        return Path(text).expanduser()

    def set_out_dir(self, folder: str | Path) -> None:
        """Distil into ``folder`` (as if typed: it no longer follows the teacher)."""
        self.out_edit.setText(str(folder))
        self.out_auto = False

    @Slot(str)
    def _on_out_typed(self, _text: str) -> None:
        self.out_auto = False

    @Slot()
    def _choose_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Distil into which folder?", str(self.runs_dir))
        if folder:
            self.set_out_dir(folder)

    @Slot()
    def _rename_out(self, *_args) -> None:
        """A new folder in the runs folder: UTC time, teacher and steps
        (2026-12-06_1012_distill-default-conditional-4step)."""
        if not self.out_auto:
            return
        from ..engine.runs import suggest_run_name

        teacher = Path(self.teacher() or "model").name
        now = _dt.datetime.now(_dt.timezone.utc)
        self.out_edit.setText(str(self.runs_dir / suggest_run_name(f"distill-{teacher}-{self.steps()}step", now)))

    def use_new_out_dir(self) -> None:
        """Name the next distillation's folder afresh (after the teacher, the steps and the time)."""
        self.out_auto = True
        self._rename_out()

    # ------------------------------------------------------------ the request
    def request(self, device: str = "auto", **more):
        """The form's ``DistillRequest`` (ValueError, one line, when it cannot be made); ``more``:
        the request's other fields (``train``, ``val_images``)."""
        from ..tasks.distill import DistillRequest, students_between

        if not self.teacher():
            raise ValueError("No model to distil: train one or install the bundled models.")
        return DistillRequest(teacher=self.teacher(), out=self.out_dir(), steps=self.steps(),
                              start_steps=self.start_spin.value(), round_minutes=(self.minutes_spin.value(),),
                              skip=students_between(self.start_spin.value(), self.steps())
                              if self.one_round_check.isChecked() else (),
                              device=device, **more)
