"""The photo canvas: zoom, pan, the overlay, and the correcting tools, forwarded to a Document.

A plain QWidget with its own transform rather than a QGraphicsView: there is one photo
and one overlay, no items to manage, and the paint path has to stay in our hands (draw
only the exposed part, from the right pyramid level, with an overlay rendered at screen
resolution). The canvas only shows and forwards: every edit is a Document call, which
returns the photo rectangle it changed; the canvas repaints that and says so.

Coordinates: `viewer.model.viewport` (pure, Qt-free maths that tests call without a mouse).
"""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QCursor,
    QFocusEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPolygonF,
    QResizeEvent,
    QTabletEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from inference import PreprocessRecipe
from viewer.model.document import Document
from viewer.model.history import Rect
from viewer.model.tools import MAX_BRUSH_RADIUS, MIN_BRUSH_RADIUS
from viewer.model.viewport import (
    MAX_ZOOM,
    ZOOM_STEP,
    Viewport,
    centre_view,
    device_rect,
    document_point,
    fit_view,
    image_rect_to_widget,
    image_to_widget,
    pixel_at,
    pointer_point,
    snap_view,
    widget_rect_to_image,
    zoom_about,
)
from viewer.qt.display import PRESETS, PhotoDisplay, level_for_zoom
from viewer.qt.overlay import MaskOverlay

TOOLS = ("pan", "brush", "eraser", "fill", "lasso-add", "lasso-remove")
BACKGROUND = QColor(24, 24, 24)

# Slow display work (CLAHE, 32-bit copies) for every canvas: one thread is enough, and
# OpenCV releases the GIL, so it really runs beside the GUI thread.
_display_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hemaview-display")


