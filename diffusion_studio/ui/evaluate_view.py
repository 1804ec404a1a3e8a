"""The Evaluate panel's form and results.

``EvaluateForm``: what to evaluate (the current model or a checkpoint file), n, the metric,
the seed and the Inception weights; the reverse process is the Sampler tab's, shown here.
``ResultsView``: the named numbers in a table, the selected metric's protocol, the digits.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, Qt, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..engine.defaults import DEFAULT_EVAL_N, DEFAULT_METRIC, METRIC_CHOICES
from ..engine.storage.images import tile
from .widgets import ImageView, WrappingLabel

METRIC_TITLES = {
    "all": "All: FID (needs the Inception weights) + MNIST metrics",
    "mnist": "MNIST metrics only (works offline)",
    "inception": "FID only (needs the Inception weights)",
}
METRIC_TIPS = {
    "all": "Both measurements below, side by side.",
    "mnist": "Compares the generated digits with real ones through a small MNIST classifier shipped with the app: "
             "how far apart their features are (FD, KID), how sure the classifier is, which digits appear, and "
             "whether samples copy training digits. No download.",
    "inception": "The FID researchers quote: the same comparison through Inception-v3, a large photo network "
                 "(pytorch-fid's weights, about 92 MB). Comparable with published numbers only at n = 10,000.",
}
CAPTION = ("How close are the generated digits to real MNIST digits? Each distance (FD, FID, KID) is 0 when "
           "the two sets are indistinguishable to the network that compares them: lower is better.")
CAPTION_TIP = ("Fréchet distance FD = ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2(Σ_r Σ_g)^½) between Gaussians fitted to a "
               "network's features of real (r) and generated (g) digits (Heusel et al. 2017); FID takes "
               "Inception-v3's 2048 pool features, FD here the MNIST classifier's. KID: the unbiased squared MMD "
               "with a cubic polynomial kernel, mean ± std over subsets (Bińkowski et al. 2018). The protocol "
               "of the selected row is below the table.")


class EvaluateForm(QGroupBox):
    """The evaluation's settings (a QGroupBox titled "Evaluate")."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Evaluate", parent)
        self.source_combo = QComboBox()
        self.source_combo.addItem("Current model", "current")
        self.source_combo.addItem("Checkpoint file", "file")
        self.path_edit = QLineEdit(placeholderText="a .pt checkpoint")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse_checkpoint)
        self.n_spin = QSpinBox(minimum=2, maximum=100_000, singleStep=500, value=DEFAULT_EVAL_N)
        self.n_spin.setToolTip("Generated digits. Comparable FIDs use 10,000; FID is biased upward at small n.")
        self.metric_combo = QComboBox()
        for key in sorted(METRIC_CHOICES, key=list(METRIC_TITLES).index):
            self.metric_combo.addItem(METRIC_TITLES[key], key)
            self.metric_combo.setItemData(self.metric_combo.count() - 1, METRIC_TIPS[key], Qt.ItemDataRole.ToolTipRole)
        # long titles must not widen the form past its half of the panel
        self.metric_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.metric_combo.setMinimumContentsLength(16)
        self.metric_combo.setToolTip("\n\n".join(f"{METRIC_TITLES[k]}: {METRIC_TIPS[k]}" for k in METRIC_TITLES))
        self.metric_combo.setCurrentIndex(self.metric_combo.findData(DEFAULT_METRIC))
        # the reverse process is the sampler panel's (one SamplerConfig for both), so the
        # digits scored here are the digits the Sampler tab makes
        self.sampler_label = WrappingLabel(objectName="evaluateSamplerLabel")  # never drawn under its neighbours
        self.sampler_label.setToolTip(
            "The Sampler tab's settings: an evaluation scores exactly the digits that sampler makes. "
            "Change them there. Class-conditional models are asked for the digits 0–9 in turn and also "
            "scored for class accuracy.")
        self.seed_spin = QSpinBox(minimum=0, maximum=999_999_999)
        self.seed_spin.setValue(1)  # Qt 6.11 leaves a fresh spin box at 0 blank until its value changes
        self.seed_spin.setValue(0)
        self.seed_spin.setToolTip("The same seed makes the same digits, so two evaluations can be compared")
        self.weights_edit = QLineEdit(placeholderText="default: torch hub cache (pt_inception-2015-12-05-6726825d.pth)")
        self.weights_button = QPushButton("Browse…")
        self.weights_button.clicked.connect(self._browse_weights)
        self._layout()

    def _layout(self) -> None:
        from ..engine.evaluation.fid import FID_WEIGHTS_MB

        form = QFormLayout(self)
        form.addRow("Model", self.source_combo)
        form.addRow("Checkpoint", _row(self.path_edit, self.browse_button))
        form.addRow("Digits (n)", self.n_spin)
        form.addRow("Metric", self.metric_combo)
        form.addRow("Sampler", self.sampler_label)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Inception weights", _row(self.weights_edit, self.weights_button))
        self.download_button = QPushButton(f"Download Inception weights (about {FID_WEIGHTS_MB} MB)…",
                                           objectName="downloadInceptionButton")
        self.download_button.setToolTip(
            "Fetch pytorch-fid's pt_inception-2015-12-05-6726825d.pth into torch hub's cache, checked by its "
            "sha256 (needs internet); on a machine without internet, copy the file there or choose it above")
        form.addRow(self.download_button)
        self.estimate_label = QLabel(objectName="inceptionEstimateLabel", wordWrap=True)
        self.estimate_label.setStyleSheet("color: #555; font-size: 11px;")
        form.addRow(self.estimate_label)

    def set_running(self, running: bool) -> None:
        for w in (self.source_combo, self.n_spin, self.metric_combo, self.seed_spin, self.weights_edit,
                  self.weights_button):
            w.setEnabled(not running)
        from_file = self.source_combo.currentData() == "file"
        self.path_edit.setEnabled(from_file and not running)
        self.browse_button.setEnabled(from_file and not running)

    def weights(self) -> str | None:
        return self.weights_edit.text().strip() or None

    @Slot()
    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint to evaluate", "", "Checkpoints (*.pt);;All files (*)")
        if path:
            self.path_edit.setText(path)

    @Slot()
    def _browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Inception weights", "", "PyTorch weights (*.pth);;All files (*)")
        if path:
            self.weights_edit.setText(path)


