"""``diffusion-studio runs``: list, verify, compare, rename, tag and delete training runs.

    diffusion-studio runs list [--runs-dir DIR]
    diffusion-studio runs verify [RUN ...] [--runs-dir DIR]
    diffusion-studio runs compare RUN RUN ... --out FILE.html [--runs-dir DIR]
    diffusion-studio runs rename RUN NEW_NAME
    diffusion-studio runs tag RUN [TAG ...] [--add | --remove]
    diffusion-studio runs delete RUN ... --yes

RUN is a run's exact name inside the runs folder (default: the app's, see
``diffusion_studio.engine.storage.paths``), or a folder given as a path (``./name``,
``/data/run``): a bare name never means a folder of the working directory, and never a
part of a name (``engine.runs.resolve_run``).
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "runs",
        help="list, compare and manage training runs",
        description="List, compare, rename, tag and delete the training runs kept in the runs folder.",
    )
    rsub = p.add_subparsers(dest="runs_command", metavar="ACTION")
    rsub.required = True

    def add(name: str, help: str) -> argparse.ArgumentParser:
        q = rsub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        q.add_argument("--runs-dir", metavar="DIR", help="the runs folder (default: the app's data folder)")
        return q

    q = add("list", "show a table of the runs")
    q.set_defaults(func=run_list)

    q = add("verify", "check every file of runs in full: checkpoints (checksum, values, network size), "
                      "history and whether they agree")
    q.add_argument("runs", nargs="*", metavar="RUN",
                   help="runs to verify (default: all in the runs folder); a .pt file given as a path is checked alone")
    q.set_defaults(func=run_verify)

    q = add("compare", "write an HTML page comparing runs: settings, results and overlaid loss curves")
    q.add_argument("runs", nargs="+", metavar="RUN", help="run folders or names (two or more to compare)")
    q.add_argument("--out", metavar="FILE.html", required=True, help="the HTML file to write")
    q.set_defaults(func=run_compare)

    q = add("rename", "rename a run")
    q.add_argument("run", metavar="RUN")
    q.add_argument("new_name", metavar="NEW_NAME")
    q.set_defaults(func=run_rename)

    q = add("tag", "set, add or remove a run's tags")
    q.add_argument("run", metavar="RUN")
    q.add_argument("tags", nargs="*", metavar="TAG", help="tags (none, without --add/--remove: clear them)")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--add", action="store_true", help="add these tags to the run's tags")
    g.add_argument("--remove", action="store_true", help="remove these tags from the run's tags")
    q.set_defaults(func=run_tag)

    q = add("delete", "delete runs and all their files")
    q.add_argument("runs", nargs="+", metavar="RUN",
                   help="exact run names in the runs folder, or run folders given as paths; only folders whose "
                        "run.json names them a run, holding nothing else, are deleted")
    q.add_argument("--yes", action="store_true", help="do not ask: delete (needed when not at a terminal)")
    q.set_defaults(func=run_delete)


def _user_facing(func):
    """Turn the engine's RunError into the CLI's CLIError (one line, exit status 2), and end
    quietly when the reader of the output goes away (``runs list | head``)."""
    import functools

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        from ..cli import CLIError
        from ..engine.runs import RunError

        try:
            code = func(args)
            sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
            return code
        except BrokenPipeError:
            _silence_stdout()
            return 0
        except RunError as exc:
            raise CLIError(str(exc)) from None

    return wrapper


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's flush at exit has nowhere to fail
    (the recipe of Python's documentation on SIGPIPE)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# ---------------------------------------------------------------- list
def _fmt_loss(x: float | None) -> str:
    return f"{x:.5f}" if x is not None else ""


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


@_user_facing
def run_list(args: argparse.Namespace) -> int:
    from ..engine import runs as R

    root = Path(args.runs_dir).expanduser() if args.runs_dir else R.default_runs_dir()
    infos = R.list_runs(root)
    if not infos:
        print(f"no runs in {root} (train one with `diffusion-studio train`)")
        return 0
    headers = ["NAME", "STATUS", "SETTINGS", "EPOCHS", "BEST VAL", "BEST EP", "EARLY STOP", "TIME", "TAGS", "METRICS"]
    rows = []
    notes = []
    for r in infos:
        rows.append([
            r.name, r.status, r.key_settings(), r.epochs_text(), _fmt_loss(r.best_val_loss),
            str(r.best_epoch or ""), str(r.early_stop_epoch or ""), R.format_duration(r.train_seconds),
            ",".join(r.tags), r.metrics_text(),
        ])
        if r.status in ("damaged", "old version", "running") or (r.status == "stopped" and r.reason):
            notes.append(f"  {r.name}: {r.reason}")
        if r.temp_files and r.status != "running":
            notes.append(f"  {r.name}: {len(r.temp_files)} temporary file(s) left by an interrupted write "
                         f"({', '.join(r.temp_files[:3])}{', …' if len(r.temp_files) > 3 else ''}); "
                         "they are removed when the run is resumed")
    print(f"{len(infos)} run{'s' if len(infos) != 1 else ''} in {root}")
    print(_table(headers, rows))
    if notes:
        print("\nnotes:")
        print("\n".join(notes))
    return 0


# -------------------------------------------------------------- verify
@_user_facing
def run_verify(args: argparse.Namespace) -> int:
    """One block per run, one line per file; exit status 1 when any file is damaged or the
    files disagree, 0 when all is well."""
    from ..engine import runs as R
    from ..engine.runs.verify import verify_checkpoint

    root = Path(args.runs_dir).expanduser() if args.runs_dir else R.default_runs_dir()
    targets: list[tuple[str, list]] = []
    for spec in args.runs or [r.path for r in R.list_runs(root)]:
        if R.given_as_path(spec) and Path(spec).expanduser().is_file():
            targets.append((str(spec), [verify_checkpoint(Path(spec).expanduser())[0]]))
        else:
            path = R.resolve_run(spec, root)
            targets.append((path.name, R.verify_run(path)))
    if not targets:
        print(f"no runs in {root} (train one with `diffusion-studio train`)")
        return 0
    width = max(len(c.name) for _, checks in targets for c in checks)
    damaged = 0
    for name, checks in targets:
        bad = [c for c in checks if not c.ok]
        damaged += bool(bad)
        print(f"{name}: {'ok' if not bad else 'PROBLEMS'}")
        for c in checks:
            print(f"  {c.name.ljust(width)}  {'ok' if c.ok else 'FAILED'}  {c.message}")
    if damaged:
        print(f"\n{damaged} of {len(targets)} checked with problems", file=sys.stderr)
    return 1 if damaged else 0


# ------------------------------------------------------------- compare
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d2330; }
h1 { font-size: 20px; margin: 0 0 4px; } p.sub { color: #667; margin: 0 0 18px; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 22px; }
th, td { border: 1px solid #d8dce4; padding: 4px 9px; text-align: left; vertical-align: top; }
thead th { background: #f1f3f7; } tbody th { background: #fafbfc; font-weight: 600; white-space: nowrap; }
tr.diff td { background: #fff4cc; } tr.diff th::after { content: " \\2260"; color: #b58100; }
td.best { font-weight: 700; color: #0a6b2d; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.plots { display: flex; flex-wrap: wrap; gap: 18px; }
svg.plot { background: #fff; border: 1px solid #d8dce4; }
svg .frame { fill: none; stroke: #9aa3b2; } svg .grid { stroke: #eceff4; }
svg .tick { font-size: 11px; fill: #556; } svg .label { font-size: 12px; fill: #334; }
svg .ptitle { font-size: 13px; font-weight: 600; fill: #1d2330; } svg .empty { fill: #99a; }
.legend { font-size: 13px; margin: 8px 0 20px; } .legend span.item { margin-right: 18px; white-space: nowrap; }
.note { color: #8a4b00; font-size: 12px; }
"""


