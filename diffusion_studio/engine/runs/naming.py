"""Naming runs: a run's folder name and description from how its settings differ from the defaults."""

from __future__ import annotations

import datetime as _dt
import os
import re
import uuid
from pathlib import Path
from typing import Any


from ..storage.atomic import write_json_atomic

from ._common import RUN_FILE, RUN_FORMAT, RUN_FORMAT_VERSION, RunError, _iso, _runs_dir, _utc_now, format_number


_SHORT = {
    # (section, field): (formatter of the value)
    ("schedule", "kind"): lambda v: {"rescaled_linear": "rlinear"}.get(v, str(v)),
    ("schedule", "timesteps"): lambda v: f"T{v}",
    ("schedule", "beta_start"): lambda v: f"b0_{format_number(v)}",
    ("schedule", "beta_end"): lambda v: f"bT_{format_number(v)}",
    ("schedule", "cosine_s"): lambda v: f"s{format_number(v)}",
    ("model", "base_channels"): lambda v: f"ch{v}",
    ("model", "convs_per_block"): lambda v: f"convs{v}",
    ("model", "time_embed_dim"): lambda v: f"temb{v}",
    ("model", "num_classes"): lambda v: f"cond{v}" if v else "uncond",
    ("model", "image_channels"): lambda v: f"c{v}",
    ("train", "ema_decay"): lambda v: f"ema{format_number(v)}" if v else "noema",
    ("train", "lr"): lambda v: f"lr{format_number(v)}",
    ("train", "batch_size"): lambda v: f"bs{v}",
    ("train", "epochs"): lambda v: f"ep{v}",
    ("train", "patience"): lambda v: f"pat{v}",
    ("train", "seed"): lambda v: f"seed{v}",
    ("train", "label_dropout"): lambda v: f"drop{format_number(v)}",
    ("train", "grad_clip"): lambda v: f"clip{format_number(v)}" if v else "noclip",
    ("train", "bn_recalibration"): lambda v: f"bnrecal{v}" if v else "bnrunning",
}
# Fields that do not change what is learned (or only how fast): not part of a name.
_IGNORED = {("train", "precision"), ("train", "channels_last"), ("train", "val_seed")}


def _as_dict(cfg: Any) -> dict:
    if cfg is None:
        return {}
    if isinstance(cfg, dict):
        return dict(cfg)
    if hasattr(cfg, "to_dict"):
        return cfg.to_dict()
    raise TypeError(f"expected a config dataclass or dict, got {type(cfg).__name__}")


def _differences(base: dict[str, dict], cfg: dict[str, dict]) -> list[str]:
    out = []
    for section in ("schedule", "model", "train"):
        b, c = base.get(section, {}), cfg.get(section, {})
        for key, value in c.items():
            if (section, key) in _IGNORED or key not in b or b[key] == value:
                continue
            if section == "schedule" and key in ("beta_start", "beta_end") and c.get("kind") == "cosine":
                continue
            if section == "schedule" and key == "cosine_s" and c.get("kind") != "cosine":
                continue
            if section == "train" and key == "label_dropout" and not cfg.get("model", {}).get("num_classes"):
                continue
            fmt = _SHORT.get((section, key), lambda v, k=key: f"{k}{format_number(v) if isinstance(v, float) else v}")
            out.append(fmt(value))
    return out


def describe_differences(model_cfg: Any = None, schedule_cfg: Any = None, train_cfg: Any = None) -> str:
    """A short slug saying how these settings differ from the default preset.

    Configs may be the dataclasses (UNetConfig, ScheduleConfig, TrainConfig) or
    their dicts; None means "the default preset's". Returns e.g. "default",
    "report-recipe", "report-recipe_ch16", "linear_noema_lr5e-4". Settings that
    do not change what is learned (precision, channels_last, val_seed) are
    ignored. When the settings are closer to the report's recipe than to the
    default, they are described as the report's recipe plus its differences.
    """
    from ..training.presets import PRESETS

    cfg = {"model": _as_dict(model_cfg), "schedule": _as_dict(schedule_cfg), "train": _as_dict(train_cfg)}
    best = None
    for preset_name, label in (("default", ""), ("report", "report-recipe")):
        p = PRESETS.get(preset_name)
        if p is None:
            continue
        base = {"model": p.model.to_dict(), "schedule": p.schedule.to_dict(), "train": p.train.to_dict()}
        full = {k: {**base[k], **cfg[k]} for k in base}
        diffs = _differences(base, full)
        parts = ([label] if label else []) + diffs
        if best is None or len(diffs) < best[0]:
            best = (len(diffs), parts)
    parts = best[1] if best else []
    return _slug("_".join(parts)) or "default"


