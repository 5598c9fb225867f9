"""One batch engine: prepare (read, preprocess) -> run (a backend) -> finish (post-process).

A `Run` holds the photos of one request in a line. Lanes take photos from it, each with its
own backend: the local lane (`local_lane`, here) from the front, remote lanes
(inference.dispatch) from the back. Reading and preprocessing run ahead in worker threads,
so a backend is rarely left waiting for the disk; a lane stacks what is ready into one
batch, runs it, and finishes each photo into a Prediction (the local lane on a thread of its
own, while its next batch runs). The caller takes the results from one iterator, and a run
holds to this:

- every photo gets exactly one result: a photo that fails anywhere (reading, the model,
  post-processing) fails alone and once, and a result once delivered is never replaced;
- progress counts delivered results, so it ends at the total and never passes it;
- cancelling (the caller's flag, or closing the iterator) stops every lane: queued photos
  are not started and requests in flight are cancelled; photos not finished get no result;
- nobody polls: lanes and the caller wait on the run's one condition, notified whenever
  the line, the results, the run's state or a watcher's state (`Run.changed`) change
  (inference.cancel has the one exception).

`Segmenter.predict_many` is a run with the local lane alone: its results come in input
order. `Dispatcher` adds remote lanes, and the time budget that says what they may take.

Lanes use `Run`'s lane API, never its state: take from the front or the back, hand back
to the front, wait for a change (`mark`, then `wait_change`). An overflow hears the local
lane through a `LocalWatch` (may it take the line, what it holds and runs, a batch its
model failed on, to retry elsewhere) and keeps that state itself, calling `Run.changed`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from inference.backends.base import Backend
from inference.cancel import PLAIN_EVENT_CHECK_S, Cancel
from inference.errors import BackendError, HemaviewError
from inference.photo_io import Photo
from inference.prediction import PhotoFailure, PhotoSource, Prediction, source_name
from inference.preprocess import Preprocessed

#: results finished but not yet taken by the caller: full-size maps are large, so the lanes
#: wait for a slow caller rather than pile them up
MAX_UNCONSUMED = 8

Prepared = tuple[Photo, Preprocessed, dict[str, float]]


class Stages(Protocol):
    """The two ends of the pipeline (a Segmenter): CPU work, safe in worker threads."""

    def prepare(self, source: PhotoSource | Photo, *, force: bool = False) -> Prepared: ...

    def finish(
        self,
        photo: Photo,
        prepared: Preprocessed,
        working_probability: np.ndarray,
        timings: dict[str, float],
        threshold: float | None = None,
        device: str | None = None,
        device_reason: str | None = None,
    ) -> Prediction: ...


@dataclass(frozen=True)
class PhotoResult:
    """One photo's outcome, as it finished."""

    index: int  # position in the request
    source: PhotoSource
    result: Prediction | PhotoFailure
    ran_on: str  # "local", "remote", or "" when the photo failed before any model ran
    note: str = ""  # e.g. why a photo came back from the remote

    @property
    def ok(self) -> bool:
        return isinstance(self.result, Prediction)


@dataclass
class RunReport:
    """What a run did, for a summary line and the logs."""

    total: int = 0
    local: int = 0
    remote: int = 0
    failed: int = 0
    returned: int = 0  # photos the remote gave back that then ran locally
    cancelled: bool = False
    budget_s: float = 0.0
    elapsed_s: float = 0.0
    local_photos_per_s: float | None = None
    remote_configured: bool = False
    remote_used: bool = False
    remote_problem: str = ""  # why the remote stopped being used, if it did
    remote_errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.local + self.remote} of {self.total} photos in {self.elapsed_s:.1f} s"]
        if self.remote_configured:
            parts.append(f"{self.local} here, {self.remote} on the server")
        if self.returned:
            parts.append(f"{self.returned} sent back from the server")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.cancelled:
            parts.append("cancelled")
        text = ", ".join(parts)
        if self.remote_problem:
            text += f" (server: {self.remote_problem})"
        return text


