"""Local first, remote on overflow: split a request for N photos by a time budget.

The local backend takes what its measured throughput can finish within the budget (by
default the clinic's bar: 10 photos per second, so N / 10 seconds); the rest goes to a
remote Triton server when one is configured. The split is not fixed up front. The photos
wait in one line: the local lane takes from the front, and the remote lanes take from the
back only while more photos are waiting than the local lane can still finish before the
deadline, at the rate it has shown so far. A local lane slower than expected therefore
hands more to the remote as the run goes on, a faster one keeps more, and after the
deadline both simply work until the line is empty.

If the remote fails, times out, answers with an error, is full or goes away, its photos
come back to the local lane (with their preprocessing kept), so every photo gets exactly
one result, and each result says where it ran and, for a photo that came back, why.
A photo fails only if neither side could process it. Photos leave the machine only when
a remote is configured, and then only as the preprocessed pixels: the backend sends the
uint8 tensor and nothing else.

    dispatcher = Dispatcher(segmenter, remote=RemoteConfig.parse("gpu-server:8001"))
    for item in dispatcher.run(paths, cancel=event):
        ...  # item.result is a Prediction or a PhotoFailure; item.ran_on "local"/"remote"
    dispatcher.last_report.summary()

`remote_health(config, model)` answers a status bar's question in one sentence.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.backends.triton_remote import TritonBackend
from inference.errors import HemaviewError
from inference.photo_io import Photo
from inference.preprocess import Preprocessed
from inference.remote import RemoteConfig, RemoteError, RemoteErrorKind, remote_health
from inference.segmenter import PhotoFailure, PhotoSource, Prediction, Segmenter

#: the clinic's bar: 10 photos in under a second
DEFAULT_PHOTOS_PER_SECOND = 10.0
#: consecutive "server full" answers after which a run stops offering photos to it
MAX_FULL_RETRIES = 8
#: results finished but not yet taken by the caller: full-size maps are large, so the lanes
#: wait for a slow caller rather than pile them up
MAX_UNCONSUMED = 8

__all__ = [
    "DEFAULT_PHOTOS_PER_SECOND",
    "DispatchReport",
    "DispatchResult",
    "Dispatcher",
    "RemoteConfig",
    "RemoteError",
    "remote_health",
]

Prepared = tuple[Photo, Preprocessed, dict[str, float]]


@dataclass(frozen=True)
class DispatchResult:
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
class DispatchReport:
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


class _Item:
    __slots__ = ("index", "note", "prepared", "source", "tried_local")

    def __init__(self, index: int, source: PhotoSource):
        self.index = index
        self.source = source
        self.prepared: Prepared | None = None
        self.note = ""
        self.tried_local = ""  # the local failure, for a photo handed to the remote


class Dispatcher:
    """Runs requests for many photos on the local backend, overflowing to a Triton server.

    `budget_s`: seconds a request may take; None means N / `photos_per_second`. 0 sends
    everything it can to the remote (the local lane then only takes what comes back).
    The local throughput it measures is kept between runs. One run at a time: a viewer
    keeps one Dispatcher per worker thread.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        remote: RemoteConfig | None = None,
        *,
        budget_s: float | None = None,
        photos_per_second: float = DEFAULT_PHOTOS_PER_SECOND,
        prepare_workers: int = 2,
        prefetch: int = 2,
    ):
        if budget_s is not None and budget_s < 0:
            raise ValueError(f"the budget must be >= 0 seconds, not {budget_s}")
        if photos_per_second <= 0:
            raise ValueError("photos_per_second must be positive")
        self.segmenter = segmenter
        self.remote = remote
        self.budget_s = budget_s
        self.photos_per_second = photos_per_second
        self.prepare_workers = max(1, prepare_workers)
        self.prefetch = max(0, prefetch)
        #: measured seconds per photo on the local lane (moving average), None until known
        self.local_seconds_per_photo: float | None = None
        self.last_report: DispatchReport | None = None
        self._backend: TritonBackend | None = None
        self._backend_lock = threading.Lock()

    @property
    def local_photos_per_s(self) -> float | None:
        s = self.local_seconds_per_photo
        return 1.0 / s if s else None

    def budget_for(self, count: int) -> float:
        return self.budget_s if self.budget_s is not None else count / self.photos_per_second

    # --- the remote connection, kept between runs while it works

    def _remote_backend(self) -> TritonBackend:
        """The connection, checked again at the start of every run: the server may have
        been given another model since the last one."""
        assert self.remote is not None
        with self._backend_lock:
            backend = self._backend or TritonBackend(
                self.segmenter.source_model, self.remote, connect=False
            )
            self._backend = None
            try:
                backend.connect()
            except BaseException:
                backend.close()
                raise
            self._backend = backend
            return backend

    def _drop_remote_backend(self) -> None:
        # A fresh client next run: a reused gRPC channel waits out its reconnect back-off.
        with self._backend_lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    # --- running

    def run(
        self,
        sources: Iterable[PhotoSource],
        *,
        threshold: float | None = None,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
        force: bool = False,
    ) -> Iterator[DispatchResult]:
        """Results as they finish, in any order; `last_report` holds the summary after.
        `force`: run photos refused as not a fundus photograph on the whole frame.

        Setting `cancel` (or closing the iterator) stops both sides: queued photos are not
        started, requests in flight to the server are cancelled, and the local batch in
        progress is finished and dropped. Photos not finished by then get no result.
        """
        run = _Run(self, list(sources), threshold, cancel, progress, force)
        return run.results()

    def run_all(
        self,
        sources: Iterable[PhotoSource],
        *,
        on_result: Callable[[DispatchResult], None] | None = None,
        threshold: float | None = None,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> DispatchReport:
        """`run`, calling `on_result` for each result (from this thread); returns the report."""
        for item in self.run(sources, threshold=threshold, cancel=cancel, progress=progress):
            if on_result is not None:
                on_result(item)
        assert self.last_report is not None
        return self.last_report

    def close(self) -> None:
        self._drop_remote_backend()


class _Run:
    """One request: the line of photos, the lanes that take from it, the results queue."""

    def __init__(
        self,
        owner: Dispatcher,
        sources: list[PhotoSource],
        threshold: float | None,
        cancel: threading.Event | None,
        progress: Callable[[int, int], None] | None,
        force: bool = False,
    ):
        self.owner = owner
        self.force = force
        self.seg = owner.segmenter
        self.items = [_Item(i, s) for i, s in enumerate(sources)]
        self.total = len(self.items)
        self.threshold = threshold
        self.user_cancel = cancel
        self.progress = progress
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.line: deque[_Item] = deque(self.items)  # front: local, back: remote
        self.back_to_local: deque[_Item] = deque()  # the remote gave these back
        self.to_remote: deque[_Item] = deque()  # the local model failed on these
        self.local_claimed = 0
        self.finished = 0
        self.emitted: set[int] = set()
        self.out: queue.SimpleQueue[DispatchResult] = queue.SimpleQueue()
        self.budget = owner.budget_for(self.total)
        self.remote_on = owner.remote is not None and self.total > 0
        self.remote_ready = threading.Event()
        self.backend: TritonBackend | None = None
        self.full_count = 0
        self.room = threading.Semaphore(MAX_UNCONSUMED)
        # the local batch in progress: a lower bound on its rate before the first is done
        self.local_batch_since: float | None = None
        self.local_batch_len = 0
        self.report = DispatchReport(
            total=self.total, budget_s=self.budget, remote_configured=owner.remote is not None
        )
        self.start = self.deadline = 0.0  # set when the caller starts taking results
        self.pool = ThreadPoolExecutor(
            max_workers=owner.prepare_workers, thread_name_prefix="hemaview-prepare"
        )
        self.threads: list[threading.Thread] = []

    # --- shared state (call with self.cond held)

    def _local_may_take_new(self) -> bool:
        # With a zero budget the local lane only takes what the remote cannot.
        return self.owner.budget_s != 0 or not self.remote_on

    def _remote_share(self) -> int:
        """How many photos from the back of the line the remote may take now."""
        waiting = len(self.line)
        if not waiting or not self.remote_ready.is_set():
            return 0
        if not self._local_may_take_new():
            return waiting
        per_photo = self.owner.local_seconds_per_photo or 0.0
        if self.local_batch_since is not None:
            # a batch running longer than the rate says is news: it is at least this slow
            running = (time.monotonic() - self.local_batch_since) / self.local_batch_len
            per_photo = max(per_photo, running)
        if per_photo <= 0:
            return 0  # nothing known yet: keep the photos here until the local lane has run
        capacity = (self.deadline - time.monotonic()) / per_photo - self.local_claimed
        return max(0, waiting - max(0, math.ceil(capacity)))

    def _done(self) -> bool:
        return self.finished >= self.total

    def _emit(self, item: _Item, result: Prediction | PhotoFailure, ran_on: str) -> None:
        while not self.room.acquire(timeout=0.05):
            if self.stop.is_set():
                return
        with self.cond:
            if item.index in self.emitted or self.stop.is_set():
                self.room.release()
                return
            self.emitted.add(item.index)
            self.finished += 1
            if isinstance(result, PhotoFailure):
                self.report.failed += 1
            elif ran_on == "remote":
                self.report.remote += 1
            else:
                self.report.local += 1
                if item.note:
                    self.report.returned += 1
            self.out.put(DispatchResult(item.index, item.source, result, ran_on, item.note))
            item.prepared = None  # the result holds what the caller needs; free the rest
            self.cond.notify_all()

    def _fail(self, item: _Item, exc: BaseException, prefix: str = "") -> None:
        name = _name(item.source)
        error = (
            exc
            if isinstance(exc, HemaviewError)
            else HemaviewError(f"{name}: unexpected error ({type(exc).__name__}: {exc})")
        )
        message = f"{prefix}{error}"
        self._emit(item, PhotoFailure(name, message, error), "")

    def _remote_off(self, reason: str) -> None:
        """Stop sending; photos only the remote could still take now fail, with both reasons."""
        with self.cond:
            if not self.remote_on:
                return
            self.remote_on = False
            self.report.remote_problem = reason
            stranded = list(self.to_remote)
            self.to_remote.clear()
            self.cond.notify_all()
        for item in stranded:
            self._fail(
                item,
                HemaviewError(f"{item.tried_local}; and the remote server: {reason}"),
            )

    # --- preparing (shared by both lanes)

    def _prepare(self, item: _Item) -> Future[Prepared]:
        if item.prepared is not None:
            done: Future[Prepared] = Future()
            done.set_result(item.prepared)
            return done
        return self.pool.submit(self.seg.prepare, item.source, force=self.force)

    def _collect(self, claimed: Sequence[tuple[_Item, Future[Prepared]]]) -> list[_Item]:
        """Wait for preparation; photos that cannot be read fail here, on neither side."""
        ready = []
        for item, future in claimed:
            try:
                item.prepared = future.result()
            except Exception as exc:
                self._fail(item, exc)
                continue
            ready.append(item)
        return ready

    # --- the local lane

    def _local_lane(self) -> None:
        backend = self.seg.backend
        batch = max(1, int(backend.preferred_batch))
        pending: deque[tuple[_Item, Future[Prepared]]] = deque()
        try:
            while not self.stop.is_set():
                with self.cond:
                    while len(pending) < batch + self.owner.prefetch:
                        if self.back_to_local:
                            item = self.back_to_local.popleft()
                        elif self.line and self._local_may_take_new():
                            item = self.line.popleft()
                        else:
                            break
                        self.local_claimed += 1
                        pending.append((item, self._prepare(item)))
                    if not pending:
                        if self._done():
                            return
                        self.cond.wait(0.05)
                        continue
                group = [pending.popleft() for _ in range(min(batch, len(pending)))]
                t0 = time.monotonic()
                with self.cond:
                    self.local_batch_since, self.local_batch_len = t0, len(group)
                ready = self._collect(group)
                if ready:
                    self._run_local(ready, backend, t0)
                with self.cond:
                    self.local_batch_since = None
                    self.local_claimed -= len(group)
                    self.cond.notify_all()
        finally:
            for _, future in pending:
                future.cancel()

    def _run_local(self, ready: list[_Item], backend: Any, t0: float) -> None:
        t_model = time.monotonic()
        try:
            working = backend.run(_stack(ready))
        except Exception as exc:
            reason = str(exc) if isinstance(exc, HemaviewError) else f"the model failed: {exc}"
            with self.cond:
                if self.remote_on:
                    for item in ready:
                        item.tried_local = f"{_name(item.source)}: here, {reason}"
                        self.to_remote.append(item)
                    self.cond.notify_all()
                    return
            for item in ready:
                self._fail(item, HemaviewError(f"{_name(item.source)}: {reason}"))
            return
        model_ms = (time.monotonic() - t_model) * 1e3 / len(ready)
        for k, item in enumerate(ready):
            photo, prepared, timings = item.prepared  # type: ignore[misc]
            timings = {**timings, "model": model_ms}
            reason = backend.reason
            if item.note:
                reason = f"{reason} ({item.note})"
            try:
                prediction = self.seg.finish(
                    photo, prepared, working[k], timings, self.threshold, device_reason=reason
                )
            except Exception as exc:
                self._fail(item, exc)
                continue
            self._emit(item, prediction, "local")
        # the lane's rate: preparation it waited for, the model and post-processing
        per_photo = (time.monotonic() - t0) / len(ready)
        previous = self.owner.local_seconds_per_photo
        self.owner.local_seconds_per_photo = (
            per_photo if previous is None else 0.7 * previous + 0.3 * per_photo
        )

    # --- the remote lanes

    def _connect(self) -> None:
        try:
            backend = self.owner._remote_backend()
        except Exception as exc:
            reason = str(exc) if isinstance(exc, HemaviewError) else f"cannot connect: {exc}"
            self.report.remote_errors.append(reason)
            self._remote_off(reason)
            return
        self.backend = backend
        self.report.remote_used = True
        self.remote_ready.set()
        with self.cond:
            self.cond.notify_all()

    def _remote_lane(self, first: bool) -> None:
        if first:
            self._connect()
        else:
            while not self.remote_ready.wait(0.05):
                if self.stop.is_set() or not self.remote_on:
                    return
        backend = self.backend
        if backend is None or not self.remote_ready.is_set():
            return
        size = max(1, backend.preferred_batch)
        backoff = 0.2
        while not self.stop.is_set():
            with self.cond:
                take: list[_Item] = []
                while not take:
                    if self.stop.is_set() or not self.remote_on or self._done():
                        return
                    if self.to_remote:
                        while self.to_remote and len(take) < size:
                            take.append(self.to_remote.popleft())
                        break
                    share = min(size, self._remote_share())
                    take = [self.line.pop() for _ in range(share)]
                    if not take:
                        self.cond.wait(0.05)
            claimed = [(item, self._prepare(item)) for item in take]
            ready = self._collect(claimed)
            if not ready:
                continue
            with self.cond:
                if not self.remote_on:  # another lane found the server failing meanwhile
                    for item in ready:
                        item.note = (
                            f"sent back from the remote server: {self.report.remote_problem}"
                        )
                        self.back_to_local.append(item)
                    self.cond.notify_all()
                    return
            t0 = time.monotonic()
            try:
                call = backend.submit(_stack(ready))
                working = call.result(cancel=self.stop)
            except Exception as exc:
                if self.stop.is_set():
                    return
                error = (
                    exc
                    if isinstance(exc, RemoteError)
                    else RemoteError(RemoteErrorKind.FAILED, str(exc))
                )
                self._give_back(ready, error)
                if error.kind.try_again_later:
                    with self.cond:
                        self.full_count += 1
                        too_often = self.full_count >= MAX_FULL_RETRIES
                    if too_often:
                        self._remote_off(f"{error} ({MAX_FULL_RETRIES} times in a row)")
                        return
                    self.stop.wait(backoff)
                    backoff = min(2.0, backoff * 2)
                    continue
                self._remote_off(str(error))
                return
            with self.cond:
                self.full_count = 0
            backoff = 0.2
            self._finish_remote(ready, working, backend, (time.monotonic() - t0) / len(ready))

    def _give_back(self, items: list[_Item], error: RemoteError) -> None:
        self.report.remote_errors.append(str(error))
        stranded = []
        with self.cond:
            for item in items:
                if item.tried_local:  # the local model already failed on it: nowhere to go
                    stranded.append(item)
                    continue
                item.note = f"sent back from the remote server: {error}"
                self.back_to_local.append(item)
            self.cond.notify_all()
        for item in stranded:
            self._fail(item, HemaviewError(f"{item.tried_local}; and the remote server: {error}"))

    def _finish_remote(
        self, ready: list[_Item], working: np.ndarray, backend: Any, seconds: float
    ) -> None:
        for k, item in enumerate(ready):
            photo, prepared, timings = item.prepared  # type: ignore[misc]
            try:
                prediction = self.seg.finish(
                    photo,
                    prepared,
                    working[k],
                    {**timings, "model": seconds * 1e3},  # the round trip, per photo
                    self.threshold,
                    device="triton",
                    device_reason=backend.reason,
                )
            except Exception as exc:
                self._fail(item, exc)
                continue
            self._emit(item, prediction, "remote")

    # --- the caller's side

    def results(self) -> Iterator[DispatchResult]:
        self.start = time.monotonic()
        self.deadline = self.start + self.budget
        if self.total == 0:
            self._finalise()
            return
        self.threads.append(
            threading.Thread(target=self._guard, args=(self._local_lane,), name="hemaview-local")
        )
        if self.remote_on:
            assert self.owner.remote is not None
            for k in range(self.owner.remote.max_in_flight):
                self.threads.append(
                    threading.Thread(
                        target=self._guard,
                        args=(lambda first=(k == 0): self._remote_lane(first),),
                        name=f"hemaview-remote-{k}",
                    )
                )
        for thread in self.threads:
            thread.daemon = True
            thread.start()
        yielded = 0
        try:
            while yielded < self.total:
                if self.user_cancel is not None and self.user_cancel.is_set():
                    self.report.cancelled = True
                    break
                try:
                    item = self.out.get(timeout=0.05)
                except queue.Empty:
                    if not any(t.is_alive() for t in self.threads) and self.out.empty():
                        break  # every lane has ended: nothing more will come
                    continue
                self.room.release()
                yielded += 1
                if self.progress is not None:
                    self.progress(yielded, self.total)
                yield item
        except GeneratorExit:
            self.report.cancelled = True
            raise
        finally:
            self.stop.set()
            with self.cond:
                self.cond.notify_all()
            for thread in self.threads:
                thread.join()
            self.pool.shutdown(wait=True, cancel_futures=True)
            if self.report.remote_problem:
                # not within the run: other lanes' requests were still on that connection
                self.owner._drop_remote_backend()
            self._finalise()

    def _guard(self, lane: Callable[[], None]) -> None:
        """A lane that dies must not take its photos with it: they fail with the reason."""
        try:
            lane()
        except BaseException as exc:  # pragma: no cover - a bug, reported per photo
            with self.cond:
                left = [i for i in self.items if i.index not in self.emitted]
            for item in left:
                self._fail(item, exc, prefix="internal error: ")

    def _finalise(self) -> None:
        self.report.elapsed_s = time.monotonic() - self.start
        self.report.local_photos_per_s = self.owner.local_photos_per_s
        if not self.report.cancelled and self.finished < self.total:
            # cannot happen while the lanes hold to their contract; say so rather than hide it
            self.report.failed += self.total - self.finished
        self.owner.last_report = self.report


def _stack(items: Sequence[_Item]) -> np.ndarray:
    images = []
    for item in items:
        assert item.prepared is not None
        images.append(item.prepared[1].image)
    return np.stack(images)


def _name(source: PhotoSource) -> str:
    return "<array>" if isinstance(source, np.ndarray) else str(Path(source))
