"""Project-level contracts: CI runs the README's command; the engine has no Qt."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.S)
    test_cmds = [b.strip() for b in blocks if "pytest" in b]
    assert len(test_cmds) >= 1
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    assert test_cmds[0] in ci_lines


def test_engine_never_imports_qt():
    for path in (ROOT / "diffusion_studio" / "engine").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6"), path
                assert not name.startswith("diffusion_studio.ui"), path
                if isinstance(node, ast.ImportFrom) and node.level >= 2:  # from ..ui import x
                    assert name.split(".")[0] != "ui", path


def test_engine_and_cli_work_with_qt_unimportable(tiny_mnist, tmp_path):
    """Like napari's headless run: block PySide6 and pyqtgraph, then use the engine."""
    code = (
        "import sys; sys.modules['PySide6'] = None; sys.modules['pyqtgraph'] = None\n"
        "import importlib, pkgutil, diffusion_studio.engine as e\n"
        "for m in pkgutil.iter_modules(e.__path__): importlib.import_module('diffusion_studio.engine.' + m.name)\n"
        "from diffusion_studio.cli import main\n"
        f"sys.exit(main(['noise', '--data', {str(tiny_mnist)!r}, '--out', {str(tmp_path / 'n.png')!r}]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "n.png").is_file()
