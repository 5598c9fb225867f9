"""A cancel flag that wakes whoever is waiting, instead of being looked at again and again.

A threading.Event cannot tell anyone it was set, so code that waits on something else (the
next result, a request in flight) would have to wake up every so often to look at it.
`Cancel` is an Event that also calls its listeners when it is set: a run stops, and a
request in flight is cancelled, at once. A caller may still pass a plain threading.Event;
that one is looked at every PLAIN_EVENT_CHECK_S while nothing else happens (`wait_until`),
the one timed check left, and only for callers that did not use a Cancel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: how often a plain threading.Event given as a cancel flag is looked at
PLAIN_EVENT_CHECK_S = 0.05


class Cancel(threading.Event):
    """A threading.Event that calls its listeners (once each) when it is set."""

    def __init__(self) -> None:
        super().__init__()
        self._listeners_lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def set(self) -> None:
        super().set()
        with self._listeners_lock:
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener()

    def listen(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` when this is set (at once if it already is); returns a function
        that takes the listener off again."""
        with self._listeners_lock:
            if not self.is_set():
                self._listeners.append(listener)
                return lambda: self._forget(listener)
        listener()
        return lambda: None

    def _forget(self, listener: Callable[[], None]) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)


def wait_until(
    done: threading.Event, cancel: threading.Event | None, on_cancel: Callable[[], None]
) -> None:
    """Wait for `done`; if `cancel` is set first, call `on_cancel`, which must set `done`."""
    if cancel is None:
        done.wait()
    elif isinstance(cancel, Cancel):
        forget = cancel.listen(on_cancel)
        try:
            done.wait()
        finally:
            forget()
    else:
        while not done.wait(PLAIN_EVENT_CHECK_S):
            if cancel.is_set():
                on_cancel()
