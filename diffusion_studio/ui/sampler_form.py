"""The Sampler panel's form: which model, how many digits, the reverse process and its seed.

``SamplerForm`` turns its widgets into a ``SamplerConfig`` and a ``tasks.sample.SampleRequest``
for the model it is shown (``show_model``): guidance applies only to a class-conditional
model, autoguidance only to one with a guide network, and the form says why a control is off.
Every default comes from ``SamplerConfig()`` (the one source the CLI reads too). Its model
list (``ModelCombo``) shows every name whole, or cut in the middle where a run's name is long.

``Provenance`` records what a request was asked of which model, so that pictures on screen
can say they came from a previous model and an exported PNG carries its origin.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field, replace
from typing import Callable

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QWidget,
)

from ..engine.defaults import DEFAULT_SAMPLE_COUNT
from ..engine.diffusion.scheduling import DEFAULT_DDIM_STEPS, SamplerConfig
from .student_mode import StudentMode
from .widgets import WrappingLabel

SAMPLER_TITLES = {"ddpm": "DDPM (all T steps)", "ddim": "DDIM (fewer steps)", "dpmpp2m": "DPM-Solver++ 2M"}


class ModelCombo(QComboBox):
    """The model list (objectName ``modelCombo``): as wide as its row allows, never wider; the
    chosen name cut in the middle with "…" where it does not fit (its start and end stay in view),
    every item's full name in its tooltip, and a popup as wide as the longest name."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # the names never set the width (a long one widened the Sampler's fixed-width column)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(16)

    def addItem(self, text: str, data=None) -> None:  # noqa: N802 (Qt name)
        super().addItem(text, data)
        self.setItemData(self.count() - 1, text, Qt.ItemDataRole.ToolTipRole)

    def shown_text(self) -> str:
        """The current name as drawn: whole, or cut in the middle to the width of the field."""
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)
        return self.fontMetrics().elidedText(self.currentText(), Qt.TextElideMode.ElideMiddle, field.width() - 4)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        painter = QStylePainter(self)
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, opt)
        opt.currentText = self.shown_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, opt)

    def showPopup(self) -> None:  # noqa: N802 (Qt name)
        view = self.view()
        widest = max((view.fontMetrics().horizontalAdvance(self.itemText(i)) for i in range(self.count())), default=0)
        view.setMinimumWidth(widest + 4 * view.fontMetrics().averageCharWidth())  # the items' padding
        super().showPopup()


