"""Unsaved edits kept on disk, so that a crash loses at most the last few seconds. Qt-free.

For each photo with unsaved edits the autosave folder holds ``K.png`` (the mask, in the
label format's palette PNG) and ``K.json`` (photo path and SHA-256, review status, lesion
decisions, threshold, time, and the SHA-256 of the PNG). The PNG is written first and the
JSON last, each atomically, so a crash mid-autosave leaves the previous autosave whole.

Which autosaves are left over from a crash? Every running app holds an OS lock on its own
``sessions/ID.lock`` file, and each autosave names the session that wrote it. The OS drops
the lock when a process dies, however it dies, so an autosave whose session lock can be
taken was left behind by a crash. A second Hemaview running at the same time (same user,
same folder) keeps its lock, and its autosaves are never offered to the first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from inference import HemaviewError, LabelFormatError, atomic_write_bytes, atomic_write_text
from inference.labels import STATUSES, decode_mask, encode_mask_png, now
from viewer.model.document import Document

AUTOSAVE_SCHEMA = 1


@dataclass(frozen=True)
class AutosaveState:
    """Everything besides the mask that restores a document as the reviewer left it."""

    photo_path: str  # absolute
    photo_sha256: str
    size: tuple[int, int]  # width, height
    status: str
    decisions: dict[int, str]
    threshold: float
    edited: bool
    created: datetime  # the document's (the label's) creation time
    saved_at: datetime
    label_dir: str | None = None  # where the document was to be saved, if chosen
    base_label_sha256: str | None = None  # the label JSON as it was opened (conflicts)
    session: str = ""
    mask_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": AUTOSAVE_SCHEMA,
            "photo_path": self.photo_path,
            "photo_sha256": self.photo_sha256,
            "size": list(self.size),
            "status": self.status,
            "decisions": {str(k): v for k, v in self.decisions.items()},
            "threshold": self.threshold,
            "edited": self.edited,
            "created": self.created.isoformat(),
            "saved_at": self.saved_at.isoformat(),
            "label_dir": self.label_dir,
            "base_label_sha256": self.base_label_sha256,
            "session": self.session,
            "mask_sha256": self.mask_sha256,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> AutosaveState:
        """Raises ValueError (or KeyError, TypeError) for anything that is not an autosave."""
        if not isinstance(raw, dict) or raw.get("schema") != AUTOSAVE_SCHEMA:
            raise ValueError("not a Hemaview autosave of a known schema")
        width, height = (int(v) for v in raw["size"])
        status = str(raw["status"])
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        return cls(
            photo_path=str(raw["photo_path"]),
            photo_sha256=str(raw["photo_sha256"]),
            size=(width, height),
            status=status,
            decisions={int(k): str(v) for k, v in dict(raw["decisions"]).items()},
            threshold=float(raw["threshold"]),
            edited=bool(raw["edited"]),
            created=datetime.fromisoformat(raw["created"]),
            saved_at=datetime.fromisoformat(raw["saved_at"]),
            label_dir=None if raw.get("label_dir") is None else str(raw["label_dir"]),
            base_label_sha256=raw.get("base_label_sha256"),
            session=str(raw.get("session", "")),
            mask_sha256=str(raw["mask_sha256"]),
        )


@dataclass(frozen=True)
class AutosaveSnapshot:
    """A document's state copied on the GUI thread; `Autosaver.write` may run anywhere."""

    key: str
    mask: np.ndarray = field(repr=False)
    state: AutosaveState
    generation: int


def _key(photo_path: str | os.PathLike[str]) -> str:
    absolute = os.path.normcase(os.path.abspath(photo_path))
    digest = hashlib.sha256(absolute.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    # A readable prefix for whoever looks into the folder; ASCII only, short.
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(photo_path).stem)[:40]
    return f"{stem}-{digest}"


