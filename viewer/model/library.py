"""The photos of an opened folder (or list of files) and what is known about each. Qt-free.

The list model in `viewer/qt/photo_list_model.py` shows a `PhotoLibrary`; background jobs report
into it (through the GUI thread: a library is not locked, only one thread may change it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from inference import LabelFormatError, is_photo_path
from inference.labels import STATUSES, ProvenanceRecord, default_label_dir, label_paths

PREDICTION_STATES = ("none", "queued", "running", "done", "failed")
SORT_KEYS = ("name", "lesions", "uncertainty")
#: A filter is one review status, "error" (photos that failed), or None for every photo.
FILTERS = (None, *STATUSES, "error")

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders numbers by value: IDRiD_2 before IDRiD_10, case ignored."""
    parts = _DIGITS.split(name.casefold())
    # (0, number) and (1, text) never compare a number with text.
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p != "")


@dataclass
class PhotoEntry:
    """One photo in the list. Fields other than `path` change as work on it completes."""

    path: Path
    status: str = "todo"  # the saved label's review status
    predicted_lesions: int | None = None  # from the model (None: not predicted yet)
    saved_lesions: int | None = None  # from the saved label (lesions not rejected)
    uncertainty: float | None = None  # Prediction.uncertainty
    error: str | None = None  # why the photo cannot be shown or predicted
    unreadable: bool = False  # the photo itself cannot be read (not only "not a fundus")
    label_error: str | None = None  # the saved label beside it is broken
    prediction_state: str = "none"  # one of PREDICTION_STATES
    # The open photo as the reviewer has it now (not yet saved): lesions kept at the live
    # threshold. None for photos that are not open.
    live_lesions: int | None = None

    @property
    def name(self) -> str:
        """What the list shows: the file name."""
        return self.path.name

    @property
    def lesion_count(self) -> int | None:
        """The count the reviewer is looking at: live while the photo is open, else the saved
        label's, else the model's."""
        for count in (self.live_lesions, self.saved_lesions, self.predicted_lesions):
            if count is not None:
                return count
        return None

    @property
    def has_error(self) -> bool:
        return self.error is not None


def find_photos(
    sources: Iterable[str | os.PathLike[str]], skipped: list[str] | None = None
) -> list[Path]:
    """Photos among files and folders (one level deep), de-duplicated, in natural order.

    What was asked for but cannot be listed (a missing file, a folder that cannot be read,
    a file that is not a photo) is said in `skipped`, when given.
    """
    found: dict[Path, Path] = {}
    notes: list[str] = [] if skipped is None else skipped
    for source in sources:
        p = Path(source)
        if p.is_dir():
            try:
                children = [c for c in p.iterdir() if c.is_file() and is_photo_path(c)]
            except OSError as exc:
                notes.append(f"{p}: the folder cannot be read ({exc.strerror or exc})")
                continue
        elif not p.exists():
            notes.append(f"{p}: not found")
            continue
        elif is_photo_path(p):
            children = [p]
        else:
            notes.append(f"{p}: not a photo (expected JPEG, PNG, TIFF, BMP, WebP or DICOM)")
            continue
        for child in children:
            key = Path(os.path.abspath(child))
            found.setdefault(key, child)
    return sorted(found.values(), key=lambda q: (natural_key(q.name), natural_key(str(q))))


