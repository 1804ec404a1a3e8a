"""Explorations: the views that connect x_T and x_0, and the model's view of a noised digit.

- ``interpolate``: digits from points on the great circle between two seeds' x_T;
- ``guidance_sweep``: one seed at several guidance weights (classifier-free guidance for a
  class-conditional model, autoguidance for a model with a guide network);
- ``nearest_neighbours``: the nearest training digits of generated ones (memorisation);
- ``denoise_from``: real digits noised to x_t, then the reverse process from t ("denoise from here");
- ``identity_curve``: the share of digits that keep their label after denoising from each t;
- ``model_view``: the network's predicted x_0 and eps error at one t.

Each takes the model handle, a request holding its ``SamplerConfig`` and a ``TaskContext``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..engine.defaults import DEFAULT_VIEW_DIGITS
from ..engine.diffusion import explore as engine_explore
from ..engine.diffusion import sampling as loop
from ..engine.diffusion.explore import GUIDANCE_SWEEP
from ..engine.diffusion.scheduling import DEFAULT_DDIM_STEPS, SamplerConfig, reverse_timesteps
from ..engine.storage.checkpoint import LoadedModel
from ..engine.storage.data import to_uint8
from ..engine.storage.images import labelled_grid
from ..engine.text import guided_above
from .context import TaskContext, context_or_default
from .sample import sampling_precision

INTERPOLATION_POINTS = 9
VIEW_DIGITS = DEFAULT_VIEW_DIGITS
#: error maps: |eps_theta - eps| of 0 is black, ERROR_FULL_SCALE or more is white
ERROR_FULL_SCALE = 2.0
#: the identity curve's t, as shares of T
IDENTITY_T_SHARES = (0.1, 0.2, 0.33, 0.5, 0.67, 0.83, 1.0)


#: the guidance sweep's rows for a class-conditional model asked for no one digit
SWEEP_DIGITS = tuple(range(10))
#: the guidance sweep's rows otherwise: this many seeds from the form's
SWEEP_SEEDS = 4


@dataclass(frozen=True)
class Strip:
    """An exploration's picture: ``images`` (k, 28, 28) uint8 laid out in ``columns``
    columns, a ``caption`` for people and ``name``, a file stem to export it under;
    ``column_labels`` / ``row_labels`` (may be empty): what each column / row shows ("w = 2")."""

    images: np.ndarray
    columns: int
    caption: str
    name: str
    column_labels: tuple[str, ...] = ()
    row_labels: tuple[str, ...] = ()

    def picture(self, scale: int = 1) -> np.ndarray:
        """The strip as one uint8 image (white gaps), each pixel ``scale`` x ``scale`` (nearest
        neighbour), its column and row labels drawn above and left of the digits."""
        return labelled_grid(self.images, self.columns, self.column_labels, self.row_labels, scale)


def _uint8(x: torch.Tensor) -> np.ndarray:
    return to_uint8(x).numpy()


def _ddim_steps(model: LoadedModel, steps: int) -> int:
    return max(1, min(int(steps), model.schedule.timesteps))


def _autoguided(model: LoadedModel, sampler: SamplerConfig) -> bool:
    return model.guide is not None and sampler.autoguidance > 0


# ------------------------------------------------------------------ interpolation
@dataclass(frozen=True)
class InterpolateRequest:
    """Nine digits between the x_T of ``seed_a`` and ``seed_b`` (deterministic DDIM, ``steps``
    steps), with ``sampler``'s guidance weights; ``digit`` for a class-conditional model (None:
    no label, its unconditional branch, so that the two seeds' digits may differ)."""

    seed_a: int
    seed_b: int
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    steps: int = DEFAULT_DDIM_STEPS
    digit: int | None = None
    count: int = INTERPOLATION_POINTS
    precision: str = "auto"


def interpolate(model: LoadedModel, request: InterpolateRequest, ctx: TaskContext | None = None) -> Strip:
    ctx = context_or_default(ctx)
    steps = _ddim_steps(model, request.steps)
    sampler = request.sampler
    label = request.digit if model.model_config.conditional else None
    precision = sampling_precision(model, request.precision).precision
    x = engine_explore.interpolate(
        model.model, model.schedule, request.seed_a, request.seed_b, count=request.count, steps=steps,
        label=label, guidance=sampler.guidance, device=model.device, precision=precision,
        should_stop=ctx.should_stop, guide=model.guide, autoguidance=sampler.autoguidance,
        autoguidance_min_t=sampler.autoguidance_min_t)
    unlabelled = ", no digit asked (the model's unconditional branch: the noise decides the digit)"
    caption = (f"seed {request.seed_a} → seed {request.seed_b}: {request.count} points on the great circle between "
               f"their x_T (slerp), DDIM {steps} steps, η = 0"
               + (f", digit {label}, w = {sampler.guidance:g}" if label is not None
                  else unlabelled if model.model_config.conditional else "")
               + (f", autoguidance g = {sampler.autoguidance:g}{guided_above(sampler.autoguidance_min_t)}"
                  if _autoguided(model, sampler) else ""))
    return Strip(_uint8(x), request.count, caption, f"interpolation-seed{request.seed_a}-seed{request.seed_b}")


