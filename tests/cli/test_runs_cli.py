"""``diffusion-studio runs``: list, compare (HTML), rename, tag, delete."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion_studio.cli import main
from diffusion_studio.engine import runs as R

ROOT = Path(__file__).resolve().parents[2]



@pytest.fixture
def runs_dir(tmp_path, tiny_runs) -> Path:
    dst = tmp_path / "runs"
    shutil.copytree(tiny_runs, dst)
    damaged = R.init_run(dst / "2026-11-28_0715_crashed")
    (damaged / "best.pt").write_bytes(b"\x00garbage" * 50)
    (damaged / "history.json").write_text('{"epochs": [{"epoch": 1, "train_lo')
    return dst


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "diffusion_studio", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_runs_list_shows_trained_and_damaged_runs(runs_dir):
    res = cli("runs", "list", "--runs-dir", str(runs_dir))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "3 runs in" in out
    infos = R.list_runs(runs_dir)
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("2026-")}
    for r in infos[:2]:
        assert r.name in lines and "completed" in lines[r.name]
        assert f"{r.best_val_loss:.5f}" in lines[r.name]
        assert "2/2" in lines[r.name]
    assert "damaged" in lines["2026-11-28_0715_crashed"]
    assert "best.pt is damaged" in out and "history.json is unreadable" in out  # the reasons, as notes
    assert "Traceback" not in res.stderr


def test_runs_compare_writes_self_contained_html(runs_dir, tmp_path, capsys):
    a, b, bad = (r.name for r in R.list_runs(runs_dir))
    out = tmp_path / "cmp" / "compare.html"
    res = cli("runs", "compare", a, str(runs_dir / b), bad, "--out", str(out), "--runs-dir", str(runs_dir))
    assert res.returncode == 0, res.stderr
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    for name in (a, b, bad):
        assert name in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert html.count("<svg") == 3
    assert "Validation loss by timestep" in html
    # train curves (one per run) + val and epoch-mean train curves (two per run) + loss by t (one per run),
    # two readable runs
    paths = re.findall(r'<path d="M[^"]+" fill="none" stroke="(#[0-9A-Fa-f]{6})"', html)
    assert len(paths) == 8
    assert set(paths) == {R.color_for(a), R.color_for(b)}  # colours stable per run
    # the settings that differ (the schedule) are highlighted, the equal ones are not
    assert re.search(r'<tr class="diff"><th>schedule.kind</th>', html)
    assert re.search(r'<tr class=""><th>model.base_channels</th>', html)
    assert "damaged" in html
    assert "warning: cannot read the curves" in res.stderr

    # bad input: one clear line, exit status 2
    assert main(["runs", "compare", a, "--out", str(tmp_path / "x.txt"), "--runs-dir", str(runs_dir)]) == 2
    assert main(["runs", "compare", "no-such-run", "--out", str(out), "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err
    assert "must name an .html file" in err and "no run 'no-such-run'" in err


def test_runs_rename_tag_delete(runs_dir, capsys):
    a, b, bad = (r.name for r in R.list_runs(runs_dir))
    assert main(["runs", "rename", a, "baseline", "--runs-dir", str(runs_dir)]) == 0
    assert (runs_dir / "baseline").is_dir() and not (runs_dir / a).exists()
    assert main(["runs", "rename", "baseline", b, "--runs-dir", str(runs_dir)]) == 2  # taken

    assert main(["runs", "tag", "baseline", "fast", "linear", "--runs-dir", str(runs_dir)]) == 0
    assert main(["runs", "tag", "baseline", "cpu", "--add", "--runs-dir", str(runs_dir)]) == 0
    assert main(["runs", "tag", "baseline", "fast", "--remove", "--runs-dir", str(runs_dir)]) == 0
    assert R.read_run(runs_dir / "baseline").tags == ["linear", "cpu"]

    # deleting asks: without a terminal it needs --yes
    assert main(["runs", "delete", bad, "--runs-dir", str(runs_dir)]) == 2
    assert (runs_dir / bad).exists()
    assert main(["runs", "delete", bad, "baseline", "--yes", "--runs-dir", str(runs_dir)]) == 0
    assert [r.name for r in R.list_runs(runs_dir)] == [b]
    err = capsys.readouterr().err
    assert "already exists" in err and "add --yes" in err
    assert main(["runs", "list", "--runs-dir", str(runs_dir / "empty")]) == 0
    assert "no runs in" in capsys.readouterr().out


def test_runs_delete_reaches_only_a_run_of_exactly_that_name(runs_dir, tmp_path):
    """Issue 31, item 1, as reported: from a working directory with its own baseline/,
    `runs delete --runs-dir RD --yes baseline` deleted that folder; `--yes nal` deleted
    mnist-final-v2; a folder with reports/ and src/thesis.tex went with "deleted victim"."""
    a, b, _ = (r.name for r in R.list_runs(runs_dir))
    R.rename_run(runs_dir / a, "baseline")
    R.rename_run(runs_dir / b, "mnist-final-v2")
    cwd = tmp_path / "work"
    (cwd / "baseline" / "src").mkdir(parents=True)
    (cwd / "baseline" / "src" / "thesis.tex").write_text("precious")
    victim = runs_dir / "victim"
    (victim / "reports").mkdir(parents=True)
    (victim / "src").mkdir()
    (victim / "src" / "thesis.tex").write_text("precious")

    def delete(*names):
        r = subprocess.run([sys.executable, "-m", "diffusion_studio", "runs", "delete", "--runs-dir", str(runs_dir),
                            "--yes", *names], capture_output=True, text=True, cwd=cwd, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert "Traceback" not in r.stderr
        return r

    r = delete("nal")
    assert r.returncode == 2 and "no run 'nal'" in r.stderr and "did you mean mnist-final-v2" in r.stderr
    r = delete("victim")
    assert r.returncode == 2 and "is not a Diffusion Studio run" in r.stderr
    r = delete("mnist-final-v2", "victim")  # a list is refused whole
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert (runs_dir / "mnist-final-v2").is_dir()
    r = delete("baseline")
    assert r.returncode == 0 and r.stdout.strip() == "deleted baseline"
    assert not (runs_dir / "baseline").exists()
    assert (cwd / "baseline" / "src" / "thesis.tex").read_text() == "precious"
    assert (victim / "src" / "thesis.tex").read_text() == "precious"


def test_runs_verify_checks_every_file_and_fails_on_damage(runs_dir, tmp_path):
    a, b, bad = (r.name for r in R.list_runs(runs_dir))
    r = cli("runs", "verify", a, str(runs_dir / b), "--runs-dir", str(runs_dir))
    assert r.returncode == 0, r.stderr
    assert f"{a}: ok" in r.stdout and f"{b}: ok" in r.stdout and "checksum verified" in r.stdout
    r = cli("runs", "verify", "--runs-dir", str(runs_dir))  # all of them: the crashed run fails
    assert r.returncode == 1
    assert f"{bad}: PROBLEMS" in r.stdout and "FAILED" in r.stdout and "1 of 3 checked with problems" in r.stderr
    # one checkpoint file, given as a path
    r = cli("runs", "verify", str(runs_dir / a / "best.pt"))
    assert r.returncode == 0 and "best.pt  ok" in r.stdout
    r = cli("runs", "verify", "no-such-run", "--runs-dir", str(runs_dir))
    assert r.returncode == 2 and "no run 'no-such-run'" in r.stderr


def test_runs_list_into_a_closed_pipe_is_quiet(runs_dir):
    """`runs list | head` printed "error: [Errno 32] Broken pipe"."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before anything is written: every write fails
    try:
        p = subprocess.run([sys.executable, "-m", "diffusion_studio", "runs", "list", "--runs-dir", str(runs_dir)],
                           stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(write_end)
    assert p.returncode == 0
    assert p.stderr == ""