class ResultsView(QWidget):
    """The last evaluation: messages, its metrics, the selected one's protocol (``show``)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.evaluation = None
        self.message_label = QLabel("", wordWrap=True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_scroll = QScrollArea(widgetResizable=True)
        self.message_scroll.setWidget(self.message_label)
        self.message_scroll.setMaximumHeight(140)
        self.message_scroll.setVisible(False)
        self.results_table = QTableWidget(0, 4, objectName="evaluateMetricsTable")
        for col, (title, tip) in enumerate((
                ("Metric", "What was measured (hover a row for its full name; its protocol is below)"),
                ("Value", "The measurement; lower is better for the distances (FD, FID, KID)"),
                ("Digits", "How many generated digits were scored / how many real MNIST digits they were compared with"),
                ("Against", "Which real MNIST digits they were compared with (the test split, the training split)"))):
            header_item = QTableWidgetItem(title)
            header_item.setToolTip(tip)
            self.results_table.setHorizontalHeaderItem(col, header_item)
        self.results_table.verticalHeader().setVisible(False)
        self.results_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        # the columns share the pane's width (``_fit_columns``): long text wraps, the full text
        # is each cell's tooltip, and there is never a horizontal scroll bar
        header = self.results_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setMinimumSectionSize(24)
        self.results_table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.results_table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.results_table.setWordWrap(True)
        self.results_table.viewport().installEventFilter(self)
        self.results_table.setMinimumHeight(170)
        self.results_table.currentCellChanged.connect(self._show_protocol)
        self.caption = QLabel(CAPTION, objectName="evaluateCaption", wordWrap=True, styleSheet="color: #444;")
        self.caption.setToolTip(CAPTION_TIP)
        self.protocol_text = QPlainTextEdit(readOnly=True)
        self.protocol_text.setPlaceholderText("The protocol of the selected metric appears here.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.message_scroll)
        layout.addWidget(self.caption)
        layout.addWidget(self.results_table, 2)
        layout.addWidget(QLabel("Protocol"))
        layout.addWidget(self.protocol_text, 1)

    #: each column's share of the table's width
    COLUMN_SHARES = (0.36, 0.32, 0.14, 0.18)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt name)
        if watched is self.results_table.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_columns()  # (also when a vertical scroll bar comes or goes)
        return super().eventFilter(watched, event)

    def _fit_columns(self) -> None:
        """Share the table's width among the columns, and give the rows the height their wrapped text needs."""
        width, left = self.results_table.viewport().width(), self.results_table.viewport().width()
        for col, share in enumerate(self.COLUMN_SHARES):
            last = col == len(self.COLUMN_SHARES) - 1
            self.results_table.setColumnWidth(col, max(24, left if last else int(width * share)))
            left -= self.results_table.columnWidth(col)
        self.results_table.resizeRowsToContents()

    def show_message(self, text: str, kind: str = "error", tooltip: str = "") -> None:
        colour = {"error": "#b00020", "warning": "#8a6d00", "info": "#333"}[kind]
        self.message_label.setStyleSheet(f"color: {colour};")
        self.message_label.setText(text)
        self.message_label.setToolTip(tooltip)
        self.message_scroll.setVisible(bool(text))

    def clear(self) -> None:
        self.show_message("")
        self.results_table.setRowCount(0)
        self.protocol_text.clear()

    def show(self, evaluation) -> None:
        """An ``engine.evaluation.report.Evaluation``: its metrics, errors and warnings."""
        from ..engine.evaluation.report_files import format_value

        self.evaluation = evaluation
        r = evaluation.report
        metrics = r["metrics"]
        self.results_table.setRowCount(len(metrics))
        for row, m in enumerate(metrics):
            p = m["protocol"]
            cells = [m["name"], format_value(m, short=True), f"{p['n_generated']:,} / {p['n_real']:,}",
                     p["reference_split"]]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(m["name"] if col == 0 else text)
                self.results_table.setItem(row, col, item)
        errors = [e for e in r.get("errors", []) if e["metric"] != "all"]
        notes = [error_line(e) for e in errors]
        warnings = [f"Warning: {w}" for w in r.get("warnings", [])]
        if notes or warnings:
            self.show_message("\n\n".join(notes + warnings), "error" if notes else "warning",
                              tooltip="\n\n".join(f"{e['metric']}: {e['message']}" for e in errors))
        self._fit_columns()
        if metrics:
            self.results_table.setCurrentCell(0, 0)

    @Slot(int, int, int, int)
    def _show_protocol(self, row: int, *_):
        if self.evaluation is None or not 0 <= row < len(self.evaluation.report["metrics"]):
            return
        m = self.evaluation.report["metrics"][row]
        lines = [m["name"], ""] + [f"{k}: {v}" for k, v in m["protocol"].items()]
        if m.get("details"):
            lines += [""] + [f"{k}: {v}" for k, v in m["details"].items() if k not in ("shares",)]
        self.protocol_text.setPlainText("\n".join(lines))


def error_line(error: dict) -> str:
    """One line for a report's error {"metric", "message"}: a missing Inception weight file says
    what to do in the panel (the engine's message, with its paths and URL, is the tooltip)."""
    from ..engine.evaluation.fid import FID_WEIGHTS_FILE, FID_WEIGHTS_MB

    if FID_WEIGHTS_FILE in error["message"]:
        return (f"{error['metric']} was not computed: its weight file {FID_WEIGHTS_FILE} is not on this computer. "
                f"Press 'Download Inception weights' (about {FID_WEIGHTS_MB} MB, needs internet) or choose the file "
                "under 'Inception weights'; the MNIST-classifier metric needs no download.")
    return f"{error['metric']} was not computed: {error['message']}"


def samples_view() -> ImageView:
    view = ImageView("", min_side=200)
    view.setStyleSheet("")  # on the panel's own background, as the report's picture
    return view


def samples_picture(samples: np.ndarray) -> np.ndarray:
    """The first 64 generated digits, 8 to a row."""
    return tile(samples[:64], ncols=8)


def _row(*widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    for i, w in enumerate(widgets):
        row.addWidget(w, 1 if i == 0 else 0)
    return row
