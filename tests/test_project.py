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


QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6")
FRONT_ENDS = ("ui", "commands", "cli", "app", "desktop")


def _imports(path: Path) -> list[str]:
    """The absolute module names a file imports (relative imports resolved)."""
    # the package a relative import starts from (for an __init__.py, its own package)
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts).rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                out += [module] + [f"{module}.{a.name}" for a in node.names]
            elif node.module:
                out += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return out


def _layer_files(*layers: str):
    for layer in layers:
        yield from (ROOT / "diffusion_studio" / layer).rglob("*.py")


def test_the_engine_and_the_task_layer_import_no_qt_and_no_front_end():
    """The layering, as the README's layout section states it: engine < tasks < (commands, ui)."""
    for path in _layer_files("engine", "tasks"):
        for name in _imports(path):
            assert name.split(".")[0] not in QT_MODULES, f"{path} imports {name}"
            parts = name.split(".")
            assert not (parts[0] == "diffusion_studio" and len(parts) > 1 and parts[1] in FRONT_ENDS), \
                f"{path} imports {name}"
    for path in _layer_files("engine"):
        assert not any(n.startswith("diffusion_studio.tasks") for n in _imports(path)), f"{path} imports the tasks"


def test_the_gui_never_calls_the_cli():
    for path in _layer_files("ui"):
        for name in _imports(path):
            parts = name.split(".")
            assert not (parts[0] == "diffusion_studio" and len(parts) > 1 and parts[1] in ("commands", "cli")), \
                f"{path} imports {name}"


def test_no_import_circles_among_modules():
    """Module-level imports (not those inside functions) form no cycle."""
    graph = {}
    for path in (ROOT / "diffusion_studio").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        # module level, including ``if TYPE_CHECKING:`` blocks (a circle for the type checker too)
        body = tree.body + [n for node in tree.body if isinstance(node, ast.If) for n in node.body]
        top = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = []
        for node in top:
            names += _imports_of_node(path, node)
        graph[module] = {n for n in names if n.startswith("diffusion_studio")}
    modules = set(graph)
    edges = {m: {_owner(n, modules) for n in targets} - {None, m} for m, targets in graph.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in edges.get(m, ()):
            if state.get(n) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m)


def _imports_of_node(path: Path, node) -> list[str]:
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts).rsplit(".", 1)[0]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    return [module] + [f"{module}.{a.name}" for a in node.names]


def _owner(name: str, modules: set[str]) -> str | None:
    """The module a dotted import name lives in (the longest known prefix), skipping packages'
    __init__ when a submodule is named."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return None


def test_engine_and_cli_work_with_qt_unimportable(tiny_mnist, tmp_path):
    """Like napari's headless run: block PySide6 and pyqtgraph, then use the engine."""
    code = (
        "import sys; sys.modules['PySide6'] = None; sys.modules['pyqtgraph'] = None\n"
        "import importlib, pkgutil, diffusion_studio.engine as e, diffusion_studio.tasks as t\n"
        "for pkg in (e, t):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'): importlib.import_module(m.name)\n"
        "from diffusion_studio.cli import main\n"
        f"sys.exit(main(['noise', '--data', {str(tiny_mnist)!r}, '--out', {str(tmp_path / 'n.png')!r}]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "n.png").is_file()