class Item:
    """One photo of a run, from the line to its result."""

    __slots__ = ("index", "note", "prepared", "source")

    def __init__(self, index: int, source: PhotoSource):
        self.index = index
        self.source = source
        self.prepared: Prepared | None = None  # kept when a photo moves between lanes
        self.note = ""  # why it came back from the remote


class LocalWatch(Protocol):
    """What the local lane tells, and asks, a watcher beside it (the overflow to a remote in
    inference.dispatch). Each call takes the watcher's own lock, never the run's."""

    def takes_line(self) -> bool:
        """May the local lane take photos from the line (else only those handed back)?"""

    def hold(self, change: int) -> None:
        """The photos the local lane has claimed and not yet finished grew by `change`."""

    def running(self, batch: tuple[float, int] | None, *, released: int = 0) -> None:
        """The (start, photos) of the batch the local lane runs now, or None between
        batches; `released` photos of the batch just ended are no longer held."""

    def retry(self, items: Sequence[Item], reason: str) -> bool:
        """The local model failed on `items`: True when another lane takes them on."""


#: a photo claimed by a lane, with its preparation (running ahead, or done)
Claimed = tuple[Item, "Future[Prepared]"]
#: a claimed photo once its preparation ended: None, or why it failed
Collected = tuple[Item, PhotoFailure | None]


