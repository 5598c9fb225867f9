"""Background work and the photo list, on Qt's offscreen platform with the real model.

Pre-annotating a folder of real IDRiD photos and one broken file; cancelling; reopening from
the cache without the model; opening a photo off the GUI thread; the list's thumbnails,
error badge, filter, sort and next/previous. Every wait is on a signal.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import idrid_photo

from inference import Segmenter
from viewer.model.library import PhotoLibrary
from viewer.model.pred_cache import PredictionCache, PredictionSummary
from viewer.model.session import OpenedPhoto, ReviewSession
from viewer.qt.photo_list import PathRole, PhotoListWidget
from viewer.qt.workers import PhotoLoader, PreannotationJob, TaskRunner

# Read when pytest-qt creates the application, after this module is imported.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TIMEOUT_MS = 180_000  # the model takes seconds per photo on a busy 2-core machine


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three real IDRiD photos and a JPEG cut off after its first 2 kB."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in (1, 2, 3):
        shutil.copyfile(idrid_photo(n), photos / f"IDRiD_{n:02d}.jpg")
    (photos / "IDRiD_04.jpg").write_bytes(idrid_photo(4).read_bytes()[:2048])
    return photos


class Recorder:
    """Collects a job's signals in the order they arrive."""

    def __init__(self, job: PreannotationJob):
        self.progress: list[tuple[int, int]] = []
        self.results: list[tuple[str, PredictionSummary]] = []
        self.failures: list[tuple[str, str, str]] = []
        self.started: list[str] = []
        job.progress.connect(lambda d, t: self.progress.append((d, t)))
        job.result.connect(lambda p, s: self.results.append((p, s)))
        job.failed.connect(lambda p, m, k: self.failures.append((p, m, k)))
        job.photo_started.connect(self.started.append)


def no_model(*_args: Any, **_kwargs: Any) -> np.ndarray:
    raise AssertionError("the model ran although the prediction was cached")


def test_preannotation_nearest_first_reports_broken_photos_and_reopens_from_cache(
    qtbot: Any,
    folder: Path,
    tmp_path: Path,
    segmenter: Segmenter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    library = PhotoLibrary.scan(folder)
    assert [e.name for e in library] == [f"IDRiD_0{n}.jpg" for n in (1, 2, 3, 4)]
    order = [str(library[i].path) for i in library.order_by_distance(1)]  # the user is on 02
    cache = PredictionCache(tmp_path / "cache")
    job = PreannotationJob(segmenter, cache, order)
    seen = Recorder(job)
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT_MS) as finished:
        job.start()
    assert finished.args == [False]  # not cancelled
    assert seen.progress[-1] == (4, 4)
    assert [d for d, _ in seen.progress] == [1, 2, 3, 4]
    names = [Path(p).name for p, _ in seen.results]
    assert names == ["IDRiD_02.jpg", "IDRiD_03.jpg", "IDRiD_01.jpg"]  # nearest first
    assert not any(s.from_cache for _, s in seen.results)
    assert all(s.model_sha256 == segmenter.model.sha256 for _, s in seen.results)
    [(path, message, kind)] = seen.failures
    assert Path(path).name == "IDRiD_04.jpg" and kind == "unreadable"
    assert "truncated" in message
    for p, summary in seen.results:
        library.set_prediction(p, summary.lesion_count, summary.uncertainty)
    library.set_failed(path, message, unreadable=kind == "unreadable")
    assert [e.prediction_state for e in library] == ["done", "done", "done", "failed"]

    # Reopening the folder: every prediction comes from the cache, the model never runs.
    monkeypatch.setattr(segmenter.backend, "run", no_model)
    again = PreannotationJob(segmenter, cache, order)
    seen_again = Recorder(again)
    with qtbot.waitSignal(again.finished, timeout=TIMEOUT_MS):
        again.start()
    assert seen_again.progress[-1] == (4, 4)
    assert all(s.from_cache for _, s in seen_again.results)
    assert [s for _, s in seen_again.results] == [
        PredictionSummary(**{**s.__dict__, "from_cache": True}) for _, s in seen.results
    ]
    # Only the broken file is tried again (failures are not cached); it fails in reading,
    # before the model (which would have raised).
    assert [Path(p).name for p in seen_again.started] == ["IDRiD_04.jpg"]
    assert [k for _, _, k in seen_again.failures] == ["unreadable"]

    # Opening a photo: decoded and rebuilt off the GUI thread, from the cache.
    loader = PhotoLoader(ReviewSession(segmenter=segmenter, cache=cache))
    with qtbot.waitSignal(loader.loaded, timeout=TIMEOUT_MS) as loaded:
        loader.request(folder / "IDRiD_02.jpg")
    opened = loaded.args[1]
    assert isinstance(opened, OpenedPhoto)
    assert opened.from_cache and opened.prediction is not None
    assert opened.document.mask.shape == (2848, 4288)
    with qtbot.waitSignal(loader.load_failed, timeout=TIMEOUT_MS) as failed:
        loader.request(folder / "IDRiD_04.jpg")
    assert "truncated" in failed.args[1]


def test_cancel_stops_early(qtbot: Any, folder: Path, tmp_path: Path, segmenter: Segmenter) -> None:
    paths = [str(folder / f"IDRiD_0{n}.jpg") for n in (1, 2, 3)]
    job = PreannotationJob(segmenter, PredictionCache(tmp_path / "cache"), paths, chunk=1)
    seen = Recorder(job)
    job.result.connect(lambda *_: job.cancel())  # the reviewer cancels after the first photo
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT_MS) as finished:
        job.start()
    assert finished.args == [True]
    assert 1 <= len(seen.results) < 3  # at most the photo already on the model finishes
    assert seen.progress[-1][0] < seen.progress[-1][1] == 3
    assert job.remaining()  # what was not reached is still queued


