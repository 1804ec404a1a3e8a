"""The Runs panel: tiny trained runs in the table, overlaid curves, damaged runs, actions."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox

from diffusion_studio.engine import runs as R
from diffusion_studio.ui.runs_panel import RunsPanel, RunsTableModel
from diffusion_studio.ui.state import AppState

CRASHED = "2026-11-28_0715_crashed"



@pytest.fixture
def runs_dir(tmp_path, tiny_runs) -> Path:
    dst = tmp_path / "runs"
    shutil.copytree(tiny_runs, dst)
    damaged = R.init_run(dst / CRASHED)  # a run (its run.json says so) whose files are damaged
    (damaged / "best.pt").write_bytes(b"\x00garbage" * 50)
    (damaged / "history.json").write_text('{"epochs": [{"epoch": 1, "train_lo')
    return dst


@pytest.fixture
def panel(qtbot, runs_dir):
    state = AppState()
    p = RunsPanel(state, runs_dir=runs_dir)
    qtbot.addWidget(p)
    p.resize(1100, 700)
    p.show()
    yield p
    assert p.shutdown(10000)  # a model being opened is read to the end


def good_names(panel) -> list[str]:
    return [r.name for r in panel.runs() if r.status == "completed"]


def table_rows(panel) -> dict[str, dict[str, str]]:
    """Visible rows as {name: {column title: text}}."""
    m = panel.table.model()
    out = {}
    for row in range(m.rowCount()):
        cells = {RunsTableModel.COLUMNS[c]: m.index(row, c).data() for c in range(m.columnCount())}
        out[cells["Name"]] = cells
    return out


def test_runs_appear_in_the_table_and_damaged_ones_are_marked(panel):
    assert panel.objectName() == "runsPanel"
    rows = table_rows(panel)
    assert len(rows) == 3
    for r in panel.runs():
        if r.status == "completed":
            assert rows[r.name]["Status"] == "completed"
            assert rows[r.name]["Best val"] == f"{r.best_val_loss:.5f}"
            assert rows[r.name]["Epochs"] == "2/2"
            assert rows[r.name]["Time"] != ""
    assert rows[CRASHED]["Status"] == "damaged"
    assert "best.pt" in rows[CRASHED]["Settings"]  # the reason, where the settings would be
    assert "3 runs" in panel.folder_label.text()


def test_overlaying_two_runs_draws_two_train_and_two_val_curves(panel):
    names = good_names(panel)
    assert len(names) == 2
    panel.select_runs(names)
    assert sorted(r.name for r in panel.selected_runs()) == sorted(names)
    plotted = [i for i in panel.plot_view.plot.getPlotItem().listDataItems() if isinstance(i, pg.PlotDataItem)]
    assert len(panel.plot_view.curve_items["train"]) == 2 and len(panel.plot_view.curve_items["val"]) == 2
    assert all(i in plotted for i in panel.plot_view.curve_items["train"] + panel.plot_view.curve_items["val"])
    assert {i.name() for i in panel.plot_view.curve_items["train"]} == set(names)
    # colours stable per run: the pen colour is the run's hash colour
    for item in panel.plot_view.curve_items["train"]:
        assert item.opts["pen"].color().name().lower() == R.color_for(item.name()).lower()
    legend_labels = [label.text for _, label in panel.plot_view.legend.items]
    assert sorted(legend_labels) == sorted(names)

    # x axis: step -> val at the end-of-epoch steps; epoch -> 1, 2; wall time -> training seconds
    curves = R.load_curves(panel.selected_runs()[0])
    val_x = lambda: panel.plot_view.curve_items["val"][0].getOriginalDataset()[0]  # noqa: E731
    assert np.allclose(val_x(), [7, 14])
    panel.plot_view.x_axis_combo.setCurrentText("epoch")
    assert np.allclose(val_x(), [1, 2]) and len(panel.plot_view.curve_items["train"]) == 2
    panel.plot_view.x_axis_combo.setCurrentText("wall time")
    assert np.allclose(val_x(), curves["epoch_time"])

    # smoothing changes the train curve; 0 shows the raw losses
    panel.plot_view.smoothing_slider.setValue(0)
    raw = panel.plot_view.curve_items["train"][0].getOriginalDataset()[1].copy()
    assert np.allclose(raw, curves["train_loss"])
    panel.plot_view.smoothing_slider.setValue(90)
    smoothed = panel.plot_view.curve_items["train"][0].getOriginalDataset()[1]
    assert not np.allclose(raw, smoothed) and np.allclose(smoothed, R.smooth(curves["train_loss"], 0.9))

    panel.plot_view.log_check.setChecked(False)
    assert not panel.plot_view.plot.getPlotItem().ctrl.logYCheck.isChecked()
    panel.plot_view.log_check.setChecked(True)
    assert panel.plot_view.plot.getPlotItem().ctrl.logYCheck.isChecked()
    panel.plot_view.train_check.setChecked(False)
    assert panel.plot_view.curve_items["train"] == [] and len(panel.plot_view.curve_items["val"]) == 2

    # a damaged run in the selection does not stop the others from drawing
    panel.plot_view.train_check.setChecked(True)
    panel.select_runs(names + [CRASHED])
    assert len(panel.plot_view.curve_items["train"]) == 2
    assert CRASHED in panel.message_label.text()


def test_filter_and_sort(panel):
    panel.filter_edit.setText("cosine")
    rows = table_rows(panel)
    assert len(rows) == 1 and "cosine" in next(iter(rows.values()))["Settings"]
    panel.filter_edit.setText("DAMAGED")
    assert list(table_rows(panel)) == [CRASHED]
    panel.filter_edit.setText("")
    col = RunsTableModel.COLUMNS.index("Best val")
    panel.table.sortByColumn(col, Qt.SortOrder.AscendingOrder)
    m = panel.table.model()
    losses = [m.index(r, col).data() for r in range(m.rowCount())]
    assert losses[-1] == ""  # unknown sorts last
    assert losses[:2] == sorted(losses[:2], key=float)


def test_open_in_sampler_and_resume(panel, qtbot):
    name = good_names(panel)[0]
    panel.select_runs([name])
    assert panel.open_button.isEnabled() and panel.resume_button.isEnabled()
    with qtbot.waitSignal(panel.state.model_changed, timeout=5000):
        panel.open_button.click()
    assert panel.state.model_source == f"run: {name}"
    assert panel.state.model.model_config.base_channels == 4
    with qtbot.waitSignal(panel.resume_requested, timeout=1000) as blocker:
        panel.resume_button.click()
    assert blocker.args == [str(panel.runs_dir / name)]
    panel.select_runs([CRASHED])
    assert not panel.open_button.isEnabled() and not panel.resume_button.isEnabled()


def test_rename_tag_and_delete_with_confirmation(panel, monkeypatch):
    first, second = good_names(panel)
    panel.select_runs([first])
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("my baseline", True)))
    panel.rename_button.click()
    assert (panel.runs_dir / "my baseline").is_dir()
    assert [r.name for r in panel.selected_runs()] == ["my baseline"]

    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("fast, linear , ", True)))
    panel.tags_button.click()
    assert table_rows(panel)["my baseline"]["Tags"] == "fast, linear"

    asked = []

    def answer(result):
        def question(*args, **kwargs):
            asked.append(args[2])
            return result
        return staticmethod(question)

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.No))
    panel.select_runs(["my baseline", CRASHED])
    panel.delete_button.click()
    assert (panel.runs_dir / "my baseline").exists() and len(table_rows(panel)) == 3
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    panel.delete_button.click()
    assert "Delete 2 runs" in asked[-1] and "my baseline" in asked[-1]
    assert not (panel.runs_dir / "my baseline").exists() and not (panel.runs_dir / CRASHED).exists()
    assert list(table_rows(panel)) == [second]


def test_refresh_picks_up_new_runs_and_running_state(panel, qtbot):
    assert not panel.running_timer.isActive()
    new = R.new_run_dir(panel.runs_dir, "fresh")
    with R.mark_running(new):
        panel.refresh()
        rows = table_rows(panel)
        assert rows[new.name]["Status"] == "running"
        assert panel.running_timer.isActive()  # re-read while a run trains
    # the folder is watched: removing the marker is noticed without a click
    qtbot.waitUntil(lambda: table_rows(panel)[new.name]["Status"] == "empty", timeout=5000)
    assert not panel.running_timer.isActive()


def test_the_chart_shows_no_legend_or_ticks_until_a_run_is_selected(panel):
    view = panel.plot_view
    item = view.plot.getPlotItem()

    def shown() -> tuple[bool, bool, bool]:
        return (view.legend.isVisible(), item.getAxis("left").style["showValues"],
                item.getAxis("bottom").style["showValues"])

    panel.show()
    panel.select_runs([])
    assert shown() == (False, False, False)  # an empty box and log ticks 2..9 of nothing, before
    panel.select_runs(good_names(panel)[:1])
    assert shown() == (True, True, True) and item.getAxis("left").logMode
    panel.select_runs([])
    assert shown() == (False, False, False)


def test_empty_and_missing_runs_folder(qtbot, tmp_path):
    p = RunsPanel(AppState(), runs_dir=tmp_path / "nothing-here")
    qtbot.addWidget(p)
    assert p.model.rowCount() == 0 and "No runs yet" in p.empty_label.text()
    assert p.plot_view.curve_items == {"train": [], "val": []}
    (tmp_path / "file").write_text("x")
    p.set_runs_dir(tmp_path / "file")
    assert "is a file" in p.message_label.text()


def _flip_a_weight_byte(checkpoint: Path) -> None:
    """Flip one bit inside the checkpoint's largest weight tensor: torch loads it unchanged, only
    the checksum tells (issue 31, item 9)."""
    from diffusion_studio.engine.storage.checkpoint import load_checkpoint

    weight = max(load_checkpoint(checkpoint)["weights"].values(), key=lambda t: t.numel())
    data = bytearray(checkpoint.read_bytes())
    at = data.find(weight.contiguous().numpy().tobytes())
    assert at > 0
    data[at + 8] ^= 0x01
    checkpoint.write_bytes(bytes(data))


def verify(panel, qtbot, names: list[str]) -> None:
    panel.select_runs(names)
    assert panel.verify_button.isEnabled()
    with qtbot.waitSignal(panel.verify_runner.stopped, timeout=30000):
        panel.verify_button.click()
        assert not panel.verify_button.isEnabled()  # one verification at a time
    assert panel.verify_button.isEnabled()


def test_verify_reads_every_file_and_shows_a_corrupted_checkpoint_as_failed(panel, qtbot):
    from diffusion_studio.ui.runs_view import verify_lines

    panel.select_runs([])
    assert not panel.verify_button.isEnabled()  # nothing selected
    good, corrupted = good_names(panel)
    _flip_a_weight_byte(panel.runs_dir / corrupted / "best.pt")
    panel.refresh()
    assert table_rows(panel)[corrupted]["Status"] == "completed"  # the list does not read weights
    verify(panel, qtbot, [good, corrupted])

    text = panel.details.text().replace("&#8203;", "")  # (zero-width spaces let names and paths wrap)
    for line in verify_lines(R.verify_run(panel.runs_dir / good)):
        assert line in text
    assert "best.pt: ok — epoch 2, checksum verified" in text
    bad = [c for c in R.verify_run(panel.runs_dir / corrupted) if not c.ok]
    assert [c.name for c in bad] == ["best.pt"] and "is corrupted" in bad[0].message
    # the failure stands out: its line in bold red in the details, and the footer names the run in red
    failed_line = verify_lines(bad)[0]
    assert failed_line.startswith("best.pt: FAILED — ")
    assert f"<b>✗ {html.escape(failed_line)}</b>" in text
    assert "Verify: 1 problem" in text and "Verify: every file ok" in text
    panel.refresh()  # as the folder's watcher does when a training writes: the result stays in the footer
    assert panel.message_label.text() == f"verified 2 runs: problems in {corrupted} (see the details)"
    assert "font-weight: bold" in panel.message_label.styleSheet()
    # the result shows while the files are as verified, for whichever of them is selected
    panel.select_runs([corrupted])
    assert "Verify: 1 problem" in panel.details.text() and "every file ok" not in panel.details.text()
    (panel.runs_dir / corrupted / "best.pt").write_bytes((panel.runs_dir / corrupted / "last.pt").read_bytes())
    panel.refresh()
    assert "Verify:" not in panel.details.text()  # best.pt changed since: verify again

    verify(panel, qtbot, [CRASHED])  # the damaged run: run.json ok, best.pt and history.json FAILED
    assert "run.json: ok — names the folder a run" in panel.details.text()
    assert "best.pt: FAILED — " in panel.details.text() and "history.json: FAILED — " in panel.details.text()


def test_delete_refuses_a_selection_with_a_running_run_or_a_non_run_in_one_line(panel, qtbot, monkeypatch):
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes))
    first, second = good_names(panel)
    # a user's folder in the runs folder: listed, but not a run (no run.json), so never deleted
    thesis = panel.runs_dir / "thesis"
    (thesis / "src").mkdir(parents=True)
    (thesis / "src" / "thesis.tex").write_text("precious")
    shutil.copy2(panel.runs_dir / first / "best.pt", thesis / "best.pt")
    panel.refresh()
    panel.select_runs([first, "thesis"])
    assert panel.delete_button.isEnabled()
    panel.delete_button.click()
    message = panel.message_label.text()
    assert "thesis is not a Diffusion Studio run" in message and "nothing deleted" in message and "\n" not in message
    assert asked == []  # refused before the confirmation
    assert (panel.runs_dir / first).is_dir() and (thesis / "src" / "thesis.tex").read_text() == "precious"

    with R.mark_running(panel.runs_dir / second):
        panel.refresh()
        panel.select_runs([first, second])
        assert table_rows(panel)[second]["Status"] == "running" and panel.delete_button.isEnabled()
        panel.delete_button.click()
        message = panel.message_label.text()
        assert message == f"{second} is training; stop it before deleting it; nothing deleted"
        assert asked == [] and (panel.runs_dir / first).is_dir() and (panel.runs_dir / second).is_dir()
    assert len(table_rows(panel)) == 4


def test_the_list_refreshes_itself_from_a_missing_folder_and_when_shown(qtbot, tmp_path, tiny_runs):
    """Issue 32, item 9: 'No runs yet' after two trainings until Refresh was pressed (the runs
    folder did not exist when the panel was built, so nothing was watched)."""
    runs_dir = tmp_path / "home" / "runs"
    p = RunsPanel(AppState(), runs_dir=runs_dir)
    qtbot.addWidget(p)
    p.show()
    assert "No runs yet" in p.findChild(type(p.empty_label), "runsEmptyLabel").text()
    first = sorted(tiny_runs.iterdir())[0]
    shutil.copytree(first, runs_dir / first.name)  # the first training creates the folder
    qtbot.waitUntil(lambda: [r.name for r in p.runs()] == [first.name], timeout=5000)
    assert not p.findChild(type(p.empty_label), "runsEmptyLabel").isVisibleTo(p)
    # a change the watcher missed is picked up when the tab is shown again
    p.hide()
    p.watcher.removePaths(p.watcher.directories())
    second = sorted(tiny_runs.iterdir())[1]
    shutil.copytree(second, runs_dir / second.name)
    p.show()
    qtbot.waitUntil(lambda: len(p.runs()) == 2, timeout=5000)


def test_a_runs_colour_is_the_same_whatever_else_is_selected(panel):
    first, second = good_names(panel)
    colours = []
    for names in ([first], [second, first], [first, second], [first]):
        panel.select_runs(names)
        colours.append({i.name(): i.opts["pen"].color().name() for i in panel.plot_view.curve_items["train"]})
    assert {c[first] for c in colours} == {R.color_for(first).lower()}
    panel.refresh()
    panel.select_runs([first])
    assert panel.plot_view.curve_items["train"][0].opts["pen"].color().name() == R.color_for(first).lower()


def test_images_seen_axis_is_step_times_each_runs_batch_size(panel):
    import json

    first, second = good_names(panel)
    history = panel.runs_dir / second / R.HISTORY_FILE  # say the second run trained with batches of 32
    meta = json.loads(history.read_text())
    meta["train"]["batch_size"] = 32
    history.write_text(json.dumps(meta))
    panel.refresh()
    combo = panel.findChild(type(panel.plot_view.x_axis_combo), "runsXAxis")
    combo.setCurrentText("images seen")
    panel.select_runs([first, second])
    x = {i.name(): i.getOriginalDataset()[0] for i in panel.plot_view.curve_items["train"]}
    steps = {r.name: R.load_curves(r)["step"] for r in panel.selected_runs()}
    assert np.allclose(x[first], steps[first] * 16) and np.allclose(x[second], steps[second] * 32)
    assert np.allclose(panel.plot_view.curve_items["val"][0].getOriginalDataset()[0][-1] % 16, 0)
    assert "images seen" in panel.plot_view.plot.getPlotItem().getAxis("bottom").labelText
    del meta["train"]["batch_size"]  # a run whose settings lack it is named, the other still drawn
    history.write_text(json.dumps(meta))
    panel.refresh()
    assert len(panel.plot_view.curve_items["train"]) == 1
    assert f"{second}: its settings give no batch size" in panel.message_label.text()


def test_log_axis_tick_labels_never_overlap(panel, qtbot):
    """Issue 32, item 7: on a log scale pyqtgraph labels every minor tick (0.02 … 0.09), drawn over
    each other on a short axis."""
    from PySide6.QtGui import QImage, QPainter

    panel.select_runs(good_names(panel))
    plot = panel.findChild(pg.PlotWidget, "runsPlot")
    assert panel.findChild(type(panel.plot_view.log_check), "runsLogScale").isChecked()
    panel.resize(900, 420)
    item = plot.getPlotItem()
    item.setYRange(np.log10(0.012), np.log10(1.4), padding=0)  # a real training: 1.2 down to 0.015
    qtbot.wait(50)
    axis = item.getAxis("left")
    image = QImage(10, 10, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        labels = [(rect, text) for rect, _flags, text in axis.generateDrawSpecs(painter)[2]]
        plain = [rect for rect, _flags, _text in pg.AxisItem.generateDrawSpecs(axis, painter)[2]]
    finally:
        painter.end()

    def overlapping(rects):
        return [(a, b) for i, a in enumerate(rects) for b in rects[i + 1:] if a.intersects(b)]

    assert overlapping(plain)  # what pyqtgraph alone draws here
    assert not overlapping([rect for rect, _ in labels])
    texts = {text for _, text in labels}
    assert {"0.1", "1"} <= texts and len(texts) >= 3  # the powers of ten first, then what fits


def test_the_plot_has_a_plain_caption_and_keeps_the_formula_in_its_tooltip(panel):
    from PySide6.QtWidgets import QLabel

    caption = panel.findChild(QLabel, "runsCaption")
    assert caption.isVisibleTo(panel) and "lower is better" in caption.text()
    assert "ε" not in caption.text() and "‖ε − ε_θ(x_t, t)‖²" in caption.toolTip()
    assert "ε" not in panel.plot_view.plot.getPlotItem().getAxis("left").labelText
    assert "‖ε − ε_θ(x_t, t)‖²" in panel.model.headerData(
        RunsTableModel.COLUMNS.index("Best val"), Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
