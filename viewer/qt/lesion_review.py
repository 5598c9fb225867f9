"""Reviewing lesion by lesion: A and X decide the lesion under review and go on to the next
undecided one, N and Shift+N step through every lesion, and the canvas frames the lesion under
review and outlines the rejected ones.

One rule runs through it: what the reviewer works on is visible while they work on it. Going
to a lesion, deciding one, editing, undoing or resetting with the overlay hidden shows it
again (and says so), so nobody brushes or frames an invisible mask.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject

from viewer.model.document import Document
from viewer.model.history import Rect
from viewer.model.tools import lesion_outline
from viewer.model.view_state import ViewState
from viewer.qt.canvas import ImageCanvas
from viewer.qt.lesion_list import LesionList

# Context framed around a lesion: a few times its size, and never less than ~600 photo pixels
# (about a disc diameter on a 12-MP photo), so the vessels around it show.
CONTEXT_FACTOR, MIN_CONTEXT_PX = 4, 600


class LesionReview(QObject):
    def __init__(
        self,
        lesions: LesionList,
        canvas: ImageCanvas,
        view: ViewState,
        *,
        document: Callable[[], Document | None],
        edited: Callable[[Rect | None], None],
        say: Callable[[str, int], None],
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.lesions, self.canvas, self.view = lesions, canvas, view
        self._document, self._edited, self._say = document, edited, say
        lesions.lesion_activated.connect(self.centre_on)
        canvas.edit_started.connect(self.reveal_overlay)

    def reveal_overlay(self) -> None:
        """Show a hidden overlay: the reviewer is about to edit it or go to a lesion in it."""
        if self.view.overlay_visible or self._document() is None:
            return
        self.view.set("overlay_visible", True)
        self._say(self.tr("Overlay shown: you are working on it."), 5000)

    def step_history(self, step: Callable[[], Rect | None]) -> None:
        """Undo or redo, with the overlay shown: the reviewer sees what came back."""
        self.reveal_overlay()
        self._edited(step())

    def reset(self) -> None:
        """Back to the model's suggestion (undoable), shown."""
        doc = self._document()
        if doc is not None:
            self.reveal_overlay()
            self._edited(doc.reset_to_suggestion())

    def decide(self, decision: str) -> None:
        """A or X: decide the lesion under review, then go on to the next undecided one
        after it (coming round to the first), and say which and how many are left."""
        doc = self._document()
        lesion_id = self.lesions.current_id()
        if doc is None or lesion_id is None:
            return
        self.reveal_overlay()
        self._edited(doc.decide_lesion(lesion_id, decision))
        ids = [les.id for les in doc.lesions]
        pending: list[int] = []
        if lesion_id in ids:
            start = ids.index(lesion_id)
            later = ids[start + 1 :] + ids[:start]
            pending = [i for i in later if doc.decisions.get(i, "pending") == "pending"]
            if pending:
                self.lesions.select_id(pending[0])
        words = {"accepted": self.tr("accepted"), "rejected": self.tr("rejected")}
        done = self.tr("Lesion {n} {decision}.").format(
            n=lesion_id, decision=words.get(decision, decision)
        )
        follow = (
            self.tr("Now lesion {n}; {left} undecided.").format(n=pending[0], left=len(pending))
            if pending
            else self.tr("Every lesion is decided.")
        )
        self._say(f"{done} {follow}", 6000)
        self.show_marks()

    def centre_on(self, lesion_id: int) -> None:
        """Frame a lesion with its surroundings (N, Shift+N, a click in the list)."""
        doc = self._document()
        if doc is None:
            return
        self.reveal_overlay()
        lesion = next((les for les in doc.lesions if les.id == lesion_id), None)
        if lesion is not None:
            x, y, w, h = lesion.bbox
            side = max(CONTEXT_FACTOR * max(w, h), MIN_CONTEXT_PX)
            cx, cy = x + w / 2, y + h / 2
            half = side / 2
            box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
            self.canvas.frame_rect(box, margin=0.0)
        self.show_marks()

    def show_marks(self) -> None:
        """The lesion under review framed, rejected ones as faint outlines (so a rejection
        can be seen and undone)."""
        doc = self._document()
        if doc is None or not doc.has_model:
            self.canvas.set_lesion_marks(None, [])
            return
        current = self.lesions.current_id()
        focus = next((les.bbox for les in doc.lesions if les.id == current), None)
        rejected = [
            outline
            for les in doc.lesions
            if doc.decisions.get(les.id) == "rejected"
            for outline in lesion_outline(doc.suggestion, les.bbox, les.area_px)
        ]
        self.canvas.set_lesion_marks(focus, rejected)
