"""The photo on screen: a document's photo (display preset) with its mask overlay and the
lesion marks, zoomed and panned. `viewer.qt.canvas.ImageCanvas` adds the tools on top.

A plain QWidget with its own transform rather than a QGraphicsView: there is one photo
and one overlay, no items to manage, and the paint path has to stay in our hands (draw
only the exposed part, from the right pyramid level, with an overlay rendered at screen
resolution).

Coordinates: `viewer.model.viewport` (pure, Qt-free maths that tests call without a mouse).
"""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import QWidget

from inference import PreprocessRecipe
from viewer.model.document import Document
from viewer.model.history import Rect
from viewer.model.viewport import (
    ZOOM_STEP,
    Viewport,
    centre_view,
    device_rect,
    fit_view,
    follow_dpr,
    frame_zoom,
    image_rect_to_widget,
    image_to_widget,
    pan_view,
    snap_view,
    zoom_about,
    zoom_limits,
)
from viewer.qt.canvas_paint import BACKGROUND, paint_lesion_marks, paint_photo
from viewer.qt.display import PRESETS, PhotoDisplay
from viewer.qt.overlay import MaskOverlay

# Slow display work (CLAHE, 32-bit copies) for every canvas: one thread is enough, and
# OpenCV releases the GIL, so it really runs beside the GUI thread.
_display_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hemaview-display")


