"""Two trainings started together into one folder: exactly one may take it."""

import subprocess
import sys
import textwrap

import pytest

RACER = textwrap.dedent("""
    import sys, time
    from diffusion_studio.engine import runs as R
    go_at = float(sys.argv[2])
    while time.time() < go_at:
        pass
    try:
        with R.mark_running(sys.argv[1]):
            print("won", flush=True)
            time.sleep(2.0)
    except R.RunError as exc:
        print("refused:", exc, flush=True)
""")


@pytest.mark.slow
def test_only_one_of_two_simultaneous_starts_takes_the_run_folder(tmp_path):
    import time

    for trial in range(6):
        run = tmp_path / f"run{trial}"
        go_at = time.time() + 1.0  # both start spinning, then try at the same instant
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(run), str(go_at)], stdout=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        outs = [p.communicate(timeout=60)[0].strip() for p in procs]
        assert sorted(o.split(":")[0] for o in outs) == ["refused", "won"], outs
        assert any("already being trained" in o for o in outs)
