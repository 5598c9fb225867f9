"""The photo canvas with the correcting tools: pointer and key input, and the tools' drags
(brush and eraser strokes, fill, lasso, pan), forwarded to a Document.

`viewer.qt.canvas_view.PhotoCanvas` shows the photo, the overlay and the lesion marks and
holds the view (zoom, pan, fit); `viewer.qt.canvas_paint` draws; this class adds the
tools. The canvas only shows and forwards: every edit is a Document call, which returns
the photo rectangle it changed; the canvas repaints that and says so.

Coordinates: `viewer.model.viewport` (pure, Qt-free maths that tests call without a mouse).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QCursor,
    QFocusEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QTabletEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from viewer.model.document import Document
from viewer.model.history import Rect
from viewer.model.tools import clamp_brush_radius, grown_radius, lasso_extends, points_rect
from viewer.model.viewport import (
    ZOOM_STEP,
    Viewport,
    document_point,
    image_to_widget,
    pan_view,
    pixel_at,
    pointer_point,
)
from viewer.qt.canvas_paint import paint_brush, paint_lasso
from viewer.qt.canvas_view import PhotoCanvas

TOOLS = ("pan", "brush", "eraser", "fill", "lasso-add", "lasso-remove")


class ImageCanvas(PhotoCanvas):
    """Shows a photo (display preset) with the mask overlay and forwards edits to a Document.

    Signals (besides PhotoCanvas's zoom_changed and preset_changed):
      cursor_moved(int, int, object): the photo pixel under the pointer and its
        probability (float), or None when the document has no model.
      cursor_left(): the pointer left the photo.
      mask_edited(object): the photo rectangle (x0, y0, x1, y1) an edit changed (after a
        stroke, fill, lasso, undo or redo made through the canvas).
      tool_changed(str), brush_radius_changed(float): for the toolbar.
      notice(str): a short message for the status bar (a refused fill).
    """

    cursor_moved = Signal(int, int, object)
    cursor_left = Signal()
    mask_edited = Signal(object)
    tool_changed = Signal(str)
    brush_radius_changed = Signal(float)
    notice = Signal(str)
    # An edit begins while the overlay is hidden: the window shows it (what the reviewer
    # edits must be visible while they edit it).
    edit_started = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setTabletTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._tool = "brush"
        self._brush_radius = 8.0
        self._drag: str | None = None  # "pan", "stroke" or "lasso" while a button is held
        self._drag_start = QPointF()
        self._drag_view = self._view
        self._lasso: list[tuple[float, float]] = []  # document coordinates
        self._space = False
        self._pointer: QPointF | None = None  # last pointer position over the widget
        self._over_photo = False
        self._update_cursor()

    def set_document(
        self, document: Document | None, rgb: np.ndarray | None, *, keep_view: bool = False
    ) -> None:
        """Show a document and its photo (RGB uint8 at the document's size); fits unless
        `keep_view` and the new photo has the size of the old one. A lasso being drawn is
        dropped; a stroke already painted stays the old document's undo step."""
        self._cancel_drag()
        super().set_document(document, rgb, keep_view=keep_view)

    def show_as(self, other: ImageCanvas) -> None:
        """Show the photo as `other` does (zoom, position, tool, brush): a window rebuilt
        in another language goes on where the reviewer was."""
        self.set_brush_radius(other.brush_radius)
        self.set_tool(other.tool)
        if other._fit:
            self.fit_to_window()
        else:
            self._set_view(other.view)

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
        radius = clamp_brush_radius(radius)
        if radius == self._brush_radius:
            return
        self._update_pointer_marks()
        self._brush_radius = radius
        self._update_pointer_marks()
        self.brush_radius_changed.emit(radius)

    def grow_brush(self, steps: float = 1.0) -> None:
        self.set_brush_radius(grown_radius(radius=self._brush_radius, steps=steps, step=ZOOM_STEP))

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

    # -- what the tools draw -------------------------------------------------------------

    def _paint_tools(self, painter: QPainter, view: Viewport) -> None:
        """The lasso being drawn and the brush circle, over everything else."""
        if self._drag == "lasso" and self._lasso:
            paint_lasso(painter, view=view, points=self._lasso, pointer=self._pointer)
        circle = self._brush_circle(view)
        if circle is not None:
            centre, r = circle
            paint_brush(painter, centre=centre, radius=r, eraser=self._tool == "eraser")

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
            self._set_view(pan_view(view=self._drag_view, dx=d.x(), dy=d.y()))
        elif self._drag == "stroke":
            self._stroke_to(pos)
        elif self._drag == "lasso":
            point = document_point(x=pos.x(), y=pos.y(), view=view)
            if lasso_extends(last=self._lasso[-1], point=point, scale=view.scale):
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
            self._update_image_rect(points_rect(points))
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
