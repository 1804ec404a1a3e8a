"""Runs: naming, listing with statuses, damaged and old runs, editing, curves."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from diffusion_studio.engine import runs as R
from diffusion_studio.engine.training.presets import PRESETS




@pytest.fixture
def runs_dir(tmp_path, tiny_runs) -> Path:
    dst = tmp_path / "runs"
    shutil.copytree(tiny_runs, dst)
    return dst


def by_name(infos):
    return {r.name: r for r in infos}


# ------------------------------------------------------------- naming
def test_describe_differences_against_the_presets():
    d, rep = PRESETS["default"], PRESETS["report"]
    assert R.describe_differences(d.model, d.schedule, d.train) == "default"
    assert R.describe_differences() == "default"
    assert R.describe_differences(rep.model, rep.schedule, rep.train) == "report-recipe"
    assert R.describe_differences(train_cfg=replace(d.train, lr=5e-4)) == "lr5e-4"
    changed = R.describe_differences(
        d.model, replace(d.schedule, timesteps=1000), replace(d.train, lr=5e-4, precision="fp32", batch_size=64)
    )
    assert changed == "T1000_bs64_lr5e-4"  # precision does not change what is learned
    assert R.describe_differences(replace(rep.model, base_channels=16), rep.schedule, rep.train) == "report-recipe_ch16"
    # dicts work as well as dataclasses
    assert R.describe_differences(train_cfg={**d.train.to_dict(), "ema_decay": 0.99}) == "ema0.99"


def test_new_run_dir_names_and_run_json(tmp_path):
    when = dt.datetime(2026, 11, 28, 7, 12, tzinfo=dt.timezone.utc)
    a = R.new_run_dir(tmp_path / "runs", "report-recipe", tags=["baseline", "baseline", " x "], now=when)
    b = R.new_run_dir(tmp_path / "runs", "report recipe/../", now=when)
    assert a.name == "2026-11-28_0712_report-recipe" == R.suggest_run_name("report-recipe", when)
    assert b.name == "2026-11-28_0712_report-recipe_2"  # unsafe characters dropped, name kept unique
    meta = json.loads((a / "run.json").read_text())
    assert meta["created"] == "2026-11-28T07:12:00Z"
    assert meta["tags"] == ["baseline", "x"]
    assert meta["name"] == a.name and meta["format"] == R.RUN_FORMAT
    info = R.read_run(a)
    assert info.status == "empty" and info.tags == ["baseline", "x"]
    assert not list(a.glob(".*tmp"))  # atomic write left no temporary file
    with pytest.raises(R.RunError, match="is a file"):
        (tmp_path / "afile").write_text("x")
        R.new_run_dir(tmp_path / "afile", "x")


def test_init_run_gives_a_chosen_folder_a_run_json_once(tmp_path):
    folder = R.init_run(tmp_path / "my-run", "lr5e-4", tags=["manual"])
    meta = json.loads((folder / "run.json").read_text())
    assert meta["name"] == "my-run" and meta["description"] == "lr5e-4" and meta["tags"] == ["manual"]
    R.set_notes(folder, "keep")
    R.init_run(folder, "other")  # an existing run.json is kept
    assert json.loads((folder / "run.json").read_text())["notes"] == "keep"
    assert R.read_run(folder).status == "empty"


def test_default_runs_dir_is_in_the_private_home():
    assert R.default_runs_dir() == Path(os.environ["DIFFUSION_STUDIO_HOME"]) / "data" / "runs"
    assert R.list_runs(Path(os.environ["DIFFUSION_STUDIO_HOME"]) / "no-such-folder") == []


# ------------------------------------------------------------ listing
def test_trained_runs_are_listed_with_their_results(runs_dir):
    infos = R.list_runs(runs_dir)
    assert [r.name for r in infos] == ["2026-11-28_0710_report-recipe_T10_ch4_ep2_bs16",
                                       "2026-11-28_0711_report-recipe_cosine_T10_ch4_ep2_bs16"]
    for r in infos:
        history = json.loads((r.path / "history.json").read_text())
        assert r.status == "completed", r.reason
        assert r.epochs_done == 2 and r.epochs_planned == 2
        vals = [e["val_loss"] for e in history["epochs"]]
        assert r.best_val_loss == pytest.approx(min(vals))
        assert r.best_epoch == 1 + int(np.argmin(vals))
        assert r.early_stop_epoch is None
        assert r.train_seconds == pytest.approx(history["train_seconds"]) and r.train_seconds > 0
        assert r.has_best and r.has_last and r.resumable
        assert r.checkpoint == r.path / "best.pt"
        assert r.created.startswith("2026-11-28T07:1")
        assert r.color in R.PALETTE and r.color == R.color_for(r.name)
    assert infos[0].schedule["kind"] == "linear" and infos[1].schedule["kind"] == "cosine"
    assert infos[0].key_settings() == "linear T10 · ch4 · no EMA · lr 1e-3 · bs16"


def test_running_marker_and_stale_pid(runs_dir):
    run = R.list_runs(runs_dir)[0].path
    with R.mark_running(run):
        info = R.read_run(run)
        assert info.status == "running" and str(os.getpid()) in info.reason
    assert not (run / R.RUNNING_FILE).exists()
    assert R.read_run(run).status == "completed"

    # a marker left by a process that died is stale, and so is one whose PID a live
    # process (here: our parent) has since been given: only the OS lock counts
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid in (dead.pid, os.getppid()):
        (run / R.RUNNING_FILE).write_text(json.dumps({"pid": pid, "host": __import__("socket").gethostname()}))
        assert R.read_run(run).status == "completed"
    with R.mark_running(run):  # a stale marker does not block a resume
        pass
    # another live process holds the lock: refuse to train, rename or delete the run
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom diffusion_studio.engine import runs as R\n"
         "with R.mark_running(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n", str(run)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        info = R.read_run(run)
        assert info.status == "running" and str(holder.pid) in info.reason
        with pytest.raises(R.RunError, match=f"already being trained by process {holder.pid}"):
            with R.mark_running(run):
                pass
        with pytest.raises(R.RunError, match="training"):
            R.delete_run(run)
        with pytest.raises(R.RunError, match="training"):
            R.rename_run(run, "other")
        assert (run / R.RUNNING_FILE).exists()  # not ours: left alone
    finally:
        holder.kill()  # killed, not stopped: the OS drops its lock
        holder.wait()
    assert R.read_run(run).status == "completed"


def test_leftover_temporary_files_are_listed_then_cleaned_when_the_run_starts(runs_dir):
    run = R.list_runs(runs_dir)[0].path
    for name in (".best.pt.abc123.tmp", ".history.json.x.tmp", ".thesis.tex.abc123.tmp"):
        (run / name).write_bytes(b"half a file")
    assert sorted(R.read_run(run).temp_files) == [".best.pt.abc123.tmp", ".history.json.x.tmp"]
    with R.mark_running(run):
        assert R.leftover_temp_files(run) == []
    assert R.read_run(run).temp_files == []
    assert (run / "best.pt").is_file()  # real files untouched
    assert (run / ".thesis.tex.abc123.tmp").exists()  # not a temporary file of the app's


def test_damaged_runs_are_listed_and_do_not_stop_the_others(runs_dir):
    good = R.list_runs(runs_dir)
    bad_ckpt = runs_dir / "bad-checkpoint"
    shutil.copytree(good[0].path, bad_ckpt)
    (bad_ckpt / "best.pt").write_bytes(b"not a checkpoint at all" * 20)
    bad_hist = runs_dir / "bad-history"
    shutil.copytree(good[1].path, bad_hist)
    text = (bad_hist / "history.json").read_text()
    (bad_hist / "history.json").write_text(text[: len(text) // 2])  # truncated by a crash
    bad_meta = runs_dir / "bad-run-json"
    shutil.copytree(good[1].path, bad_meta)
    (bad_meta / "run.json").write_text("{oops")
    truncated = runs_dir / "truncated-last"
    shutil.copytree(good[0].path, truncated)
    data = (truncated / "last.pt").read_bytes()
    (truncated / "last.pt").write_bytes(data[: len(data) // 3])

    infos = by_name(R.list_runs(runs_dir))
    assert len(infos) == 6
    assert infos["bad-checkpoint"].status == "damaged" and "best.pt" in infos["bad-checkpoint"].reason
    assert infos["bad-history"].status == "damaged" and "history.json" in infos["bad-history"].reason
    assert infos["bad-run-json"].status == "damaged" and "run.json" in infos["bad-run-json"].reason
    assert infos["truncated-last"].status == "damaged" and "last.pt" in infos["truncated-last"].reason
    for r in good:
        assert infos[r.name].status == "completed"
        assert infos[r.name].best_val_loss == pytest.approx(r.best_val_loss)
    # curves of a damaged run: what can be read, or a clear RunError
    c = R.load_curves(infos["bad-checkpoint"])  # last.pt is fine there
    assert c["train_loss"].size == 14
    with pytest.raises(R.RunError, match="cannot read the curves"):
        (bad_hist / "last.pt").write_bytes(b"x")
        (bad_hist / "best.pt").write_bytes(b"x")
        R.load_curves(bad_hist)


def test_old_version_and_interrupted_and_finished_states(runs_dir):
    src = R.list_runs(runs_dir)[0]
    # an older app kept only checkpoints: read what we can from last.pt
    old = runs_dir / "old-run"
    old.mkdir()
    for f in ("best.pt", "last.pt"):
        shutil.copy(src.path / f, old / f)
    info = R.read_run(old)
    assert info.status == "old version" and "history.json" in info.reason
    assert info.best_val_loss == pytest.approx(src.best_val_loss) and info.epochs_done == 2

    # a history.json without the fields this version writes
    old2 = runs_dir / "old-history"
    shutil.copytree(src.path, old2)
    h = json.loads((old2 / "history.json").read_text())
    for k in ("finished_reason", "train_seconds", "best_epoch", "best_val_loss"):
        h.pop(k)
    (old2 / "history.json").write_text(json.dumps(h))
    info = R.read_run(old2)
    assert info.status == "old version"
    assert info.best_val_loss == pytest.approx(src.best_val_loss)  # recomputed from the epochs
    assert info.train_seconds == pytest.approx(sum(e["seconds"] for e in h["epochs"]))

    def with_reason(name, reason):
        d = runs_dir / name
        shutil.copytree(src.path, d)
        h = json.loads((d / "history.json").read_text())
        h["finished_reason"] = reason
        (d / "history.json").write_text(json.dumps(h))
        return R.read_run(d)

    early = with_reason("early", "early_stopped")
    assert early.status == "early stopped" and early.early_stop_epoch == 2
    assert with_reason("div", "diverged").status == "diverged"
    assert with_reason("stop", "stopped").status == "stopped"
    crashed = with_reason("crash", None)
    assert crashed.status == "stopped" and "interrupted" in crashed.reason and crashed.resumable


def test_latest_report_metrics_are_read(runs_dir):
    run = R.list_runs(runs_dir)[0].path
    a, b, c = (run / "reports" / n for n in ("a", "b", "c"))
    for d in (a, b, c):
        d.mkdir(parents=True)
    (a / "report.json").write_text(json.dumps({"metrics": {"FD (MNIST classifier features)": 50.0}}))
    (b / "report.json").write_text(json.dumps(
        {"metrics": {"FD (MNIST classifier features)": 12.5, "FID (Inception, pytorch-fid)": {"value": 30.25, "n": 100},
                     "note": "text", "bad": float("nan")}}
    ))
    (c / "report.json").write_text("{truncated")
    os.utime(a / "report.json", (1, 1_000_000))
    os.utime(b / "report.json", (1, 2_000_000))
    os.utime(c / "report.json", (1, 3_000_000))  # newest but unreadable: skipped
    info = R.read_run(run)
    assert info.metrics == {"FD (MNIST classifier features)": 12.5, "FID (Inception, pytorch-fid)": 30.25}
    assert info.metrics_report == "b"
    assert info.status == "completed"


# ------------------------------------------------------------ editing
def test_rename_tag_delete(runs_dir):
    first, second = R.list_runs(runs_dir)
    new = R.rename_run(first.path, "my baseline")
    assert new == runs_dir / "my baseline" and not first.path.exists()
    assert json.loads((new / "run.json").read_text())["name"] == "my baseline"
    assert "my baseline" in by_name(R.list_runs(runs_dir))
    with pytest.raises(R.RunError, match="already exists"):
        R.rename_run(new, second.name)
    for bad in ("../escape", "", ".hidden", "a/b"):
        with pytest.raises(R.RunError, match="not a usable run name"):
            R.rename_run(new, bad)

    assert R.set_tags(new, ["fast", " fast", "cosine ", ""]) == ["fast", "cosine"]
    assert R.read_run(new).tags == ["fast", "cosine"]
    with pytest.raises(R.RunError, match="commas"):
        R.set_tags(new, ["a,b"])
    R.set_notes(new, "the first try")
    assert R.read_run(new).notes == "the first try"

    R.delete_run(new)
    assert not new.exists()
    assert [r.name for r in R.list_runs(runs_dir)] == [second.name]
    stranger = runs_dir / "not-a-run"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("precious")
    with pytest.raises(R.RunError, match="not a Diffusion Studio run"):
        R.delete_run(stranger)
    assert (stranger / "thesis.tex").exists()


def test_resolve_run_takes_exact_names_in_the_runs_folder_and_paths_given_as_paths(runs_dir, tmp_path,
                                                                                   monkeypatch):
    first, second = R.list_runs(runs_dir)
    assert R.resolve_run(first.name, runs_dir) == first.path
    assert R.resolve_run(str(second.path), "/nonexistent") == second.path
    assert R.resolve_run(second.path, "/nonexistent") == second.path  # a Path object is a path
    # never a start or a part of a name: the message names what comes close instead
    for part in ("2026-11-28_0711", "2026-11-28", "cosine"):
        with pytest.raises(R.RunError, match=f"no run '{part}' in .*did you mean .*give the whole name"):
            R.resolve_run(part, runs_dir)
    with pytest.raises(R.RunError, match="no run 'nope'"):
        R.resolve_run("nope", runs_dir)
    # a bare name is never a folder of the working directory; ./name is
    (tmp_path / "work" / "nope").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    with pytest.raises(R.RunError, match="no run 'nope'"):
        R.resolve_run("nope", runs_dir)
    assert R.resolve_run("./nope", runs_dir) == Path("./nope")
    assert [R.given_as_path(s) for s in ("a", "a b", "./a", "a/b", "~/a", "/a", Path("a"))] == \
        [False, False, True, True, True, True, True]


# --------------------------------------------- issue 31, item 1: runs delete
def test_a_folder_is_deleted_only_when_its_run_json_says_it_is_a_run(runs_dir):
    """Folders with reports/, best.pt or last.pt but no run.json were deleted whole."""
    victim = runs_dir / "victim"
    (victim / "reports").mkdir(parents=True)
    (victim / "src").mkdir()
    (victim / "src" / "thesis.tex").write_text("precious")
    lookalike = runs_dir / "lookalike"
    lookalike.mkdir()
    for name in ("best.pt", "last.pt"):
        (lookalike / name).write_bytes(b"the user's own file")
    for folder in (victim, lookalike):
        with pytest.raises(R.RunError, match="is not a Diffusion Studio run .* nothing deleted"):
            R.delete_run(folder)
        with pytest.raises(R.RunError, match="is not a Diffusion Studio run"):
            R.delete_run(folder.name, runs_dir)
    (victim / "run.json").write_text('{"name": "victim"}')  # JSON, but not the app's run file
    with pytest.raises(R.RunError, match="not one the app wrote"):
        R.delete_run(victim)
    assert (victim / "src" / "thesis.tex").read_text() == "precious"
    assert (lookalike / "best.pt").read_bytes() == b"the user's own file"


def test_a_run_holding_a_users_file_or_reached_through_a_link_is_not_deleted(runs_dir, tmp_path):
    run = R.list_runs(runs_dir)[0].path
    (run / "notes.txt").write_text("mine")
    with pytest.raises(R.RunError, match=r"also holds files the app did not write \(notes.txt\).*nothing deleted"):
        R.delete_run(run)
    assert (run / "notes.txt").exists() and (run / "best.pt").exists()
    (run / "notes.txt").unlink()
    link = tmp_path / "link-to-run"
    link.symlink_to(run, target_is_directory=True)
    with pytest.raises(R.RunError, match="is a link"):
        R.delete_run(link)
    assert (run / "best.pt").exists()
    # the run itself, with its reports and the leftovers of an interrupted save, goes
    (run / "reports" / "r1").mkdir(parents=True)
    (run / ".last.pt.abcd1234.tmp").write_bytes(b"half")
    assert R.delete_run(run.name, runs_dir) == run and not run.exists()


def test_a_name_reaches_only_the_run_of_exactly_that_name(runs_dir, tmp_path, monkeypatch):
    """`runs delete baseline` deleted ./baseline of the working directory; `nal` deleted mnist-final-v2."""
    first, second = R.list_runs(runs_dir)
    baseline = R.rename_run(first.path, "baseline")
    final = R.rename_run(second.path, "mnist-final-v2")
    cwd = tmp_path / "cwd"
    (cwd / "baseline").mkdir(parents=True)
    (cwd / "baseline" / "run.json").write_text((baseline / "run.json").read_text())  # even a run-like one
    monkeypatch.chdir(cwd)
    with pytest.raises(R.RunError, match="did you mean mnist-final-v2"):
        R.delete_run("nal", runs_dir)
    assert final.is_dir()
    assert R.delete_run("baseline", runs_dir) == runs_dir / "baseline"
    assert not baseline.exists() and (cwd / "baseline" / "run.json").exists()
    # a list is checked whole before anything goes
    with pytest.raises(R.RunError, match="no run 'nope'"):
        R.deletable_runs(["mnist-final-v2", "nope"], runs_dir)
    assert final.is_dir()
    assert R.deletable_runs(["mnist-final-v2", str(final)], runs_dir) == [final]


# ------------------------------- issue 31, item 2: a new run never replaces one
def test_a_new_run_refuses_a_folder_that_holds_a_run_file_of_any_kind(runs_dir, tmp_path):
    """A folder with best.pt and history.json but no last.pt was replaced by a new run."""
    run = R.list_runs(runs_dir)[0].path
    (run / "last.pt").unlink()
    with pytest.raises(R.RunError) as info:
        R.check_new_run_folder(run)
    message = str(info.value)
    assert "already holds a run (" in message and "best.pt" in message and "history.json" in message
    assert "--continue-from" in message and "\n" not in message
    for name in ("run.json", "history.json", "best.pt", "last.pt", "run.lock", "reports", ".last.pt.x1y2z3ab.tmp"):
        folder = tmp_path / f"holds-{name}"
        folder.mkdir()
        (folder / name).write_text("x") if name != "reports" else (folder / name).mkdir()
        with pytest.raises(R.RunError, match="already holds a run"):
            R.check_new_run_folder(folder)
    (tmp_path / "fresh" / "notes").mkdir(parents=True)
    assert R.check_new_run_folder(tmp_path / "fresh") == tmp_path / "fresh"
    assert R.check_new_run_folder(tmp_path / "not-yet") == tmp_path / "not-yet"
    (tmp_path / "a-file").write_text("")
    with pytest.raises(R.RunError, match="is a file"):
        R.check_new_run_folder(tmp_path / "a-file")


def test_a_resume_without_last_pt_never_advises_training_afresh_into_the_run(runs_dir, tmp_path):
    run = R.list_runs(runs_dir)[0].path
    assert R.prepare_resume(run) == (run / "last.pt", [])
    (run / "last.pt").unlink()
    with pytest.raises(R.RunError) as info:
        R.prepare_resume(run)
    message = str(info.value)
    assert "no last.pt to resume from" in message and "--continue-from" in message
    assert "without --resume" not in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(R.RunError, match="holds no run to resume; train a new run into it"):
        R.prepare_resume(tmp_path / "empty")


# -------------------- issue 31, item 4: an interrupted first save never blocks a resume
def test_a_partial_temporary_file_is_removed_and_a_whole_one_put_in_place(runs_dir):
    """A kill -9 during the first last.pt write left a 2 MB temporary file, and --resume refused."""
    run = R.list_runs(runs_dir)[0].path
    whole = (run / "last.pt").read_bytes()
    (run / "last.pt").unlink()
    (run / ".last.pt.k2j4x9ab.tmp").write_bytes(whole[: len(whole) // 2])  # killed mid-write
    (run / "my.notes.tmp").write_text("not the app's")  # never touched
    with pytest.raises(R.RunError, match="no last.pt to resume from"):
        R.prepare_resume(run)
    assert not (run / ".last.pt.k2j4x9ab.tmp").exists() and (run / "my.notes.tmp").exists()
    assert (run / "best.pt").is_file()

    (run / ".last.pt.m3n4b5v6.tmp").write_bytes(whole)  # killed after the write, before the rename
    last, repairs = R.prepare_resume(run)
    assert last == run / "last.pt" and last.read_bytes() == whole
    assert repairs == ["recovered last.pt from a save interrupted just before it was put in place"]
    assert R.leftover_temp_files(run) == []


def test_a_temporary_file_never_replaces_an_existing_file(runs_dir):
    run = R.list_runs(runs_dir)[0].path
    before = (run / "best.pt").read_bytes()
    (run / ".best.pt.q1w2e3r4.tmp").write_bytes((run / "last.pt").read_bytes())  # whole, but best.pt exists
    with R.mark_running(run):
        assert R.leftover_temp_files(run) == []
    assert (run / "best.pt").read_bytes() == before


# ------------------------------------------------------------- curves
def test_load_curves(runs_dir):
    run = R.list_runs(runs_dir)[0]
    c = R.load_curves(run)
    history = json.loads((run.path / "history.json").read_text())
    steps = 2 * math.ceil(100 / 16)  # 100 training digits, batch 16, 2 epochs
    assert c["step"].tolist() == list(range(1, steps + 1))
    assert c["train_loss"].shape == c["step_epoch"].shape == c["step_time"].shape == (steps,)
    assert np.all(np.isfinite(c["train_loss"])) and np.all(c["train_loss"] > 0)
    assert c["step_epoch"][-1] == pytest.approx(2.0)
    assert np.all(np.diff(c["step_time"]) >= 0)
    assert c["epoch"].tolist() == [1.0, 2.0]
    assert c["val_loss"].tolist() == pytest.approx([e["val_loss"] for e in history["epochs"]])
    assert c["epoch_step"].tolist() == pytest.approx([steps / 2, steps])
    assert c["epoch_time"][-1] == pytest.approx(history["train_seconds"])
    for axis, (sx, ex) in R.X_AXES.items():
        assert sx in c and ex in c, axis


def test_smooth_and_helpers():
    x = np.array([1.0, 1.0, 1.0, np.nan, 1.0])
    s = R.smooth(x, 0.9)
    assert np.allclose(s[[0, 1, 2, 4]], 1.0) and np.isnan(s[3])  # debiased: no ramp from 0
    y = np.array([0.0, 10.0])
    assert R.smooth(y, 0.0).tolist() == [0.0, 10.0]
    assert 0 < R.smooth(y, 0.5)[1] < 10
    with pytest.raises(ValueError, match="smoothing"):
        R.smooth(y, 1.0)
    assert R.color_for("a run") == R.color_for("a run")
    assert len({R.color_for(f"run {i}") for i in range(40)}) > 5
    assert R.format_number(5e-4) == "5e-4" and R.format_number(0.999) == "0.999" and R.format_number(128) == "128"
    assert R.format_duration(3725) == "1:02:05" and R.format_duration(65) == "1:05" and R.format_duration(None) == ""


# ------------------------------------------ issue 31, item 9: verifying a run
def test_verify_run_reads_every_file_in_full(runs_dir):
    run = R.list_runs(runs_dir)[0].path
    checks = {c.name: c for c in R.verify_run(run)}
    assert set(checks) == {"run.json", "best.pt", "last.pt", "history.json"}
    assert all(c.ok for c in checks.values())
    assert checks["last.pt"].message == "epoch 2, checksum verified"
    assert checks["history.json"].message == "2 epochs recorded"

    # a flipped byte inside a weight, which the runs list's cheap check cannot see
    data = bytearray((run / "last.pt").read_bytes())
    from diffusion_studio.engine.storage.checkpoint import load_checkpoint

    weight = max(load_checkpoint(run / "last.pt")["weights"].values(), key=lambda t: t.numel())
    at = data.find(weight.numpy().tobytes())
    data[at + 8] ^= 0x01
    (run / "last.pt").write_bytes(bytes(data))
    assert R.read_run(run).status == "completed"  # the list does not read weights
    checks = {c.name: c for c in R.verify_run(run)}
    assert not checks["last.pt"].ok and "is corrupted" in checks["last.pt"].message
    assert checks["best.pt"].ok


def test_verify_run_sees_files_of_different_epochs(runs_dir):
    """Item 3's inconsistent run (a save killed part-way): last.pt ahead of history.json and best.pt."""
    run = R.list_runs(runs_dir)[0].path
    h = json.loads((run / "history.json").read_text())
    h["epochs"] = h["epochs"][:1]
    (run / "history.json").write_text(json.dumps(h))
    from diffusion_studio.engine.storage.checkpoint import load_checkpoint, save_checkpoint

    best = load_checkpoint(run / "best.pt")
    best["best"] = {"epoch": 0, "val_loss": 9.0}
    save_checkpoint(run / "best.pt", best)
    bad = [c for c in R.verify_run(run) if not c.ok]
    assert [c.name for c in bad] == ["history.json", "best.pt"]
    assert "stops at epoch 1 while last.pt is at epoch 2" in bad[0].message
    assert "holds epoch 0 but the run's best epoch is" in bad[1].message


