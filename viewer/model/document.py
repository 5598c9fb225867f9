"""One photo under review: the model's suggestion, the editable mask, decisions, history.

Qt-free on purpose: the mask a reviewer edits is a bool numpy array in the photo's own
pixels; zoom, pan and colours live only in the view. Every edit returns the rectangle it
changed, so the canvas repaints that and nothing else.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np

from inference import FALLBACK_THRESHOLD, Lesion, Prediction
from inference.labels import (
    STATUSES,
    Finding,
    LesionDecision,
    MaskChanges,
    ModelInfo,
    PhotoInfo,
    ProvenanceRecord,
    ReviewStatus,
    mask_changes,
    now,
)
from viewer.model import tools
from viewer.model.history import History, Rect, Step, union


class Document:
    """The review state of one photo; the Qt layer shows it and forwards edits to it."""

    def __init__(
        self,
        photo_path: Path,
        size: tuple[int, int],
        photo_sha256: str,
        prediction: Prediction | None = None,
        saved: tuple[np.ndarray, ProvenanceRecord] | None = None,
        default_threshold: float = FALLBACK_THRESHOLD,
        no_colour: bool = False,
    ):
        self.path = Path(photo_path)
        # A grey or red-free photo: the model, trained on colour, finds fewer lesions on it;
        # the label says so.
        self.no_colour = no_colour
        self.width, self.height = size
        self.photo_sha256 = photo_sha256
        self.prediction = prediction
        self.history = History()
        # without a prediction: the model's own default, what its overlay would start at
        self.threshold = prediction.threshold if prediction is not None else default_threshold
        self.suggestion = self._suggestion_at(self.threshold)
        self._lesions: list[Lesion] | None = list(prediction.lesions) if prediction else []
        self.decisions: dict[int, str] = {}
        self.saved_record: ProvenanceRecord | None = None
        self.created: datetime = now()
        self.status: str = ReviewStatus.TODO
        # Set only by the reviewer's explicit "no haemorrhage" (see accept_no_haemorrhage).
        self.finding: str | None = None
        self.edited = False  # the reviewer changed the mask (it no longer follows the threshold)
        self.dirty = False  # changes not yet saved
        self._stroke: tuple[str, np.ndarray, Rect | None, list[tuple[float, float]]] | None = None
        if saved is not None:
            mask, record = saved
            self.mask = mask.astype(bool, copy=True)
            self.saved_record = record
            self.created = record.created
            self.status = record.status
            self.finding = record.finding
            self.decisions = {d.id: d.decision for d in record.lesions if d.decision != "pending"}
            self.edited = record.source != "model"
            if record.model is not None and prediction is not None:
                self.set_threshold(record.model.threshold, follow=False)
        else:
            self.mask = self.suggestion.copy()

    # -- the model's suggestion ----------------------------------------------------------

    @property
    def lesions(self) -> list[Lesion]:
        """The suggested lesions at the current threshold, found when first asked for: a
        threshold slider moves faster than 12 MP can be labelled."""
        if self._lesions is None:
            assert self.prediction is not None
            self._lesions = self.prediction.at_threshold(self.threshold)
        return self._lesions

    @property
    def has_model(self) -> bool:
        return self.prediction is not None

    def _suggestion_at(self, threshold: float) -> np.ndarray:
        if self.prediction is None:
            return np.zeros((self.height, self.width), bool)
        return np.asarray(self.prediction.probability >= threshold)

    def attach_prediction(self, prediction: Prediction) -> None:
        """The model's suggestion arrived after the reviewer began on this photo (the model
        was still loading). Their edits stay; untouched, the mask becomes the suggestion."""
        self.prediction = prediction
        self.threshold = prediction.threshold
        self.suggestion = self._suggestion_at(self.threshold)
        self._lesions = None
        untouched = not (self.edited or self.dirty or self.saved_record or self.mask.any())
        if untouched:
            self.mask = self.suggestion.copy()
        else:  # the reviewer's mask stays theirs: it no longer follows the threshold
            self.edited = True

    def set_threshold(self, threshold: float, *, follow: bool = True) -> bool:
        """Re-threshold the stored probability (no model run). Until the reviewer edits,
        the mask follows the suggestion; returns whether the mask changed."""
        if self.prediction is None or threshold == self.threshold:
            return False
        self.threshold = float(threshold)
        self.suggestion = self._suggestion_at(self.threshold)
        self._lesions = None
        if follow and not self.edited:
            self.decisions.clear()
            self.mask = self.suggestion.copy()
            self.history.clear()
            return True
        return False

    # -- edits -------------------------------------------------------------------------

    def begin_stroke(self, label: str = "brush") -> None:
        """Start one undo step; dabs until end_stroke() belong to it."""
        self._stroke = (label, self.mask.copy(), None, [])

    def stroke_to(self, x: float, y: float, radius: float, value: bool) -> Rect | None:
        """Add a dab at (x, y), joined to the previous one of this stroke."""
        if self._stroke is None:
            self.begin_stroke("brush" if value else "eraser")
        assert self._stroke is not None
        label, before, rect, points = self._stroke
        start = points[-1] if points else (x, y)
        changed = tools.paint_segment(
            self.mask, start=start, end=(x, y), radius=radius, value=value
        )
        points.append((x, y))
        self._stroke = (label, before, union(rect, changed), points)
        return changed

    def end_stroke(self) -> Rect | None:
        if self._stroke is None:
            return None
        label, before, rect, _ = self._stroke
        self._stroke = None
        if rect is None:
            return None
        x0, y0, x1, y1 = rect
        old, new = before[y0:y1, x0:x1].copy(), self.mask[y0:y1, x0:x1].copy()
        if np.array_equal(old, new):
            return None
        self._record(Step(label, rect, old, new))
        return rect

    def fill(self, x: int, y: int) -> Rect | None:
        """Fill the hole (or clear the lesion) under (x, y) as one undo step."""
        before = None
        h, w = self.mask.shape
        if 0 <= x < w and 0 <= y < h:
            before = self.mask.copy()
        rect = tools.fill_region(self.mask, x=int(x), y=int(y))
        if rect is None or before is None:
            return None
        x0, y0, x1, y1 = rect
        self._record(
            Step("fill", rect, before[y0:y1, x0:x1].copy(), self.mask[y0:y1, x0:x1].copy())
        )
        return rect

    def lasso(self, points: list[tuple[float, float]], value: bool) -> Rect | None:
        rect = tools.stroke_rect(points=points, radius=0, shape=self.mask.shape) if points else None
        if rect is None:
            return None
        x0, y0, x1, y1 = rect
        old = self.mask[y0:y1, x0:x1].copy()
        tools.fill_polygon(self.mask, points=points, value=value)
        new = self.mask[y0:y1, x0:x1].copy()
        if np.array_equal(old, new):
            return None
        self._record(Step("lasso add" if value else "lasso remove", rect, old, new))
        return rect

    def decide_lesion(self, lesion_id: int, decision: str) -> Rect | None:
        """Accept (keep its pixels in the mask) or reject (remove them) one suggested lesion."""
        lesion = next((les for les in self.lesions if les.id == lesion_id), None)
        if lesion is None or decision not in ("accepted", "rejected", "pending"):
            return None
        x, y, w, h = lesion.bbox
        pixels = tools.component_pixels(self.suggestion, bbox=lesion.bbox, area=lesion.area_px)
        rect = (x, y, x + w, y + h)
        old = self.mask[y : y + h, x : x + w].copy()
        before = dict(self.decisions)
        if pixels is not None and decision == "accepted":
            self.mask[y : y + h, x : x + w] |= pixels
        elif pixels is not None and decision == "rejected":
            self.mask[y : y + h, x : x + w] &= ~pixels
        if decision == "pending":
            self.decisions.pop(lesion_id, None)
        else:
            self.decisions[lesion_id] = decision
        new = self.mask[y : y + h, x : x + w].copy()
        self._record(
            Step(f"{decision} lesion {lesion_id}", rect, old, new, before, dict(self.decisions))
        )
        return rect

    def reset_to_suggestion(self) -> Rect | None:
        """Back to the model's suggestion at the current threshold (undoable)."""
        diff = self.mask != self.suggestion
        if not diff.any():
            return None
        ys, xs = np.nonzero(diff)
        rect = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        x0, y0, x1, y1 = rect
        old = self.mask[y0:y1, x0:x1].copy()
        before = dict(self.decisions)
        self.mask[y0:y1, x0:x1] = self.suggestion[y0:y1, x0:x1]
        self.decisions.clear()
        self._record(
            Step("reset to suggestion", rect, old, self.mask[y0:y1, x0:x1].copy(), before, {})
        )
        return rect

    def _refresh_edited(self) -> None:
        """Edited: the reviewer's mask or decisions differ from the suggestion. Undoing every
        edit (or a reset) makes the mask follow the threshold again."""
        self.edited = bool(self.decisions) or not np.array_equal(self.mask, self.suggestion)

    def _record(self, step: Step) -> None:
        self.history.push(step)
        self._refresh_edited()
        self.dirty = True
        if self.status == "todo":
            self.status = ReviewStatus.IN_REVIEW

    def undo(self) -> Rect | None:
        step = self.history.pop_undo()
        if step is None:
            return None
        x0, y0, x1, y1 = step.rect
        self.mask[y0:y1, x0:x1] = step.before
        if step.decisions_before or step.decisions_after:
            self.decisions = dict(step.decisions_before)
        self._refresh_edited()
        self.dirty = True
        return step.rect

    def redo(self) -> Rect | None:
        step = self.history.pop_redo()
        if step is None:
            return None
        x0, y0, x1, y1 = step.rect
        self.mask[y0:y1, x0:x1] = step.after
        if step.decisions_before or step.decisions_after:
            self.decisions = dict(step.decisions_after)
        self._refresh_edited()
        self.dirty = True
        return step.rect

    def set_status(self, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown review status {status!r}")
        if status != self.status:
            self.status = status
            self.dirty = True

    def accept_no_haemorrhage(self) -> None:
        """The reviewer's explicit decision: accepted, and the photo shows no haemorrhage.

        Recorded as such, so that an empty mask in training data is a person's decision and
        never a photo the model had not run on yet."""
        self.set_status(ReviewStatus.ACCEPTED)
        if self.finding != Finding.NO_HAEMORRHAGE:
            self.finding = Finding.NO_HAEMORRHAGE
            self.dirty = True

    def current_finding(self) -> str | None:
        """The finding as it stands: "no haemorrhage" holds only for an accepted, empty mask
        (drawing a lesion afterwards, or reopening the review, withdraws it)."""
        if self.status != ReviewStatus.ACCEPTED or self.mask.any():
            return None
        return self.finding

    # -- what gets saved ---------------------------------------------------------------

    def changes(self) -> MaskChanges | None:
        return mask_changes(self.suggestion, self.mask) if self.prediction is not None else None

    def to_record(self, reviewer: str) -> ProvenanceRecord:
        stamp = now()
        model = None
        if self.prediction is not None:
            model = ModelInfo.from_provenance(self.prediction.provenance, self.threshold)
        elif self.saved_record is not None:
            model = self.saved_record.model
        lesions = tuple(
            LesionDecision(les.id, self.decisions.get(les.id, "pending"), les.bbox, les.area_px)
            for les in self.lesions
        )
        record = ProvenanceRecord(
            photo=PhotoInfo(
                self.path.name, self.photo_sha256, self.width, self.height, self.no_colour
            ),
            status=self.status,
            reviewer=reviewer,
            created=self.created,
            modified=stamp,
            model=model,
            changes=self.changes() if model is not None and self.prediction is not None else None,
            source="reviewer"
            if self.edited or self.status != "todo"
            else ("model" if model else "reviewer"),
            lesions=lesions if self.prediction is not None else (),
            finding=self.current_finding(),
        )
        return record

    def mark_saved(self, record: ProvenanceRecord) -> None:
        self.saved_record = replace(record)
        self.dirty = False
