"""Undo and redo as mask deltas: each step keeps only the rectangle it changed.

A brush stroke of many dabs is one step (begin, dabs, commit), as in napari's Labels
layer; a step stores the changed patch before and after, never a copy of a 12-MP mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), image pixels


def union(a: Rect | None, b: Rect | None) -> Rect | None:
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@dataclass
class Step:
    """One undoable change: the patch of the mask before and after, plus side data."""

    label: str
    rect: Rect
    before: np.ndarray  # bool (y1 - y0, x1 - x0)
    after: np.ndarray
    decisions_before: dict[int, str] = field(default_factory=dict)
    decisions_after: dict[int, str] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(self.before.nbytes + self.after.nbytes)


class History:
    """Undo/redo stacks with a memory cap (oldest steps are dropped first)."""

    def __init__(self, max_bytes: int = 512 * 1024 * 1024):
        self.max_bytes = max_bytes
        self._undo: list[Step] = []
        self._redo: list[Step] = []

    def push(self, step: Step) -> None:
        self._undo.append(step)
        self._redo.clear()
        while len(self._undo) > 1 and sum(s.nbytes for s in self._undo) > self.max_bytes:
            self._undo.pop(0)

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def pop_undo(self) -> Step | None:
        if not self._undo:
            return None
        step = self._undo.pop()
        self._redo.append(step)
        return step

    def pop_redo(self) -> Step | None:
        if not self._redo:
            return None
        step = self._redo.pop()
        self._undo.append(step)
        return step

    def __len__(self) -> int:
        return len(self._undo)