class Run:
    """One request: the line of photos, the lanes that take from it, the caller's results.

    The line, the results and the counters are guarded by one condition; every change
    notifies it and moves the change count that `mark` and `wait_change` read.
    """

    def __init__(
        self,
        stages: Stages,
        sources: Iterable[PhotoSource],
        *,
        threshold: float | None = None,
        force: bool = False,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
        prepare_workers: int = 2,
        max_unconsumed: int = MAX_UNCONSUMED,
    ):
        self.stages = stages
        self.threshold = threshold
        self.force = force
        self.user_cancel = cancel
        self.progress = progress
        self.max_unconsumed = max(1, max_unconsumed)
        self._items = [Item(i, s) for i, s in enumerate(sources)]
        self.total = len(self._items)
        self._cond = threading.Condition()
        self._line: deque[Item] = deque(self._items)  # front: the local lane; back: remote lanes
        self._handed_back: deque[Item] = deque()  # another lane gave these back: front first
        self._changes = 0  # moves on every notification (`mark`, `wait_change`)
        self._finished = 0
        self._emitted: set[int] = set()
        self._out: deque[PhotoResult] = deque()
        self.report = RunReport(total=self.total)
        self.start = 0.0  # when the caller started taking results (set before any lane)
        self.stop = Cancel()  # set when the run ends, however it ends
        self.stop.listen(self._wake)
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, prepare_workers), thread_name_prefix="hemaview-prepare"
        )
        self._lanes: list[tuple[str, Callable[[], None]]] = []
        self._live = 0
        self._at_end: list[Callable[[], None]] = []

    def add_lane(self, name: str, lane: Callable[[], None]) -> None:
        self._lanes.append((name, lane))

    def at_end(self, hook: Callable[[], None]) -> None:
        """Call `hook` once every lane has ended and the report is complete."""
        self._at_end.append(hook)

    # --- the lane API (each call takes the run's lock itself)

    def done(self) -> bool:
        """Every photo has its result."""
        with self._cond:
            return self._finished >= self.total

    def waiting(self) -> int:
        """Photos in the line, not yet taken by any lane (handed-back ones not counted)."""
        with self._cond:
            return len(self._line)

    def take_front(self, most: int, *, line: bool = True) -> list[Item]:
        """Up to `most` photos for the front lane: those handed back first, then (with
        `line`) from the front of the line."""
        with self._cond:
            taken: list[Item] = []
            while len(taken) < most and self._handed_back:
                taken.append(self._handed_back.popleft())
            while line and len(taken) < most and self._line:
                taken.append(self._line.popleft())
            if taken:
                self._notify()
            return taken

    def take_back(self, most: int) -> list[Item]:
        """Up to `most` photos from the back of the line."""
        with self._cond:
            taken = [self._line.pop() for _ in range(min(most, len(self._line)))]
            if taken:
                self._notify()
            return taken

    def hand_back(self, items: Sequence[Item], note: str) -> None:
        """Photos a lane could not run go to the front lane, preparation kept; `note` says
        why, on their results."""
        with self._cond:
            for item in items:
                item.note = note
                self._handed_back.append(item)
            self._notify()

    def mark(self) -> int:
        """The change count now: read it before looking at anything a lane may wait on."""
        with self._cond:
            return self._changes

    def wait_change(self, mark: int, timeout: float | None = None) -> None:
        """Wait until anything changed since `mark`, the run stopped, or `timeout` passed."""
        with self._cond:
            self._cond.wait_for(lambda: self._changes != mark or self.stop.is_set(), timeout)

    def changed(self) -> None:
        """Wake the lanes: state outside the run that they wait on has changed."""
        with self._cond:
            self._notify()

    def _notify(self) -> None:  # with the lock held
        self._changes += 1
        self._cond.notify_all()

    def _wake(self) -> None:
        self.changed()

    # --- preparing, delivering, failing (any lane)

    def prepare(self, item: Item) -> Future[Prepared]:
        if item.prepared is not None:
            ready: Future[Prepared] = Future()
            ready.set_result(item.prepared)
            return ready
        return self.pool.submit(self.stages.prepare, item.source, force=self.force)

    def collect(self, claimed: Sequence[Claimed]) -> list[Collected]:
        """Wait for preparation; a photo that cannot be read fails on neither side."""
        collected: list[Collected] = []
        for item, future in claimed:
            try:
                item.prepared = future.result()
            except Exception as exc:
                collected.append((item, self.failure(item, exc)))
            else:
                collected.append((item, None))
        return collected

    def deliver(
        self,
        collected: Sequence[Collected],
        working: np.ndarray,
        backend: Backend,
        ran_on: str,
        model_ms: float,
    ) -> None:
        """Finish and deliver a batch in claim order: `working` holds one map per photo that
        was prepared. A photo whose post-processing fails fails alone."""
        k = 0
        for item, failure in collected:
            if failure is not None:
                self.emit(item, failure, "")
                continue
            assert item.prepared is not None
            photo, prepared, timings = item.prepared
            reason = f"{backend.reason} ({item.note})" if item.note else backend.reason
            try:
                prediction = self.stages.finish(
                    photo,
                    prepared,
                    working[k],
                    {**timings, "model": model_ms},
                    self.threshold,
                    device=backend.device,
                    device_reason=reason,
                )
            except Exception as exc:
                self.emit(item, self.failure(item, exc), "")
            else:
                self.emit(item, prediction, ran_on)
            k += 1

    def emit_failures(self, collected: Sequence[Collected]) -> list[Item]:
        """Deliver the photos that failed preparation; returns the prepared ones."""
        ready = []
        for item, failure in collected:
            if failure is None:
                ready.append(item)
            else:
                self.emit(item, failure, "")
        return ready

    def emit(self, item: Item, result: Prediction | PhotoFailure, ran_on: str) -> None:
        """Deliver one result, once per photo; waits while the caller is behind."""
        with self._cond:
            while len(self._out) >= self.max_unconsumed and not self.stop.is_set():
                self._cond.wait()
            if item.index in self._emitted or self.stop.is_set():
                return
            self._emitted.add(item.index)
            self._finished += 1
            if isinstance(result, PhotoFailure):
                self.report.failed += 1
            elif ran_on == "remote":
                self.report.remote += 1
            else:
                self.report.local += 1
                if item.note:
                    self.report.returned += 1
            self._out.append(PhotoResult(item.index, item.source, result, ran_on, item.note))
            item.prepared = None  # the result holds what the caller needs; free the rest
            self._notify()

    def failure(self, item: Item, exc: BaseException, prefix: str = "") -> PhotoFailure:
        name = source_name(item.source)
        error = (
            exc
            if isinstance(exc, HemaviewError)
            else HemaviewError(f"{name}: unexpected error ({type(exc).__name__}: {exc})")
        )
        return PhotoFailure(name, f"{prefix}{error}", error)

    def fail(self, item: Item, exc: BaseException, prefix: str = "") -> None:
        self.emit(item, self.failure(item, exc, prefix), "")

    # --- the caller's side

    def results(self) -> Generator[PhotoResult, None, None]:
        """Results as they finish; the run ends when this ends (or is closed)."""
        self.start = time.monotonic()
        threads = [
            threading.Thread(target=self._lane_main, args=(lane,), name=f"hemaview-{name}")
            for name, lane in self._lanes
        ]
        self._live = len(threads)
        forget = (
            self.user_cancel.listen(self._wake)
            if isinstance(self.user_cancel, Cancel)
            else (lambda: None)
        )
        for thread in threads:
            thread.daemon = True
            thread.start()
        delivered = 0
        try:
            while delivered < self.total:
                with self._cond:
                    while not self._out and self._live and not self._cancelled():
                        self._wait()
                    if self._cancelled():
                        self.report.cancelled = True
                        break
                    if not self._out:
                        break  # every lane has ended: nothing more will come
                    result = self._out.popleft()
                    self._notify()  # room for a lane waiting to deliver
                delivered += 1
                if self.progress is not None:
                    self.progress(delivered, self.total)
                yield result
        except GeneratorExit:
            self.report.cancelled = True
            raise
        finally:
            forget()
            self.stop.set()
            for thread in threads:
                thread.join()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self._finalise()

    def _cancelled(self) -> bool:
        return self.user_cancel is not None and self.user_cancel.is_set()

    def _wait(self) -> None:
        if self.user_cancel is None or isinstance(self.user_cancel, Cancel):
            self._cond.wait()  # a Cancel wakes us when set
        else:
            self._cond.wait(PLAIN_EVENT_CHECK_S)  # a plain Event cannot

    def _lane_main(self, lane: Callable[[], None]) -> None:
        """A lane that dies must not take its photos with it: they fail with the reason."""
        try:
            lane()
        except BaseException as exc:  # a bug, reported per photo
            with self._cond:
                left = [i for i in self._items if i.index not in self._emitted]
            for item in left:
                self.fail(item, exc, prefix="internal error: ")
        finally:
            with self._cond:
                self._live -= 1
                self._notify()

    def _finalise(self) -> None:
        self.report.elapsed_s = time.monotonic() - self.start
        if not self.report.cancelled and self._finished < self.total:
            # cannot happen while the lanes hold to their contract; say so rather than hide it
            self.report.failed += self.total - self._finished
        for hook in self._at_end:
            hook()


