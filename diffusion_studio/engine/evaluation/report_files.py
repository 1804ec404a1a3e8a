"""An evaluation as files: report.json, a self-contained report.html and samples.png.

``write_report(evaluation, folder)`` writes all three atomically; ``render_html``
builds the page (images as base64 PNG, charts from ``engine.charts``) and
``format_value`` prints a metric the way the page, the CLI and the GUI show it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .charts import bar_chart, line_plot
from ..text import guided_above

if TYPE_CHECKING:
    from .report import Evaluation


def format_value(entry: dict, short: bool = False) -> str:
    """A metric's value for people: 4 significant digits, percentages for shares.

    short: the label histogram as its summary (for narrow tables) instead of all ten counts.
    """
    v = entry.get("value")
    key = entry.get("key", "")
    if v is None:
        return "n/a"
    if key == "label_histogram":
        if short:
            d = entry.get("details") or {}
            top = int(np.argmax(v)) if sum(v) else 0
            return f"{d.get('classes_present', 0)}/10 digits, most: {top} ({d.get('largest_share', 0):.0%})"
        return " ".join(f"{d}:{c}" for d, c in enumerate(v))
    if key == "confident_share":
        real = next((x for k, x in (entry.get("details") or {}).items() if k.startswith("real_")), None)
        split = (entry.get("protocol") or {}).get("reference_split", "test")
        return f"{v:.1%}" + (f" (real {split} digits: {real:.1%})" if real is not None else "")
    if key == "class_accuracy":
        return f"{v:.1%}"
    if key == "memorisation":
        px = (entry.get("details") or {}).get("pixel") or {}
        return (f"{v:.1%} (median pixel distance to the nearest training digit: samples "
                f"{px.get('generated_median', float('nan')):.2f}, test digits {px.get('test_median', float('nan')):.2f})")
    if key == "kid_classifier":
        std = (entry.get("details") or {}).get("std")
        return f"{v:.4g} ± {std:.2g}" if std is not None else f"{v:.4g}"
    return f"{v:.4g}"


def samples_grid(samples: np.ndarray, limit: int = 100) -> np.ndarray:
    """The first ``limit`` digits as a near-square uint8 grid (white padding)."""
    from ..storage.data import to_model_range
    from ..storage.images import grid

    imgs = torch.from_numpy(np.ascontiguousarray(samples[:limit]))
    return grid(to_model_range(imgs))


def _png_b64(array: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:980px;margin:24px auto;padding:0 16px;
color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:0} h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;
vertical-align:top;font-size:.92em} th{background:#f4f4f4}
.value{font-weight:600;font-family:monospace;font-size:1.05em}
.warn{background:#fff7e0;border:1px solid #e8c860;padding:8px 12px;border-radius:4px;margin:6px 0}
.err{background:#fdecea;border:1px solid #e0a0a0;padding:8px 12px;border-radius:4px;margin:6px 0}
img.px{image-rendering:pixelated;image-rendering:crisp-edges;border:1px solid #ccc}
.muted{color:#666;font-size:.9em} code{font-size:.9em;word-break:break-all}
"""


def _generation_line(gen: dict) -> str:
    """How the digits were made: n, sampler, steps, guidance, seed, precision, time."""
    e = html.escape
    if gen.get("student_steps"):  # a distilled student: its own steps, the weight it takes
        return (f"<p>{gen['n']:,} digits made by {e(gen['made_by'])}, seed {gen['seed']} "
                f"({e(gen['precision'])}, {gen['seconds']:.1f} s).</p>")
    return (f"<p>{gen['n']:,} digits generated with the <b>{e(gen['sampler'].upper())}</b> sampler, "
            f"{gen['sampler_steps']} steps"
            + (f", classifier-free guidance w = {gen['guidance']:g}" if gen.get("guidance") is not None else "")
            + (f", autoguidance g = {gen['autoguidance']:g}"
               + guided_above(gen.get("autoguidance_min_t"))
               + f" (guide: {e(str(gen.get('guide')))})"
               if gen.get("autoguidance") is not None else "")
            + f", seed {gen['seed']} ({e(gen['precision'])}, {gen['seconds']:.1f} s).</p>")


