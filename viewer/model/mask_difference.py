"""Where two reviewers' masks of one photo differ, drawn in one picture (Qt-free)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

ONLY_THEIRS = (255, 64, 64)  # red
ONLY_YOURS = (0, 229, 255)  # cyan, the overlay's default colour
BOTH = (255, 255, 255)


@dataclass(frozen=True)
class MaskDifference:
    image: np.ndarray  # (h, w, 3) uint8 RGB: the photo dimmed, the masks in three colours
    only_theirs: int  # full-resolution pixels
    only_yours: int
    both: int


def draw_mask_difference(
    rgb: np.ndarray, theirs: np.ndarray, yours: np.ndarray, max_side: int = 960
) -> MaskDifference:
    """The photo (any decoded size) with where the masks (full resolution) agree and differ."""
    h, w = yours.shape
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    photo = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    # max-pooled masks: a lesion a few pixels wide stays visible at the picture's scale
    small = [
        cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
        for m in (theirs, yours)
    ]
    out = (photo.astype(np.float32) * 0.55).astype(np.uint8)
    for where, colour in (
        (small[0] & ~small[1], ONLY_THEIRS),
        (small[1] & ~small[0], ONLY_YOURS),
        (small[0] & small[1], BOTH),
    ):
        out[where] = colour
    return MaskDifference(
        image=out,
        only_theirs=int(np.count_nonzero(theirs & ~yours)),
        only_yours=int(np.count_nonzero(yours & ~theirs)),
        both=int(np.count_nonzero(theirs & yours)),
    )