# ------------------------------------------------------------------ guidance sweeps
@dataclass(frozen=True)
class GuidanceSweepRequest:
    """A grid of guidance weights (columns) for one or more rows: classifier-free guidance w for
    a class-conditional model, a row per digit of ``digits`` (from one seed) or else ``seeds``
    seeds from ``seed`` of ``digit`` (default 0); autoguidance g for a model with a guide
    network (applied above ``sampler.autoguidance_min_t``), a row per seed."""

    seed: int
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    steps: int = DEFAULT_DDIM_STEPS
    digit: int | None = None
    weights: tuple[float, ...] = GUIDANCE_SWEEP
    precision: str = "auto"
    digits: tuple[int, ...] | None = None
    seeds: int = 1

    def rows(self, conditional: bool) -> list[tuple[int | None, int]]:
        """(digit, seed) per row: digit None for an unconditional model."""
        if conditional and self.digits:
            return [(int(d), self.seed) for d in self.digits]
        digit = (0 if self.digit is None or self.digit < 0 else int(self.digit)) if conditional else None
        return [(digit, self.seed + i) for i in range(max(1, int(self.seeds)))]


def guidance_sweep(model: LoadedModel, request: GuidanceSweepRequest, ctx: TaskContext | None = None) -> Strip:
    """Rows of digits at each of ``request.weights``, the columns labelled "w = ..." (or "g = ...");
    progress stage "sweep" counts the rows done. ValueError (one line) for a model with neither
    labels nor a guide network."""
    ctx = context_or_default(ctx)
    conditional = model.model_config.conditional
    if not conditional and model.guide is None:
        raise ValueError("the guidance sweep needs a class-conditional model or one with a guide network")
    steps = _ddim_steps(model, request.steps)
    common = dict(weights=request.weights, steps=steps, device=model.device, should_stop=ctx.should_stop,
                  precision=sampling_precision(model, request.precision).precision)
    rows, images = request.rows(conditional), []
    for i, (digit, seed) in enumerate(rows):
        if conditional:
            x = engine_explore.guidance_sweep(model.model, model.schedule, digit, seed, **common)
        else:
            x = engine_explore.autoguidance_sweep(model.model, model.guide, model.schedule, seed, **common,
                                                  autoguidance_min_t=request.sampler.autoguidance_min_t)
        images.append(_uint8(x))
        ctx.progress("sweep", i + 1, len(rows))
    symbol = "w" if conditional else "g"
    columns = tuple(f"{symbol} = {w:g}" for w in request.weights)
    by_digit = conditional and bool(request.digits)
    row_labels = () if len(rows) == 1 else tuple(f"digit {d}" if by_digit else f"seed {s}" for d, s in rows)
    caption, name = _sweep_caption(model, request, rows, steps, by_digit)
    return Strip(np.concatenate(images), len(request.weights), caption, name, columns, row_labels)


def _sweep_caption(model: LoadedModel, request: GuidanceSweepRequest, rows: list, steps: int,
                   by_digit: bool) -> tuple[str, str]:
    """(the sweep's caption, its file stem)."""
    weights = ", ".join(f"{w:g}" for w in request.weights)
    seed = request.seed
    seeds = f"seed {seed}" if len(rows) == 1 else f"seeds {seed}–{rows[-1][1]} (rows)"
    shared = "same x_T" if len(rows) == 1 else "each row one x_T"
    if by_digit:
        digits = ", ".join(str(d) for d, _ in rows)
        return (f"digits {digits} (rows), seed {seed}: classifier-free guidance w = {weights} (columns; DDIM "
                f"{steps} steps, η = 0, same x_T)", f"guidance-sweep-digits-seed{seed}")
    if model.model_config.conditional:
        digit = rows[0][0]
        return (f"digit {digit}, {seeds}: guidance w = {weights} (DDIM {steps} steps, η = 0, {shared})",
                f"guidance-sweep-digit{digit}-seed{seed}")
    min_t = request.sampler.autoguidance_min_t
    return (f"{seeds}: autoguidance g = {weights}{guided_above(min_t)}, away from a guide of "
            f"{model.guide_epochs:.1f} epochs (DDIM {steps} steps, η = 0, {shared})", f"autoguidance-sweep-seed{seed}")