class SamplerForm(QGroupBox):
    """The sampling settings (a QGroupBox titled "Sampling"). Signal ``changed()``: a field
    that decides the reverse process changed."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Sampling", parent)
        self.model = None  # the LoadedModel the form is set up for
        self._build()
        self.student_mode = StudentMode(self)
        self._sampler_kind = SamplerConfig().kind  # the kind the steps field was last set for
        self.sampler_combo.currentIndexChanged.connect(self._on_sampler_changed)
        for w in (self.sampler_combo, self.digit_combo):
            w.currentIndexChanged.connect(self.changed)
        for w in (self.steps_spin, self.eta_spin, self.guidance_spin, self.autoguidance_spin,
                  self.autoguidance_min_t_spin):
            w.valueChanged.connect(self.changed)
        self.clip_check.toggled.connect(self.changed)
        self._on_sampler_changed()

    def _build(self) -> None:
        default = SamplerConfig()
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.model_combo = ModelCombo(objectName="modelCombo")
        form.addRow(QLabel("Model"))
        form.addRow(self.model_combo)  # a row of its own: the whole width for the models' names
        self.model_info = WrappingLabel(objectName="modelInfo")
        self.model_info.setStyleSheet("color: palette(mid); font-size: 11px;")
        form.addRow(self.model_info)
        self.count_spin = QSpinBox(objectName="imageCountSpin", minimum=1, maximum=400,
                                   value=DEFAULT_SAMPLE_COUNT)
        self.count_spin.setToolTip("How many digits to generate")
        form.addRow("Images", self.count_spin)
        self.sampler_combo = QComboBox(objectName="samplerCombo")
        for kind, title in SAMPLER_TITLES.items():
            self.sampler_combo.addItem(title, kind)
        self.sampler_combo.setCurrentIndex(self.sampler_combo.findData(default.kind))
        form.addRow("Sampler", self.sampler_combo)
        self.steps_spin = QSpinBox(objectName="ddimStepsSpin", minimum=1, maximum=1000,
                                   value=default.steps or DEFAULT_DDIM_STEPS)
        self.steps_spin.setToolTip("DDIM or DPM-Solver++ steps (at most T)")
        form.addRow("Steps", self.steps_spin)
        self.eta_spin = QDoubleSpinBox(objectName="etaSpin", decimals=2, minimum=0.0, maximum=1.0, singleStep=0.1)
        self.eta_spin.setValue(default.eta)
        self.eta_spin.setToolTip("DDIM noise: 0 = deterministic, 1 = DDPM-like (the default: it scored better)")
        form.addRow("η (eta)", self.eta_spin)
        self.student_info = WrappingLabel(objectName="studentInfo")
        self.student_info.setStyleSheet("color: #1b5e8c; font-size: 11px;")
        self.student_info.setVisible(False)
        form.addRow(self.student_info)
        self.seed_spin = QSpinBox(objectName="sampleSeedSpin", minimum=0, maximum=2**31 - 1, value=0)
        form.addRow("Seed", self.seed_spin)
        self._build_guidance_rows(form, default)

    def _build_guidance_rows(self, form: QFormLayout, default: SamplerConfig) -> None:
        self.digit_combo = QComboBox(objectName="digitCombo")
        self.digit_combo.addItem("All digits, 0–9 in turn", -1)
        for d in range(10):
            self.digit_combo.addItem(str(d), d)
        form.addRow("Digit", self.digit_combo)
        self.guidance_spin = QDoubleSpinBox(objectName="guidanceSpin", decimals=2, minimum=0.0, maximum=20.0,
                                            singleStep=0.25, value=default.guidance)
        form.addRow("Guidance", self.guidance_spin)
        self.autoguidance_spin = QDoubleSpinBox(objectName="autoguidanceSpin", decimals=2, minimum=0.0, maximum=20.0,
                                                singleStep=0.25, value=default.autoguidance)
        form.addRow("Autoguidance", self.autoguidance_spin)
        self.autoguidance_min_t_spin = QSpinBox(objectName="autoguidanceMinTSpin", minimum=0, maximum=10_000,
                                                value=default.autoguidance_min_t)
        form.addRow("Autoguide above t", self.autoguidance_min_t_spin)
        self.clip_check = QCheckBox("Clip predicted x_0 to [−1, 1]", objectName="clipX0Check",
                                    checked=default.clips_x0)
        self.clip_check.setToolTip("Step from the clipped prediction of x_0 (keeps a young model's samples from "
                                   "blowing up); off = Algorithm 2 exactly as written")
        form.addRow(self.clip_check)

    # ------------------------------------------------------------ the model
    def conditional(self) -> bool:
        return bool(self.model is not None and self.model.model_config.conditional)

    def guide_info(self) -> str | None:
        return None if self.model is None else self.model.guide_info

    def autoguided(self) -> bool:
        """Whether the model takes an autoguidance weight: it carries a guide network, or it is a
        student that learnt the guided steps (weight_input "autoguidance")."""
        return self.guide_info() is not None or self.student_mode.weight_input() == "autoguidance"

    def show_model(self, loaded, source: str = "", bundled: list = ()) -> None:
        """Set the form up for ``loaded`` (None: no model), called ``source``: the model list
        (it, then the ``bundled`` models (name, title, path), then "Open checkpoint…"), its
        description, its T."""
        self.model = loaded
        combo = self.model_combo
        combo.clear()
        if loaded is not None:
            combo.addItem(source or "current model", "current")
        else:
            combo.addItem("no model loaded", "none")
        for name, title, _path in bundled:
            combo.addItem(title, name)
        combo.addItem("Open checkpoint…", "open")
        combo.setCurrentIndex(0)
        combo.setToolTip(combo.itemText(0))
        if loaded is None:
            self.model_info.setText("Train a model or open a checkpoint to sample.")
            self.student_mode.show(None)
            return
        self.model_info.setText(describe_model(loaded))
        T = loaded.schedule.timesteps
        self.student_mode.show(None)  # the user's sampler back before the steps' maximum changes
        self.steps_spin.setMaximum(T)
        self.steps_spin.setValue(min(self.steps_spin.value(), T))
        self.student_mode.show(loaded)

    @Slot()
    def _on_sampler_changed(self, *_args) -> None:
        kind = SamplerConfig(kind=self.sampler_combo.currentData())
        if kind.kind != self._sampler_kind:  # the kind's own defaults
            if kind.takes_steps:
                self.steps_spin.setValue(min(kind.default_steps, self.steps_spin.maximum()))
            self.clip_check.setChecked(kind.clips_x0)
        self._sampler_kind = kind.kind
        self.steps_spin.setEnabled(kind.takes_steps and self.sampler_combo.isEnabled())
        self.eta_spin.setEnabled(kind.takes_eta and self.sampler_combo.isEnabled())

    def set_running(self, running: bool) -> None:
        """Enable what applies to the model while nothing runs, and say why a control is off."""
        student = self.student_mode.weight_input() is not None
        for w in (self.model_combo, self.count_spin, self.sampler_combo, self.seed_spin, self.clip_check):
            w.setEnabled(not running and not (student and w in (self.sampler_combo, self.clip_check)))
        conditional, guide = self.conditional(), self.guide_info()
        for w in (self.digit_combo, self.guidance_spin):
            w.setEnabled(conditional and not running)
        self.autoguidance_spin.setEnabled(self.autoguided() and not running)
        self.autoguidance_min_t_spin.setEnabled(guide is not None and not running and not student)
        self._explain(conditional, guide)
        self.student_mode.explain()
        self._on_sampler_changed()

    def _explain(self, conditional: bool, guide: str | None) -> None:
        if conditional:
            self.digit_combo.setToolTip("Which digit to generate (the model is class-conditional)")
            self.guidance_spin.setToolTip(
                "Classifier-free guidance weight w: ε = (1 + w) ε(x, t, digit) − w ε(x, t, no digit); "
                "0 = plain conditional sampling, larger = more typical digits, less variety (costs 2x per step)")
        else:
            why = "This model is unconditional: train with “Class-conditional” to choose the digit"
            self.digit_combo.setToolTip(why)
            self.guidance_spin.setToolTip(why)
        self.autoguidance_min_t_spin.setToolTip(
            "Autoguidance applies only at steps whose t is above this (a guidance interval): the last, "
            "low-noise steps, which draw the strokes' detail, go unguided; 0 = every step"
            if guide is not None else "This model has no guide network")
        self.autoguidance_spin.setToolTip(
            "Autoguidance weight g (Karras et al. 2024): ε = ε(x, t) + g (ε(x, t) − ε_guide(x, t)), steering "
            f"away from the errors of a weaker version of this model, its guide ({guide}); 0 = off "
            "(costs 2x per step)" if guide is not None else
            "This model has no guide network (a weaker version of itself to steer away from); "
            "the bundled unconditional model has one")

    # ------------------------------------------------------------ what to run
    def sampler_config(self) -> SamplerConfig:
        """The form's reverse process (ValueError when invalid)."""
        kind = SamplerConfig(kind=self.sampler_combo.currentData())
        config = SamplerConfig(
            kind=kind.kind,
            steps=self.steps_spin.value() if kind.takes_steps else None,
            eta=self.eta_spin.value() if kind.takes_eta else kind.eta,
            clip_x0=self.clip_check.isChecked(),
            guidance=self.guidance_spin.value() if self.conditional() else 0.0,
            autoguidance=self.autoguidance_spin.value() if self.autoguided() else 0.0,
            autoguidance_min_t=self.autoguidance_min_t_spin.value(),
        )
        return self.student_mode.sampler(config)

    def digit(self) -> int | None:
        """The digit to ask a class-conditional model for (None: 0-9 in turn, or an unconditional model)."""
        digit = self.digit_combo.currentData()
        return None if not self.conditional() or digit is None or digit < 0 else int(digit)

    def labels(self, n: int):
        """The (n,) digits to ask a class-conditional model for (None for an unconditional one)."""
        from ..tasks.sample import SampleRequest

        return SampleRequest(n=n, digit=self.digit()).labels(self.model) if self.conditional() else None

    def _ddim_steps(self) -> int:
        """The explorations' DDIM steps: the form's, at most the model's T."""
        return min(self.steps_spin.value(), self.model.schedule.timesteps)

    def interpolate_request(self, seed_b: int):
        """Nine digits between the x_T of the form's seed and ``seed_b`` (``tasks.explore``); a
        class-conditional model makes the chosen digit, or with "0–9 in turn" none (its
        unconditional branch), so that the two seeds may make two different digits (seeds 0 and
        1 made nine 0s when a 0 was asked)."""
        from ..tasks.explore import InterpolateRequest

        return InterpolateRequest(self.seed_spin.value(), seed_b, sampler=self.sampler_config(),
                                  steps=self._ddim_steps(), digit=self.digit())

    def sweep_request(self):
        """A grid of guidance weights (``tasks.explore``): for a class-conditional model the digits
        0–9 from the form's seed ("0–9 in turn") or SWEEP_SEEDS seeds of the chosen digit; else
        SWEEP_SEEDS seeds at several autoguidance weights."""
        from ..tasks.explore import SWEEP_DIGITS, SWEEP_SEEDS, GuidanceSweepRequest

        every_digit = self.conditional() and self.digit() is None
        return GuidanceSweepRequest(self.seed_spin.value(), sampler=self.sampler_config(), steps=self._ddim_steps(),
                                    digit=self.digit(), digits=SWEEP_DIGITS if every_digit else None,
                                    seeds=1 if every_digit else SWEEP_SEEDS)

    def sample_request(self):
        """The form's ``tasks.sample.SampleRequest`` (ValueError when invalid)."""
        from ..tasks.sample import SampleRequest

        return SampleRequest(n=self.count_spin.value(), sampler=self.sampler_config(), seed=self.seed_spin.value(),
                             digit=self.digit(), precision="auto")


