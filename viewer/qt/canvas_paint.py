"""What the canvas draws, as functions of what they draw: the photo from the right pyramid
level, the lesion marks, the lasso being drawn and the brush circle.

Each takes the painter and, keyword-only, the values it draws (no widget): the canvas
decides what is shown, these decide how it looks.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF

from viewer.model.history import Rect
from viewer.model.viewport import Viewport, image_to_widget, level_window, widget_rect_to_image
from viewer.qt.display import PhotoDisplay, level_for_zoom

BACKGROUND = QColor(24, 24, 24)


def _halo_pens() -> tuple[QPen, QPen]:
    # Dark halo under a bright line: visible on the red-orange fundus and on black.
    return QPen(QColor(0, 0, 0, 200), 4), QPen(QColor(255, 212, 0), 2)


def _polygon(points: np.ndarray | list[tuple[float, float]], view: Viewport) -> QPolygonF:
    """Document points (pixel centres on integers) as a widget polygon."""
    return QPolygonF(
        [QPointF(*image_to_widget(x=x + 0.5, y=y + 0.5, view=view)) for x, y in points]
    )


def paint_photo(
    painter: QPainter,
    *,
    display: PhotoDisplay,
    preset: str,
    view: Viewport,
    rect: Rect,
    size: tuple[int, int],
) -> None:
    """The part of a (W, H) photo that the logical widget rectangle `rect` shows."""
    shown = widget_rect_to_image(rect=rect, view=view, size=size)
    if shown is None:
        return
    k = level_for_zoom(view.zoom, display.levels)
    image = display.level(preset, k).image
    sx, sy = display.level_scale(k)
    lx0, ly0, lx1, ly1 = level_window(shown=shown, scale=(sx, sy), size=display.level_size(k))
    x0, y0 = image_to_widget(x=lx0 * sx, y=ly0 * sy, view=view)
    x1, y1 = image_to_widget(x=lx1 * sx, y=ly1 * sy, view=view)
    # Smooth when shrinking; crisp photo pixels from 100 % up.
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, view.zoom * sx < 1.0)
    painter.drawImage(
        QRectF(x0, y0, x1 - x0, y1 - y0), image, QRectF(lx0, ly0, lx1 - lx0, ly1 - ly0)
    )


def paint_lesion_marks(
    painter: QPainter, *, view: Viewport, focus: Rect | None, rejected: list[np.ndarray]
) -> None:
    """Rejected lesions' outlines, faint, and a ring around the lesion under review."""
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setPen(QPen(QColor(255, 255, 255, 120), 1, Qt.PenStyle.DashLine))
    for outline in rejected:
        painter.drawPolygon(_polygon(outline, view))
    if focus is not None:
        x0, y0 = image_to_widget(x=focus[0], y=focus[1], view=view)
        x1, y1 = image_to_widget(x=focus[2], y=focus[3], view=view)
        ring = QRectF(x0 - 8, y0 - 8, x1 - x0 + 16, y1 - y0 + 16)
        for pen in _halo_pens():
            painter.setPen(pen)
            painter.drawRoundedRect(ring, 6, 6)


def paint_lasso(
    painter: QPainter,
    *,
    view: Viewport,
    points: list[tuple[float, float]],
    pointer: QPointF | None,
) -> None:
    """The lasso drawn so far (Document points), on to the pointer, and dashed, the closing
    edge: what a release would fill."""
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    dark, light = _halo_pens()
    poly = _polygon(points, view)
    if pointer is not None:
        poly.append(pointer)
    for pen in (dark, light):
        painter.setPen(pen)
        painter.drawPolyline(poly)
    light.setStyle(Qt.PenStyle.DashLine)
    for pen in (dark, light):
        painter.setPen(pen)
        painter.drawLine(poly.last(), poly.first())


def paint_brush(painter: QPainter, *, centre: QPointF, radius: float, eraser: bool) -> None:
    """The brush circle (dashed for the eraser) with a dot at its centre: the cursor."""
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    dark, light = _halo_pens()
    light.setStyle(Qt.PenStyle.DashLine if eraser else Qt.PenStyle.SolidLine)
    for pen in (dark, light):
        painter.setPen(pen)
        painter.drawEllipse(centre, radius, radius)
        painter.drawPoint(centre)
