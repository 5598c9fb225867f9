"""Where the photo sits on screen: pure, keyword-only viewport maths (Qt-free), which the
canvas uses and tests call without a mouse.

Photo space is continuous, pixel (i, j) covering [i, i+1) x [j, j+1), as QPainter draws
images. The Document (OpenCV) puts pixel centres on integers, so points sent to it are
shifted by half a pixel (`document_point`). Widget space is Qt's logical pixels; `zoom`
counts device pixels per photo pixel, so 100 % means one photo pixel per physical screen
pixel also on a high-DPI display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from viewer.model.history import Rect

ZOOM_STEP = 1.25  # one key press or one wheel notch
MAX_ZOOM = 32.0  # device pixels per photo pixel
FIT_MARGIN = 8  # logical pixels around the photo when fitted


@dataclass(frozen=True)
class Viewport:
    """Where the photo sits in the widget: wx = ox + x * zoom / dpr (and the same for y)."""

    zoom: float = 1.0  # device pixels per photo pixel (1.0 = 100 %)
    ox: float = 0.0  # logical widget position of the photo's top-left corner
    oy: float = 0.0
    dpr: float = 1.0  # the widget's device pixel ratio

    @property
    def scale(self) -> float:
        """Logical widget pixels per photo pixel."""
        return self.zoom / self.dpr


def widget_to_image(*, x: float, y: float, view: Viewport) -> tuple[float, float]:
    """A logical widget point to continuous photo coordinates."""
    s = view.scale
    return (x - view.ox) / s, (y - view.oy) / s


def image_to_widget(*, x: float, y: float, view: Viewport) -> tuple[float, float]:
    s = view.scale
    return view.ox + x * s, view.oy + y * s


def pointer_point(*, x: float, y: float, dpr: float) -> tuple[float, float]:
    """Where a mouse position points: the centre of the device pixel under the hotspot.

    Qt reports a mouse at the top-left corner of that pixel; taking it as the point would
    put every click on the boundary between two photo pixels at 100 %. A tablet's
    sub-pixel position is used as it is.
    """
    return x + 0.5 / dpr, y + 0.5 / dpr


def snap_view(*, view: Viewport) -> Viewport:
    """The view moved by less than a device pixel so photo pixels start on device pixels:
    at 100 % (and every whole zoom) the photo is then copied pixel for pixel, crisp."""
    d = view.dpr
    return Viewport(view.zoom, round(view.ox * d) / d, round(view.oy * d) / d, d)


def pixel_at(
    *, x: float, y: float, view: Viewport, size: tuple[int, int]
) -> tuple[int, int] | None:
    """The photo pixel (column, row) under a widget point, or None outside a (W, H) photo."""
    ix, iy = widget_to_image(x=x, y=y, view=view)
    col, row = math.floor(ix), math.floor(iy)
    if 0 <= col < size[0] and 0 <= row < size[1]:
        return col, row
    return None


def document_point(*, x: float, y: float, view: Viewport) -> tuple[float, float]:
    """A widget point in the Document's coordinates (pixel centres on integers)."""
    ix, iy = widget_to_image(x=x, y=y, view=view)
    return ix - 0.5, iy - 0.5


def image_rect_to_widget(*, rect: Rect, view: Viewport, margin: int = 1) -> Rect:
    """The logical widget rectangle (integers, rounded outward) covering a photo rectangle."""
    x0, y0 = image_to_widget(x=rect[0], y=rect[1], view=view)
    x1, y1 = image_to_widget(x=rect[2], y=rect[3], view=view)
    return (
        math.floor(x0) - margin,
        math.floor(y0) - margin,
        math.ceil(x1) + margin,
        math.ceil(y1) + margin,
    )


def widget_rect_to_image(*, rect: Rect, view: Viewport, size: tuple[int, int]) -> Rect | None:
    """The photo pixels a logical widget rectangle shows, rounded outward and clipped."""
    x0, y0 = widget_to_image(x=rect[0], y=rect[1], view=view)
    x1, y1 = widget_to_image(x=rect[2], y=rect[3], view=view)
    ix0, iy0 = max(math.floor(x0), 0), max(math.floor(y0), 0)
    ix1, iy1 = min(math.ceil(x1), size[0]), min(math.ceil(y1), size[1])
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    return ix0, iy0, ix1, iy1


