"""What the canvas draws of the photo: display presets and a pyramid of ready-to-paint images.

Presets: the photo as taken, its green channel shown as grey (red-free: haemorrhages and
vessels stand out dark on a flat background), and CLAHE with the model's own recipe (the
one preprocessing function in `inference`, so the reviewer sees what the model saw).

A 12-MP photo is never scaled down by QPainter on every frame: bilinear sampling from
full resolution at 25 % aliases badly and costs ~20 ms a frame. Each preset keeps a
pyramid of area-averaged halves instead, built on demand, and the canvas draws from the
level just finer than the screen. Levels are kept as 32-bit RGB because QPainter blits
and scales that format three to six times faster than RGB888 or Grayscale8 (measured;
see bench/bench_viewer.py). Level 0 starts as a zero-copy view of the photo's own buffer
and is swapped for a 32-bit copy made off the GUI thread the first time it is needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtGui import QImage

from inference import PreprocessRecipe, apply_clahe
from viewer.model.view_state import PRESETS

SLOW_PRESETS = frozenset({"clahe"})  # worth a worker thread (~0.2 s for 12 MP)

#: The smallest level kept: below this many pixels on the long side, scaling is cheap.
MIN_LEVEL_SIDE = 256


def preset_array(
    rgb: np.ndarray, preset: str, recipe: PreprocessRecipe | None = None
) -> np.ndarray:
    """The photo as the preset shows it: (H, W, 3) RGB or (H, W) grey, uint8, C-contiguous.

    "original" returns `rgb` itself (no copy). CLAHE over 12 MP takes ~0.2 s: call it off
    the GUI thread (OpenCV releases the GIL, so a worker thread really runs in parallel).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    if preset == "original":
        return np.ascontiguousarray(rgb)
    if preset == "green":
        return cv2.extractChannel(rgb, 1)
    if preset == "clahe":
        return np.ascontiguousarray(apply_clahe(rgb, recipe or PreprocessRecipe()))
    raise ValueError(f"unknown display preset {preset!r}; expected one of {PRESETS}")


@dataclass(frozen=True)
class BufferImage:
    """A QImage painting straight from a numpy buffer, and the buffer it needs alive.

    QImage does not own memory it is given, so the image is valid only while this object
    (which holds the array) is; pass `image.copy()` to anything that outlives it.
    """

    array: np.ndarray
    image: QImage


def to_qimage(array: np.ndarray) -> BufferImage:
    """Wrap a uint8 array without copying: (H, W) grey, (H, W, 3) RGB or (H, W, 4) BGRA.

    BGRA (OpenCV's byte order) is QImage's Format_RGB32 on little-endian machines, the
    format QPainter draws fastest.
    """
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8, got {array.dtype}")
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    if array.ndim == 2:
        fmt = QImage.Format.Format_Grayscale8
    elif array.shape[2] == 3:
        fmt = QImage.Format.Format_RGB888
    elif array.shape[2] == 4:
        fmt = QImage.Format.Format_RGB32
    else:
        raise ValueError(f"cannot show an array of shape {array.shape}")
    image = QImage(array.data, w, h, int(array.strides[0]), fmt)
    return BufferImage(array, image)


def to_bgra(array: np.ndarray) -> np.ndarray:
    """Grey or RGB uint8 to BGRA (Format_RGB32's bytes), opaque."""
    code = cv2.COLOR_GRAY2BGRA if array.ndim == 2 else cv2.COLOR_RGB2BGRA
    return cv2.cvtColor(array, code)


def level_count(width: int, height: int) -> int:
    """Levels 0..n-1, halving until the long side is at most MIN_LEVEL_SIDE."""
    n, side = 1, max(width, height)
    while side > MIN_LEVEL_SIDE:
        side = (side + 1) // 2
        n += 1
    return n


def level_for_zoom(zoom: float, levels: int) -> int:
    """The coarsest level still at least as fine as the screen (zoom: screen px per photo px).

    Drawing it shrinks by at most 2x, which bilinear filtering does without aliasing.
    """
    if zoom >= 1.0:
        return 0
    k = int(np.floor(np.log2(1.0 / zoom) + 1e-9))
    return max(0, min(k, levels - 1))


