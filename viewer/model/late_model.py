"""The model arriving after a photo was opened (it loads in the background at start-up).
Qt-free rules the window follows, so that a photo opened or opening before the model arrived
gets its suggestion, and the reviewer's edits on it are kept.

- A photo opened without the model that is loaded now, and not refused by it, is opened again
  (`opened_before_model`).
- When that second open delivers the suggestion for the photo already on screen and the
  reviewer has begun on it, the suggestion is given to that document (`take_late_prediction`)
  instead of replacing the document and its undo history.
"""

from __future__ import annotations

from viewer.model.session import OpenedPhoto


def opened_before_model(opened: OpenedPhoto, model_sha256: str | None) -> bool:
    """`opened` has no suggestion because the model (`model_sha256`, None: none yet) was not
    there when it was opened: it must be opened again, not shown as it is."""
    return (
        model_sha256 is not None
        and opened.prediction is None
        and not opened.not_fundus
        and opened.model_sha256 != model_sha256
    )


def takes_late_prediction(current: OpenedPhoto | None, opened: OpenedPhoto) -> bool:
    """`opened` brings the suggestion for the photo on screen, which the reviewer has already
    edited without one."""
    if current is None or opened.prediction is None:
        return False
    doc, new = current.document, opened.document
    return (
        not doc.has_model
        and doc.path == new.path
        and doc.photo_sha256 == new.photo_sha256
        and (doc.dirty or doc.history.can_undo)
    )


def take_late_prediction(current: OpenedPhoto, opened: OpenedPhoto) -> None:
    """Give `opened`'s suggestion to `current` (see `takes_late_prediction`): the reviewer's
    mask and undo history stay; the document now measures them against the suggestion."""
    assert opened.prediction is not None
    current.document.attach_prediction(opened.prediction)
    current.prediction = opened.prediction
    current.model_pending, current.prediction_error = False, None
    current.model_sha256 = opened.model_sha256
