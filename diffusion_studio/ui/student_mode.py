"""The Sampler form with a distilled student loaded: it samples with its own steps.

A student (``model_config.is_student``) was taught one deterministic DDIM grid of
``distilled_steps`` steps, and ``engine.diffusion.sampling.sampler_for`` runs it on that grid
whatever the form says. So the form shows that grid in its sampler, steps, eta and clip
fields, disables them and says why in a caption, and limits the weight the student takes as an
input (guidance w, or autoguidance g) to the range it learnt. The user's own sampler settings
come back when a model that is not a student is shown.
"""

from __future__ import annotations

from contextlib import ExitStack

from ..engine.defaults import DISTILL_AUTOGUIDANCE_RANGE, DISTILL_GUIDANCE_RANGE

LEARNT = {"guidance": ("guidance w", DISTILL_GUIDANCE_RANGE), "autoguidance": ("autoguidance g",
                                                                              DISTILL_AUTOGUIDANCE_RANGE)}


def student_caption(steps: int) -> str:
    """"4-step student: its own 4 deterministic steps, one network call each"."""
    if steps == 1:
        return "1-step student: its own single deterministic step, one network call"
    return f"{steps}-step student: its own {steps} deterministic steps, one network call each"


class StudentMode:
    """A ``SamplerForm``'s student handling (``form.student_mode``).

    show(loaded): set the form up for ``loaded`` (a student, another model, or None).
    weight_input() -> "guidance" | "autoguidance" | "" for a student, None for any other model.
    weights() -> (lo, hi): the weights the student learnt (``payload["distill"]``).
    sampler(config) -> SamplerConfig: what the model runs (a student: its own steps, the form's weights).
    explain(): the tooltips that say why the sampler's fields are off.
    """

    def __init__(self, form) -> None:
        self.form = form
        self.loaded = None  # the student shown, or None
        self._saved: dict | None = None  # the user's sampler fields while a student is shown
        self._spins = (form.sampler_combo, form.steps_spin, form.eta_spin, form.clip_check,
                       form.guidance_spin, form.autoguidance_spin)
        self._ranges = {spin: (spin.minimum(), spin.maximum()) for spin in (form.guidance_spin,
                                                                             form.autoguidance_spin)}

    def weight_input(self) -> str | None:
        return None if self.loaded is None else self.loaded.model_config.weight_input

    def weights(self) -> tuple[float, float]:
        learnt = self.loaded.payload.get("distill") or {}
        lo, hi = LEARNT.get(self.weight_input() or "guidance")[1]
        return float(learnt.get("weight_min", lo)), float(learnt.get("weight_max", hi))

    def _blocked(self) -> ExitStack:
        stack = ExitStack()
        for w in self._spins:
            stack.callback(w.blockSignals, w.blockSignals(True))
        return stack

    def show(self, loaded) -> None:
        f = self.form
        student = loaded is not None and loaded.model_config.is_student
        with self._blocked():
            if not student and self._saved is not None:  # the user's sampler back
                for spin, (lo, hi) in self._ranges.items():
                    spin.setRange(lo, hi)
                saved, self._saved = self._saved, None
                f.sampler_combo.setCurrentIndex(saved["kind"])
                f.steps_spin.setValue(saved["steps"])
                f.eta_spin.setValue(saved["eta"])
                f.clip_check.setChecked(saved["clip"])
                f.guidance_spin.setValue(saved["guidance"])
                f.autoguidance_spin.setValue(saved["autoguidance"])
                f._sampler_kind = f.sampler_combo.currentData()
            self.loaded = loaded if student else None
            if student:
                self._show_student()
        f.student_info.setVisible(student)

    def _show_student(self) -> None:
        from ..engine.diffusion.scheduling import SamplerConfig, student_sampler

        f, steps = self.form, self.loaded.model_config.distilled_steps
        if self._saved is None:
            self._saved = {"kind": f.sampler_combo.currentIndex(), "steps": f.steps_spin.value(),
                           "eta": f.eta_spin.value(), "clip": f.clip_check.isChecked(),
                           "guidance": f.guidance_spin.value(), "autoguidance": f.autoguidance_spin.value()}
        own = student_sampler(SamplerConfig(), steps)
        f.sampler_combo.setCurrentIndex(f.sampler_combo.findData(own.kind))
        f._sampler_kind = own.kind
        f.steps_spin.setValue(own.steps)
        f.eta_spin.setValue(own.eta)
        f.clip_check.setChecked(own.clips_x0)
        lo, hi = self.weights()
        spin = f.autoguidance_spin if self.weight_input() == "autoguidance" else f.guidance_spin
        spin.setRange(lo, hi)  # (a value outside is brought inside)
        what = LEARNT.get(self.weight_input(), ("weight",))[0]
        f.student_info.setText(f"{student_caption(steps)}. It learnt {what} from {lo:g} to {hi:g}.")

    def sampler(self, config):
        """``config`` as the model runs it: for a student, ``sampler_for``'s (its own steps), its
        weight at every step (it learnt the guided step at every t: no guidance interval)."""
        if self.loaded is None:
            return config
        from dataclasses import replace

        from ..engine.diffusion.sampling import sampler_for

        return replace(sampler_for(self.loaded.model, config), autoguidance_min_t=0)

    def explain(self) -> None:
        if self.loaded is None:
            return
        why = (f"This is a {self.loaded.model_config.distilled_steps}-step student: it samples with the "
               "deterministic steps it was distilled on, whatever is set here")
        for w in (self.form.sampler_combo, self.form.steps_spin, self.form.eta_spin, self.form.clip_check):
            w.setToolTip(why)
        self.form.autoguidance_min_t_spin.setToolTip("A student takes its weight at every step: it learnt the "
                                                     "guided step at every t")
        lo, hi = self.weights()
        spin = self.form.autoguidance_spin if self.weight_input() == "autoguidance" else self.form.guidance_spin
        what = LEARNT.get(self.weight_input(), ("weight",))[0]
        spin.setToolTip(f"The {what} this student takes as an input, from {lo:g} to {hi:g} (the weights it "
                        "learnt): one network call per step, where its teacher made two")
