"""The photo's review status as the reviewer sets it (To do, In review, Accepted, Rejected),
with the one case that needs care: accepting a photo that has no model suggestion.

Accepting means "reviewed against the suggestion". Without one, an empty mask would go to
training as a "no haemorrhage" nobody decided, so:
- while the model has not run on the photo yet, an empty photo cannot be accepted (it is not
  "no suggestion": the suggestion has not been made);
- otherwise the reviewer is asked, and "Accept as no haemorrhage" is recorded as their
  explicit finding in the label;
- a photo with the reviewer's own marks is accepted as their annotation, and told so.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QWidget

from viewer.model.session import OpenedPhoto
from viewer.qt import dialogs
from viewer.qt.review_panel import ReviewPanel


class StatusDecisions(QObject):
    def __init__(
        self,
        panel: ReviewPanel,
        *,
        current: Callable[[], OpenedPhoto | None],
        changed: Callable[[], None],
        say: Callable[[str, int], None],
        can_run_model: Callable[[], bool],
        run_model: Callable[[], None],
        parent: QWidget,
    ):
        """`changed`: the document's state changed (show it, autosave); `run_model`: run the
        model on a photo refused as not a fundus photograph (`can_run_model` says if it can)."""
        super().__init__(parent)
        self.panel, self._parent = panel, parent
        self._current, self._changed, self._say = current, changed, say
        self._can_run, self._run = can_run_model, run_model

    def set_status(self, status: str) -> None:
        opened = self._current()
        if opened is None:
            return
        doc = opened.document
        if status == "accepted" and not doc.has_model and doc.status != "accepted":
            if not self._accept_without_model(opened):
                self.panel.set_status(doc.status)  # the buttons show what is, not the click
            return
        doc.set_status(status)
        self._changed()

    def _accept_without_model(self, opened: OpenedPhoto) -> bool:
        doc = opened.document
        if doc.mask.any():
            doc.set_status("accepted")
            self._changed()
            self._say(
                self.tr(
                    "Accepted as your own annotation: there was no model suggestion for this photo."
                ),
                8000,
            )
            return True
        if opened.model_pending:
            self._say(
                self.tr(
                    "{name}: the model has not run on this photo yet; accept it once its "
                    "suggestion shows."
                ).format(name=doc.path.name),
                10000,
            )
            return False
        answer = dialogs.ask_accept_without_model(
            self._parent,
            doc.path.name,
            opened.prediction_error or "",
            can_run=opened.not_fundus and self._can_run(),
        )
        if answer == "run":
            self._run()
        if answer != "accept":
            return False
        doc.accept_no_haemorrhage()  # recorded as the reviewer's explicit finding
        self._changed()
        return True
