"""Shared test set-up: private app folders, headless Qt, and tiny MNIST folders.

No test reads the real MNIST files or the user's folders: every test session
gets its own DIFFUSION_STUDIO_HOME, and ``tiny_mnist`` writes small IDX files.
"""

from __future__ import annotations

import os
import tempfile

# Before anything imports Qt or the app: headless, and no writes to the user's home.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_HOME = tempfile.mkdtemp(prefix="diffusion-studio-tests-")
os.environ["DIFFUSION_STUDIO_HOME"] = _HOME
os.environ.setdefault("XDG_CONFIG_HOME", os.path.join(_HOME, "config"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


def make_digits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n synthetic 28x28 uint8 'digits' with labels 0..9: a bright bar whose
    position and angle depend on the label, plus a little noise, on black."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    images = torch.zeros(n, 28, 28)
    for i, y in enumerate(labels.tolist()):
        angle = y * torch.pi / 10
        d = (xx - 14) * torch.cos(torch.tensor(angle)) + (yy - 14) * torch.sin(torch.tensor(angle))
        images[i] = (d.abs() < 2.5).float() * ((xx - 14) ** 2 + (yy - 14) ** 2 < 100).float()
    images = images * 230 + torch.rand(n, 28, 28, generator=g) * 20
    return images.clamp(0, 255).to(torch.uint8), labels


def write_mnist_folder(folder, n_train: int = 120, n_test: int = 30, gz: bool = True, layout: str = "flat"):
    """Write the four MNIST IDX files (tiny) into ``folder``; returns the folder."""
    from diffusion_studio.engine.storage.data import write_idx

    folder = os.fspath(folder)
    target = folder if layout == "flat" else os.path.join(folder, "MNIST", "raw")
    os.makedirs(target, exist_ok=True)
    ext = ".gz" if gz else ""
    tr_x, tr_y = make_digits(n_train, seed=1)
    te_x, te_y = make_digits(n_test, seed=2)
    write_idx(os.path.join(target, "train-images-idx3-ubyte" + ext), tr_x)
    write_idx(os.path.join(target, "train-labels-idx1-ubyte" + ext), tr_y)
    write_idx(os.path.join(target, "t10k-images-idx3-ubyte" + ext), te_x)
    write_idx(os.path.join(target, "t10k-labels-idx1-ubyte" + ext), te_y)
    return folder


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory):
    """A flat folder with four gzipped IDX files: 120 train (100 train / 20 val), 30 test."""
    return write_mnist_folder(tmp_path_factory.mktemp("mnist"))


@pytest.fixture
def loaded_window(qtbot, tiny_mnist):
    """The main window, shown, with the tiny MNIST folder loaded."""
    from diffusion_studio.ui.main_window import MainWindow
    from diffusion_studio.ui.state import AppState

    w = MainWindow(AppState())
    qtbot.addWidget(w)
    w.show()
    w.loader.load(tiny_mnist)
    assert w.loader.wait(60)
    return w


@pytest.fixture(scope="session")
def tiny_data(tiny_mnist):
    from diffusion_studio.engine.storage.data import load_mnist

    return load_mnist(tiny_mnist)


TINY_RUN_SCHEDULES = ("linear", "cosine")


@pytest.fixture(scope="session")
def tiny_runs(tiny_data, tmp_path_factory):
    """A runs folder with two tiny finished runs (linear and cosine schedule,
    2 epochs each), trained once per session; tests copy it before changing it."""
    import datetime as dt

    from diffusion_studio.engine import runs as R
    from diffusion_studio.engine.diffusion.schedule import ScheduleConfig
    from diffusion_studio.engine.training.config import TrainConfig
    from diffusion_studio.engine.training.plan import plan_new
    from diffusion_studio.engine.training.trainer import Trainer
    from diffusion_studio.engine.diffusion.unet import UNetConfig

    root = tmp_path_factory.mktemp("tiny-runs") / "runs"
    model = UNetConfig(base_channels=4)
    train = TrainConfig(epochs=2, batch_size=16, precision="fp32", bn_recalibration=0)  # the report's
    for i, kind in enumerate(TINY_RUN_SCHEDULES):
        schedule = ScheduleConfig(kind=kind, timesteps=10)
        when = dt.datetime(2026, 11, 28, 7, 10 + i, tzinfo=dt.timezone.utc)
        run_dir = R.new_run_dir(root, R.describe_differences(model, schedule, train), now=when)
        with R.mark_running(run_dir):
            for _ in Trainer(plan_new(model, schedule, train), tiny_data, device="cpu", run_dir=run_dir).run():
                pass
    return root


# The fast tier (`pytest -m "not slow"`): the engine and the panels in-process. Subprocess
# tests (the CLI, packaging, a real X server) start Python and torch again and again, so
# whole folders of them are slow by nature; single slow tests carry @pytest.mark.slow.
SLOW_PATHS = ("tests/cli/", "tests/packaging/", "tests/ui/test_xvfb_screenshots.py", "tests/test_project.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.nodeid.replace("\\", "/")
        if path.startswith(SLOW_PATHS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _ui_settings_store(request):
    """UI tests share one settings store for the session, in its private folder (never the
    user's, even where XDG_CONFIG_HOME is set), and forget what the panels remember before
    each test, so a test that picks a preset or a zoom does not change the next one's form.
    Engine tests import no Qt, so this only acts under tests/ui/."""
    if not request.node.nodeid.replace("\\", "/").startswith("tests/ui/"):
        yield
        return
    from PySide6.QtCore import QSettings

    from diffusion_studio.ui import settings as S

    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, os.path.join(_HOME, "config"))
    store = S.app_settings()
    for group in (S.TRAIN_FORM_GROUP, S.DATASET_GROUP):
        store.remove(group)
    yield
