"""Opening a photo into a Document, saving it back, and exporting labels for training. Qt-free.

`ReviewSession.open` does everything slow that opening a photo needs (full-resolution decode,
cache lookup and rebuild, reading the saved label) and is meant to run off the GUI thread
(`viewer/qt/workers.py` does that). `save` is a few tens of milliseconds (PNG encoding).

Conflicts: a label folder may be shared by colleagues. When a photo is opened, the SHA-256
of its label JSON (or its absence) is remembered; `save` refuses with `LabelConflict` when
the JSON on disk is no longer that one, so the UI can ask before overwriting someone
else's work. The JSON is the label's commit marker (see `inference.labels`), so comparing it
is comparing the whole label.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference import (
    FALLBACK_THRESHOLD,
    HemaviewError,
    LabelFormatError,
    NotFundusError,
    Photo,
    Prediction,
    Segmenter,
    atomic_write_bytes,
    read_photo,
)
from inference.labels import (
    DEFAULT_LABEL_DIR_NAME,
    MASK_SUFFIX,
    LabelPaths,
    ProvenanceRecord,
    default_label_dir,
    label_paths,
    load_label,
    read_mask,
    recover_pending,
    save_label,
)
from viewer.model.autosave import Autosaver, AutosaveSnapshot, AutosaveState, restore_into
from viewer.model.document import Document
from viewer.model.pred_cache import PredictionCache

#: Where a colleague's label goes when it is overwritten: beside the labels, not read by
#: training (which reads only the label folder's own files).
OVERWRITTEN_DIR = "overwritten"


class LabelConflict(HemaviewError):
    """The label on disk changed since the photo was opened; saving would overwrite it.

    `other_photo`: the file there is the label of another photo with the same name stem
    (X.jpg and X.png in one folder): no overwrite can resolve that, only another folder.
    """

    def __init__(self, path: Path, theirs: ProvenanceRecord | None, photo_name: str = ""):
        self.path = path
        self.theirs = theirs
        self.other_photo = (
            theirs is not None and bool(photo_name) and (theirs.photo.file_name != photo_name)
        )
        if self.other_photo and theirs is not None:
            super().__init__(
                f"{path} is the label of {theirs.photo.file_name}, another photo with the "
                f"same name as {photo_name}; their labels cannot share one folder"
            )
            return
        if theirs is not None:
            who = theirs.reviewer or "someone"
            when = theirs.modified.strftime("%Y-%m-%d %H:%M")
            detail = f"{who} saved it at {when} (status: {theirs.status})"
        elif path.exists():
            detail = "it was replaced by a file Hemaview cannot read"
        else:
            detail = "it was deleted"
        super().__init__(f"{path.name}: the label changed since you opened the photo: {detail}")


class LabelFolderNotWritable(HemaviewError):
    """Labels cannot be written to the chosen folder (read-only share, no permission)."""

    def __init__(self, folder: Path, reason: str = ""):
        self.folder = folder
        super().__init__(
            f"labels cannot be saved in {folder}{f' ({reason})' if reason else ''}; "
            "choose another label folder"
        )


# --------------------------------------------------------------------------------------------
# Where labels can go


def _nearest_existing(folder: Path) -> Path | None:
    p = Path(os.path.abspath(folder))
    while not p.exists():
        if p.parent == p:
            return None
        p = p.parent
    return p


def _probe_write(folder: Path) -> bool:
    """Create and delete a file: the only check that holds for ACLs, shares and Windows,
    where os.access answers from permission bits alone."""
    try:
        fd, name = tempfile.mkstemp(prefix=".hemaview-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return True


def label_folder_problem(folder: str | os.PathLike[str]) -> str | None:
    """None when labels can be written to `folder` (created if need be), else why not."""
    target = Path(folder)
    if target.exists() and not target.is_dir():
        return f"{target} is a file, not a folder"
    base = _nearest_existing(target)
    if base is None or not base.is_dir():
        return f"{target} cannot be created"
    # The folder itself when it exists, else the folder it would be created in.
    if not os.access(base, os.W_OK | os.X_OK) or not _probe_write(base):
        if base == target:
            return f"{target} is read-only"
        return f"{base} is read-only, so {target.name} cannot be created in it"
    return None


# --------------------------------------------------------------------------------------------
# Opening


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
    except OSError:
        return "unreadable"


@dataclass(frozen=True)
class LabelStamp:
    """The label JSON as a document saw it when it was opened (sha256 None: no label)."""

    provenance: Path
    sha256: str | None


@dataclass
class OpenedPhoto:
    """A photo opened for review: everything the GUI thread needs to show it at once."""

    photo: Photo  # full resolution, for display
    document: Document
    prediction: Prediction | None
    label_dir: Path
    from_cache: bool = False  # the prediction was rebuilt from the cache (no model run)
    prediction_error: str | None = None  # why there is no overlay (not a fundus, no model)
    # The model is on its way (still loading) and has not run on this photo yet: not the
    # same as "no model", and never to be shown or saved as "no haemorrhage".
    model_pending: bool = False
    model_sha256: str | None = None  # the model this photo was opened with (None: none yet)
    not_fundus: bool = False  # refused as not a fundus photograph: it can run on request
    label_error: str | None = None  # a saved label that could not be used (shown, not fatal)
    autosave: AutosaveState | None = None  # unsaved edits from earlier, to offer back
    label_folder_problem: str | None = None  # the label folder is read-only: ask for another


@dataclass
class ExportReport:
    """What `export_accepted_labels` did."""

    folder: Path  # what to give the training pipeline: `hemaview-train --labels FOLDER`
    exported: list[str] = field(default_factory=list)  # photo file names
    skipped: list[str] = field(default_factory=list)  # one message each


class ReviewSession:
    """Opens photos into documents and saves them; one per app window.

    `segmenter` and `cache` are optional: without a model the viewer still opens photos and
    saves labels, without an overlay. `label_dir` None means `hemaview-labels` beside each
    photo.
    """

    def __init__(
        self,
        *,
        segmenter: Segmenter | None = None,
        cache: PredictionCache | None = None,
        autosaver: Autosaver | None = None,
        label_dir: str | os.PathLike[str] | None = None,
    ):
        self.segmenter = segmenter
        # True while the window's model is still loading: photos opened meanwhile are
        # "not run yet", not "no model" (set it back to False when the model fails to load).
        self.model_pending = False
        self.cache = cache
        self.autosaver = autosaver
        self.label_dir = Path(label_dir) if label_dir is not None else None
        self._stamps: weakref.WeakKeyDictionary[Document, LabelStamp] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        # The write probe creates a file: once per folder, not on every photo opened.
        self._folder_problems: dict[Path, str | None] = {}

    def label_folder_problem(
        self, folder: str | os.PathLike[str], *, recheck: bool = False
    ) -> str | None:
        """`label_folder_problem`, remembered per folder (`recheck` after the user fixed it)."""
        key = Path(os.path.abspath(folder))
        with self._lock:
            if not recheck and key in self._folder_problems:
                return self._folder_problems[key]
        problem = label_folder_problem(key)
        with self._lock:
            self._folder_problems[key] = problem
        return problem

    def label_dir_for(self, photo_path: str | os.PathLike[str]) -> Path:
        return self.label_dir if self.label_dir is not None else default_label_dir(photo_path)

    # -- predictions ---------------------------------------------------------------------

    def cached_prediction(
        self, photo: Photo, segmenter: Segmenter | None = None
    ) -> Prediction | None:
        """Rebuilt from the cache (tens of milliseconds), or None on a miss. `segmenter`:
        the model to look for (default: the session's)."""
        segmenter = segmenter or self.segmenter
        if segmenter is None or self.cache is None or not photo.sha256:
            return None
        hit = self.cache.get(photo.sha256, segmenter.cache_key)
        if hit is None:
            return None
        return segmenter.rebuild(photo, hit.geometry, hit.working, hit.provenance)

    def predict(
        self,
        path: str | os.PathLike[str],
        photo: Photo,
        *,
        force: bool = False,
        segmenter: Segmenter | None = None,
    ) -> Prediction:
        """Run the model on one photo and cache the result (seconds on a CPU); `force` runs
        a photo refused as not a fundus photograph on its whole frame."""
        segmenter = segmenter or self.segmenter
        if segmenter is None:
            raise HemaviewError("no model is loaded")
        # From the path, as pre-annotation and the batch CLI do, so every route to a photo's
        # prediction gives the same map.
        fresh = segmenter.predict(path, force=force)
        if self.cache is not None:
            self.cache.put(fresh, segmenter.cache_key)
        # What the cache gives back later, so that first opening and reopening show the
        # same overlay to the last pixel.
        return segmenter.rebuild(photo, fresh.geometry, fresh.working, fresh.provenance)

    # -- opening -------------------------------------------------------------------------

    def open(
        self,
        photo_path: str | os.PathLike[str],
        *,
        predict_if_missing: bool = False,
        force: bool = False,
    ) -> OpenedPhoto:
        """Read a photo, its prediction (cache; or the model) and its saved label. With
        `force`, a photo refused as not a fundus photograph is run on its whole frame.

        Raises ImageReadError when the photo cannot be read; everything else that can go
        wrong (not a fundus, a broken label) is reported in the OpenedPhoto.
        """
        path = Path(photo_path)
        # One look at the model for the whole open: the model may arrive on the GUI thread
        # meanwhile, and a photo must not be half opened with it (a threshold from one, a
        # prediction from none). The caller compares `model_sha256` with its model now.
        segmenter, pending = self.segmenter, self.model_pending
        photo = read_photo(path)
        prediction: Prediction | None = None
        from_cache = False
        prediction_error: str | None = None
        not_fundus = False
        if segmenter is None:
            if not pending:
                prediction_error = "no model is loaded"
        else:
            try:
                prediction = self.cached_prediction(photo, segmenter)
                from_cache = prediction is not None
                if prediction is None and (predict_if_missing or force):
                    prediction = self.predict(path, photo, force=force, segmenter=segmenter)
                if prediction is not None:
                    # 12 MP of comparisons: done here, off the GUI thread, and kept.
                    _ = prediction.uncertainty
            except NotFundusError as exc:
                prediction_error, not_fundus = str(exc), True
            except HemaviewError as exc:
                prediction_error = str(exc)
        label_dir = self.label_dir_for(path)
        saved, stamp, label_error = self._read_label(path, label_dir, photo.sha256)
        document = Document(
            path,
            (photo.width, photo.height),
            photo.sha256,
            prediction=prediction,
            saved=saved,
            default_threshold=segmenter.threshold if segmenter else FALLBACK_THRESHOLD,
            no_colour=photo.no_colour,
        )
        with self._lock:
            self._stamps[document] = stamp
        autosave = None
        if self.autosaver is not None:
            state = self.autosaver.state(path)
            if state is not None and state.photo_sha256 == photo.sha256:
                autosave = state
        return OpenedPhoto(
            photo=photo,
            document=document,
            prediction=prediction,
            label_dir=label_dir,
            from_cache=from_cache,
            prediction_error=prediction_error,
            model_pending=segmenter is None and pending,
            model_sha256=segmenter.model.sha256 if segmenter is not None else None,
            not_fundus=not_fundus,
            label_error=label_error,
            autosave=autosave,
            label_folder_problem=self.label_folder_problem(label_dir),
        )

    def _read_label(
        self, path: Path, label_dir: Path, photo_sha256: str
    ) -> tuple[tuple[np.ndarray, ProvenanceRecord] | None, LabelStamp, str | None]:
        """The photo's saved label (None: none, or unusable, with why), and the stamp later
        saves are checked against."""
        paths = label_paths(path, label_dir)
        saved: tuple[np.ndarray, ProvenanceRecord] | None = None
        label_error: str | None = None
        with self._lock:  # one save or open of a label pair at a time in this app
            # (no recovery of an interrupted save here: only writers recover)
            # Stamped before reading: a colleague's save in between makes a (safe) conflict.
            stamp = LabelStamp(paths.provenance, _file_sha256(paths.provenance))
            try:
                saved = load_label(label_dir, path)
            except LabelFormatError as exc:
                label_error = str(exc)
        if saved is not None and saved[1].photo.sha256 != photo_sha256:
            # load_label checked the photo's bytes itself; this is the race of the photo
            # being replaced between its read and ours.
            saved, label_error = None, f"{path.name}: the photo changed while it was opened"
        return saved, stamp, label_error

    def stamp(self, document: Document) -> LabelStamp | None:
        with self._lock:
            return self._stamps.get(document)

    def restore_autosave(self, document: Document) -> AutosaveState:
        """Put the photo's autosaved edits into `document` (HemaviewError if unusable).

        Conflicts are then judged against the label as it was when the edits began, so a
        colleague's save during the crash is not silently overwritten.
        """
        if self.autosaver is None:
            raise HemaviewError("autosave is not enabled")
        mask, state = self.autosaver.restore(document.path)
        restore_into(document, mask, state)
        if state.base_label_sha256 is not None:  # "" : there was no label when edits began
            folder = Path(state.label_dir) if state.label_dir else self.label_dir_for(document.path)
            provenance = label_paths(document.path, folder).provenance
            with self._lock:
                self._stamps[document] = LabelStamp(provenance, state.base_label_sha256 or None)
        return state

    def autosave(self, document: Document) -> bool:
        """Autosave now (on the calling thread); for a worker, use snapshot_for_autosave."""
        if self.autosaver is None:
            return False
        snapshot = self.snapshot_for_autosave(document)
        return snapshot is not None and self.autosaver.write(snapshot)

    def snapshot_for_autosave(self, document: Document) -> AutosaveSnapshot | None:
        """A copy of the document's state to write later (None without an autosaver)."""
        if self.autosaver is None:
            return None
        stamp = self.stamp(document)
        return self.autosaver.snapshot(
            document,
            label_dir=stamp.provenance.parent if stamp else self.label_dir_for(document.path),
            base_label_sha256=(stamp.sha256 or "") if stamp else None,
        )

    # -- saving --------------------------------------------------------------------------

    def check_conflict(
        self, document: Document, label_dir: str | os.PathLike[str] | None = None
    ) -> LabelConflict | None:
        """The conflict a save to `label_dir` would raise now, or None."""
        folder = Path(label_dir) if label_dir is not None else self._target(document)
        paths = label_paths(document.path, folder)
        with contextlib.suppress(OSError):
            recover_pending(paths)
        current = _file_sha256(paths.provenance)
        stamp = self.stamp(document)
        expected = (
            stamp.sha256
            if stamp is not None and _same(stamp.provenance, paths.provenance)
            else None
        )
        theirs = None
        with contextlib.suppress(OSError, LabelFormatError):
            theirs = ProvenanceRecord.from_json(
                paths.provenance.read_bytes(), str(paths.provenance)
            )
        if theirs is not None and theirs.photo.file_name != document.path.name:
            return LabelConflict(paths.provenance, theirs, document.path.name)
        if current == expected:
            return None
        return LabelConflict(paths.provenance, theirs, document.path.name)

    def their_mask(self, conflict: LabelConflict) -> np.ndarray | None:
        """The mask of the label a conflict is about (None when it cannot be read)."""
        mask = conflict.path.with_name(conflict.path.stem + MASK_SUFFIX)
        try:
            return read_mask(mask)
        except (LabelFormatError, OSError):
            return None

    def _back_up(self, paths: LabelPaths) -> Path | None:
        """Copy the label pair about to be overwritten into `overwritten/` beside it (a
        folder training does not read): a colleague's work is never simply lost."""
        try:
            record = ProvenanceRecord.from_json(paths.provenance.read_bytes())
            mask = paths.mask.read_bytes()
        except (OSError, LabelFormatError):
            return None
        who = re.sub(r"[^\w.-]+", "_", record.reviewer or "unknown")[:40]
        stamp = record.modified.strftime("%Y%m%d-%H%M%S")
        folder = paths.provenance.parent / OVERWRITTEN_DIR
        base = f"{paths.provenance.stem}.{stamp}.{who}"
        atomic_write_bytes(folder / f"{base}{MASK_SUFFIX}", mask)
        atomic_write_bytes(folder / f"{base}.json", paths.provenance.read_bytes())
        return folder / f"{base}.json"

    def _target(self, document: Document) -> Path:
        stamp = self.stamp(document)
        return stamp.provenance.parent if stamp is not None else self.label_dir_for(document.path)

    def save(
        self,
        document: Document,
        label_dir: str | os.PathLike[str] | None = None,
        reviewer: str = "",
        *,
        overwrite: bool = False,
    ) -> ProvenanceRecord:
        """Write the label pair; the saved record (with its mask SHA-256) is returned.

        Raises LabelConflict when the label on disk changed since the photo was opened
        (unless `overwrite`), LabelFolderNotWritable when the folder refuses the write, and
        LabelFormatError for a label that does not check out (nothing is written then).
        """
        folder = Path(label_dir) if label_dir is not None else self._target(document)
        conflict = self.check_conflict(document, folder)
        if conflict is not None and (conflict.other_photo or not overwrite):
            raise conflict
        record = document.to_record(reviewer)
        with self._lock:
            try:
                if conflict is not None:  # overwriting a colleague's label: keep theirs too
                    self._back_up(label_paths(document.path, folder))
                paths = save_label(folder, document.path, document.mask, record)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) or isinstance(
                    exc, PermissionError
                ):
                    self._folder_problems.pop(Path(os.path.abspath(folder)), None)
                    raise LabelFolderNotWritable(folder, exc.strerror or str(exc)) from None
                raise HemaviewError(
                    f"the label could not be saved in {folder} ({exc.strerror or exc})"
                ) from None
            data = paths.provenance.read_bytes()
            saved = ProvenanceRecord.from_json(data, str(paths.provenance))
            self._stamps[document] = LabelStamp(paths.provenance, hashlib.sha256(data).hexdigest())
        document.mark_saved(saved)
        if self.autosaver is not None:
            self.autosaver.discard(document.path)
        return saved