# ------------------------------------------------------------------ memorisation
@dataclass(frozen=True)
class NeighboursRequest:
    """Generated digits, (n, 28, 28) uint8, whose nearest training digits to find."""

    images: np.ndarray


def nearest_neighbours(data, request: NeighboursRequest, ctx: TaskContext | None = None) -> Strip:
    """Three rows: the digits, their nearest training digits in pixels, and in the metric
    classifier's features; the caption compares the distances with real test digits'.
    ``data``: MNISTSplits. The classifier is trained once per data set if missing."""
    from ..engine.evaluation.classifier import ensure_classifier
    from ..engine.evaluation.neighbours import memorisation_check

    ctx = context_or_default(ctx)
    generated = np.asarray(request.images, dtype=np.uint8)
    clf = ensure_classifier(data, should_stop=ctx.should_stop,
                            progress=lambda stage, done, total: ctx.progress(stage, done, total))
    check = memorisation_check(generated, data, classifier=clf, n_test=max(len(generated), 200),
                               should_stop=ctx.should_stop)
    train = data.train_images.numpy()
    rows = np.concatenate([generated, train[check.generated_pixel.index], train[check.generated_feature.index]])
    n = len(generated)
    return Strip(rows, n, _neighbours_caption(n, check.summary()), f"nearest-training-digits-{n}")


def _neighbours_caption(n: int, summary: dict) -> str:
    px, ft = summary["pixel"], summary.get("feature")
    return (
        f"Rows: the {n} samples; their nearest training digits in pixels; in classifier features. "
        f"Pixel distance to the nearest training digit, median: samples {px['generated_median']:.2f}, "
        f"real test digits {px['test_median']:.2f}; "
        f"{px['generated_share_below_test_1st_percentile']:.0%} of samples are closer than the closest 1% "
        "of test digits" + (f" (features: {ft['generated_median']:.2f} against {ft['test_median']:.2f})"
                            if ft else "") + ". A copying model would sit far below the test digits."
    )


# ------------------------------------------------------------------ denoise from here
@dataclass(frozen=True)
class DenoiseRequest:
    """Real digits x0 (k, 1, 28, 28) in [-1, 1] noised to x_t with ``noise`` (same shape) at
    ``t``, then the reverse process from t with ``sampler``; ``labels`` (k,) their true digits."""

    x0: torch.Tensor
    noise: torch.Tensor
    t: int
    labels: np.ndarray
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def check(self, model: LoadedModel) -> None:
        T = model.schedule.timesteps
        if not 1 <= self.t <= T:
            raise ValueError(f"t must lie in 1..{T} (the model's T), got {self.t}")


@dataclass(frozen=True)
class Denoised:
    """``denoise_from``'s result, each (k, 28, 28) uint8: the originals, their x_t and what the
    reverse process made; ``predicted`` (k,) the metric classifier's labels of the results (None
    without data to train it on)."""

    t: int
    x0: np.ndarray
    x_t: np.ndarray
    result: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray | None

    @property
    def kept(self) -> np.ndarray | None:
        """(k,) bool: the digits whose result still reads as their label."""
        return None if self.predicted is None else self.predicted == self.labels


def denoise_steps(model: LoadedModel, request: DenoiseRequest) -> int:
    """How many reverse steps ``denoise_from`` takes."""
    return len(reverse_timesteps(request.sampler, model.schedule, request.t))


def denoise_from(model: LoadedModel, request: DenoiseRequest, data=None, ctx: TaskContext | None = None) -> Denoised:
    """"Denoise from here" (SDEdit, Meng et al. 2022), animated: each step's x goes to
    ``ctx.partial`` as (t_prev, (k, 28, 28) uint8). With ``data`` (MNISTSplits) the metric
    classifier says which results kept their label. A class-conditional model runs without
    labels (its unconditional score), so the label a digit keeps is its own doing."""
    ctx = context_or_default(ctx)
    request.check(model)
    t = int(request.t)
    x_t = model.schedule.q_sample(request.x0, torch.full((len(request.x0),), t, dtype=torch.long), request.noise)
    x = x_t
    total = denoise_steps(model, request)
    for step in loop.sample_steps(model.model, model.schedule, len(request.x0), sampler=request.sampler, x_T=x_t,
                                  start_t=t, device=model.device, guide=model.guide):
        if ctx.should_stop():
            raise loop.SamplingStopped()
        x = step.x
        ctx.partial((step.t_prev, _uint8(step.x)))
        ctx.progress("denoising", step.index + 1, total)
    result = _uint8(x)
    predicted = None
    if data is not None:
        predicted = _classify(data, result, ctx)
    return Denoised(t, _uint8(request.x0), _uint8(x_t), result, np.asarray(request.labels), predicted)


