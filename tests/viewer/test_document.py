"""The review document: edits land in full-resolution pixels, one undo step per edit."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inference import Segmenter
from inference.labels import ProvenanceRecord
from viewer.model.document import Document
from viewer.model.tools import MAX_FILL_FRACTION, fill_region, paint_segment

W, H = 4288, 2848


def blank_document(mask: np.ndarray | None = None) -> Document:
    doc = Document(Path("photo.jpg"), (W, H), "a" * 64)
    if mask is not None:
        doc.mask[:] = mask
    return doc


def test_a_stroke_paints_a_joined_line_and_is_one_undo_step() -> None:
    doc = blank_document()
    doc.begin_stroke("brush")
    for x in range(1000, 1401, 40):  # fast mouse: dabs 40 px apart with a 10 px brush
        doc.stroke_to(x, 500, 10, True)
    rect = doc.end_stroke()
    assert rect is not None
    assert doc.mask[500, 1000:1400].all()  # no gaps between dabs
    assert doc.mask[500 + 12, 1200] == 0 and doc.mask[500 + 9, 1200] == 1
    assert len(doc.history) == 1 and doc.dirty and doc.status == "in_review"
    doc.undo()
    assert not doc.mask.any()
    doc.redo()
    assert doc.mask[500, 1000:1400].all()


def test_eraser_removes_only_under_the_brush() -> None:
    mask = np.zeros((H, W), bool)
    mask[100:200, 100:200] = True
    doc = blank_document(mask)
    doc.begin_stroke("eraser")
    doc.stroke_to(150, 150, 20, False)
    doc.end_stroke()
    assert not doc.mask[150, 150] and doc.mask[105, 105]
    assert doc.mask.sum() == mask.sum() - np.count_nonzero(~doc.mask[100:200, 100:200])


def test_fill_closes_a_hole_but_refuses_the_background() -> None:
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (2000, 1400), 40, 1, 6)  # a ring: a lesion with a hole
    doc = blank_document(mask.astype(bool))
    before = doc.mask.sum()
    assert doc.fill(2000, 1400) is not None
    assert doc.mask[1400, 2000] and doc.mask.sum() > before
    assert doc.fill(10, 10) is None  # background touching the edge: not a hole
    assert len(doc.history) == 1


def test_fill_refuses_huge_enclosed_regions() -> None:
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (2144, 1424), 1300, 1, 5)
    assert fill_region(mask.astype(bool), x=2144, y=1424) is None
    assert np.pi * 1300**2 > MAX_FILL_FRACTION * H * W


def test_lasso_adds_and_removes() -> None:
    doc = blank_document()
    square = [(500.0, 500.0), (600.0, 500.0), (600.0, 600.0), (500.0, 600.0)]
    doc.lasso(square, True)
    assert doc.mask[550, 550] and not doc.mask[650, 650]
    doc.lasso([(540.0, 540.0), (560.0, 540.0), (560.0, 560.0), (540.0, 560.0)], False)
    assert not doc.mask[550, 550] and doc.mask[510, 510]
    assert len(doc.history) == 2


def test_undo_keeps_only_the_changed_patch() -> None:
    doc = blank_document()
    doc.begin_stroke()
    doc.stroke_to(300, 300, 15, True)
    doc.end_stroke()
    step = doc.history.pop_undo()
    assert step is not None
    assert step.before.size < 40 * 40  # a patch, not a 12-MP copy


def test_paint_segment_is_sub_pixel_and_clipped_at_the_edge() -> None:
    mask = np.zeros((50, 50), bool)
    rect = paint_segment(mask, start=(-5.0, -5.0), end=(3.0, 3.0), radius=4, value=True)
    assert rect is not None and rect[0] == 0 and rect[1] == 0
    assert mask[0, 0] and mask[3, 3] and not mask[20, 20]


def document_of(segmenter: Segmenter, number: int) -> Document:
    """A fresh review document of an IDRiD photo with the model's prediction."""
    from conftest import idrid_photo

    pred = segmenter.predict(idrid_photo(number))
    return Document(
        idrid_photo(number),
        (pred.photo.width, pred.photo.height),
        pred.provenance.photo_sha256,
        prediction=pred,
    )