def _header(r: dict) -> list[str]:
    """The page's head, title, versions, the checkpoint, the generation, then every error and warning."""
    e = html.escape
    gen, ck = r["generation"], r["checkpoint"]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Diffusion Studio evaluation</title>"
             f"<style>{_CSS}</style></head><body>",
             "<h1>Diffusion Studio evaluation</h1>",
             f"<p class='muted'>{e(r['created_utc'])} · app {e(r['app_version'])} · torch {e(r['torch_version'])} · "
             f"pytorch-fid {e(r['pytorch_fid_version'])} · {e(gen['device'])}</p>",
             f"<p>Checkpoint <code>{e(str(ck['path']))}</code><br><span class='muted'>sha256 "
             f"<code>{e(str(ck['sha256']))}</code> · epoch {e(str(ck['epoch']))}"
             f"{' · EMA weights' if ck.get('uses_ema') else ''}</span></p>",
             _generation_line(gen)]
    for err in r.get("errors", []):
        parts.append(f"<div class='err'><b>{e(err['metric'])} was not computed.</b> {e(err['message'])}</div>")
    for w in r.get("warnings", []):
        parts.append(f"<div class='warn'>{e(w)}</div>")
    return parts


def _metrics_table(r: dict) -> list[str]:
    """One row per metric: its value, the sample sizes, the reference, the features, the time."""
    e = html.escape
    parts = ["<h2>Metrics</h2><table><tr><th>Metric</th><th>Value</th><th>n generated</th><th>n real</th>"
             "<th>Reference</th><th>Features</th><th>Time</th></tr>"]
    for m in r["metrics"]:
        p = m["protocol"]
        parts.append(
            f"<tr><td>{e(m['name'])}</td><td class='value'>{e(format_value(m))}</td><td>{p.get('n_generated', ''):,}"
            f"</td><td>{p.get('n_real', ''):,}</td><td>{e(str(p.get('reference_split', '')))}</td>"
            f"<td>{e(str(p.get('feature_extractor', '')))}</td><td>{p.get('seconds', 0):.1f} s</td></tr>")
    parts.append("</table>")
    return parts


def _label_sections(evaluation: Evaluation) -> list[str]:
    """The predicted-label histogram and, for a conditional model, the accuracy per label."""
    parts = []
    hist = evaluation.metric("label_histogram")
    if hist:
        d = hist["details"]
        split = hist["protocol"].get("reference_split", "test")
        real_h = d.get(f"real_{split}_entropy_bits")
        parts.append(f"<h2>Predicted labels</h2><p class='muted'>{d['classes_present']} of 10 digits present; entropy "
                     f"{d['entropy_bits']:.2f} bits (3.32 = uniform"
                     + (f"; the real {split} digits: {real_h:.2f}" if real_h is not None else "")
                     + f"); largest share {d['largest_share']:.0%}.</p>")
        parts.append(bar_chart(hist["value"]))
    cls = evaluation.metric("class_accuracy")
    if cls:
        row = "".join(f"<td>{'n/a' if v is None else f'{v:.0%}'}</td>" for v in cls["details"]["per_class"])
        parts.append("<h2>Class accuracy (conditional model)</h2><table><tr><th>label</th>"
                     + "".join(f"<th>{d}</th>" for d in range(10)) + f"</tr><tr><td>classified as label</td>{row}"
                     "</tr></table>")
    return parts


def _memorisation_section(evaluation: Evaluation) -> list[str]:
    """The memorisation check's distance histograms, in pixels and in the classifier's features."""
    mem = evaluation.metric("memorisation")
    if not mem:
        return []
    parts = ["<h2>Does the model copy its training digits?</h2><p class='muted'>Distance from each generated "
             "digit to its nearest training digit, against the same distance for real test digits (which "
             "the model never saw). A copying model's curve would pile up near 0, left of the test digits'."
             "</p>"]
    for space, title in (("pixel", "pixel distance (pixels in [0, 1])"),
                         ("feature", "distance in the classifier's features")):
        h = mem["details"]["histograms"].get(space)
        if h:
            centres = [(a + b) / 2 for a, b in zip(h["edges"][:-1], h["edges"][1:])]
            parts.append(line_plot([{"name": "generated", "x": centres, "y": h["generated"]},
                                    {"name": "test digits", "x": centres, "y": h["test"]}],
                                   xlabel=title, ylabel="digits per bin", log_y=False, legend=True, height=260))
    return parts