def zoom_about(*, view: Viewport, zoom: float, x: float, y: float) -> Viewport:
    """The view at `zoom` that keeps the photo point under widget point (x, y) there."""
    ix, iy = widget_to_image(x=x, y=y, view=view)
    s = zoom / view.dpr
    return Viewport(zoom, x - ix * s, y - iy * s, view.dpr)


def fit_view(
    *, size: tuple[int, int], widget: tuple[int, int], dpr: float, margin: int = FIT_MARGIN
) -> Viewport:
    """The whole (W, H) photo centred in a (w, h) logical widget."""
    w, h = max(widget[0] - 2 * margin, 1), max(widget[1] - 2 * margin, 1)
    zoom = min(w / size[0], h / size[1]) * dpr
    return centre_view(x=size[0] / 2, y=size[1] / 2, zoom=zoom, widget=widget, dpr=dpr)


def centre_view(
    *, x: float, y: float, zoom: float, widget: tuple[int, int], dpr: float
) -> Viewport:
    """The view at `zoom` with continuous photo point (x, y) at the widget's centre."""
    s = zoom / dpr
    return Viewport(zoom, widget[0] / 2 - x * s, widget[1] / 2 - y * s, dpr)


def device_rect(*, rect: Rect, view: Viewport, size: tuple[int, int]) -> Rect | None:
    """Device pixels of a logical widget rectangle that show the (W, H) photo."""
    d = view.dpr
    ox, oy = view.ox * d, view.oy * d
    x0 = max(math.floor(rect[0] * d), math.floor(ox))
    y0 = max(math.floor(rect[1] * d), math.floor(oy))
    x1 = min(math.ceil(rect[2] * d), math.ceil(ox + size[0] * view.zoom))
    y1 = min(math.ceil(rect[3] * d), math.ceil(oy + size[1] * view.zoom))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def pan_view(*, view: Viewport, dx: float, dy: float) -> Viewport:
    """The view moved by (dx, dy) logical pixels."""
    return Viewport(view.zoom, view.ox + dx, view.oy + dy, view.dpr)


def follow_dpr(*, view: Viewport, dpr: float) -> Viewport:
    """The view on a screen of another device pixel ratio: what the user sees (the logical
    scale and position) stays, the zoom (device pixels per photo pixel) follows."""
    if view.dpr == dpr:
        return view
    return Viewport(view.zoom * dpr / view.dpr, view.ox, view.oy, dpr)


def zoom_limits(
    *, size: tuple[int, int] | None, widget: tuple[int, int], dpr: float
) -> tuple[float, float]:
    """The zooms a (W, H) photo may be shown at: down to a quarter of fitting it (or of
    100 %, whichever is smaller), up to MAX_ZOOM."""
    if size is None:
        return 1 / 64, MAX_ZOOM
    fit = fit_view(size=size, widget=widget, dpr=dpr).zoom
    return min(fit, 1.0) / 4, MAX_ZOOM


def frame_zoom(*, rect: Rect, margin: float, widget: tuple[int, int], dpr: float) -> float:
    """The zoom that shows a photo rectangle with `margin` of its size around it."""
    x0, y0, x1, y1 = rect
    w, h = max(x1 - x0, 1) * (1 + 2 * margin), max(y1 - y0, 1) * (1 + 2 * margin)
    return min(widget[0] / w, widget[1] / h) * dpr


def level_window(
    *, shown: Rect, scale: tuple[float, float], size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The pixels of a (w, h) pyramid level, `scale` photo pixels each, to draw for the
    photo rectangle `shown`: whole level pixels, one more each side, so that smoothing at
    the source rectangle's edge lies outside the exposed area and partial repaints leave
    no seams."""
    sx, sy = scale
    x0, y0 = max(math.floor(shown[0] / sx) - 1, 0), max(math.floor(shown[1] / sy) - 1, 0)
    x1 = min(math.ceil(shown[2] / sx) + 1, size[0])
    y1 = min(math.ceil(shown[3] / sy) + 1, size[1])
    return x0, y0, x1, y1