def _same(a: Path, b: Path) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


# --------------------------------------------------------------------------------------------
# Export for training


def export_accepted_labels(
    photos: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    label_dir_for: Callable[[Path], Path] | str | os.PathLike[str] | None = None,
) -> ExportReport:
    """Copy accepted labels and their photos into a folder the training pipeline reads.

    The layout is the viewer's own: photos in `out_dir`, labels in
    `out_dir/hemaview-labels`, so `hemaview-train --labels OUT/hemaview-labels` finds each
    label's photo beside the label folder (training's default) without `--label-photos`.
    Photos are copied because training checks each photo's SHA-256 against its label and
    a label folder alone does not hold the pixels. Each label is checked first (the pair
    matches, the photo still hashes to what was labelled); what fails is skipped and said
    why. Files are written atomically, label JSON last, so a half-finished export never
    shows a label whose PNG or photo is missing. Exporting again replaces what is there.
    """
    out = Path(out_dir)
    labels_out = out / DEFAULT_LABEL_DIR_NAME
    report = ExportReport(folder=labels_out)
    if callable(label_dir_for):
        where = label_dir_for
    elif label_dir_for is not None:
        fixed = Path(label_dir_for)
        where = lambda _p: fixed  # noqa: E731
    else:
        where = default_label_dir
    taken: dict[str, Path] = {}
    for source in photos:
        photo = Path(source)
        folder = where(photo)
        paths = label_paths(photo, folder)
        if not paths.provenance.exists():
            continue
        try:
            loaded = load_label(folder, photo)  # checks the pair and the photo's bytes
        except LabelFormatError as exc:
            report.skipped.append(f"{photo.name}: {exc}")
            continue
        if loaded is None or loaded[1].status != "accepted":
            continue
        problem = loaded[1].empty_label_problem(not loaded[0].any())
        if problem is not None:
            report.skipped.append(problem)
            continue
        stem = photo.stem
        if stem in taken and not _same(taken[stem], photo):
            report.skipped.append(
                f"{photo.name}: another exported photo ({taken[stem]}) has the same name; "
                "training could not tell their labels apart"
            )
            continue
        if _same(out, photo.parent):
            report.skipped.append(f"{photo.name}: the export folder is the photo's own folder")
            continue
        try:
            _export_one(photo, paths, out, labels_out)
        except OSError as exc:
            report.skipped.append(f"{photo.name}: could not be exported ({exc.strerror or exc})")
            continue
        taken[stem] = photo
        report.exported.append(photo.name)
    return report


def _export_one(photo: Path, paths: LabelPaths, out: Path, labels_out: Path) -> None:
    target_photo = out / photo.name
    data = photo.read_bytes()
    if _file_sha256(target_photo) != hashlib.sha256(data).hexdigest():
        atomic_write_bytes(target_photo, data)
    target = label_paths(target_photo, labels_out)
    # The PNG before the JSON: the JSON is the commit marker that readers look for.
    atomic_write_bytes(target.mask, paths.mask.read_bytes())
    atomic_write_bytes(target.provenance, paths.provenance.read_bytes())