def _classify(data, images: np.ndarray, ctx: TaskContext) -> np.ndarray:
    from ..engine.evaluation.classifier import ensure_classifier

    clf = ensure_classifier(data, should_stop=ctx.should_stop)
    return clf.predict(images)[1].argmax(1)


@dataclass(frozen=True)
class IdentityCurveRequest:
    """Denoise ``x0`` (k, 1, 28, 28) from each t in ``ts`` (default: ``identity_ts(T)``) and
    measure the share that keeps its label (``labels`` (k,))."""

    x0: torch.Tensor
    labels: np.ndarray
    ts: tuple[int, ...] | None = None
    sampler: SamplerConfig = field(default_factory=SamplerConfig)


def identity_ts(timesteps: int) -> list[int]:
    """The identity curve's default t: seven shares of T."""
    return sorted({max(1, round(timesteps * f)) for f in IDENTITY_T_SHARES})


def identity_curve(model: LoadedModel, request: IdentityCurveRequest, data,
                   ctx: TaskContext | None = None) -> list[tuple[int, float]]:
    """[(t, share of digits that keep their label)], t ascending; progress stage "identity"
    counts the t values done. ``data`` (MNISTSplits) trains the metric classifier once if missing."""
    from ..engine.evaluation.classifier import ensure_classifier

    ctx = context_or_default(ctx)
    ts = list(request.ts or identity_ts(model.schedule.timesteps))
    clf = ensure_classifier(data, should_stop=ctx.should_stop)
    return engine_explore.identity_kept(
        model.model, model.schedule, request.x0, request.labels, lambda u: clf.predict(u)[1].argmax(1), ts,
        sampler=request.sampler, device=model.device, should_stop=ctx.should_stop, guide=model.guide,
        progress=lambda i, n: ctx.progress("identity", i, n))


# ------------------------------------------------------------------ the model's view
@dataclass(frozen=True)
class ModelViewRequest:
    """x0, noise: (K, 1, 28, 28) float, x0 in [-1, 1]; t in 1..T; ``labels`` (K,) the digits'
    labels, which a class-conditional model is given (an unconditional one ignores them)."""

    x0: torch.Tensor
    noise: torch.Tensor
    t: int
    labels: np.ndarray | None = None

    def conditioning(self, model: LoadedModel) -> torch.Tensor | None:
        """The (K,) labels ``model`` is given: None for an unconditional model or without labels."""
        if not model.model_config.conditional or self.labels is None:
            return None
        labels = torch.as_tensor(np.asarray(self.labels), dtype=torch.long).reshape(-1)
        if len(labels) != len(self.x0):
            raise ValueError(f"{len(labels)} labels for {len(self.x0)} digits: give one label per digit")
        return labels


def model_view(model: LoadedModel, request: ModelViewRequest) -> dict:
    """The network's view of x_t = q_sample(x0, t, noise) under the model's own schedule:
    {"t", "x0_pred": (K, 28, 28) uint8, "error": (K, 28, 28) uint8 map of |eps_theta - eps|
    (ERROR_FULL_SCALE and above white), "mse": (K,) float, the predicted eps's mean squared
    error per digit, "conditioned": whether the network was given the digits' labels (a
    class-conditional model with ``request.labels``)}. Fast (one network call): no context."""
    schedule, t = model.schedule, int(request.t)
    if not 1 <= t <= schedule.timesteps:
        raise ValueError(f"t must lie in 1..{schedule.timesteps} (the model's T), got {t}")
    tt = torch.full((len(request.x0),), t, dtype=torch.long)
    labels = request.conditioning(model)
    device = torch.device(model.device)
    with torch.inference_mode():
        x_t = schedule.q_sample(request.x0, tt, request.noise).to(device)
        y = None if labels is None else labels.to(device)
        eps = model.model(x_t.contiguous(memory_format=torch.channels_last), tt.to(device), y).float().cpu()
    x0_pred = schedule.predict_x0(x_t.cpu(), tt, eps).clamp(-1, 1)
    err = (eps - request.noise).abs()
    mse = (eps - request.noise).pow(2).mean(dim=(1, 2, 3))
    err_map = (err[:, 0].clamp(0, ERROR_FULL_SCALE) / ERROR_FULL_SCALE * 255).round().to(torch.uint8).numpy()
    return {"t": t, "x0_pred": _uint8(x0_pred), "error": err_map, "mse": mse.numpy().astype(float),
            "conditioned": labels is not None}