@pytest.fixture(scope="module")
def predicted_document(segmenter: Segmenter) -> Document:
    return document_of(segmenter, 3)


def test_threshold_is_live_until_the_reviewer_edits(predicted_document: Document) -> None:
    doc = predicted_document
    prob = doc.prediction.probability  # type: ignore[union-attr]
    low = float(np.quantile(prob[prob > 0], 0.5)) if (prob > 0).any() else 0.1
    doc.set_threshold(max(min(low, 0.9), 0.01))
    assert np.array_equal(doc.mask, prob >= doc.threshold)
    doc.begin_stroke()
    doc.stroke_to(100, 100, 5, True)
    doc.end_stroke()
    edited = doc.mask.copy()
    doc.set_threshold(0.99)
    assert np.array_equal(doc.mask, edited)  # the reviewer's mask no longer follows
    record = doc.to_record("dr.kim")
    assert isinstance(record, ProvenanceRecord)
    assert record.changes is not None and record.changes.pixels_added >= 1
    assert record.model is not None and record.model.threshold == 0.99
    assert record.source == "reviewer"


def test_rejecting_a_lesion_removes_exactly_its_pixels(segmenter: Segmenter) -> None:
    doc = document_of(segmenter, 3)
    pred = doc.prediction
    assert pred is not None
    # with a random or real model there may be few lesions: make one by lowering the threshold
    prob = pred.probability
    if not doc.lesions:
        doc.set_threshold(max(float(prob.max()) * 0.9, 1e-4))
    assert doc.lesions, "the model suggests nothing even at 90% of its maximum"
    lesion = doc.lesions[0]
    before = doc.mask.sum()
    doc.decide_lesion(lesion.id, "rejected")
    assert doc.mask.sum() == before - lesion.area_px
    assert doc.decisions[lesion.id] == "rejected"
    doc.undo()
    assert doc.mask.sum() == before and lesion.id not in doc.decisions
    doc.decide_lesion(lesion.id, "accepted")
    assert doc.mask.sum() == before
    record = doc.to_record("dr.kim")
    assert [d.decision for d in record.lesions if d.id == lesion.id] == ["accepted"]
    doc.begin_stroke()
    doc.stroke_to(200, 200, 30, True)
    doc.end_stroke()
    doc.reset_to_suggestion()
    assert np.array_equal(doc.mask, doc.suggestion)


def test_undoing_every_edit_makes_the_mask_follow_the_threshold_again(
    segmenter: Segmenter,
) -> None:
    doc = document_of(segmenter, 3)
    pred = doc.prediction
    assert pred is not None
    prob = pred.probability
    doc.begin_stroke()
    doc.stroke_to(300, 300, 20, True)
    doc.end_stroke()
    doc.begin_stroke()
    doc.stroke_to(600, 300, 20, True)
    doc.end_stroke()
    assert doc.edited and len(doc.history) == 2
    doc.undo()
    assert doc.edited  # one edit is still there
    doc.undo()
    assert not doc.edited  # back to the suggestion
    doc.set_threshold(0.05)
    assert np.array_equal(doc.mask, prob >= 0.05)  # the mask follows the slider again
    # a redo is an edit again, and a reset to the suggestion is none
    doc.begin_stroke()
    doc.stroke_to(300, 300, 20, True)
    doc.end_stroke()
    doc.set_threshold(0.3)
    assert doc.mask[300, 300] and doc.edited
    doc.reset_to_suggestion()
    assert not doc.edited
    doc.set_threshold(0.5)
    assert np.array_equal(doc.mask, prob >= 0.5)
