"""Local first, remote on overflow: split a request for N photos by a time budget.

The local backend takes what its measured throughput can finish within the budget (by
default the clinic's bar: 10 photos per second, so N / 10 seconds); the rest goes to a
remote Triton server when one is configured. The split is not fixed up front. The photos
wait in one line (inference.pipeline): the local lane takes from the front, and the remote
lanes take from the back only while more photos are waiting than the local lane can still
finish before the deadline, at the rate it has shown so far. A local lane slower than
expected therefore hands more to the remote as the run goes on, a faster one keeps more,
and after the deadline both simply work until the line is empty.

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
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

from inference.backends.base import RemoteBackend, create_backend
from inference.errors import HemaviewError
from inference.pipeline import Item, PhotoResult, Run, RunReport, local_lane, stack
from inference.prediction import PhotoSource, source_name
from inference.remote import RemoteConfig, RemoteError, RemoteErrorKind, remote_health
from inference.segmenter import Segmenter

#: the clinic's bar: 10 photos in under a second
DEFAULT_PHOTOS_PER_SECOND = 10.0
#: consecutive "server full" answers after which a run stops offering photos to it
MAX_FULL_RETRIES = 8
#: the registered backend (inference.backends.base) that runs photos on a remote server
REMOTE_BACKEND = "triton"
#: the pause after a "server full" answer, doubled each time up to the maximum
FULL_BACKOFF_S, MAX_FULL_BACKOFF_S = 0.2, 2.0

# The names the viewer and hemaview-infer know these by.
DispatchResult = PhotoResult
DispatchReport = RunReport

__all__ = [
    "DEFAULT_PHOTOS_PER_SECOND",
    "DispatchReport",
    "DispatchResult",
    "Dispatcher",
    "RemoteConfig",
    "RemoteError",
    "remote_health",
]


class Dispatcher:
    """Runs requests for many photos on the local backend, overflowing to a Triton server.

    `budget_s`: seconds a request may take; None means N / `photos_per_second`. 0 sends
    everything it can to the remote (the local lane then only takes what comes back).
    The local throughput it measures is kept between runs, and so is the connection while
    it works: keep one for a session, run one request at a time, and close it at the end.
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
        self._link = _RemoteLink(segmenter, remote) if remote is not None else None

    @property
    def local_photos_per_s(self) -> float | None:
        s = self.local_seconds_per_photo
        return 1.0 / s if s else None

    def budget_for(self, count: int) -> float:
        return self.budget_s if self.budget_s is not None else count / self.photos_per_second

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
        progress is finished and dropped. Photos not finished by then get no result. An
        inference.cancel.Cancel is noticed at once; a plain threading.Event within 50 ms.
        """
        run = Run(
            self.segmenter,
            sources,
            threshold=threshold,
            force=force,
            cancel=cancel,
            progress=progress,
            prepare_workers=self.prepare_workers,
        )
        budget = self.budget_for(run.total)
        run.report.budget_s = budget
        run.report.remote_configured = self.remote is not None
        backend = self.segmenter.backend
        overflow = (
            _Overflow(self, self._link, run, budget)
            if self._link is not None and run.total
            else None
        )
        run.add_lane(
            "local",
            lambda: local_lane(
                run,
                backend,
                batch=int(backend.preferred_batch),
                prefetch=self.prefetch,
                on_rate=self._measured,
                watch=overflow,
            ),
        )
        if overflow is not None:
            overflow.add_lanes()
        run.at_end(lambda: self._ended(run))
        return run.results()

    def close(self) -> None:
        if self._link is not None:
            self._link.drop()

    def _measured(self, per_photo: float) -> None:
        previous = self.local_seconds_per_photo
        self.local_seconds_per_photo = (
            per_photo if previous is None else 0.7 * previous + 0.3 * per_photo
        )

    def _ended(self, run: Run) -> None:
        if run.report.remote_problem and self._link is not None:
            # A fresh client next run: a reused gRPC channel waits out its reconnect back-off.
            # Not within the run: other lanes' requests were still on that connection.
            self._link.drop()
        run.report.local_photos_per_s = self.local_photos_per_s
        self.last_report = run.report


class _RemoteLink:
    """The remote backend, kept between runs while it works, and checked again at the start
    of every run: the server may have been given another model since the last one."""

    def __init__(self, segmenter: Segmenter, config: RemoteConfig):
        # a remote server serves the fp32 model the local one stands for
        self.model = segmenter.source_model
        self.config = config
        self._backend: RemoteBackend | None = None
        self._lock = threading.Lock()

    def open(self) -> RemoteBackend:
        with self._lock:
            backend, self._backend = self._backend, None
            if backend is None:
                made = create_backend(REMOTE_BACKEND, self.model, config=self.config, connect=False)
                if not isinstance(made, RemoteBackend):
                    made.close()
                    raise TypeError(f"backend {REMOTE_BACKEND!r} cannot run photos remotely")
                backend = made
            try:
                backend.connect()
            except BaseException:
                backend.close()
                raise
            self._backend = backend
            return backend

    def drop(self) -> None:
        with self._lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()


class _Overflow:
    """The remote side of one run: its lanes, what they may take from the line, and the
    state of the overflow (the run's lane API aside, nothing here touches the run).

    Its state is guarded by its own lock, never held while calling the run; a lane reads
    `run.mark()` before it looks at anything, and every change here calls `run.changed()`,
    so a lane that found nothing to do waits without missing a change (and nobody polls).
    """

    def __init__(self, owner: Dispatcher, link: _RemoteLink, run: Run, budget: float):
        self.owner = owner
        self.link = link
        self.run = run
        self.budget = budget
        self.lock = threading.Lock()
        self.backend: RemoteBackend | None = None
        self.connecting = True
        self.full_count = 0
        #: remote lanes take photos (off, for good, when the remote fails)
        self.on = True
        #: why the remote was turned off
        self.problem = ""
        #: with the remote on, the local lane takes only what comes back from it
        self.local_only_returns = owner.budget_s == 0
        #: photos the local lane has claimed and not yet finished
        self.local_holding = 0
        #: (start, photos) of the local batch being run: how slow it is, before it ends
        self.local_batch: tuple[float, int] | None = None
        #: the local model failed on these (why, by photo index): the remote takes them first
        self.retries: deque[Item] = deque()
        self.local_failures: dict[int, str] = {}

    def add_lanes(self) -> None:
        for k in range(self.link.config.max_in_flight):
            self.run.add_lane(f"remote-{k}", self._first_lane if k == 0 else self._lane)

    # --- the local lane's watch (inference.pipeline.LocalWatch)

    def takes_line(self) -> bool:
        # with a zero budget the local lane only takes what the remote cannot
        with self.lock:
            return not (self.local_only_returns and self.on)

    def hold(self, change: int) -> None:
        with self.lock:
            self.local_holding += change
        self.run.changed()

    def running(self, batch: tuple[float, int] | None, *, released: int = 0) -> None:
        with self.lock:
            self.local_batch = batch
            self.local_holding -= released
        self.run.changed()

    def retry(self, items: Sequence[Item], reason: str) -> bool:
        with self.lock:
            if not self.on:
                return False
            for item in items:
                self.local_failures[item.index] = f"{source_name(item.source)}: here, {reason}"
                self.retries.append(item)
        self.run.changed()
        return True

    # --- the remote lanes' share

    def _take(self, size: int) -> list[Item] | None:
        """Up to `size` photos for a remote lane, waiting until there are some (retries
        first, then from the back of the line as far as the budget allows); None when the
        lane should end."""
        run = self.run
        while True:
            mark = run.mark()  # before looking: a change after it ends the wait below
            if run.stop.is_set() or run.done():
                return None
            waiting = run.waiting()
            with self.lock:
                if not self.on:
                    return None
                if self.retries:
                    return [self.retries.popleft() for _ in range(min(size, len(self.retries)))]
                share, wake = self._share(waiting)
            take = run.take_back(min(size, share)) if share > 0 else []
            if take:
                return take
            run.wait_change(mark, wake)  # until something changes, or the share grows

    def _share(self, waiting: int) -> tuple[int, float | None]:
        """How many of the `waiting` photos the remote may take now; and when to look again
        if none (None: when something changes). With `lock` held."""
        if self.local_only_returns:
            return waiting, None
        return overflow_share(
            waiting=waiting,
            local_holding=self.local_holding,
            now=time.monotonic(),
            deadline=self.run.start + self.budget,
            seconds_per_photo=self.owner.local_seconds_per_photo,
            local_batch=self.local_batch,
        )

    def _off(self, reason: str) -> None:
        """Stop sending; photos only the remote could still take now fail, with both reasons."""
        with self.lock:
            if not self.on:
                return
            self.on, self.problem = False, reason
            stranded = [(item, self.local_failures[item.index]) for item in self.retries]
            self.retries.clear()
        self.run.report.remote_problem = reason
        self.run.changed()
        for item, local_failure in stranded:
            self.run.fail(item, HemaviewError(f"{local_failure}; and the remote server: {reason}"))

    # --- the lanes

    def _first_lane(self) -> None:
        run = self.run
        try:
            backend = self.link.open()
        except Exception as exc:
            reason = str(exc) if isinstance(exc, HemaviewError) else f"cannot connect: {exc}"
            run.report.remote_errors.append(reason)
            with self.lock:
                self.connecting = False
            run.changed()
            self._off(reason)
            return
        with self.lock:
            self.backend, self.connecting = backend, False
        run.report.remote_used = True
        run.changed()
        self._work(backend)

    def _lane(self) -> None:
        run = self.run
        while True:
            mark = run.mark()
            with self.lock:
                connecting, backend = self.connecting, self.backend
            if not connecting or run.stop.is_set():
                break
            run.wait_change(mark)
        if backend is not None:
            self._work(backend)

    def _work(self, backend: RemoteBackend) -> None:
        run = self.run
        size = max(1, backend.preferred_batch)
        backoff = FULL_BACKOFF_S
        while True:
            take = self._take(size)
            if take is None:
                return
            ready = run.emit_failures(run.collect([(item, run.prepare(item)) for item in take]))
            if not ready:
                continue
            with self.lock:
                on, problem = self.on, self.problem
            if not on:  # another lane found the server failing meanwhile
                run.hand_back(ready, f"sent back from the remote server: {problem}")
                return
            t0 = time.monotonic()
            try:
                pending = backend.submit(stack(ready))
                forget = run.stop.listen(pending.cancel)  # a run that ends cancels it
                try:
                    working = pending.result()
                finally:
                    forget()
            except Exception as exc:
                if run.stop.is_set():
                    return
                error = (
                    exc
                    if isinstance(exc, RemoteError)
                    else RemoteError(RemoteErrorKind.FAILED, str(exc))
                )
                self._give_back(ready, error)
                if error.kind.try_again_later:
                    with self.lock:
                        self.full_count += 1
                        too_often = self.full_count >= MAX_FULL_RETRIES
                    if too_often:
                        self._off(f"{error} ({MAX_FULL_RETRIES} times in a row)")
                        return
                    if run.stop.wait(backoff):
                        return
                    backoff = min(MAX_FULL_BACKOFF_S, backoff * 2)
                    continue
                self._off(str(error))
                return
            with self.lock:
                self.full_count = 0
            backoff = FULL_BACKOFF_S
            per_photo_ms = (time.monotonic() - t0) * 1e3 / len(ready)  # the round trip
            run.deliver([(item, None) for item in ready], working, backend, "remote", per_photo_ms)

    def _give_back(self, items: list[Item], error: RemoteError) -> None:
        self.run.report.remote_errors.append(str(error))
        with self.lock:
            # the local model already failed on these: nowhere to go
            failed_here = {i.index: self.local_failures.get(i.index, "") for i in items}
        self.run.hand_back(
            [item for item in items if not failed_here[item.index]],
            f"sent back from the remote server: {error}",
        )
        for item in items:
            if failed_here[item.index]:
                reason = f"{failed_here[item.index]}; and the remote server: {error}"
                self.run.fail(item, HemaviewError(reason))


def overflow_share(
    *,
    waiting: int,
    local_holding: int,
    now: float,
    deadline: float,
    seconds_per_photo: float | None,
    local_batch: tuple[float, int] | None,
) -> tuple[int, float | None]:
    """How many of the waiting photos a remote may take now; and, if none, in how many
    seconds that may change by time alone (None: only when the local lane does something).

    The local lane keeps what it can still finish before the deadline at the rate it has
    shown; a batch running longer than that rate says is news: it is at least that slow.
    """
    if waiting <= 0:
        return 0, None
    per_photo = seconds_per_photo or 0.0
    if local_batch is not None:
        since, count = local_batch
        per_photo = max(per_photo, (now - since) / count)
    if per_photo > 0:
        capacity = (deadline - now) / per_photo - local_holding
        share = max(0, waiting - max(0, math.ceil(capacity)))
        if share > 0:
            return share, None
    elif local_batch is None:
        return 0, None  # nothing known yet: keep the photos here until the local lane has run
    # One photo may go once (deadline - t) / per_photo(t) <= spare, with per_photo at the
    # known rate, or at the running batch's own rate, which grows with t.
    spare = waiting - 1 + local_holding
    moments = []
    if seconds_per_photo:
        moments.append(deadline - spare * seconds_per_photo)
    if local_batch is not None:
        since, count = local_batch
        moments.append((deadline * count + spare * since) / (spare + count))
    return 0, max(min(moments) - now, 0.0) + 1e-3  # just past it, so the next look sees it