def local_lane(
    run: Run,
    backend: Backend,
    *,
    batch: int,
    prefetch: int,
    on_rate: Callable[[float], None] | None = None,
    watch: LocalWatch | None = None,
) -> None:
    """Take photos from the front of the line (photos handed back first), `prefetch` beyond a
    batch prepared ahead; run them in batches on `backend`, each batch post-processed on a
    thread of its own while the next one runs (`_Finisher`). `on_rate` hears the seconds per
    photo of each batch as delivered (preparation waited for, the model, post-processing);
    `watch` (an overflow) hears what the lane holds and runs, and may take failed batches."""
    batch = max(1, batch)
    ahead = batch + max(0, prefetch)
    pending: deque[Claimed] = deque()
    finisher = _Finisher(run, on_rate, watch)
    try:
        while True:
            while True:
                mark = run.mark()  # before looking: a change after it ends the wait below
                if run.stop.is_set():
                    return
                if len(pending) < ahead:
                    takes_line = watch is None or watch.takes_line()
                    taken = run.take_front(ahead - len(pending), line=takes_line)
                    if taken and watch is not None:
                        watch.hold(len(taken))
                    pending.extend((item, run.prepare(item)) for item in taken)
                if pending:
                    break
                if run.done():
                    return
                run.wait_change(mark)
            group = [pending.popleft() for _ in range(min(batch, len(pending)))]
            t0 = time.monotonic()
            if watch is not None:
                watch.running((t0, len(group)))  # a remote lane may now judge this lane's speed
            collected = run.collect(group)
            ready = [item for item, failure in collected if failure is None]
            handed_over = False
            if ready:
                handed_over = _run_local(run, backend, collected, ready, t0, finisher, watch)
            else:
                finisher.wait()  # results leave in the order the photos were claimed
                run.emit_failures(collected)
            if watch is not None:
                # once handed over, the finisher lets go of the photos when they are delivered
                watch.running(None, released=0 if handed_over else len(group))
    finally:
        for _, future in pending:
            future.cancel()
        finisher.close()