class PhotoCanvas(QWidget):
    """Shows a Document's photo and mask overlay; zoom, pan and fit.

    Signals:
      zoom_changed(float): device pixels per photo pixel (1.0 = 100 %).
      preset_changed(str): the display preset now shown (CLAHE arrives from a worker).
    """

    zoom_changed = Signal(float)
    preset_changed = Signal(str)
    _display_ready = Signal(object, str)  # (PhotoDisplay, key), emitted from the worker

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(160, 120)
        self.document: Document | None = None
        self.display: PhotoDisplay | None = None
        self.overlay = MaskOverlay()
        self.clahe_recipe: PreprocessRecipe | None = None  # the model's, when there is one
        self._view = Viewport()
        self._fit = True
        self._preset = "original"  # asked for
        self._shown = "original"  # on screen (CLAHE may still be computing)
        # Lesion review: the lesion under review (its bbox) is ringed and the overlay drawn
        # as an outline so the haemorrhage itself shows; rejected ones stay faintly outlined.
        self._focus: Rect | None = None
        self._rejected: list[np.ndarray] = []  # polygons (N, 2) in image x, y
        self.paint_count = 0  # paint events handled (tests and the benchmark wait on it)
        self._display_ready.connect(self._on_display_ready)

    # -- document ----------------------------------------------------------------------

    def set_document(
        self, document: Document | None, rgb: np.ndarray | None, *, keep_view: bool = False
    ) -> None:
        """Show a document and its photo (RGB uint8 at the document's size); fits unless
        `keep_view` and the new photo has the size of the old one."""
        self.set_lesion_marks(None, [])
        if self.display is not None:
            self.display.close()
        same_size = (
            self.document is not None
            and document is not None
            and (self.document.width, self.document.height) == (document.width, document.height)
        )
        self.document = document
        self.display = None
        if document is not None:
            if rgb is None or rgb.shape[:2] != (document.height, document.width):
                got = None if rgb is None else rgb.shape
                raise ValueError(
                    f"the photo {got} does not match the document "
                    f"({document.height}, {document.width})"
                )
            self.display = PhotoDisplay(
                rgb,
                recipe=self.clahe_recipe,
                executor=_display_worker,
                on_ready=self._announce,
            )
        self.overlay.set_mask(document.mask if document is not None else None)
        self._shown = "original"
        if self.display is not None and self.display.request(self._preset):
            self._shown = self._preset
        if self._fit or not (keep_view and same_size):
            self.fit_to_window()
        self.update()

    def _announce(self, display: PhotoDisplay, key: str) -> None:
        """From the worker thread: hand the news to the GUI thread (a queued signal)."""
        with contextlib.suppress(RuntimeError):  # the widget was deleted meanwhile
            self._display_ready.emit(display, key)

    def _on_display_ready(self, display: PhotoDisplay, key: str) -> None:
        if display is not self.display or "/" in key:
            return  # another photo's, or a faster copy of what is on screen already
        if key == self._preset and display.ready(key) and self._shown != key:
            self._shown = key
            self.update()
            self.preset_changed.emit(key)

    def refresh_mask(self, rect: Rect | None = None) -> None:
        """The document's mask changed in `rect` (None: anywhere, or it was replaced, as by
        a threshold change): re-render that part. Call it after editing the document
        outside the canvas (lesion decisions, reset, threshold)."""
        if self.document is None:
            return
        if not self.overlay.sync(self.document.mask):
            self.overlay.update(rect)
        if rect is None:
            self.update()
        else:
            self._update_image_rect(rect)

    # -- view --------------------------------------------------------------------------

    @property
    def view(self) -> Viewport:
        return self._view

    @property
    def zoom(self) -> float:
        return self._view.zoom

    def _image_size(self) -> tuple[int, int] | None:
        d = self.document
        return (d.width, d.height) if d is not None else None

    def _widget_size(self) -> tuple[int, int]:
        return self.width(), self.height()

    def _set_view(self, view: Viewport, *, fit: bool = False) -> None:
        old = self._view.zoom
        self._view = view = snap_view(view=view)
        self._fit = fit
        self.update()
        if view.zoom != old:
            self.zoom_changed.emit(view.zoom)

    def _zoom_limits(self) -> tuple[float, float]:
        return zoom_limits(size=self._image_size(), widget=self._widget_size(), dpr=self._dpr())

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom (device pixels per photo pixel) about a widget point (default: the centre)."""
        lo, hi = self._zoom_limits()
        zoom = min(max(zoom, lo), hi)
        a = anchor if anchor is not None else QPointF(self.width() / 2, self.height() / 2)
        self._set_view(zoom_about(view=self._current_view(), zoom=zoom, x=a.x(), y=a.y()))

    def zoom_in(self) -> None:
        self.set_zoom(self._view.zoom * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self._view.zoom / ZOOM_STEP)

    def actual_size(self) -> None:
        """100 %: one photo pixel per screen pixel, about the centre."""
        self.set_zoom(1.0)

    def fit_to_window(self) -> None:
        size = self._image_size()
        if size is None:
            self._fit = True
            return
        self._set_view(fit_view(size=size, widget=self._widget_size(), dpr=self._dpr()), fit=True)

    def centre_on(self, x: float, y: float, zoom: float | None = None) -> None:
        """Centre on photo pixel (x, y) (a lesion's centroid), at `zoom` if given."""
        z = self._view.zoom if zoom is None else zoom
        lo, hi = self._zoom_limits()
        z = min(max(z, lo), hi)
        view = centre_view(
            x=x + 0.5, y=y + 0.5, zoom=z, widget=self._widget_size(), dpr=self._dpr()
        )
        self._set_view(view)

    def frame_rect(self, rect: Rect, *, margin: float = 0.5, max_zoom: float = 4.0) -> None:
        """Zoom to show a photo rectangle (a lesion's box) with `margin` of its size around."""
        x0, y0, x1, y1 = rect
        zoom = frame_zoom(rect=rect, margin=margin, widget=self._widget_size(), dpr=self._dpr())
        lo, hi = self._zoom_limits()
        zoom = min(max(zoom, lo), min(hi, max_zoom))
        view = centre_view(
            x=(x0 + x1) / 2, y=(y0 + y1) / 2, zoom=zoom, widget=self._widget_size(), dpr=self._dpr()
        )
        self._set_view(view)

    def pan_by(self, dx: float, dy: float) -> None:
        self._set_view(pan_view(view=self._current_view(), dx=dx, dy=dy))

    def _dpr(self) -> float:
        return float(self.devicePixelRatioF())

    def _current_view(self) -> Viewport:
        """The view, following a device pixel ratio change (a move to another screen)."""
        v = follow_dpr(view=self._view, dpr=self._dpr())
        if v is not self._view:
            self._view = v
            self.zoom_changed.emit(v.zoom)
        return v

    def widget_point(self, x: float, y: float) -> QPoint:
        """The mouse position (a whole logical pixel) over continuous photo point (x, y)."""
        wx, wy = image_to_widget(x=x, y=y, view=self._view)
        return QPoint(math.floor(wx), math.floor(wy))

    # -- overlay and display -------------------------------------------------------------

    @property
    def overlay_visible(self) -> bool:
        return self.overlay.visible

    def set_overlay_visible(self, visible: bool) -> None:
        if visible != self.overlay.visible:
            self.overlay.visible = visible
            self.update()

    def toggle_overlay(self) -> None:
        self.set_overlay_visible(not self.overlay.visible)

    def set_overlay_opacity(self, opacity: float) -> None:
        opacity = min(max(float(opacity), 0.0), 1.0)
        if opacity != self.overlay.opacity:
            self.overlay.opacity = opacity
            self.update()

    def set_overlay_filled(self, filled: bool) -> None:
        # Exactly as "Outline only" says, lesion under review or not: a box the reviewer
        # ticks must do what it says (the lesion under review has its own frame).
        if filled != self.overlay.filled:
            self.overlay.filled = filled
            self.update()

    def set_lesion_marks(
        self, focus: tuple[int, int, int, int] | None, rejected: list[np.ndarray]
    ) -> None:
        """The lesion under review (x, y, w, h, or None) and rejected lesions' outlines."""
        self._focus = (
            None
            if focus is None
            else (focus[0], focus[1], focus[0] + focus[2], focus[1] + focus[3])
        )
        self._rejected = rejected
        self.update()

    def set_overlay_colour(self, colour: QColor) -> None:
        self.overlay.colour = QColor(colour)
        self.update()

    @property
    def preset(self) -> str:
        return self._preset

    @property
    def shown_preset(self) -> str:
        """The preset on screen now; differs from `preset` while CLAHE is computed."""
        return self._shown

    def set_preset(self, preset: str) -> None:
        """Original, green (red-free) or CLAHE; slow presets are computed in a worker and
        shown when ready (preset_changed)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown display preset {preset!r}; expected one of {PRESETS}")
        self._preset = preset
        ready = self.display is None or self.display.request(preset)
        if ready and self._shown != preset:
            self._shown = preset
            self.update()
            self.preset_changed.emit(preset)

    # -- painting ------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        self.paint_count += 1
        exposed = event.rect()
        painter = QPainter(self)
        painter.fillRect(exposed, BACKGROUND)
        doc, display = self.document, self.display
        if doc is not None and display is not None:
            view = self._current_view()
            size = (doc.width, doc.height)
            rect = (exposed.left(), exposed.top(), exposed.right() + 1, exposed.bottom() + 1)
            paint_photo(
                painter, display=display, preset=self._shown, view=view, rect=rect, size=size
            )
            device = device_rect(rect=rect, view=view, size=size)
            if device is not None:
                self.overlay.sync(doc.mask)
                self.overlay.paint(
                    painter,
                    device_rect=device,
                    zoom=view.zoom,
                    origin=(view.ox * view.dpr, view.oy * view.dpr),
                    dpr=view.dpr,
                )
            paint_lesion_marks(painter, view=view, focus=self._focus, rejected=self._rejected)
            self._paint_tools(painter, view)
        painter.end()

    def _paint_tools(self, painter: QPainter, view: Viewport) -> None:
        """What the tools draw over everything else (the editing canvas's lasso and brush)."""

    def _update_image_rect(self, rect: Rect) -> None:
        x0, y0, x1, y1 = image_rect_to_widget(rect=rect, view=self._view, margin=2)
        self.update(QRect(x0, y0, x1 - x0, y1 - y0))

    # -- geometry ------------------------------------------------------------------------

    def resizeEvent(self, event: QResizeEvent) -> None:
        if self._fit:
            self.fit_to_window()
        else:
            # Keep the photo point at the centre where it was.
            old, new = event.oldSize(), event.size()
            if old.isValid():
                dx, dy = (new.width() - old.width()) / 2, (new.height() - old.height()) / 2
                self._view = pan_view(view=self._view, dx=dx, dy=dy)
        super().resizeEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.DevicePixelRatioChange:
            if self._fit:
                self.fit_to_window()
            else:
                self._current_view()
            self.update()
        return super().event(event)

    def sizeHint(self) -> QSize:
        return QSize(960, 640)