class PhotoDisplay:
    """One photo's display images: the presets it has computed and their pyramids.

    `compute(preset)` is the only slow part and is safe to run in a worker; `level()` is
    for the GUI thread. With an executor, slow work is sent there and `on_ready(display, key)`
    is called from the worker when it is done, with key the preset, or "preset/0" for a
    32-bit level 0 (the canvas turns that into a queued Qt signal).
    """

    def __init__(
        self,
        rgb: np.ndarray,
        *,
        recipe: PreprocessRecipe | None = None,
        executor: Executor | None = None,
        on_ready: Callable[[PhotoDisplay, str], None] | None = None,
    ):
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        self.rgb = np.ascontiguousarray(rgb)
        self.height, self.width = self.rgb.shape[:2]
        self.recipe = recipe
        self.levels = level_count(self.width, self.height)
        self._executor = executor
        self._on_ready = on_ready
        self._lock = threading.Lock()
        self._base: dict[str, np.ndarray] = {"original": self.rgb}
        self._fast0: dict[str, BufferImage] = {}  # level 0 as 32-bit, made in the worker
        self._pending: set[str] = set()  # presets (or "preset/0") being made in the worker
        self._pyramid: dict[str, list[BufferImage]] = {}
        self.closed = False

    # -- presets -------------------------------------------------------------------------

    def ready(self, preset: str) -> bool:
        with self._lock:
            return preset in self._base

    def compute(self, preset: str) -> np.ndarray:
        """The preset's full-resolution array, computed once (blocking; any thread)."""
        with self._lock:
            done = self._base.get(preset)
        if done is not None:
            return done
        array = preset_array(self.rgb, preset, self.recipe)
        with self._lock:
            return self._base.setdefault(preset, array)

    def request(self, preset: str) -> bool:
        """Make sure the preset gets computed; True if it is ready now.

        Fast presets, or all of them without an executor, are computed here and now.
        """
        if preset not in PRESETS:
            raise ValueError(f"unknown display preset {preset!r}; expected one of {PRESETS}")
        if self.ready(preset):
            return True
        if self._executor is None or preset not in SLOW_PRESETS:
            self.compute(preset)
            return True
        self._submit(preset, lambda: self.compute(preset))
        return False

    def _submit(self, key: str, work: Callable[[], object]) -> None:
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        assert self._executor is not None

        def run() -> None:
            try:
                if not self.closed:
                    work()
            finally:
                with self._lock:
                    self._pending.discard(key)
            if self._on_ready is not None and not self.closed:
                self._on_ready(self, key)

        self._executor.submit(run)

    # -- pyramid -------------------------------------------------------------------------

    def level_scale(self, k: int) -> tuple[float, float]:
        """Photo pixels per pixel of level k, along x and y."""
        w, h = self.level_size(k)
        return self.width / w, self.height / h

    def level_size(self, k: int) -> tuple[int, int]:
        w, h = self.width, self.height
        for _ in range(k):
            w, h = (w + 1) // 2, (h + 1) // 2
        return w, h

    def level(self, preset: str, k: int) -> BufferImage:
        """Level k of a computed preset (GUI thread). Level 0 is the full-resolution image."""
        k = max(0, min(k, self.levels - 1))
        if k == 0:
            fast = self._fast0.get(preset)
            if fast is not None:
                return fast
            base = self.compute(preset)
            if self._executor is not None:
                self._submit(f"{preset}/0", lambda: self._make_fast0(preset))
            else:
                self._make_fast0(preset)
                return self._fast0[preset]
            return to_qimage(base)
        pyramid = self._pyramid.setdefault(preset, [])
        if not pyramid:
            pyramid.append(to_qimage(self.compute(preset)))
        while len(pyramid) <= k:
            i = len(pyramid)
            src = pyramid[-1].array
            w, h = self.level_size(i)
            small = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)
            if i == 1:  # halve first (3x fewer bytes to convert), then go 32-bit
                small = to_bgra(small)
            pyramid.append(to_qimage(small))
        return pyramid[k]

    def _make_fast0(self, preset: str) -> None:
        image = to_qimage(to_bgra(self.compute(preset)))
        with self._lock:
            self._fast0.setdefault(preset, image)

    def close(self) -> None:
        """Stop using the worker: pending results are dropped, not announced."""
        self.closed = True
