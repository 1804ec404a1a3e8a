"""Distillation: few-step students of a trained model.

Two stages, each a training run of its own (the Trainer's loop, with this module's loss):

1. **"guidance"** (guided distillation, Meng et al. 2023): the student learns the teacher's
   *guided* prediction, taking the weight (classifier-free w, or autoguidance g) as an input,
   so guidance costs one network call instead of two. It learns it at the timesteps of a
   K-step trailing grid (``trailing_timesteps``), the only ones the next stage asks about.
2. **"halve"** (progressive distillation, Salimans & Ho 2022, Algorithm 2): a student of K
   steps learns to land with one deterministic DDIM step where its teacher, the previous
   student of 2K steps, lands with two. The grids are nested, so the teacher's two steps
   from t = t_i go through t' = its grid's next timestep to t'' = t_{i+1}. The target is the
   x_0 for which one DDIM step from z_t reaches the teacher's z_t'':

       x~ = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t)

   With ``factor`` F > 2 a round skips students: the student of K steps learns from one of
   F K steps, whose F steps from t_i end at t_{i+1} (fewer rounds, so fewer errors that
   compound: Berthelot et al. 2023, TRACT).

The student predicts v = alpha eps - sigma x_0 (Salimans & Ho, section 4): an eps-prediction
network's x_0 = (z - sigma eps) / alpha divides by alpha_T = 0.006 at t = T, where every
student starts and a one-step student does all its work; v gives x_0 = alpha z - sigma v,
well defined everywhere. A halving round's loss is ||v - v~||^2 with v~ = (alpha z - x~) / sigma,
the x_0 error weighted by SNR + 1, their "SNR+1" weighting. The guidance round's is the same error
in eps (``DistillConfig.loss``), the space its eps-prediction teacher learnt in: there the steps
from near-pure noise, which hardly move z, no longer dominate the loss. The teacher's steps clip
x_0 to [-1, 1], and a student samples with the same clipped deterministic steps
(``student_sampler``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

import torch
from torch import nn

from ..defaults import (
    DISTILL_AUTOGUIDANCE_RANGE, DISTILL_GUIDANCE_RANGE, DISTILL_LOSS, DISTILL_LOSSES, DISTILL_VAL_IMAGES,
)
from ..device import autocast
from ..diffusion.guidance import guided_eps
from ..diffusion.schedule import NoiseSchedule, _known_fields
from ..diffusion.scheduling import _predicted_x0, trailing_timesteps
from ..diffusion.unet import UNetConfig, build_model
from .algorithm import drop_labels

STAGES = ("guidance", "halve")
WEIGHT_KINDS = ("guidance", "autoguidance")
MAX_WEIGHT = 100.0


@dataclass(frozen=True)
class DistillConfig:
    """One distillation run (a round).

    stage:       "guidance" (fold the guidance in, on a ``steps``-step grid) or "halve" (a
                 ``steps``-step student of a 2 ``steps``-step teacher).
    steps:       the student's sampling steps.
    weight_kind: the weight the student takes as an input: "guidance" (classifier-free w, for a
                 class-conditional teacher) or "autoguidance" (g, for a teacher with a guide).
    weight_min, weight_max: the weights the student learns, drawn uniformly per image.
    teacher:     what the teacher is called (a bundled model's name, a run or a file).
    teacher_sha256: the teacher's weights' checksum (``contents_checksum`` of its entry).
    origin:      the model the whole distillation started from ("default-conditional").
    val_images:  how many validation digits measure the round (with fixed t, noise and w).
    factor:      "halve" only: the teacher's steps per student step (2 halves them).
    loss:        the space the student's error is measured in: "v" (||v - v~||^2, the x_0 error
                 weighted by SNR + 1) or "eps" (||eps - eps~||^2 = alphabar_t ||v - v~||^2, the
                 error an eps-prediction teacher was trained on; see ``loss_weights``).
    """

    stage: Literal["guidance", "halve"]
    steps: int
    weight_kind: Literal["guidance", "autoguidance"]
    weight_min: float
    weight_max: float
    teacher: str = ""
    teacher_sha256: str = ""
    val_images: int = DISTILL_VAL_IMAGES
    origin: str = ""  # the model the first round distilled (the teacher of every round is the round before)
    factor: int = 2
    loss: Literal["v", "eps"] = "v"  # files from before the choice read as "v", what they learnt

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown distillation stage {self.stage!r}; choose one of {', '.join(STAGES)}")
        if self.weight_kind not in WEIGHT_KINDS:
            raise ValueError(f"unknown weight {self.weight_kind!r}; choose one of {', '.join(WEIGHT_KINDS)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= 1000:
            raise ValueError(f"a student's steps must be a whole number in 1..1000, got {self.steps!r}")
        if not (0.0 <= self.weight_min <= self.weight_max <= MAX_WEIGHT):
            raise ValueError(f"the weights must satisfy 0 <= min <= max <= {MAX_WEIGHT:g}, "
                             f"got {self.weight_min}..{self.weight_max}")
        if isinstance(self.val_images, bool) or not isinstance(self.val_images, int) or self.val_images < 1:
            raise ValueError(f"val_images must be a whole number >= 1, got {self.val_images!r}")
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or not 2 <= self.factor <= 1000:
            raise ValueError(f"a round's factor (the teacher's steps per student step) must be a whole number "
                             f"in 2..1000, got {self.factor!r}")
        if self.loss not in DISTILL_LOSSES:
            raise ValueError(f"unknown distillation loss {self.loss!r}; choose one of {', '.join(DISTILL_LOSSES)}")

    @property
    def teacher_steps(self) -> int:
        """The steps the teacher takes over the student's grid: as many, or ``factor`` times as many."""
        return self.steps if self.stage == "guidance" else self.factor * self.steps

    def describe(self) -> str:
        what = ("fold the guidance into" if self.stage == "guidance"
                else "halve" if self.factor == 2 else f"divide the steps by {self.factor}")
        return (f"distilling {self.teacher or 'the teacher'} ({self.teacher_steps} steps) into a {self.steps}-step "
                f"student ({what}), {self.weight_kind} weight {self.weight_min:g}..{self.weight_max:g}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DistillConfig":
        return cls(**_known_fields(cls, data))


def weight_range(kind: str) -> tuple[float, float]:
    """The default weights a student of ``kind`` learns (``engine.defaults``)."""
    return DISTILL_GUIDANCE_RANGE if kind == "guidance" else DISTILL_AUTOGUIDANCE_RANGE


def weight_kind_of(teacher: UNetConfig, has_guide: bool) -> str:
    """The weight a student of this teacher takes: the one its teacher is guided by. A student
    takes the same weight as its teacher student. ValueError (one line) when there is none."""
    if teacher.weight_input:
        return teacher.weight_input
    if teacher.conditional:
        return "guidance"
    if has_guide:
        return "autoguidance"
    raise ValueError("this model has no guidance to fold in (it is neither class-conditional nor carries "
                     "an autoguidance guide); distil the bundled models or a run trained from them")


def student_config(teacher: UNetConfig, weight_kind: str, steps: int) -> UNetConfig:
    """The student's network: the teacher's shape, predicting v, taking the weight as an input."""
    return replace(teacher, prediction="v", weight_input=weight_kind, distilled_steps=steps)


def teacher_entry(payload: dict, name: str) -> dict:
    """What a round keeps of its teacher (in its last.pt, so a resume needs nothing else): the
    configs, the weights it samples with (the EMA copy when there is one) and its guide."""
    weights = payload.get("ema_weights") or payload["weights"]
    entry = {"model": dict(payload["model"]), "schedule": dict(payload["schedule"]),
             "weights": {k: v.detach().float().clone() if v.is_floating_point() else v.detach().clone()
                         for k, v in weights.items()},
             "source": str(name)}
    if payload.get("guide") is not None:
        entry["guide"] = payload["guide"]
    return entry


def _frozen(config: UNetConfig, weights: dict, device, memory_format) -> nn.Module:
    net = build_model(config)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    net.to(device, memory_format=memory_format).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def check_teacher(config: DistillConfig, teacher: UNetConfig, has_guide: bool) -> None:
    """Refuse a teacher the round cannot learn from, in one line."""
    if config.stage == "halve":
        if not teacher.is_student or teacher.distilled_steps != config.teacher_steps:
            got = f"a {teacher.distilled_steps}-step student" if teacher.is_student else "not a student"
            raise ValueError(f"a {config.steps}-step round learns from a {config.teacher_steps}-step student; "
                             f"the teacher is {got}")
        if teacher.weight_input != config.weight_kind:
            raise ValueError(f"the teacher takes the {teacher.weight_input or 'no'} weight, the round the "
                             f"{config.weight_kind} weight")
        return
    if teacher.is_student or teacher.weight_input:
        raise ValueError("the guidance round starts from a model trained by the app, not from a student")
    if config.weight_kind == "guidance" and not teacher.conditional:
        raise ValueError("classifier-free guidance needs a class-conditional teacher")
    if config.weight_kind == "autoguidance" and not has_guide:
        raise ValueError("autoguidance needs a teacher that carries its guide network")


class Distiller:
    """A round's loss: the teacher's targets and the student's error (see the module docstring).

    teacher: ``teacher_entry``'s dict. The teacher (and its guide) run frozen in eval mode,
    under the round's precision, as the app samples with them.
    """

    def __init__(self, config: DistillConfig, teacher: dict, schedule: NoiseSchedule, *, device: torch.device,
                 precision: str, memory_format: torch.memory_format, label_dropout: float) -> None:
        self.config = config
        self.schedule = schedule
        self.device = device
        self.precision = precision
        self.memory_format = memory_format
        self.label_dropout = label_dropout
        teacher_config = UNetConfig.from_dict(teacher["model"])
        guide = teacher.get("guide") if config.weight_kind == "autoguidance" and not teacher_config.is_student \
            else None
        check_teacher(config, teacher_config, guide is not None)
        self.teacher_config = teacher_config
        self.teacher = _frozen(teacher_config, teacher["weights"], device, memory_format)
        self.guide = None if guide is None else _frozen(UNetConfig.from_dict(guide["model"]), guide["weights"],
                                                        device, memory_format)
        T = schedule.timesteps
        # index i of the student's grid <-> index F i of the teacher's (nested: ``trailing_timesteps``);
        # row i of ``path``: the teacher's timesteps from t_i to t_{i+1}
        self.grid = torch.tensor(trailing_timesteps(T, config.steps) + [0], device=device)
        teacher_grid = trailing_timesteps(T, config.teacher_steps) + [0]
        f = config.teacher_steps // config.steps
        self.path = torch.tensor([teacher_grid[f * i:f * (i + 1) + 1] for i in range(config.steps)], device=device)
        self.sa = schedule.sqrt_alphabar.to(device)
        self.so = schedule.sqrt_one_minus_alphabar.to(device)
        self._val: tuple | None = None

    def _coef(self, table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return table[t].view(-1, 1, 1, 1)

    def _teacher_step(self, z, t, t_next, y, w) -> torch.Tensor:
        """One deterministic DDIM step of the guided teacher from z_t to z_t_next, x_0 clipped."""
        kind = self.config.weight_kind
        eps = guided_eps(self.teacher, z.contiguous(memory_format=self.memory_format), t, y,
                         w if kind == "guidance" else 0.0, self.teacher_config.num_classes, self.device,
                         self.precision, guide=self.guide, autoguidance=w if kind == "autoguidance" else 0.0,
                         schedule=self.schedule)
        x0, eps = _predicted_x0(z, eps, self.schedule.alphabar.to(z.device)[t].view(-1, 1, 1, 1), True)
        return self._coef(self.sa, t_next) * x0 + self._coef(self.so, t_next) * eps

    @torch.no_grad()
    def target_v(self, z, i, y, w) -> torch.Tensor:
        """v~ for the student at grid index ``i`` (B,) from z_t (B, C, H, W)."""
        t, t_next = self.grid[i], self.grid[i + 1]
        z_next, path = z, self.path[i]
        for k in range(path.shape[1] - 1):
            z_next = self._teacher_step(z_next, path[:, k], path[:, k + 1], y, w)
        a, s = self._coef(self.sa, t), self._coef(self.so, t)
        a2, s2 = self._coef(self.sa, t_next), self._coef(self.so, t_next)
        ratio = s2 / s
        x_target = (z_next - ratio * z) / (a2 - ratio * a)
        return (a * z - x_target) / s

    def draw(self, x0: torch.Tensor, y: torch.Tensor | None, gen: torch.Generator, *, drop: bool = True):
        """A batch's grid indices, noise, z_t, weights and labels (dropped to "no label" as in
        training), drawn from ``gen`` in that order."""
        n = x0.shape[0]
        i = torch.randint(0, self.config.steps, (n,), generator=gen, device=x0.device)
        eps = torch.randn(x0.shape, generator=gen, device=x0.device)
        lo, hi = self.config.weight_min, self.config.weight_max
        w = lo + (hi - lo) * torch.rand((n,), generator=gen, device=x0.device)
        if y is not None and drop:
            y = drop_labels(y, self.label_dropout, self.teacher_config.num_classes, gen)
        return i, self.schedule.q_sample(x0, self.grid[i], eps), w, y

    def predict(self, net: nn.Module, z, i, y, w) -> torch.Tensor:
        with autocast(self.device, self.precision):
            out = net(z.contiguous(memory_format=self.memory_format), self.grid[i], y, w)
        return out.float()

    def loss_weights(self, i: torch.Tensor) -> torch.Tensor:
        """Each image's weight on ||v - v~||^2 (B, 1, 1, 1): 1 for the "v" loss; alphabar_t for
        "eps", since eps = sigma z + alpha v at a fixed z, so ||eps - eps~||^2 = alpha^2 ||v - v~||^2.
        In eps an eps-prediction teacher's step from high noise counts as little as it moves z;
        in v its x_0 there (noise amplified 1 / alpha = 170 times, then clipped) dominates the loss."""
        if self.config.loss == "v":
            return torch.ones((len(i), 1, 1, 1), device=i.device)
        return self._coef(self.sa, self.grid[i]) ** 2

    def loss(self, net: nn.Module, x0: torch.Tensor, y: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
        """The round's mean loss on one training batch (x0 in [-1, 1]): ||v - v~||^2, weighted
        by ``loss_weights``."""
        i, z, w, y = self.draw(x0, y, gen)
        target = self.target_v(z, i, y, w)
        return ((self.predict(net, z, i, y, w) - target).pow(2) * self.loss_weights(i)).mean()

    def _validation_set(self, x0: torch.Tensor, y: torch.Tensor | None, seed: int, should_stop) -> tuple | None:
        """The fixed validation batch: its z, indices, labels, weights and targets, computed once."""
        if self._val is None:
            n = min(self.config.val_images, len(x0))
            gen = torch.Generator(device=x0.device).manual_seed(int(seed))
            i, z, w, yy = self.draw(x0[:n], None if y is None else y[:n], gen, drop=False)
            targets = []
            for s in range(0, n, 500):
                if should_stop():
                    return None
                e = min(s + 500, n)
                targets.append(self.target_v(z[s:e], i[s:e], None if yy is None else yy[s:e], w[s:e]))
            self._val = (z, i, yy, w, torch.cat(targets))
        return self._val

    @torch.no_grad()
    def validation(self, net: nn.Module, x0: torch.Tensor, y: torch.Tensor | None, *, seed: int,
                   bins: list[int], should_stop) -> tuple[float, list] | None:
        """(the mean loss on the fixed validation batch, the same per t bin), or None when
        ``should_stop()`` became true."""
        fixed = self._validation_set(x0, y, seed, should_stop)
        if fixed is None:
            return None
        z, i, yy, w, target = fixed
        per_image = []
        was = net.training
        net.eval()
        try:
            for s in range(0, len(z), 500):
                if should_stop():
                    return None
                e = min(s + 500, len(z))
                pred = self.predict(net, z[s:e], i[s:e], None if yy is None else yy[s:e], w[s:e])
                error = (pred - target[s:e]).pow(2) * self.loss_weights(i[s:e])
                per_image.append(error.mean(dim=(1, 2, 3)).double())
        finally:
            net.train(was)
        losses = torch.cat(per_image)
        t = self.grid[i]
        edges = torch.tensor(bins[1:-1], device=t.device)
        which = torch.bucketize(t, edges, right=True)
        by_t = []
        for b in range(len(bins) - 1):
            chosen = losses[which == b]
            by_t.append(float(chosen.mean()) if len(chosen) else None)
        return float(losses.mean()), by_t


def load_initial_weights(model: nn.Module, weights: dict) -> None:
    """A student's first weights: its teacher's. Only the weight input's embedding may be
    missing (it starts at zero, so the student starts as its teacher's network)."""
    missing, unexpected = model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, strict=False)
    missing = [k for k in missing if not k.startswith("weight_mlp.")]
    if missing or unexpected:
        raise ValueError(f"the teacher's weights do not fit the student (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")


def default_round_minutes(total_minutes: float, rounds: int) -> float:
    """An even split of a distillation's time budget over its rounds."""
    return max(1.0, math.floor(10 * total_minutes / max(1, rounds)) / 10)


def plan_distill(teacher_source, *, stage: str, steps: int, train, weights: tuple[float, float] | None = None,
                 val_images: int = DISTILL_VAL_IMAGES, factor: int = 2, loss: str | None = None):
    """A new distillation round of the model ``teacher_source`` names (a bundled model, a .pt file
    or a run folder: its best.pt), as a ``TrainPlan`` the Trainer runs like any training run.

    stage "guidance" needs a model trained by the app (class-conditional, or carrying its
    autoguidance guide); "halve" needs a student of ``factor`` x ``steps`` steps. ``weights``: the weight
    range the student learns (default: the teacher student's, else ``weight_range``); ``loss``: the
    space its error is measured in (default: the stage's, ``DISTILL_LOSS``). Raises
    CheckpointError or ValueError, one line each.
    """
    from ..diffusion.schedule import ScheduleConfig
    from ..storage.bundled import bundled_name, checkpoint_file
    from ..storage.checkpoint import contents_checksum, load_checkpoint
    from .plan import TrainPlan, continued_name

    path = checkpoint_file(teacher_source)
    payload = load_checkpoint(path)
    teacher = UNetConfig.from_dict(payload["model"])
    kind = weight_kind_of(teacher, payload.get("guide") is not None)
    if weights is None:
        earlier = payload.get("distill") or {}
        weights = (earlier["weight_min"], earlier["weight_max"]) if "weight_min" in earlier else weight_range(kind)
    name = bundled_name(path) or continued_name(path)
    entry = teacher_entry(payload, name)
    sha = contents_checksum({"weights": entry["weights"]})
    earlier = payload.get("distill") or {}
    origin = earlier.get("origin") or (earlier.get("teacher") if earlier.get("stage") == "guidance" else "") or name
    config = DistillConfig(stage, steps, kind, float(weights[0]), float(weights[1]), name, sha, val_images, origin,
                           factor, loss or DISTILL_LOSS.get(stage, "v"))
    check_teacher(config, teacher, payload.get("guide") is not None)
    meta = {"preset": "distill", "distilled_from": {"teacher": name, "teacher_steps": config.teacher_steps,
                                                    "stage": stage, "origin": origin}}
    return TrainPlan("new", student_config(teacher, kind, steps), ScheduleConfig.from_dict(payload["schedule"]),
                     train, "distill", meta=meta, distill=config, teacher=entry, init_weights=entry["weights"])
