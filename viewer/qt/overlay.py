"""The haemorrhage overlay, rendered at screen resolution from the document's own mask.

Why not one full-resolution overlay image scaled by QPainter: drawing a 12-MP Indexed8
(or ARGB) overlay scaled to fit costs ~30 ms a frame on the 2-core reference machine,
and bilinear sampling at 25 % drops lesions a few pixels wide, exactly the small
haemorrhages a reviewer must see. Instead:

- Level 0 is the Document's bool mask itself, viewed as uint8 (no copy, no rebuild:
  an edit is visible the moment the Document writes it).
- Coarser levels are "any" poolings (a level pixel is set if any photo pixel under it
  is), built on demand and refreshed only inside an edit's rectangle, so no lesion
  vanishes when zoomed out.
- Each paint samples the level that matches the zoom onto the device pixels being
  repainted (nearest neighbour, one cv2.warpAffine), turns that into a premultiplied
  ARGB patch (0/1 times the colour word), and draws it 1:1. The cost follows the
  repainted screen area (~2-3 ms for a full 1600x1000 view), never the photo's size.

A threshold change replaces the mask, which only drops the pooled levels. Colour, opacity,
filled/contour and visibility live here and in QPainter: changing them rebuilds nothing.
Contours are a morphological gradient of the sampled patch: 1-2 screen pixels wide at
every zoom.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QImage, QPainter

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)

DEFAULT_COLOUR = QColor(0, 230, 255)  # cyan: the complement of the fundus' orange-red
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


_WIDE = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def pool_any(src: np.ndarray, factor: int = 2) -> np.ndarray:
    """ "Any" pooling of a 0/1 uint8 array by `factor` (a power of two), 0/1 uint8 out.

    (h, w) -> (ceil(h/f), ceil(w/f)); an output pixel is 1 if any input pixel under it is.
    Up to 8 neighbours in a row are read as one wide integer, so pooling 12 MP by 4 takes
    ~0.4 ms; larger factors pool by 8 first.
    """
    if factor > 8:
        return pool_any(pool_any(src, 8), factor // 8)
    if factor not in _WIDE:
        raise ValueError(f"pooling factor {factor} is not a power of two")
    f = factor
    h, w = src.shape
    out = np.zeros((-(-h // f), -(-w // f)), np.uint8)
    ha, wa = h - h % f, w - w % f  # the part that splits into whole f x f blocks
    if wa:
        part = src[:, :wa]
        try:
            wide = part.view(_WIDE[f])
        except ValueError:  # rows not contiguous enough for a wider view: copy first
            wide = np.ascontiguousarray(part).view(_WIDE[f])
        cols = wide != 0  # (h, wa/f): any of f neighbours in a row
        if ha:
            out[: ha // f, : wa // f] = cols[:ha].reshape(ha // f, f, wa // f).any(axis=1)
        if h > ha:
            out[-1, : wa // f] = cols[ha:].any(axis=0)
    if w > wa:
        rest = np.asarray(src[:, wa:].any(axis=1))  # (h,): the last, narrower block column
        if ha:
            out[: ha // f, -1] = rest[:ha].reshape(ha // f, f).any(axis=1)
        if h > ha:
            out[-1, -1] = rest[ha:].any()
    return out


def overlay_level(zoom: float, levels: int) -> int:
    """The finest level no finer than the screen (zoom: screen px per photo px).

    Sampling it never skips a level pixel, and each level pixel holds "any" of the photo
    pixels under it, so even a one-pixel lesion stays visible at any zoom.
    """
    if zoom >= 1.0:
        return 0
    k = math.ceil(math.log2(1.0 / zoom) - 1e-9)
    return max(0, min(k, levels - 1))


def premultiplied(colour: QColor) -> int:
    """The colour, opaque, as a premultiplied ARGB32 word."""
    return int(0xFF000000 | (colour.red() << 16) | (colour.green() << 8) | colour.blue())


class MaskOverlay:
    """Screen-resolution rendering of a bool mask; see the module docstring."""

    def __init__(
        self,
        *,
        colour: QColor = DEFAULT_COLOUR,
        opacity: float = 0.5,
        filled: bool = True,
        visible: bool = True,
    ):
        self.colour = QColor(colour)
        self.opacity = float(opacity)
        self.filled = filled
        self.visible = visible
        self.mask: np.ndarray | None = None
        self._levels: dict[int, np.ndarray] = {}  # k -> level k; 0 is the mask itself
        self._rgba = np.empty(0, np.uint32)  # reused for each paint's colours
        self.levels = 1
        # Work counters, for tests and the benchmark: what a change actually rebuilt.
        self.pooled_pixels = 0
        self.rendered_pixels = 0

    # -- binding the mask ----------------------------------------------------------------

    def set_mask(self, mask: np.ndarray | None) -> None:
        """Show `mask` (bool (H, W), C-contiguous); it is read in place, never copied."""
        if mask is not None and (mask.dtype != bool or mask.ndim != 2):
            raise ValueError(f"expected a bool (H, W) mask, got {mask.shape} {mask.dtype}")
        if mask is not None and not mask.flags.c_contiguous:
            raise ValueError("the mask must be C-contiguous: the overlay reads it in place")
        self.mask = mask
        self._levels = {0: mask.view(np.uint8)} if mask is not None else {}
        self.levels = 1
        if mask is not None:
            side = max(mask.shape)
            while side > 64:
                side = (side + 1) // 2
                self.levels += 1

    def sync(self, mask: np.ndarray | None) -> bool:
        """Rebind if the document replaced its mask (threshold change); True if it did."""
        if mask is self.mask:
            return False
        self.set_mask(mask)
        return True

    def update(self, rect: Rect | None = None) -> None:
        """The mask changed inside `rect` (None: anywhere): refresh the pooled levels there."""
        if self.mask is None:
            return
        if rect is None:
            self._levels = {0: self._levels[0]}
            return
        base = self._levels[0]
        h, w = base.shape
        for k, level in self._levels.items():
            if k == 0:
                continue
            f = 2**k
            # Round outward to whole level-k pixels.
            x0, y0 = (rect[0] // f) * f, (rect[1] // f) * f
            x1, y1 = min(-(-rect[2] // f) * f, w), min(-(-rect[3] // f) * f, h)
            if x1 <= x0 or y1 <= y0:
                continue
            level[y0 // f : -(-y1 // f), x0 // f : -(-x1 // f)] = pool_any(base[y0:y1, x0:x1], f)
            self.pooled_pixels += (x1 - x0) * (y1 - y0)

    def level(self, k: int) -> np.ndarray:
        """Level k as 0/1 uint8 (level 0 is the mask itself), pooled on demand."""
        if not self._levels:
            raise ValueError("no mask")
        k = max(0, min(k, self.levels - 1))
        level = self._levels.get(k)
        if level is None:
            base = self._levels[0]
            level = self._levels[k] = pool_any(base, 2**k)
            self.pooled_pixels += base.size
        return level

    # -- rendering -----------------------------------------------------------------------

    def sample(self, *, device_rect: Rect, zoom: float, origin: tuple[float, float]) -> np.ndarray:
        """0/1 uint8 (h, w): the mask as the device pixels of `device_rect` show it.

        `zoom` is device pixels per photo pixel and `origin` the device position of the
        photo's top-left corner. Device pixel u covers photo x in [(u - ox) / zoom, ...).
        """
        x0, y0, x1, y1 = device_rect
        k = overlay_level(zoom, self.levels)
        src = self.level(k)
        step = (2**k) * zoom  # device pixels per level-k pixel
        # warpAffine's nearest neighbour rounds; sample the device pixel's centre and
        # subtract half a level pixel so that rounding gives the floor.
        m = np.array(
            [
                [1.0 / step, 0.0, (x0 + 0.5 - origin[0]) / step - 0.5],
                [0.0, 1.0 / step, (y0 + 0.5 - origin[1]) / step - 0.5],
            ]
        )
        out = cv2.warpAffine(
            src,
            m,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        self.rendered_pixels += out.size
        return out

    def render(
        self, *, device_rect: Rect, zoom: float, origin: tuple[float, float]
    ) -> np.ndarray | None:
        """Premultiplied ARGB32 (h, w) uint32 of the overlay over `device_rect`, or None
        where it shows nothing. Valid until the next call (the buffer is reused).

        Opacity is not in it: the painter applies that, so a slider move costs no render.
        """
        if self.mask is None:
            return None
        x0, y0, x1, y1 = device_rect
        if x1 <= x0 or y1 <= y0:
            return None
        if self.filled:
            on = self.sample(device_rect=device_rect, zoom=zoom, origin=origin)
        else:
            # One pixel of margin so the outline at the patch's edge matches its neighbour's.
            grown = (x0 - 1, y0 - 1, x1 + 1, y1 + 1)
            wide = self.sample(device_rect=grown, zoom=zoom, origin=origin)
            on = cv2.morphologyEx(wide, cv2.MORPH_GRADIENT, _CROSS)[1:-1, 1:-1]
        if not on.any():
            return None
        # 0/1 times the colour word is the premultiplied patch: ten times faster than a
        # lookup table. The buffer is reused: what render() returns lives until its next call.
        n = on.size
        if self._rgba.size < n:
            self._rgba = np.empty(n, np.uint32)
        rgba = self._rgba[:n].reshape(on.shape)
        np.multiply(on, np.uint32(premultiplied(self.colour)), out=rgba)
        return rgba

    def paint(
        self,
        painter: QPainter,
        *,
        device_rect: Rect,
        zoom: float,
        origin: tuple[float, float],
        dpr: float,
    ) -> None:
        """Draw the overlay over `device_rect` (device pixels) with the painter's opacity."""
        if not self.visible or self.opacity <= 0.0:
            return
        argb = self.render(device_rect=device_rect, zoom=zoom, origin=origin)
        if argb is None:
            return
        h, w = argb.shape
        image = QImage(argb.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied)
        image.setDevicePixelRatio(dpr)
        painter.save()
        # A 2-pixel outline at the fill's opacity is hard to see on a busy fundus; the
        # square root keeps the slider's ends (0 hidden, 1 solid) and lifts the middle.
        painter.setOpacity(self.opacity if self.filled else math.sqrt(self.opacity))
        painter.drawImage(QPointF(device_rect[0] / dpr, device_rect[1] / dpr), image)
        painter.restore()  # drawImage has copied the pixels: argb may go now
