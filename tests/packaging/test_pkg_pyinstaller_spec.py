"""packaging/diffusion-studio.spec, executed against stand-ins for PyInstaller's build objects.

PyInstaller itself does not run here (a torch build takes many minutes and GBs); this
checks what the spec asks for: a windowed one-folder build of the real entry point,
with the package data and every subcommand module, and an icon file that exists.
"""

from __future__ import annotations

import sys
import types

import pytest
from pkg_helpers import ROOT

SPEC = ROOT / "packaging" / "diffusion-studio.spec"


class _Recorder:
    calls: dict[str, list] = {}

    def __init__(self, kind):
        self.kind = kind

    def __call__(self, *args, **kwargs):
        obj = types.SimpleNamespace(args=args, kwargs=kwargs, pure=["pure"], scripts=["scripts"],
                                    binaries=["binaries"], datas=["datas"])
        self.calls.setdefault(self.kind, []).append(obj)
        return obj


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_spec_asks_for_a_windowed_build_with_package_data(monkeypatch, platform):
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_data_files = lambda package: [(f"<{package} data>", package)]
    hooks.collect_submodules = lambda package: [f"{package}.commands.desktop", f"{package}.commands.train"]
    for name in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    monkeypatch.setattr(sys, "platform", platform)
    _Recorder.calls = {}
    namespace = {"SPECPATH": str(SPEC.parent), "__file__": str(SPEC)}
    namespace.update({k: _Recorder(k) for k in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")})
    exec(compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec"), namespace)

    (analysis,) = _Recorder.calls["Analysis"]
    (entry,) = analysis.args[0]
    assert (ROOT / "packaging").joinpath(entry).is_file()
    assert "from diffusion_studio.cli import main" in open(entry, encoding="utf-8").read()
    assert ("<diffusion_studio data>", "diffusion_studio") in analysis.kwargs["datas"]
    assert "diffusion_studio.commands.desktop" in analysis.kwargs["hiddenimports"]

    (exe,) = _Recorder.calls["EXE"]
    assert exe.kwargs["console"] is False
    assert exe.kwargs["name"] == "diffusion-studio"
    assert all((ROOT / "packaging").joinpath(p).is_file() for p in exe.kwargs["icon"])
    assert len(_Recorder.calls["COLLECT"]) == 1
    assert len(_Recorder.calls.get("BUNDLE", [])) == (1 if platform == "darwin" else 0)
    if platform == "darwin":
        from diffusion_studio.desktop import APP_ID

        assert _Recorder.calls["BUNDLE"][0].kwargs["bundle_identifier"] == APP_ID