def _run_local(
    run: Run,
    backend: Backend,
    collected: list[Collected],
    ready: list[Item],
    t0: float,
    finisher: _Finisher,
    watch: LocalWatch | None,
) -> bool:
    """Run one batch; True when it went on to the finisher."""
    t_model = time.monotonic()
    try:
        working = backend.run(stack(ready))
    except Exception as exc:
        finisher.wait()
        run.emit_failures(collected)
        reason = str(exc) if isinstance(exc, HemaviewError) else f"the model failed: {exc}"
        if watch is not None and watch.retry(ready, reason):  # the remote may still run them
            return False
        for item in ready:
            error = exc if isinstance(exc, HemaviewError) else BackendError(reason)
            message = f"{source_name(item.source)}: {reason}"
            run.emit(item, PhotoFailure(source_name(item.source), message, error), "")
        return False
    model_ms = (time.monotonic() - t_model) * 1e3 / len(ready)
    finisher.hand_over(collected, working, backend, model_ms, t0)
    return True


class _Finisher:
    """Post-processes the local lane's batches on one thread of its own, one batch behind the
    model: on a full-size photo post-processing costs about half a small model's run, and so
    it overlaps the next batch instead of adding to it. One batch at a time, in claim order,
    so results still leave in that order; a lane waits for the batch before its own to be
    delivered before it hands over the next (or emits anything itself)."""

    def __init__(self, run: Run, on_rate: Callable[[float], None] | None, watch: LocalWatch | None):
        self.run, self.on_rate, self.watch = run, on_rate, watch
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hemaview-finish")
        self.last: Future[None] | None = None
        self.delivered_at = 0.0

    def hand_over(
        self,
        collected: list[Collected],
        working: np.ndarray,
        backend: Backend,
        model_ms: float,
        t0: float,
    ) -> None:
        self.wait()
        self.last = self.pool.submit(self._deliver, collected, working, backend, model_ms, t0)

    def wait(self) -> None:
        """Until the batch handed over last is delivered; a bug in its post-processing (what
        no per-photo handler catches) is raised here, in the lane."""
        last, self.last = self.last, None
        if last is not None:
            last.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)

    def _deliver(
        self,
        collected: list[Collected],
        working: np.ndarray,
        backend: Backend,
        model_ms: float,
        t0: float,
    ) -> None:
        try:
            self.run.deliver(collected, working, backend, "local", model_ms)
        finally:
            if self.watch is not None:
                self.watch.hold(-len(collected))
        now = time.monotonic()
        if self.on_rate is not None:
            # from the later of the batch's start and the previous delivery: with batches
            # overlapping, that is this lane's pace, not one batch's latency
            ready = sum(1 for _, failure in collected if failure is None)
            self.on_rate((now - max(t0, self.delivered_at)) / max(ready, 1))
        self.delivered_at = now


def stack(items: Sequence[Item]) -> np.ndarray:
    images = []
    for item in items:
        assert item.prepared is not None
        images.append(item.prepared[1].image)
    return np.stack(images)