def describe_model(loaded) -> str:
    """One line about a model: its network, schedule, training and guide."""
    mc, sc = loaded.model_config, loaded.schedule_config
    best_val = (loaded.payload.get("best") or {}).get("val_loss")
    distilled = loaded.payload.get("distill") or {}
    return ((f"residual U-Net {'/'.join(map(str, mc.level_channels))} channels" if mc.arch == "res"
             else f"U-Net base {mc.base_channels}") + f", {sc.kind} schedule T={loaded.schedule.timesteps}, "
            + (f"a {mc.distilled_steps}-step student of "
               f"{distilled.get('origin') or distilled.get('teacher') or 'a model'}, "
               if mc.is_student else "")
            + f"{round(loaded.epochs_trained, 1):g} epochs"
            + (f" (validation {best_val:.5f})" if best_val is not None else "")
            + (", EMA weights" if loaded.uses_ema else "")
            + (", class-conditional" if mc.conditional else "")
            + (f", autoguidance guide of {loaded.guide_epochs:.1f} epochs" if loaded.guide is not None else ""))


@dataclass(frozen=True)
class Provenance:
    """What made the pictures on screen: ``source``, the model's label ("run: baseline"), and
    ``text``, the PNG text chunks an export of them carries (model, checkpoint, sampler as
    ``SamplerConfig.describe``, seed, n, digit, app version, a description). ``made_by`` is a
    weak reference to the model handle: a change of model is seen without keeping the old one alive.
    """

    source: str
    text: dict = field(default_factory=dict)
    made_by: Callable[[], object] = lambda: None

    def is_from(self, loaded) -> bool:
        """Whether ``loaded`` (the current model) made these pictures."""
        return loaded is not None and self.made_by() is loaded

    def described(self, description: str) -> "Provenance":
        return replace(self, text={**self.text, "Description": description})


def provenance(loaded, source: str, description: str = "", **asked: str) -> Provenance:
    """The provenance of pictures ``loaded`` (labelled ``source``) makes; ``asked``: the request's
    settings as text (sampler, seed, n, digit)."""
    from ..tasks.sample import provenance_text

    text = provenance_text(loaded, source, description, model_details=describe_model(loaded), **asked)
    return Provenance(source or "current model", text, weakref.ref(loaded))


def sample_provenance(loaded, source: str, request, description: str = "") -> Provenance:
    """The provenance of a ``tasks.sample.SampleRequest``'s digits."""
    from ..tasks.sample import sample_settings

    return provenance(loaded, source, description, **sample_settings(loaded, request))


def explore_provenance(loaded, source: str, request) -> Provenance:
    """The provenance of an interpolation or a guidance sweep: its seeds now, its description
    (the strip's caption: the sampler, steps, weights and digit) when it is done."""
    seed = f"{request.seed_a} to {request.seed_b}" if hasattr(request, "seed_a") else str(request.seed)
    return provenance(loaded, source, seed=seed)