def test_a_non_numeric_history_value_names_the_run(runs_dir):
    """Item 16: a non-numeric field in a run's history gave 'could not convert string to float'."""
    run = R.list_runs(runs_dir)[0].path
    h = json.loads((run / "history.json").read_text())
    h["epochs"][0]["val_loss"] = "low"
    (run / "history.json").write_text(json.dumps(h))
    with pytest.raises(R.RunError, match=f"cannot read the curves of {run.name}: .*history.json.*not a number"):
        R.load_curves(run)
    h["epochs"][0]["epoch"] = "first"
    (run / "history.json").write_text(json.dumps(h))
    info = R.read_run(run)
    assert info.status == "damaged" and "history.json has unexpected contents" in info.reason


def test_a_fifo_or_folder_named_like_a_run_file_is_reported_and_never_opened(runs_dir):
    """Item 16: a directory, FIFO or /dev/zero link named best.pt was reported as "does not exist"."""
    run = R.list_runs(runs_dir)[0].path
    (run / "best.pt").unlink()
    os.mkfifo(run / "best.pt")  # opening it to read would wait for a writer for ever
    (run / "history.json").unlink()
    (run / "history.json").mkdir()
    info = R.read_run(run)
    assert info.status == "damaged"
    assert "best.pt is not a regular file" in info.reason and "history.json is a folder" in info.reason
    checks = {c.name: c for c in R.verify_run(run)}
    assert not checks["best.pt"].ok and "is a FIFO" in checks["best.pt"].message
    assert not checks["history.json"].ok and checks["last.pt"].ok
