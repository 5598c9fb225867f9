"""The status bar's permanent part: the brush size while painting, the pixel under the pointer
with its probability, the zoom, and where the model runs (or why there is none)."""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from inference import Segmenter
from viewer.model.session import OpenedPhoto
from viewer.qt.canvas import ImageCanvas


class StatusLine(QObject):
    def __init__(self, bar: QStatusBar, canvas: ImageCanvas, extra: list[QWidget]):
        """`extra`: widgets shown between the zoom and the model (pre-annotation's)."""
        super().__init__(bar)
        self.canvas = canvas
        self.model_label = QLabel(self.tr("Loading the model…"))
        self.cursor_label = QLabel()
        self.zoom_label = QLabel()
        self.brush_label = QLabel()  # the brush's size as a number, while it is the tool
        for widget in (self.brush_label, self.cursor_label, self.zoom_label, *extra[:-1]):
            bar.addPermanentWidget(widget)
        bar.addPermanentWidget(self.model_label)
        if extra:
            bar.addPermanentWidget(extra[-1])
        canvas.zoom_changed.connect(lambda z: self.zoom_label.setText(f"{z * 100:.0f}%"))
        canvas.cursor_moved.connect(self.show_cursor)
        canvas.cursor_left.connect(lambda: self.cursor_label.setText(""))
        canvas.brush_radius_changed.connect(lambda _r: self.show_brush())

    def _where(self, device: str) -> str:
        names = {"cuda": self.tr("GPU"), "cpu": self.tr("CPU"), "triton": self.tr("remote server")}
        return names.get(device, device)

    def show_model(self, segmenter: Segmenter) -> None:
        self.model_label.setText(
            self.tr("Model on {where}").format(where=self._where(segmenter.device))
        )
        self.model_label.setToolTip(
            f"{segmenter.contract.model_name} {segmenter.contract.model_version} "
            f"({segmenter.model.sha256[:12]})\n{segmenter.model_reason}\n"
            f"{segmenter.device_reason}"
        )

    def show_no_model(self, reason: str | None = None) -> None:
        """No model this session: `reason` why it could not be used (None: none was asked)."""
        if reason is None:
            self.model_label.setText(self.tr("No model loaded"))
            return
        self.model_label.setText(self.tr("No model: photos are shown without overlay"))
        self.model_label.setToolTip(reason)

    def about_model(self, segmenter: Segmenter | None) -> str:
        """The model in the reviewer's language (the About box): name, file, where it runs."""
        if segmenter is None:
            return self.model_label.text()
        return self.tr(
            "Model {name} {version}, file {file} (SHA-256 {sha}), running on the {where}."
        ).format(
            name=segmenter.contract.model_name,
            version=segmenter.contract.model_version,
            file=segmenter.model.path.name,
            sha=segmenter.model.sha256[:12],
            where=self._where(segmenter.device),
        )

    def opened_note(self, opened: OpenedPhoto) -> str | None:
        """What the status bar says about a photo just opened, if anything: why it has no
        suggestion (not run yet, refused, no model) or a label that could not be used."""
        name = opened.document.path.name
        if opened.model_pending:
            return self.tr("{name}: waiting for the model; its suggestion follows.").format(
                name=name
            )
        if opened.not_fundus:
            return self.tr(
                "{name}: {problem}. Review > Run the model anyway runs it on the whole photo."
            ).format(name=name, problem=opened.prediction_error)
        problems = [p for p in (opened.prediction_error, opened.label_error) if p]
        if not problems:
            return None
        return self.tr("{name}: {problem}").format(name=name, problem=problems[-1])

    def show_brush(self) -> None:
        painting = self.canvas.tool in ("brush", "eraser")
        self.brush_label.setVisible(painting)
        if painting:
            self.brush_label.setText(
                self.tr("Brush {size} px").format(size=f"{2 * self.canvas.brush_radius:.0f}")
            )

    def show_cursor(self, x: int, y: int, probability: object) -> None:
        text = f"x {x}  y {y}"
        if isinstance(probability, float):
            text += f"  p {probability:.2f}"
        self.cursor_label.setText(text)
