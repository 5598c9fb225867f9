"""The batch engine's guarantees, through Segmenter.predict_many and a local-only Dispatcher
(the remote lanes are tested against a real server in test_dispatch.py).

The model is the small twin of the real one (working size 128) on synthetic fundus-like
photos, so each run takes a second or two.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_dispatch import fundus_like
from triton_server import derive_model

from inference import HemaviewError, PhotoFailure, Prediction, Segmenter
from inference.cancel import Cancel, wait_until
from inference.dispatch import Dispatcher, overflow_share
from inference.pipeline import Run

PHOTOS = [fundus_like(k) for k in range(6)]


@pytest.fixture(scope="module")
def small(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Segmenter]:
    path = derive_model(
        model_path, tmp_path_factory.mktemp("model") / "small.onnx", working_size=128
    )
    seg = Segmenter.open(path, backend="cpu")
    yield seg
    seg.close()


class Bug(BaseException):
    """Not an Exception: what no per-photo handler catches (a bug, an interrupt)."""


class BreaksOnce(Segmenter):
    """The real segmenter, whose post-processing raises on its `at`-th call."""

    def __init__(self, seg: Segmenter, at: int, error: BaseException):
        super().__init__(seg.model, seg.backend)
        self.at, self.error, self.calls = at, error, 0

    def finish(self, *args: Any, **kwargs: Any) -> Prediction:
        self.calls += 1  # one lane finishes photos one at a time
        if self.calls == self.at:
            raise self.error
        return super().finish(*args, **kwargs)


def watched_progress() -> tuple[list[tuple[int, int]], Any]:
    seen: list[tuple[int, int]] = []
    return seen, lambda done, total: seen.append((done, total))


def test_a_photo_whose_post_processing_fails_fails_alone_and_once(small: Segmenter) -> None:
    seg = BreaksOnce(small, at=2, error=RuntimeError("the post-processing broke"))
    seen, progress = watched_progress()
    results = list(seg.predict_many(PHOTOS, batch_size=3, progress=progress))
    assert [id(source) for source, _ in results] == [id(p) for p in PHOTOS]  # input order
    kinds = [type(r).__name__ for _, r in results]
    assert kinds == ["Prediction", "PhotoFailure", *["Prediction"] * 4]
    failure = results[1][1]
    assert isinstance(failure, PhotoFailure) and "the post-processing broke" in failure.message
    assert seen == [(k, 6) for k in range(1, 7)]


def test_a_lane_that_dies_mid_chunk_fails_only_what_it_had_not_delivered(
    small: Segmenter,
) -> None:
    """The lane's bug escapes every per-photo handler in the middle of a batch of three:
    the photo already delivered stays delivered, every other photo fails once."""
    seg = BreaksOnce(small, at=2, error=Bug("a bug in post-processing"))
    seen, progress = watched_progress()
    results = list(seg.predict_many(PHOTOS, batch_size=3, progress=progress))
    assert len(results) == len(PHOTOS)
    assert len({id(source) for source, _ in results}) == len(PHOTOS)  # each photo once
    assert isinstance(results[0][1], Prediction) and results[0][0] is PHOTOS[0]
    failures = [r for _, r in results[1:]]
    assert all(isinstance(f, PhotoFailure) and "internal error" in f.message for f in failures)
    assert seen == [(k, 6) for k in range(1, 7)]  # never past the total
    # the Dispatcher runs the same engine: the same guarantees, and a report that adds up
    dispatcher = Dispatcher(BreaksOnce(small, at=2, error=Bug("a bug in post-processing")))
    seen, progress = watched_progress()
    outcomes = list(dispatcher.run(PHOTOS, progress=progress))
    assert sorted(r.index for r in outcomes) == list(range(6))
    report = dispatcher.last_report
    assert report is not None and (report.local, report.failed) == (1, 5)
    assert seen == [(k, 6) for k in range(1, 7)]


def test_a_failing_model_fails_its_batch_and_says_why(small: Segmenter) -> None:
    class Broken:
        device, reason, preferred_batch = "cpu", "a broken session", 2

        def run(self, batch: np.ndarray) -> np.ndarray:
            raise HemaviewError("onnxruntime: out of memory")

        def close(self) -> None:
            pass

    seg = Segmenter(small.model, Broken())  # type: ignore[arg-type]
    results = [r for _, r in seg.predict_many(PHOTOS[:3])]
    assert all(isinstance(r, PhotoFailure) and "out of memory" in r.message for r in results)


def test_closing_the_iterator_ends_the_run(small: Segmenter) -> None:
    before = {t.name for t in threading.enumerate()}
    iterator = small.predict_many(PHOTOS * 3, batch_size=2)
    next(iterator)
    iterator.close()  # joins the run's threads
    lanes = {t.name for t in threading.enumerate() if t.name.startswith("hemaview-")}
    assert lanes <= before


def test_a_cancel_flag_wakes_its_listeners() -> None:
    cancel = Cancel()
    heard: list[str] = []
    forget = cancel.listen(lambda: heard.append("first"))
    cancel.listen(lambda: heard.append("second"))
    forget()
    cancel.set()
    assert heard == ["second"]
    cancel.listen(lambda: heard.append("late"))  # already set: called at once
    assert heard == ["second", "late"]
    # a wait ends when the flag is set from another thread, whenever that happens
    done, flag = threading.Event(), Cancel()
    threading.Thread(target=flag.set).start()
    wait_until(done, flag, done.set)
    assert done.is_set()


def test_predict_many_stops_at_once_with_a_cancel_flag(small: Segmenter) -> None:
    cancel = Cancel()
    got = []
    for _, result in small.predict_many(PHOTOS, cancel=cancel):
        got.append(result)
        cancel.set()
    assert len(got) == 1


def test_lanes_take_the_line_from_both_ends_and_photos_handed_back_go_first(
    small: Segmenter,
) -> None:
    run = Run(small, PHOTOS)
    assert [i.index for i in run.take_front(2)] == [0, 1]
    back = run.take_back(2)
    assert [i.index for i in back] == [5, 4] and run.waiting() == 2
    run.hand_back(back, "the server is full")
    # photos handed back go to the front lane, before the line, and only to it
    assert run.take_front(3, line=False) == back and all(i.note for i in back)
    assert run.take_front(1, line=False) == []
    assert [i.index for i in run.take_back(5)] == [3, 2] and run.waiting() == 0
    assert run.take_front(4) == [] and not run.done()


def test_a_lane_waiting_for_a_change_misses_none(small: Segmenter) -> None:
    """What a lane looked at after `mark` may change before it waits: the wait ends at once."""
    run = Run(small, PHOTOS)
    mark = run.mark()
    run.changed()  # e.g. an overflow's state changed while the lane was deciding
    waiter = threading.Thread(target=run.wait_change, args=(mark,))
    waiter.start()
    waiter.join(timeout=30)  # a guard against a hang, not a timing
    assert not waiter.is_alive()
    mark = run.mark()
    waiter = threading.Thread(target=run.wait_change, args=(mark,))
    waiter.start()
    run.take_back(1)  # any change to the line wakes it
    waiter.join(timeout=30)
    assert not waiter.is_alive()


def test_the_overflow_follows_the_local_rate_and_the_clock() -> None:
    # nothing known about the local lane yet: everything stays here until it has run
    assert overflow_share(
        waiting=10, local_holding=0, now=0, deadline=1, seconds_per_photo=None, local_batch=None
    ) == (0, None)
    # 0.1 s a photo, 1 s left: the local lane keeps 10, the rest may go
    share, _ = overflow_share(
        waiting=14, local_holding=0, now=0, deadline=1, seconds_per_photo=0.1, local_batch=None
    )
    assert share == 4
    # 4 waiting and time for 10: none now; the first may go when only 3 more fit here
    share, wake = overflow_share(
        waiting=4, local_holding=0, now=0, deadline=1, seconds_per_photo=0.1, local_batch=None
    )
    assert share == 0 and wake is not None and wake == pytest.approx(0.7, abs=2e-3)
    share, _ = overflow_share(
        waiting=4, local_holding=0, now=wake, deadline=1, seconds_per_photo=0.1, local_batch=None
    )
    assert share == 1
    # a first batch of one photo running for 0.5 s already: at least that slow
    share, _ = overflow_share(
        waiting=4, local_holding=1, now=0.5, deadline=1, seconds_per_photo=None,
        local_batch=(0.0, 1),
    )  # fmt: skip
    assert share == 4
    # past the deadline, everything waiting may go
    share, _ = overflow_share(
        waiting=5, local_holding=0, now=2, deadline=1, seconds_per_photo=0.1, local_batch=None
    )
    assert share == 5


def test_a_batch_gives_what_one_photo_at_a_time_gives_to_the_last_bit(
    segmenter: Segmenter,
) -> None:
    """Full-size real photos through the pipeline (post-processing on its own thread, batches
    of two) and through `predict`: the same maps, masks, lesions and provenance."""
    from conftest import idrid_photo

    photos = [idrid_photo(n) for n in (3, 17, 29)]  # many lesions, the densest, the sparsest
    many = dict(segmenter.predict_many(photos, batch_size=2))
    for photo in photos:
        alone, batched = segmenter.predict(photo), many[photo]
        assert isinstance(batched, Prediction)
        assert np.array_equal(alone.working, batched.working)
        assert np.array_equal(alone.probability, batched.probability)
        assert np.array_equal(alone.mask, batched.mask)
        assert alone.lesions == batched.lesions and alone.uncertainty == batched.uncertainty
        assert replace(alone.provenance, timings_ms={}) == replace(
            batched.provenance, timings_ms={}
        )