def _image_sections(evaluation: Evaluation) -> list[str]:
    """The first 100 samples as a grid, and the x_T -> x_0 strip."""
    return [
        "<h2>Samples</h2>",
        f"<img class='px' width='{min(560, 6 * 28 * 10)}' alt='generated digits' "
        f"src='data:image/png;base64,{_png_b64(samples_grid(evaluation.samples))}'>",
        f"<p class='muted'>The first {min(100, len(evaluation.samples))} of {len(evaluation.samples):,} digits.</p>",
        "<h2>Reverse process x<sub>T</sub> → x<sub>0</sub></h2>",
        f"<img class='px' width='{evaluation.strip.shape[1] * 3}' alt='x_T to x_0' "
        f"src='data:image/png;base64,{_png_b64(evaluation.strip)}'>",
        "<p class='muted'>Each row is one chain from the same seed: x<sub>T</sub> (pure noise) on the left, "
        "evenly spaced steps, x<sub>0</sub> on the right.</p>",
    ]


def _loss_section(r: dict) -> list[str]:
    """The checkpoint's training and validation loss per epoch, or a line saying it has none."""
    h = r.get("history") or {}
    parts = ["<h2>Training and validation loss</h2>"]
    if h.get("epoch"):
        parts.append(line_plot([{"name": "train loss", "x": h["epoch"], "y": h.get("train_loss", []), "markers": True},
                                {"name": "validation loss", "x": h["epoch"], "y": h.get("val_loss", []),
                                 "markers": True}],
                               xlabel="epoch", ylabel="mean ||eps - eps_theta||^2", legend=True, height=260))
    else:
        parts.append("<p><em>No training history in this checkpoint.</em></p>")
    return parts


def _protocol_section(r: dict) -> list[str]:
    """Each metric's protocol and details, the model and schedule, and the note on the feature
    extractors; it closes the page."""
    e = html.escape
    parts = ["<h2>Protocol</h2><p class='muted'>How each number was obtained; compare numbers only when "
             "these match (FID depends strongly on n).</p>"]
    for m in r["metrics"]:
        parts.append(f"<details><summary>{e(m['name'])}</summary><table>")
        for k, v in m["protocol"].items():
            parts.append(f"<tr><th>{e(k)}</th><td><code>{e(str(v))}</code></td></tr>")
        for k, v in (m.get("details") or {}).items():
            if k in ("counts", "shares", "per_class"):
                v = [round(x, 4) if isinstance(x, float) else x for x in v]
            parts.append(f"<tr><th>{e(k)}</th><td><code>{e(str(v))}</code></td></tr>")
        parts.append("</table></details>")
    parts.append("<details><summary>Model and schedule</summary><table>")
    for k in ("model", "schedule", "best"):
        parts.append(f"<tr><th>{k}</th><td><code>{e(json.dumps(r['checkpoint'].get(k)))}</code></td></tr>")
    parts.append("</table></details>")
    parts.append("<p class='muted'>FID (Inception, pytorch-fid): pytorch-fid's InceptionV3 pool3 features; digits "
                 "enter as three identical channels in [0, 1] (uint8 / 255) and pytorch-fid resizes them "
                 "bilinearly to 299x299. FD/KID (MNIST classifier features) use the penultimate layer of the app's "
                 "own MNIST classifier and are not comparable with Inception FIDs.</p></body></html>")
    return parts


def render_html(evaluation: Evaluation) -> str:
    """The report as one self-contained HTML page (images as base64 PNG, charts as inline SVG)."""
    r = evaluation.report
    parts = (_header(r) + _metrics_table(r) + _label_sections(evaluation) + _memorisation_section(evaluation)
             + _image_sections(evaluation) + _loss_section(r) + _protocol_section(r))
    return "\n".join(parts)


def write_report(evaluation: Evaluation, folder: str | os.PathLike) -> dict[str, Path]:
    """Write report.json, report.html and samples.png into ``folder`` (created if needed)."""
    from ..storage.images import save_png

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"json": folder / "report.json", "html": folder / "report.html", "samples": folder / "samples.png"}
    save_png(samples_grid(evaluation.samples), out["samples"])
    from ..storage.atomic import write_text_atomic

    for key, text in (("json", json.dumps(evaluation.report, indent=1, allow_nan=False)),
                      ("html", render_html(evaluation))):
        write_text_atomic(out[key], text)
    return out