def test_prioritise_moves_queued_photos_first(segmenter: Segmenter) -> None:
    job = PreannotationJob(segmenter, None, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    job.prioritise(["c.jpg", "x.jpg", "a.jpg"])  # x is not in this job: ignored
    assert job.remaining() == ["c.jpg", "a.jpg", "b.jpg", "d.jpg"]
    job.enqueue(["b.jpg", "e.jpg"])  # b already queued
    assert job.remaining() == ["c.jpg", "a.jpg", "b.jpg", "d.jpg", "e.jpg"] and job.total == 5


def test_only_the_latest_photo_request_is_delivered(qtbot: Any, folder: Path) -> None:
    loader = PhotoLoader(ReviewSession())  # no model: open only
    delivered: list[str] = []
    loader.loaded.connect(lambda path, _opened: delivered.append(Path(path).name))
    with qtbot.waitSignal(loader.loaded, timeout=TIMEOUT_MS):
        loader.request(folder / "IDRiD_01.jpg")
        loader.request(folder / "IDRiD_02.jpg")
        loader.request(folder / "IDRiD_03.jpg")
    # earlier requests finished before the latest one, so their deliveries came first
    assert delivered == ["IDRiD_03.jpg"]


def test_task_runner_reports_results_and_errors(qtbot: Any) -> None:
    runner = TaskRunner()
    with qtbot.waitSignal(runner.done) as done:
        token = runner.submit(sum, [1, 2, 3])
    assert done.args == [token, 6]
    with qtbot.waitSignal(runner.error) as error:
        runner.submit(int, "not a number")
    assert "invalid literal" in error.args[1]


def test_photo_list_shows_thumbnails_errors_and_moves_by_key(qtbot: Any, folder: Path) -> None:
    widget = PhotoListWidget(thumbnail_dir=folder.parent / "thumbs")
    qtbot.addWidget(widget)
    widget.resize(360, 500)
    library = PhotoLibrary.scan(folder)
    for i, (n, u) in enumerate(((4, 0.01), (9, 0.05), (0, 0.20))):
        library.set_prediction(library[i].path, n, u)
    with qtbot.waitSignal(widget.thumbnails.failed, timeout=TIMEOUT_MS) as broken:
        widget.set_library(library)
        widget.show()  # painting asks for the thumbnails
    assert Path(broken.args[0]).name == "IDRiD_04.jpg" and "truncated" in broken.args[1]
    qtbot.waitUntil(lambda: all(widget.thumbnails.pixmap(str(e.path)) for e in library.entries[:3]))
    model = widget.model
    row = model.row_of(library[3].path)
    assert row is not None and library[3].has_error and library[3].unreadable
    tooltip = model.index(row, 0).data(0x03)  # ToolTipRole: the reader's message
    assert "truncated" in tooltip

    widget.filter_combo.setCurrentIndex(widget.filter_combo.findData("error"))
    assert [model.index(r, 0).data(PathRole) for r in range(model.rowCount())] == [
        str(library[3].path)
    ]
    widget.filter_combo.setCurrentIndex(widget.filter_combo.findData(None))
    widget.sort_combo.setCurrentIndex(widget.sort_combo.findData("lesions"))
    assert [Path(e.path).name for e in model.rows()] == [
        "IDRiD_02.jpg",
        "IDRiD_01.jpg",
        "IDRiD_03.jpg",
        "IDRiD_04.jpg",
    ]
    assert widget.set_current(library[1].path)
    assert widget.current_path() == str(library[1].path)
    with qtbot.waitSignal(widget.current_changed) as changed:
        widget.next_action.trigger()
    assert Path(changed.args[0]).name == "IDRiD_01.jpg"
    with qtbot.waitSignal(widget.current_changed) as changed:
        widget.previous_action.trigger()
    assert Path(changed.args[0]).name == "IDRiD_02.jpg"
    assert not widget.grab().isNull()  # the delegate paints every kind of row


def test_preannotation_leaves_a_reviewers_label_as_it_is(
    qtbot: Any, tmp_path: Path, segmenter: Segmenter
) -> None:
    """Pre-annotation fills the prediction cache only: a reviewer's label in the folder keeps
    its bytes, and the photo opens with the reviewer's mask, not the new suggestion."""
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = photos / "IDRiD_02.jpg"
    shutil.copyfile(idrid_photo(2), photo)
    session = ReviewSession()  # no model: the reviewer drew this one by hand
    doc = session.open(photo).document
    doc.begin_stroke()
    doc.stroke_to(1000, 1000, 40, True)
    doc.end_stroke()
    session.save(doc, reviewer="dr.kim")
    label = photos / "hemaview-labels"
    before = {p.name: p.read_bytes() for p in label.iterdir() if p.is_file()}
    cache = PredictionCache(tmp_path / "cache")
    job = PreannotationJob(segmenter, cache, [str(photo)], chunk=1)
    seen = Recorder(job)
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT_MS):
        job.start()
    assert [Path(p).name for p, _ in seen.results] == ["IDRiD_02.jpg"]
    assert {p.name: p.read_bytes() for p in label.iterdir() if p.is_file()} == before
    opened = ReviewSession(segmenter=segmenter, cache=cache).open(photo)
    assert opened.from_cache and opened.document.status == "in_review"
    assert np.array_equal(opened.document.mask, doc.mask)
