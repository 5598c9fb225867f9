"""An empty label with no model suggestion becomes training data only when a reviewer said
"no haemorrhage" (recorded as such in the JSON): otherwise it may be a photo nobody reviewed
against a suggestion (the model had not run yet), and training would learn a false negative.
Qt-free: the review session and the label files, as the viewer and training use them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.labels import LabelFormatError, ProvenanceRecord, label_paths
from viewer.model.session import ReviewSession, export_accepted_labels


def small_photo(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    return path


def accepted_without_model(session: ReviewSession, photo: Path, *, said_none: bool) -> None:
    doc = session.open(photo).document
    assert not doc.has_model and not doc.mask.any()
    if said_none:
        doc.accept_no_haemorrhage()
    else:  # what the start-up race produced: accepted, empty, model null
        doc.set_status("accepted")
    session.save(doc, reviewer="dr.kim")


def test_only_an_explicit_no_haemorrhage_is_exported_as_an_empty_label(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    unsaid = small_photo(photos / "unsaid.png", 1)
    said = small_photo(photos / "said.png", 2)
    session = ReviewSession()
    accepted_without_model(session, unsaid, said_none=False)
    accepted_without_model(session, said, said_none=True)

    record = json.loads(label_paths(said, photos / "hemaview-labels").provenance.read_text())
    assert record["finding"] == "no_haemorrhage" and record["model"] is None
    assert record["status"] == "accepted"
    unsaid_json = label_paths(unsaid, photos / "hemaview-labels").provenance.read_text()
    assert json.loads(unsaid_json)["finding"] is None

    report = export_accepted_labels([unsaid, said], tmp_path / "export")
    assert report.exported == ["said.png"]
    assert len(report.skipped) == 1 and "unsaid.png" in report.skipped[0]
    assert "no haemorrhage" in report.skipped[0]


def test_training_skips_an_empty_model_less_label_nobody_called_empty(tmp_path: Path) -> None:
    from training.data import scan_label_folder

    photos = tmp_path / "photos"
    unsaid = small_photo(photos / "unsaid.png", 1)
    said = small_photo(photos / "said.png", 2)
    session = ReviewSession()
    accepted_without_model(session, unsaid, said_none=False)
    accepted_without_model(session, said, said_none=True)
    records, notes = scan_label_folder(photos / "hemaview-labels")
    assert [r.name for r in records] == ["said"]
    assert any("unsaid.png" in n and "no haemorrhage" in n for n in notes)


def test_drawing_a_lesion_withdraws_no_haemorrhage(tmp_path: Path) -> None:
    photo = small_photo(tmp_path / "photos" / "p.png", 3)
    session = ReviewSession()
    doc = session.open(photo).document
    doc.accept_no_haemorrhage()
    doc.begin_stroke()
    doc.stroke_to(40, 30, 5, True)
    doc.end_stroke()
    saved = session.save(doc, reviewer="dr.kim")
    assert saved.finding is None  # a mask with a lesion is not "no haemorrhage"


def test_an_unknown_finding_is_refused_and_an_old_file_reads_as_none(tmp_path: Path) -> None:
    photo = small_photo(tmp_path / "photos" / "p.png", 4)
    session = ReviewSession()
    doc = session.open(photo).document
    doc.accept_no_haemorrhage()
    saved = session.save(doc, reviewer="dr.kim")
    data = saved.to_dict()
    data["finding"] = "probably fine"
    with pytest.raises(LabelFormatError, match="finding"):
        ProvenanceRecord.from_dict(data)
    del data["finding"]  # written before the field existed
    assert ProvenanceRecord.from_dict(data).finding is None