def _slug(text: str, limit: int = 60) -> str:
    text = re.sub(r"\s+", "-", text.strip())
    text = re.sub(r"[^A-Za-z0-9._+\-=]", "", text)
    text = re.sub(r"-{2,}", "-", text).strip("-_.")
    return text[:limit].rstrip("-_.")


def suggest_run_name(description: str = "", now: _dt.datetime | None = None) -> str:
    """The name ``new_run_dir`` would start from (without creating anything),
    e.g. for a form that shows where the next run will go."""
    now = now or _utc_now()
    stem = now.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d_%H%M")
    desc = _slug(description)
    return f"{stem}_{desc}" if desc else stem


def new_run_dir(
    runs_dir: str | os.PathLike | None = None,
    description: str = "",
    *,
    tags: list[str] | tuple[str, ...] = (),
    notes: str = "",
    now: _dt.datetime | None = None,
) -> Path:
    """Create a new, empty run folder with a run.json and return its path.

    The name is the UTC time plus ``description`` made safe for a folder name,
    e.g. ``2026-11-28_0712_report-recipe`` (use ``describe_differences`` for
    the description); ``_2``, ``_3``... is appended if that name is taken.
    ``runs_dir`` defaults to ``paths.runs_dir()`` and is created if missing.
    """
    root = _runs_dir(runs_dir)
    if root.exists() and not root.is_dir():
        raise RunError(f"the runs folder {root} is a file; choose a folder with --runs-dir")
    root.mkdir(parents=True, exist_ok=True)
    now = now or _utc_now()
    desc = _slug(description)
    base = suggest_run_name(desc, now)
    for i in range(1, 1000):
        name = base if i == 1 else f"{base}_{i}"
        path = root / name
        try:
            path.mkdir()
        except FileExistsError:
            continue
        write_json_atomic(
            path / RUN_FILE,
            {
                "format": RUN_FORMAT,
                "version": RUN_FORMAT_VERSION,
                "id": uuid.uuid4().hex[:12],
                "name": name,
                "created": _iso(now),
                "description": desc,
                "tags": _clean_tags(tags),
                "notes": str(notes),
                "app_version": _app_version(),
            },
        )
        return path
    raise RunError(f"could not find a free run name for {base!r} in {root}")


def init_run(run_dir: str | os.PathLike, description: str = "", *, tags=(), notes: str = "") -> Path:
    """Give an existing (or new) folder a run.json if it has none, so a run
    trained into a folder of the user's choice (``train --out DIR``) gets a
    created time, tags and notes like one made by ``new_run_dir``. Returns the folder."""
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / RUN_FILE).exists():
        write_json_atomic(
            path / RUN_FILE,
            {
                "format": RUN_FORMAT,
                "version": RUN_FORMAT_VERSION,
                "id": uuid.uuid4().hex[:12],
                "name": path.name,
                "created": _iso(_utc_now()),
                "description": _slug(description),
                "tags": _clean_tags(tags),
                "notes": str(notes),
                "app_version": _app_version(),
            },
        )
    return path


def _app_version() -> str:
    from ... import __version__

    return __version__


def _clean_tags(tags) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for t in tags:
        t = str(t).strip()
        if not t:
            continue
        if any(c in t for c in ",\n\r\t"):
            raise RunError(f"a tag cannot contain commas, tabs or line breaks: {t!r}")
        if t not in out:
            out.append(t)
    return out