class Autosaver:
    """The autosave folder of one running app (one session)."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.session = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._generation: dict[str, int] = {}
        self._session_file: IO[bytes] | None = None
        self._closed = False
        self._take_session_lock()

    # -- the session lock ----------------------------------------------------------------

    def _sessions(self) -> Path:
        return self.folder / "sessions"

    def _take_session_lock(self) -> None:
        path = self._sessions() / f"{self.session}.lock"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "wb")  # noqa: SIM115 (held open for the session's life)
        except OSError:
            return  # autosaves still work; only crash detection is weaker
        if _try_lock(handle):
            self._session_file = handle
        else:
            handle.close()

    def _session_alive(self, session: str) -> bool:
        if session == self.session:
            return True
        path = self._sessions() / f"{session}.lock"
        try:
            handle = open(path, "r+b")  # noqa: SIM115
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: never offer another running app's edits
        with handle:
            if not _try_lock(handle):
                return True
            _unlock(handle)
        return False

    # -- writing -------------------------------------------------------------------------

    def snapshot(
        self,
        document: Document,
        *,
        label_dir: str | os.PathLike[str] | None = None,
        base_label_sha256: str | None = None,
    ) -> AutosaveSnapshot:
        """Copy what an autosave needs (a mask copy: a few milliseconds for 12 MP)."""
        key = _key(document.path)
        state = AutosaveState(
            photo_path=os.path.abspath(document.path),
            photo_sha256=document.photo_sha256,
            size=(document.width, document.height),
            status=document.status,
            decisions=dict(document.decisions),
            threshold=float(document.threshold),
            edited=bool(document.edited),
            created=document.created,
            saved_at=now(),
            label_dir=None if label_dir is None else os.path.abspath(label_dir),
            base_label_sha256=base_label_sha256,
            session=self.session,
        )
        with self._lock:
            generation = self._generation.get(key, 0)
        return AutosaveSnapshot(key, document.mask.copy(), state, generation)

    def write(self, snapshot: AutosaveSnapshot) -> bool:
        """Write a snapshot (PNG encoding: tens of milliseconds). False when it went stale:
        the photo was saved or discarded after the snapshot was taken."""
        data = encode_mask_png(snapshot.mask)
        state = AutosaveState(
            **{**snapshot.state.__dict__, "mask_sha256": hashlib.sha256(data).hexdigest()}
        )
        text = json.dumps(state.to_dict(), ensure_ascii=False, allow_nan=False)
        png, meta = self._paths(snapshot.key)
        # Held across the write so that a discard cannot slip in between check and write.
        with self._lock:
            if self._closed or self._generation.get(snapshot.key, 0) != snapshot.generation:
                return False
            atomic_write_bytes(png, data)
            atomic_write_text(meta, text)
        return True

    def save(self, document: Document, **kwargs: Any) -> bool:
        return self.write(self.snapshot(document, **kwargs))

    # -- reading -------------------------------------------------------------------------

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.png", self.folder / f"{key}.json"

    def _read_state(self, meta: Path) -> AutosaveState | None:
        try:
            return AutosaveState.from_dict(json.loads(meta.read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def has(self, photo_path: str | os.PathLike[str]) -> bool:
        return self._paths(_key(photo_path))[1].exists()

    def state(self, photo_path: str | os.PathLike[str]) -> AutosaveState | None:
        return self._read_state(self._paths(_key(photo_path))[1])

    def pending(self) -> list[AutosaveState]:
        """Autosaves left by apps that are no longer running (a crash), oldest first."""
        found: list[AutosaveState] = []
        alive: dict[str, bool] = {}
        try:
            metas = sorted(p for p in self.folder.glob("*.json") if not p.name.startswith("."))
        except OSError:
            return []
        for meta in metas:
            state = self._read_state(meta)
            if state is None:
                continue
            if state.session not in alive:
                alive[state.session] = self._session_alive(state.session)
            if not alive[state.session] and meta.with_suffix(".png").exists():
                found.append(state)
        self._forget_dead_sessions(alive)
        found.sort(key=lambda s: s.saved_at)
        return found

    def _forget_dead_sessions(self, known: dict[str, bool]) -> None:
        """Remove the lock files of dead sessions that have no autosave left."""
        with_autosaves = {s for s, is_alive in known.items() if not is_alive}
        with contextlib.suppress(OSError):
            for lock in self._sessions().glob("*.lock"):
                session = lock.stem
                if session == self.session or session in with_autosaves:
                    continue
                if not self._session_alive(session):
                    with contextlib.suppress(OSError):
                        lock.unlink()

    def restore(self, photo_path: str | os.PathLike[str]) -> tuple[np.ndarray, AutosaveState]:
        """The autosaved mask and state of a photo; HemaviewError when there is none usable."""
        png, meta = self._paths(_key(photo_path))
        state = self._read_state(meta)
        if state is None:
            raise HemaviewError(f"{photo_path}: no autosave to restore")
        try:
            data = png.read_bytes()
        except OSError as exc:
            raise HemaviewError(f"{png}: the autosaved mask cannot be read ({exc})") from None
        if hashlib.sha256(data).hexdigest() != state.mask_sha256:
            raise HemaviewError(f"{png}: the autosaved mask is damaged; it cannot be restored")
        try:
            mask = decode_mask(data, str(png), expected_size=state.size)
        except LabelFormatError as exc:
            raise HemaviewError(str(exc)) from None
        return mask, state

    # -- removing ------------------------------------------------------------------------

    def discard(self, photo_path: str | os.PathLike[str]) -> None:
        """Forget a photo's autosave (after a save, or when the reviewer declines it)."""
        key = _key(photo_path)
        with self._lock:
            self._generation[key] = self._generation.get(key, 0) + 1
            for p in self._paths(key)[::-1]:  # the JSON first: a lone PNG is never offered
                with contextlib.suppress(OSError):
                    p.unlink(missing_ok=True)

    def close(self) -> None:
        """A clean exit: this session's autosaves go (the app has asked about unsaved work)."""
        with self._lock:
            self._closed = True
        for meta in list(self.folder.glob("*.json")):
            state = self._read_state(meta)
            if state is not None and state.session == self.session:
                self.discard(state.photo_path)
        self.pending()  # forgets the locks of crashed sessions that have nothing left
        if self._session_file is not None:
            lock = Path(self._session_file.name)
            with contextlib.suppress(OSError):
                _unlock(self._session_file)
            self._session_file.close()
            self._session_file = None
            with contextlib.suppress(OSError):
                lock.unlink()


def restore_into(document: Document, mask: np.ndarray, state: AutosaveState) -> None:
    """Put an autosave back into a freshly opened document (which stays unsaved)."""
    if state.photo_sha256 != document.photo_sha256:
        raise HemaviewError(
            f"{document.path.name}: the photo has changed since the autosave; it cannot be "
            "restored onto it"
        )
    if mask.shape != (document.height, document.width):
        raise HemaviewError(f"{document.path.name}: the autosave does not fit the photo's size")
    if document.prediction is not None:
        document.set_threshold(state.threshold, follow=False)
    document.mask = mask.astype(bool, copy=True)
    document.decisions = dict(state.decisions)
    document.status = state.status
    document.created = state.created
    document.edited = state.edited
    document.history.clear()
    document.dirty = True


# -- OS file locks: released by the OS when the process ends, however it ends ---------------


def _try_lock(handle: IO[bytes]) -> bool:
    try:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(handle: IO[bytes]) -> None:
    if os.name == "nt":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