class PhotoLibrary:
    """Photos in natural name order, with their review and prediction state."""

    def __init__(self, entries: Iterable[PhotoEntry] = (), label_dir: Path | None = None):
        self.entries: list[PhotoEntry] = sorted(
            entries, key=lambda e: (natural_key(e.name), natural_key(str(e.path)))
        )
        #: None: each photo's labels live in `hemaview-labels` beside it.
        self.label_dir = Path(label_dir) if label_dir is not None else None
        self._index = {self._key(e.path): i for i, e in enumerate(self.entries)}
        #: Sources given to `scan` that are not in the list, and why (for a message).
        self.skipped: list[str] = []

    @classmethod
    def scan(
        cls,
        sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        label_dir: str | os.PathLike[str] | None = None,
        read_labels: bool = True,
    ) -> PhotoLibrary:
        """A folder, or a list of files and folders; review statuses read from the labels."""
        if isinstance(sources, str | os.PathLike):
            sources = [sources]
        skipped: list[str] = []
        library = cls(
            (PhotoEntry(p) for p in find_photos(sources, skipped)),
            Path(label_dir) if label_dir is not None else None,
        )
        library.skipped = skipped
        if read_labels:
            library.read_labels()
        return library

    # -- access --------------------------------------------------------------------------

    def add(self, paths: Iterable[str | os.PathLike[str]]) -> list[PhotoEntry]:
        """Photos that appeared (in a watched folder): the new ones, kept in name order,
        with their saved labels read."""
        new = [PhotoEntry(Path(p)) for p in paths if self._key(p) not in self._index]
        if not new:
            return []
        self.entries = sorted(
            [*self.entries, *new], key=lambda e: (natural_key(e.name), natural_key(str(e.path)))
        )
        self._index = {self._key(e.path): i for i, e in enumerate(self.entries)}
        for entry in new:
            self.read_label(entry)
        return new

    @staticmethod
    def _key(path: str | os.PathLike[str]) -> str:
        return os.path.normcase(os.path.abspath(path))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[PhotoEntry]:
        return iter(self.entries)

    def __getitem__(self, index: int) -> PhotoEntry:
        return self.entries[index]

    def index_of(self, path: str | os.PathLike[str]) -> int | None:
        return self._index.get(self._key(path))

    def entry(self, path: str | os.PathLike[str]) -> PhotoEntry | None:
        i = self.index_of(path)
        return None if i is None else self.entries[i]

    @property
    def paths(self) -> list[Path]:
        return [e.path for e in self.entries]

    def label_dir_for(self, path: str | os.PathLike[str]) -> Path:
        return self.label_dir if self.label_dir is not None else default_label_dir(path)

    # -- what the labels say -------------------------------------------------------------

    def read_labels(self) -> None:
        """Review status and lesion count of every photo from its label JSON (no mask read)."""
        for entry in self.entries:
            self.read_label(entry)

    def read_label(self, entry: PhotoEntry) -> None:
        entry.status, entry.saved_lesions, entry.label_error = "todo", None, None
        provenance = label_paths(entry.path, self.label_dir_for(entry.path)).provenance
        try:
            data = provenance.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            entry.label_error = f"{provenance}: cannot be read ({exc.strerror or exc})"
            return
        try:
            record = ProvenanceRecord.from_json(data, str(provenance))
        except LabelFormatError as exc:
            entry.label_error = str(exc)
            return
        if record.photo.file_name != entry.name:
            # X.jpg and X.png share label names; the label belongs to the other one.
            return
        self.set_saved(entry.path, record)

    def set_saved(self, path: str | os.PathLike[str], record: ProvenanceRecord) -> None:
        """After a save (or a label read): status and the reviewed lesion count."""
        entry = self.entry(path)
        if entry is None:
            return
        entry.status = record.status
        entry.label_error = None
        if record.model is not None:
            # Lesions the reviewer drew by hand are not in the record; the suggested lesions
            # that were not rejected are the count a reviewer recognises.
            entry.saved_lesions = sum(1 for d in record.lesions if d.decision != "rejected")
        else:
            entry.saved_lesions = None

    def set_live(self, path: str | os.PathLike[str], status: str, lesions: int | None) -> bool:
        """The open photo's review status and lesion count as they are now; returns whether
        anything the list shows changed."""
        entry = self.entry(path)
        if entry is None or (entry.status, entry.live_lesions) == (status, lesions):
            return False
        entry.status, entry.live_lesions = status, lesions
        return True

    def next_to_do(self, path: str | os.PathLike[str] | None) -> PhotoEntry | None:
        """The next photo still to review after `path` (wrapping round), readable ones only."""
        keys = [self._key(e.path) for e in self.entries]
        start = keys.index(self._key(path)) if path is not None and self._key(path) in keys else -1
        n = len(self.entries)
        for step in range(1, n + 1):
            entry = self.entries[(start + step) % n]
            elsewhere = path is None or self._key(entry.path) != self._key(path)
            if entry.status in ("todo", "in_review") and not entry.unreadable and elsewhere:
                return entry
        return None

    def first_readable(self) -> PhotoEntry | None:
        """The first photo not known to be unreadable (a broken file is no place to start)."""
        return next((e for e in self.entries if not e.unreadable), None)

    # -- what background work says -------------------------------------------------------

    def set_state(self, path: str | os.PathLike[str], state: str) -> None:
        if state not in PREDICTION_STATES:
            raise ValueError(f"unknown prediction state {state!r}")
        entry = self.entry(path)
        if entry is not None:
            entry.prediction_state = state

    def set_prediction(
        self, path: str | os.PathLike[str], lesion_count: int, uncertainty: float
    ) -> None:
        entry = self.entry(path)
        if entry is not None:
            entry.predicted_lesions = int(lesion_count)
            entry.uncertainty = float(uncertainty)
            entry.prediction_state = "done"
            entry.error, entry.unreadable = None, False

    def set_failed(
        self, path: str | os.PathLike[str], message: str, *, unreadable: bool = False
    ) -> None:
        entry = self.entry(path)
        if entry is not None:
            entry.error = message
            entry.unreadable = unreadable
            entry.prediction_state = "failed"

    def status_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for e in self.entries:
            counts[e.status] = counts.get(e.status, 0) + 1
        counts["error"] = sum(1 for e in self.entries if e.has_error)
        return counts

    # -- views ---------------------------------------------------------------------------

    def view(
        self, status: str | None = None, sort: str = "name", descending: bool | None = None
    ) -> list[PhotoEntry]:
        """The entries passing `status` (see FILTERS), sorted by name, lesions or uncertainty.

        Lesion count and uncertainty sort highest first unless `descending` says otherwise
        (triage: the most work first); photos not predicted yet always come last.
        """
        if status not in FILTERS:
            raise ValueError(f"unknown filter {status!r}; expected one of {FILTERS}")
        if sort not in SORT_KEYS:
            raise ValueError(f"unknown sort key {sort!r}; expected one of {SORT_KEYS}")
        if status == "error":
            rows = [e for e in self.entries if e.has_error]
        elif status is not None:
            rows = [e for e in self.entries if e.status == status]
        else:
            rows = list(self.entries)
        if sort == "name":
            return rows[::-1] if descending else rows
        sign = -1.0 if (True if descending is None else descending) else 1.0

        def value(e: PhotoEntry) -> float | None:
            v = e.lesion_count if sort == "lesions" else e.uncertainty
            return None if v is None else float(v)

        known = [e for e in rows if value(e) is not None]
        unknown = [e for e in rows if value(e) is None]
        # rows are in name order and sort() is stable: equal values stay in name order.
        known.sort(key=lambda e: sign * (value(e) or 0.0))
        return known + unknown

    def neighbour(
        self,
        path: str | os.PathLike[str] | None,
        step: int,
        rows: Sequence[PhotoEntry] | None = None,
    ) -> PhotoEntry | None:
        """The entry `step` places from `path` in `rows` (default: all, in name order)."""
        rows = self.entries if rows is None else rows
        if not rows:
            return None
        keys = [self._key(e.path) for e in rows]
        if path is None or self._key(path) not in keys:
            return rows[0] if step > 0 else rows[-1]
        i = keys.index(self._key(path)) + step
        return rows[i] if 0 <= i < len(rows) else None

    def next(
        self, path: str | os.PathLike[str] | None, rows: Sequence[PhotoEntry] | None = None
    ) -> PhotoEntry | None:
        return self.neighbour(path, 1, rows)

    def previous(
        self, path: str | os.PathLike[str] | None, rows: Sequence[PhotoEntry] | None = None
    ) -> PhotoEntry | None:
        return self.neighbour(path, -1, rows)

    def order_by_distance(self, current_index: int | None) -> list[int]:
        """Every index, nearest to `current_index` first; ahead before behind at a tie.

        Reviewers move forward through a folder, so the next photo is prepared before the
        previous one. With no current photo the order is simply from the top.
        """
        n = len(self.entries)
        if current_index is None or n == 0:
            return list(range(n))
        c = min(max(int(current_index), 0), n - 1)
        order = [c]
        for d in range(1, n):
            if c + d < n:
                order.append(c + d)
            if c - d >= 0:
                order.append(c - d)
        return order