class ImageCanvas(QWidget):
    """Shows a photo (display preset) with the mask overlay and forwards edits to a Document.

    Signals:
      zoom_changed(float): device pixels per photo pixel (1.0 = 100 %).
      cursor_moved(int, int, object): the photo pixel under the pointer and its
        probability (float), or None when the document has no model.
      cursor_left(): the pointer left the photo.
      mask_edited(object): the photo rectangle (x0, y0, x1, y1) an edit changed (after a
        stroke, fill, lasso, undo or redo made through the canvas).
      tool_changed(str), brush_radius_changed(float): for the toolbar.
      preset_changed(str): the display preset now shown (CLAHE arrives from a worker).
      notice(str): a short message for the status bar (a refused fill).
    """

    zoom_changed = Signal(float)
    cursor_moved = Signal(int, int, object)
    cursor_left = Signal()
    mask_edited = Signal(object)
    tool_changed = Signal(str)
    brush_radius_changed = Signal(float)
    preset_changed = Signal(str)
    notice = Signal(str)
    # An edit begins while the overlay is hidden: the window shows it (what the reviewer
    # edits must be visible while they edit it).
    edit_started = Signal()
    _display_ready = Signal(object, str)  # (PhotoDisplay, key), emitted from the worker

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMouseTracking(True)
        self.setTabletTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(160, 120)
        self.document: Document | None = None
        self.display: PhotoDisplay | None = None
        self.overlay = MaskOverlay()
        self.clahe_recipe: PreprocessRecipe | None = None  # the model's, when there is one
        self._view = Viewport()
        self._fit = True
        self._tool = "brush"
        self._brush_radius = 8.0
        self._preset = "original"  # asked for
        self._shown = "original"  # on screen (CLAHE may still be computing)
        self._drag: str | None = None  # "pan", "stroke" or "lasso" while a button is held
        self._drag_start = QPointF()
        self._drag_view = self._view
        self._lasso: list[tuple[float, float]] = []  # document coordinates
        self._space = False
        self._pointer: QPointF | None = None  # last pointer position over the widget
        self._over_photo = False
        # Lesion review: the lesion under review (its bbox) is ringed and the overlay drawn
        # as an outline so the haemorrhage itself shows; rejected ones stay faintly outlined.
        self._focus: Rect | None = None
        self._rejected: list[np.ndarray] = []  # polygons (N, 2) in image x, y
        self.paint_count = 0  # paint events handled (tests and the benchmark wait on it)
        self._display_ready.connect(self._on_display_ready)
        self._update_cursor()

    # -- document ----------------------------------------------------------------------

    def set_document(
        self, document: Document | None, rgb: np.ndarray | None, *, keep_view: bool = False
    ) -> None:
        """Show a document and its photo (RGB uint8 at the document's size); fits unless
        `keep_view` and the new photo has the size of the old one."""
        self._cancel_drag()
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
        size = self._image_size()
        if size is None:
            return 1 / 64, MAX_ZOOM
        fit = fit_view(size=size, widget=self._widget_size(), dpr=self._dpr()).zoom
        return min(fit, 1.0) / 4, MAX_ZOOM

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

    def show_as(self, other: ImageCanvas) -> None:
        """Show the photo as `other` does (zoom, position, tool, brush): a window rebuilt
        in another language goes on where the reviewer was."""
        self.set_brush_radius(other.brush_radius)
        self.set_tool(other.tool)
        if other._fit:
            self.fit_to_window()
        else:
            self._set_view(other.view)

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
        w, h = max(x1 - x0, 1) * (1 + 2 * margin), max(y1 - y0, 1) * (1 + 2 * margin)
        zoom = min(self.width() / w, self.height() / h) * self._dpr()
        lo, hi = self._zoom_limits()
        zoom = min(max(zoom, lo), min(hi, max_zoom))
        view = centre_view(
            x=(x0 + x1) / 2, y=(y0 + y1) / 2, zoom=zoom, widget=self._widget_size(), dpr=self._dpr()
        )
        self._set_view(view)

    def pan_by(self, dx: float, dy: float) -> None:
        v = self._current_view()
        self._set_view(Viewport(v.zoom, v.ox + dx, v.oy + dy, v.dpr))

    def _dpr(self) -> float:
        return float(self.devicePixelRatioF())

    def _current_view(self) -> Viewport:
        """The view, following a device pixel ratio change (a move to another screen)."""
        dpr = self._dpr()
        v = self._view
        if v.dpr != dpr:
            # Keep what the user sees (the logical scale and position), zoom follows.
            v = Viewport(v.zoom * dpr / v.dpr, v.ox, v.oy, dpr)
            self._view = v
            self.zoom_changed.emit(v.zoom)
        return v

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

    # -- tools ---------------------------------------------------------------------------

    @property
    def tool(self) -> str:
        return self._tool

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; expected one of {TOOLS}")
        if tool == self._tool:
            return
        self._finish_drag()
        self._update_pointer_marks()  # where the old tool's ring was: it goes
        self._tool = tool
        self._update_cursor()
        self._update_pointer_marks()
        self.tool_changed.emit(tool)

    @property
    def brush_radius(self) -> float:
        """The brush's radius in photo pixels (the same on every screen and at every zoom)."""
        return self._brush_radius

    def set_brush_radius(self, radius: float) -> None:
        radius = min(max(float(radius), MIN_BRUSH_RADIUS), MAX_BRUSH_RADIUS)
        if radius == self._brush_radius:
            return
        self._update_pointer_marks()
        self._brush_radius = radius
        self._update_pointer_marks()
        self.brush_radius_changed.emit(radius)

    def grow_brush(self, steps: float = 1.0) -> None:
        r = self._brush_radius * ZOOM_STEP**steps
        # Small brushes still change by at least a pixel a step.
        if abs(r - self._brush_radius) < 1 and steps:
            r = self._brush_radius + math.copysign(1, steps)
        self.set_brush_radius(r)

    def undo(self) -> Rect | None:
        return self._apply_edit(self.document.undo() if self.document is not None else None)

    def redo(self) -> Rect | None:
        return self._apply_edit(self.document.redo() if self.document is not None else None)

    def _apply_edit(self, rect: Rect | None, *, shown: bool = False) -> Rect | None:
        """Show a Document edit (unless its dabs were `shown` already) and announce it."""
        if rect is not None:
            if not shown:
                self.refresh_mask(rect)
            self.mask_edited.emit(rect)
        return rect

    def _update_cursor(self) -> None:
        if self._drag == "pan":
            shape = Qt.CursorShape.ClosedHandCursor
        elif self._space or self._tool == "pan":
            shape = Qt.CursorShape.OpenHandCursor
        elif self._tool in ("brush", "eraser"):
            shape = Qt.CursorShape.BlankCursor  # the brush circle is the cursor
        else:
            shape = Qt.CursorShape.CrossCursor
        self.setCursor(QCursor(shape))

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
            self._paint_photo(painter, display, view, rect, size)
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
            self._paint_marks(painter, view)
        painter.end()

    def _paint_photo(
        self,
        painter: QPainter,
        display: PhotoDisplay,
        view: Viewport,
        rect: Rect,
        size: tuple[int, int],
    ) -> None:
        shown = widget_rect_to_image(rect=rect, view=view, size=size)
        if shown is None:
            return
        k = level_for_zoom(view.zoom, display.levels)
        image = display.level(self._shown, k).image
        sx, sy = display.level_scale(k)
        lw, lh = display.level_size(k)
        # Whole level pixels, one more each side: smoothing at the source rectangle's edge
        # then lies outside the exposed area, so partial repaints leave no seams.
        lx0, ly0 = max(math.floor(shown[0] / sx) - 1, 0), max(math.floor(shown[1] / sy) - 1, 0)
        lx1 = min(math.ceil(shown[2] / sx) + 1, lw)
        ly1 = min(math.ceil(shown[3] / sy) + 1, lh)
        x0, y0 = image_to_widget(x=lx0 * sx, y=ly0 * sy, view=view)
        x1, y1 = image_to_widget(x=lx1 * sx, y=ly1 * sy, view=view)
        # Smooth when shrinking; crisp photo pixels from 100 % up.
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, view.zoom * sx < 1.0)
        painter.drawImage(
            QRectF(x0, y0, x1 - x0, y1 - y0), image, QRectF(lx0, ly0, lx1 - lx0, ly1 - ly0)
        )

    def _paint_marks(self, painter: QPainter, view: Viewport) -> None:
        """Lesion marks, the lasso being drawn and the brush circle, over everything else."""
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        faint = QPen(QColor(255, 255, 255, 120), 1, Qt.PenStyle.DashLine)
        painter.setPen(faint)
        for outline in self._rejected:
            painter.drawPolygon(
                QPolygonF(
                    [QPointF(*image_to_widget(x=x + 0.5, y=y + 0.5, view=view)) for x, y in outline]
                )
            )
        if self._focus is not None:
            x0, y0 = image_to_widget(x=self._focus[0], y=self._focus[1], view=view)
            x1, y1 = image_to_widget(x=self._focus[2], y=self._focus[3], view=view)
            ring = QRectF(x0 - 8, y0 - 8, x1 - x0 + 16, y1 - y0 + 16)
            for pen in (QPen(QColor(0, 0, 0, 200), 4), QPen(QColor(255, 212, 0), 2)):
                painter.setPen(pen)
                painter.drawRoundedRect(ring, 6, 6)
        # Dark halo under a bright line: visible on the red-orange fundus and on black.
        dark = QPen(QColor(0, 0, 0, 200), 4)
        light = QPen(QColor(255, 212, 0), 2)
        if self._drag == "lasso" and self._lasso:
            poly = QPolygonF(
                [QPointF(*image_to_widget(x=x + 0.5, y=y + 0.5, view=view)) for x, y in self._lasso]
            )
            if self._pointer is not None:
                poly.append(self._pointer)
            for pen in (dark, light):
                painter.setPen(pen)
                painter.drawPolyline(poly)
            # The closing edge, dashed: what a release would fill.
            light.setStyle(Qt.PenStyle.DashLine)
            for pen in (dark, light):
                painter.setPen(pen)
                painter.drawLine(poly.last(), poly.first())
            light.setStyle(Qt.PenStyle.SolidLine)
        circle = self._brush_circle(view)
        if circle is not None:
            centre, r = circle
            light.setStyle(
                Qt.PenStyle.DashLine if self._tool == "eraser" else Qt.PenStyle.SolidLine
            )
            for pen in (dark, light):
                painter.setPen(pen)
                painter.drawEllipse(centre, r, r)
                painter.drawPoint(centre)

    def _brush_circle(self, view: Viewport) -> tuple[QPointF, float] | None:
        if (
            self._pointer is None
            or self._tool not in ("brush", "eraser")
            or self._space
            or self._drag == "pan"
            or self.document is None
        ):
            return None
        return self._pointer, max(self._brush_radius * view.scale, 1.0)

    def _update_pointer_marks(self) -> None:
        """Repaint where the brush circle is (before and after it moves)."""
        circle = self._brush_circle(self._view)
        if circle is not None:
            c, r = circle
            pad = r + 4
            self.update(QRectF(c.x() - pad, c.y() - pad, 2 * pad, 2 * pad).toAlignedRect())

    def _update_image_rect(self, rect: Rect) -> None:
        x0, y0, x1, y1 = image_rect_to_widget(rect=rect, view=self._view, margin=2)
        self.update(QRect(x0, y0, x1 - x0, y1 - y0))

    # -- pointer input -------------------------------------------------------------------

    def _press(self, pos: QPointF, button: Qt.MouseButton) -> bool:
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        doc = self.document
        if doc is None or self._drag is not None:
            return False
        pan = button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and (self._space or self._tool == "pan")
        )
        if pan:
            self._update_pointer_marks()
            self._drag, self._drag_start, self._drag_view = "pan", QPointF(pos), self._view
            self._update_cursor()
            return True
        if button != Qt.MouseButton.LeftButton:
            return False
        view = self._current_view()
        if self._tool != "pan" and not self.overlay.visible:
            self.edit_started.emit()
        if self._tool in ("brush", "eraser"):
            self._drag = "stroke"
            doc.begin_stroke(self._tool)
            self._stroke_to(pos)
        elif self._tool == "fill":
            at = pixel_at(x=pos.x(), y=pos.y(), view=view, size=(doc.width, doc.height))
            rect = doc.fill(*at) if at is not None else None
            if rect is None:
                self.notice.emit(self.tr("Nothing to fill here: click inside a hole or a lesion"))
            self._apply_edit(rect)
        elif self._tool in ("lasso-add", "lasso-remove"):
            self._drag = "lasso"
            self._lasso = [document_point(x=pos.x(), y=pos.y(), view=view)]
        return True

    def _move(self, pos: QPointF) -> None:
        self._update_pointer_marks()
        previous = self._pointer
        self._pointer = QPointF(pos)
        self._update_pointer_marks()
        view = self._view
        doc = self.document
        if doc is not None:
            at = pixel_at(x=pos.x(), y=pos.y(), view=view, size=(doc.width, doc.height))
            if at is None:
                if self._over_photo:
                    self._over_photo = False
                    self.cursor_left.emit()
            else:
                self._over_photo = True
                p = doc.prediction
                prob = float(p.probability[at[1], at[0]]) if p is not None else None
                self.cursor_moved.emit(at[0], at[1], prob)
        if self._drag == "pan":
            d = pos - self._drag_start
            v = self._drag_view
            self._set_view(Viewport(v.zoom, v.ox + d.x(), v.oy + d.y(), v.dpr))
        elif self._drag == "stroke":
            self._stroke_to(pos)
        elif self._drag == "lasso":
            point = document_point(x=pos.x(), y=pos.y(), view=view)
            last = self._lasso[-1]
            if max(abs(point[0] - last[0]), abs(point[1] - last[1])) * view.scale >= 1:
                self._lasso.append(point)
            if previous is not None:
                start = QPointF(
                    *image_to_widget(
                        x=self._lasso[0][0] + 0.5, y=self._lasso[0][1] + 0.5, view=view
                    )
                )
                self._update_segment(previous, pos)
                self._update_segment(start, previous)  # the old closing edge
                self._update_segment(start, pos)  # the new one

    def _release(self, button: Qt.MouseButton) -> None:
        if self._drag == "pan" and button in (
            Qt.MouseButton.MiddleButton,
            Qt.MouseButton.LeftButton,
        ):
            self._drag = None
            self._update_cursor()
            self._update_pointer_marks()
        elif button == Qt.MouseButton.LeftButton:
            self._finish_drag()

    def _stroke_to(self, pos: QPointF) -> None:
        assert self.document is not None
        x, y = document_point(x=pos.x(), y=pos.y(), view=self._view)
        rect = self.document.stroke_to(x, y, self._brush_radius, self._tool == "brush")
        if rect is not None:
            self.overlay.update(rect)
            self._update_image_rect(rect)

    def _update_segment(self, a: QPointF, b: QPointF) -> None:
        r = QRectF(a, b).normalized().toAlignedRect().adjusted(-3, -3, 3, 3)
        self.update(r)

    def _finish_drag(self) -> None:
        """End what a held button started: a stroke becomes one undo step, a lasso fills."""
        drag, self._drag = self._drag, None
        doc = self.document
        if doc is None:
            return
        if drag == "stroke":
            self._apply_edit(doc.end_stroke(), shown=True)
        elif drag == "lasso":
            points, self._lasso = self._lasso, []
            self._update_lasso_area(points)
            if len(points) >= 3:
                self._apply_edit(doc.lasso(points, self._tool == "lasso-add"))
        elif drag == "pan":
            self._update_cursor()

    def _cancel_drag(self) -> None:
        """Drop a lasso in progress; a stroke already painted is kept as its undo step."""
        if self._drag == "lasso":
            points, self._lasso, self._drag = self._lasso, [], None
            self._update_lasso_area(points)
        else:
            self._finish_drag()

    def _update_lasso_area(self, points: list[tuple[float, float]]) -> None:
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            x0, y0 = math.floor(min(xs)), math.floor(min(ys))
            self._update_image_rect((x0, y0, math.ceil(max(xs)) + 1, math.ceil(max(ys)) + 1))
            if self._pointer is not None:
                self.update()  # the closing segment to the pointer

    def _mouse_point(self, pos: QPointF) -> QPointF:
        return QPointF(*pointer_point(x=pos.x(), y=pos.y(), dpr=self._dpr()))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if not self._press(self._mouse_point(event.position()), event.button()):
            super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        self._move(self._mouse_point(event.position()))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._release(event.button())

    def tabletEvent(self, event: QTabletEvent) -> None:
        # Handled here (not as synthesised mouse events) for the pen's sub-pixel position.
        kind = event.type()
        if kind == QEvent.Type.TabletPress:
            self._press(event.position(), event.button())
        elif kind == QEvent.Type.TabletMove:
            self._move(event.position())
        elif kind == QEvent.Type.TabletRelease:
            self._release(event.button())
        event.accept()

    def leaveEvent(self, event: QEvent) -> None:
        self._update_pointer_marks()
        self._pointer = None
        if self._over_photo:
            self._over_photo = False
            self.cursor_left.emit()
        super().leaveEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120
        if not notches:
            event.ignore()
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.grow_brush(notches)
        else:
            anchor = self._mouse_point(event.position())
            self.set_zoom(self._view.zoom * ZOOM_STEP**notches, anchor=anchor)
        event.accept()

    # -- keys ----------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        # Only what is the canvas's own: zoom, undo and brush keys are the window's actions
        # (one place for every shortcut, listed in F1's sheet).
        key = event.key()
        if key == Qt.Key.Key_Escape and self._drag == "lasso":
            self._cancel_drag()
        elif key == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._update_pointer_marks()
                self._space = True
                self._update_cursor()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._update_cursor()
            self._update_pointer_marks()
        else:
            super().keyReleaseEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        # A space released in another window never reaches us.
        self._space = False
        self._update_cursor()
        super().focusOutEvent(event)

    # -- geometry ------------------------------------------------------------------------

    def resizeEvent(self, event: QResizeEvent) -> None:
        if self._fit:
            self.fit_to_window()
        else:
            # Keep the photo point at the centre where it was.
            old, new = event.oldSize(), event.size()
            if old.isValid():
                v = self._view
                dx, dy = (new.width() - old.width()) / 2, (new.height() - old.height()) / 2
                self._view = Viewport(v.zoom, v.ox + dx, v.oy + dy, v.dpr)
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

    def widget_point(self, x: float, y: float) -> QPoint:
        """The mouse position (a whole logical pixel) over continuous photo point (x, y)."""
        wx, wy = image_to_widget(x=x, y=y, view=self._view)
        return QPoint(math.floor(wx), math.floor(wy))