def _metric_direction(name: str) -> str | None:
    """"min" for distances and losses (FID, FD, KID, NLL, loss, bits/dim), "max" for
    scores (accuracy, IS, precision, recall), None when unknown (no highlight)."""
    n = name.lower()
    if any(k in n for k in ("fid", "fd ", "fd(", "kid", "distance", "loss", "nll", "bits", "error")) or n.startswith("fd"):
        return "min"
    if any(k in n for k in ("accuracy", "inception score", "precision", "recall", "is ")) or n == "is":
        return "max"
    return None


def _compare_row(label: str, values: list, *, best: str | None = None) -> str:
    """One table row: a cell per run, the row marked "diff" when the known values differ, and
    with ``best`` ("min" or "max") the best of two or more numbers in bold."""
    from ..engine import runs as R

    esc = html.escape
    texts = ["" if v is None else (R.format_number(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                                    else str(v)) for v in values]
    differ = len({t for t in texts if t}) > 1  # runs with unknown values do not count
    best_i = None
    nums = [v if isinstance(v, (int, float)) and not isinstance(v, bool) else None for v in values]
    if best and differ and sum(n is not None for n in nums) >= 2:
        cand = [(n, i) for i, n in enumerate(nums) if n is not None]
        best_i = (min(cand) if best == "min" else max(cand))[1]
    cells = "".join(
        f'<td class="best">{esc(t)}</td>' if i == best_i else f"<td>{esc(t)}</td>" for i, t in enumerate(texts)
    )
    return f'<tr class="{"diff" if differ else ""}"><th>{esc(label)}</th>{cells}</tr>'


def _union(keys_per_run) -> list[str]:
    """Every key of every run, each once, in the order first seen."""
    keys: list[str] = []
    for run_keys in keys_per_run:
        for k in run_keys:
            if k not in keys:
                keys.append(k)
    return keys


def _result_rows(infos) -> list[str]:
    """The results table: status, losses, epochs and time, then every metric of the runs' latest reports."""
    from ..engine import runs as R

    row = _compare_row
    results = [
        row("status", [r.status for r in infos]),
        row("best validation loss", [round(r.best_val_loss, 6) if r.best_val_loss is not None else None for r in infos], best="min"),
        row("best epoch", [r.best_epoch for r in infos]),
        row("epochs trained", [r.epochs_text() for r in infos]),
        row("early stop at epoch", [r.early_stop_epoch for r in infos]),
        row("last train loss", [round(r.last_train_loss, 6) if r.last_train_loss is not None else None for r in infos], best="min"),
        row("training time", [R.format_duration(r.train_seconds) for r in infos]),
        row("training seconds", [round(r.train_seconds, 1) if r.train_seconds is not None else None for r in infos]),
    ]
    for k in _union(r.metrics for r in infos):
        results.append(row(k, [r.metrics.get(k) for r in infos], best=_metric_direction(k)))
    return results


def _settings_rows(infos) -> list[str]:
    """The settings table: one row per schedule, model and training setting of any run."""
    keys = _union(r.settings_flat() for r in infos)
    return [_compare_row(k, [r.settings_flat().get(k) for r in infos]) for k in keys]


def _about_rows(infos) -> list[str]:
    """The run table: when each run was made and what its user wrote about it."""
    row = _compare_row
    return [
        row("created", [r.created for r in infos]),
        row("description", [r.description for r in infos]),
        row("preset", [r.preset for r in infos]),
        row("tags", [", ".join(r.tags) for r in infos]),
        row("notes", [r.notes for r in infos]),
    ]


def _curve_series(infos, curves: dict[str, dict | None]) -> tuple[list, list, list, list[str]]:
    """The plots' series in each run's colour: training loss per step (smoothed past 20 steps),
    validation and mean training loss per epoch, validation loss by t; and a note per run
    without curves."""
    from ..engine import runs as R

    train_series, val_series, t_series = [], [], []
    notes = []
    for r in infos:
        c = curves.get(r.name)
        if c is None:
            notes.append(f"{r.name}: no curves ({r.reason or r.status})")
            continue
        if c["train_loss"].size:
            y = c["train_loss"]
            if y.size > 20:
                y = R.smooth(y, 0.6)
            train_series.append({"name": f"{r.name} train", "color": r.color, "x": c["step"], "y": y})
        if c["val_loss"].size:
            val_series.append({"name": f"{r.name} val", "color": r.color, "x": c["epoch"], "y": c["val_loss"],
                               "markers": True, "width": 2.0})
            val_series.append({"name": f"{r.name} train (epoch mean)", "color": r.color, "x": c["epoch"],
                               "y": c["epoch_train_loss"], "dash": True, "width": 1.2})
        if c.get("val_loss_by_t") is not None and c["val_loss_by_t"].size:
            t_series.append({"name": f"{r.name} by t", "color": r.color, "x": c["t_centre"], "y": c["val_loss_by_t"],
                             "markers": True, "width": 2.0})
    return train_series, val_series, t_series, notes


def compare_html(infos, curves: dict[str, dict | None], title: str = "Diffusion Studio: runs compared") -> str:
    """A self-contained HTML page comparing runs (no scripts, no external files).

    infos: list of RunInfo; curves: run name -> load_curves() dict (or None when unreadable)."""
    from ..engine.evaluation.charts import line_plot

    esc = html.escape
    head = "".join(
        f'<th><span class="swatch" style="background:{r.color}"></span>{esc(r.name)}</th>' for r in infos
    )
    results, settings, about = _result_rows(infos), _settings_rows(infos), _about_rows(infos)
    train_series, val_series, t_series, notes = _curve_series(infos, curves)
    legend = "".join(
        f'<span class="item"><span class="swatch" style="background:{r.color}"></span>{esc(r.name)}</span>'
        for r in infos
    )
    svg_train = line_plot(train_series, "Training loss per step (smoothed)", "step")
    svg_val = line_plot(val_series, "Loss per epoch: validation (dots), training mean (dashed)", "epoch")
    svg_t = line_plot(t_series, "Validation loss by timestep t (each run's last validation)", "t") if t_series else ""
    damaged = "".join(
        f'<p class="note">{esc(r.name)}: {esc(r.status)}: {esc(r.reason)}</p>'
        for r in infos if r.status in ("damaged", "old version")
    ) + "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{esc(title)}</h1>
<p class="sub">{len(infos)} runs. Rows whose values differ are highlighted; the best value of a result is in bold green.
Loss = mean squared error between the true and predicted noise.</p>
<div class="legend">{legend}</div>
<div class="plots">
{svg_train}
{svg_val}
{svg_t}
</div>
{damaged}
<table><thead><tr><th>results</th>{head}</tr></thead><tbody>{''.join(results)}</tbody></table>
<table><thead><tr><th>settings</th>{head}</tr></thead><tbody>{''.join(settings)}</tbody></table>
<table><thead><tr><th>run</th>{head}</tr></thead><tbody>{''.join(about)}</tbody></table>
</body></html>
"""


@_user_facing
def run_compare(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from ..engine import runs as R

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise CLIError(f"--out must name an .html file, got {out}")
    infos, seen = [], set()
    for spec in args.runs:
        path = R.resolve_run(spec, args.runs_dir)
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        infos.append(R.read_run(path))
    curves = {}
    for r in infos:
        try:
            curves[r.name] = R.load_curves(r)
        except R.RunError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            curves[r.name] = None
    from ..engine.storage.atomic import write_text_atomic

    write_text_atomic(out, compare_html(infos, curves))
    print(f"wrote {out} comparing {len(infos)} run{'s' if len(infos) != 1 else ''}")
    return 0


# --------------------------------------------------------- management
@_user_facing
def run_rename(args: argparse.Namespace) -> int:
    from ..engine import runs as R

    path = R.resolve_run(args.run, args.runs_dir)
    new = R.rename_run(path, args.new_name)
    print(f"renamed {path.name} -> {new.name}")
    return 0


@_user_facing
def run_tag(args: argparse.Namespace) -> int:
    from ..engine import runs as R

    path = R.resolve_run(args.run, args.runs_dir)
    current = R.read_run(path).tags
    if args.add:
        tags = current + [t for t in args.tags if t not in current]
    elif args.remove:
        tags = [t for t in current if t not in args.tags]
    else:
        tags = list(args.tags)
    tags = R.set_tags(path, tags)
    print(f"{path.name}: tags {', '.join(tags) if tags else '(none)'}")
    return 0


@_user_facing
def run_delete(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from ..engine import runs as R

    paths = R.deletable_runs(args.runs, args.runs_dir)  # every one checked before any is deleted
    if not args.yes:
        if not sys.stdin.isatty():
            raise CLIError("deleting needs confirmation: add --yes")
        answer = input(f"delete {len(paths)} run(s) and all their files ({', '.join(p.name for p in paths)})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    for p in paths:
        R.delete_run(p)
        print(f"deleted {p.name}")
    return 0
