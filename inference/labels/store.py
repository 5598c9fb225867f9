"""Where labels live and how a pair is saved and read: atomic, crash-safe writes (the JSON
is the commit marker), readers that never change the folder, recovery by writers only."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import NamedTuple

from inference.atomic import atomic_write_bytes, atomic_write_text
from inference.errors import LabelFormatError
from inference.labels import codec
from inference.labels.codec import BoolMask, _check_mask, _read_file, decode_mask
from inference.labels.records import STATUSES, ProvenanceRecord, _check_choice

DEFAULT_LABEL_DIR_NAME = "hemaview-labels"
MASK_SUFFIX = "_HE.png"
PROVENANCE_SUFFIX = ".json"


class LabelPaths(NamedTuple):
    mask: Path
    provenance: Path


def default_label_dir(photo_path: str | os.PathLike[str]) -> Path:
    """The folder used when the user has not chosen one: ``hemaview-labels`` beside the photo."""
    return Path(photo_path).parent / DEFAULT_LABEL_DIR_NAME


def label_paths(
    photo_path: str | os.PathLike[str], label_dir: str | os.PathLike[str]
) -> LabelPaths:
    """``X.jpg`` -> ``label_dir/X_HE.png`` and ``label_dir/X.json``."""
    stem = Path(photo_path).stem
    folder = Path(label_dir)
    return LabelPaths(mask=folder / f"{stem}{MASK_SUFFIX}", provenance=folder / f"{stem}.json")


# --------------------------------------------------------------------------------------------
# A label: the mask and its provenance, saved and loaded as a pair


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def save_label(
    label_dir: str | os.PathLike[str],
    photo_path: str | os.PathLike[str],
    mask: BoolMask,
    record: ProvenanceRecord,
) -> LabelPaths:
    """Write ``X_HE.png`` then ``X.json`` (the commit marker, with the PNG's SHA-256).

    Each file is written atomically. Nothing is written unless the mask, the record and the
    folder all check out. The record's ``mask_sha256`` is replaced by the saved PNG's.
    """
    photo = Path(photo_path)
    folder = Path(label_dir)
    m = _check_mask(mask)
    paths = label_paths(photo, folder)

    # Photos are never modified: refuse any layout where a label file could land on a photo.
    if _same_file(folder, photo):
        raise LabelFormatError(f"{folder}: the label folder is the photo itself")
    if folder.exists() and not folder.is_dir():
        raise LabelFormatError(f"{folder}: the label folder is a file, not a folder")
    if _same_file(folder, photo.parent):
        raise LabelFormatError(
            f"{folder}: labels are not written beside the photos; choose a label folder "
            f"such as {default_label_dir(photo)}"
        )
    for target in paths:
        if _same_file(target, photo):
            raise LabelFormatError(f"{target}: the label file would overwrite the photo")

    if record.photo.file_name != photo.name:
        raise LabelFormatError(
            f"the provenance record is for {record.photo.file_name!r}, not for {photo.name!r}"
        )
    height, width = m.shape
    if (width, height) != (record.photo.width, record.photo.height):
        raise LabelFormatError(
            f"{photo.name}: the mask is {width}x{height} pixels but the photo is "
            f"{record.photo.width}x{record.photo.height}; a label must be at full size"
        )
    _refuse_other_photos_label(paths.provenance, photo.name)

    data = codec.encode_mask_png(m)  # looked up at call time: tests stand in a failing encoder
    saved = dataclasses.replace(record, mask_sha256=hashlib.sha256(data).hexdigest())
    text = saved.to_json()  # serialise before writing anything, so a bad record changes nothing
    recover_pending(paths)
    # Two files cannot be replaced in one step, so both are staged whole first; a crash at
    # any point leaves either the previous pair or the new one (see recover_pending).
    staged = _staged(paths)
    atomic_write_bytes(staged.mask, data)
    atomic_write_text(staged.provenance, text)
    os.replace(staged.mask, paths.mask)
    os.replace(staged.provenance, paths.provenance)
    return paths


def _staged(paths: LabelPaths) -> LabelPaths:
    return LabelPaths(
        mask=paths.mask.with_name(f".{paths.mask.name}.new"),
        provenance=paths.provenance.with_name(f".{paths.provenance.name}.new"),
    )


def recover_pending(paths: LabelPaths) -> None:
    """Finish or discard a save that a crash interrupted.

    A staged JSON exists only once its PNG was staged whole, so it rolls the save forward,
    whether or not the staged PNG was already moved into place. A staged PNG without a
    staged JSON is a save that never reached its commit point: the old pair stands.
    """
    staged = _staged(paths)
    if staged.provenance.exists():
        try:
            record = ProvenanceRecord.from_json(
                staged.provenance.read_bytes(), str(staged.provenance)
            )
        except (OSError, LabelFormatError):
            record = None
        if staged.mask.exists():
            candidate = staged.mask.read_bytes()
        elif paths.mask.exists():
            candidate = paths.mask.read_bytes()
        else:
            candidate = b""
        if record is not None and hashlib.sha256(candidate).hexdigest() == record.mask_sha256:
            if staged.mask.exists():
                os.replace(staged.mask, paths.mask)
            os.replace(staged.provenance, paths.provenance)
            return
        staged.provenance.unlink(missing_ok=True)
    staged.mask.unlink(missing_ok=True)


def committed_pair(paths: LabelPaths) -> LabelPaths:
    """The files a reader should read, changing nothing on disk: a save caught between its
    commit point (the staged JSON written whole) and its renames counts as done, as
    recover_pending would finish it. Only writers recover; a reader that moved or deleted
    files would break the save of a colleague that is in progress."""
    staged = _staged(paths)
    try:
        record = ProvenanceRecord.from_json(staged.provenance.read_bytes(), str(staged.provenance))
    except (OSError, LabelFormatError):
        return paths  # no save at its commit point: the pair on disk stands
    for mask in (staged.mask, paths.mask):
        with contextlib.suppress(OSError):
            if hashlib.sha256(mask.read_bytes()).hexdigest() == record.mask_sha256:
                return LabelPaths(mask=mask, provenance=staged.provenance)
    return paths


def _refuse_other_photos_label(provenance: Path, photo_name: str) -> None:
    # X.jpg and X.png in one folder map to the same label names; never overwrite the other's.
    try:
        existing = ProvenanceRecord.from_json(provenance.read_bytes(), str(provenance))
    except (OSError, LabelFormatError):
        return  # nothing there, or a broken file that a fresh save may replace
    if existing.photo.file_name != photo_name:
        raise LabelFormatError(
            f"{provenance}: already holds the label of {existing.photo.file_name!r}; photos "
            f"with the same name stem cannot share a label folder"
        )


def _check_pair(paths: LabelPaths, record: ProvenanceRecord, mask_bytes: bytes) -> None:
    if not record.mask_sha256:
        raise LabelFormatError(
            f"{paths.provenance}: carries no mask_sha256, so no mask is committed"
        )
    actual = hashlib.sha256(mask_bytes).hexdigest()
    if actual != record.mask_sha256:
        raise LabelFormatError(
            f"{paths.mask} does not match its provenance {paths.provenance.name} (mask SHA-256 "
            f"{actual[:12]}…, recorded {record.mask_sha256[:12]}…): a save was interrupted or "
            "the files come from different saves; the label cannot be trusted"
        )


def load_label(
    label_dir: str | os.PathLike[str],
    photo_path: str | os.PathLike[str],
    *,
    check_photo: bool = True,
) -> tuple[BoolMask, ProvenanceRecord] | None:
    """The saved label of a photo, or None when it has none.

    A PNG without its JSON is an uncommitted save (a crash before the JSON was written) and
    counts as no label. With `check_photo`, the photo's bytes must still hash to the recorded
    SHA-256, so a label is never shown on a different photo that took over the name.
    """
    photo = Path(photo_path)
    for _attempt in range(3):
        pair = committed_pair(label_paths(photo, label_dir))
        try:
            return _load_pair(pair, photo, check_photo)
        except LabelFormatError:
            # A save that renamed its staged files between our look and our read leaves
            # another committed pair: read that one. The same pair again is a real fault.
            if committed_pair(label_paths(photo, label_dir)) == pair:
                raise
    raise LabelFormatError(
        f"{label_paths(photo, label_dir).provenance}: the label kept changing while it was "
        "read (saves in progress); try again"
    )


def _load_pair(
    paths: LabelPaths, photo: Path, check_photo: bool
) -> tuple[BoolMask, ProvenanceRecord] | None:
    if not paths.provenance.exists():
        return None
    record = ProvenanceRecord.from_json(
        _read_file(paths.provenance, "provenance file"), str(paths.provenance)
    )
    if record.photo.file_name != photo.name:
        raise LabelFormatError(
            f"{paths.provenance}: is the label of {record.photo.file_name!r}, not of {photo.name!r}"
        )
    if not paths.mask.exists():
        raise LabelFormatError(
            f"{paths.provenance}: its mask {paths.mask.name} is missing from {paths.mask.parent}"
        )
    mask_bytes = _read_file(paths.mask, "mask file")
    _check_pair(paths, record, mask_bytes)
    if check_photo:
        digest = hashlib.sha256(_read_photo_bytes(photo)).hexdigest()
        if digest != record.photo.sha256:
            raise LabelFormatError(
                f"{photo}: the photo has changed since it was labelled (SHA-256 {digest[:12]}…, "
                f"the label records {record.photo.sha256[:12]}…)"
            )
    mask = decode_mask(
        mask_bytes, str(paths.mask), expected_size=(record.photo.width, record.photo.height)
    )
    return mask, record


def _read_photo_bytes(photo: Path) -> bytes:
    try:
        return photo.read_bytes()
    except OSError as exc:
        raise LabelFormatError(
            f"{photo}: the photo cannot be read ({exc.strerror or exc})"
        ) from None


class LabelEntry(NamedTuple):
    stem: str  # the photo's file name without its suffix
    mask: Path
    record: ProvenanceRecord


def iter_labels(
    label_dir: str | os.PathLike[str],
    *,
    statuses: Collection[str] | None = None,
    problems: list[LabelFormatError] | None = None,
) -> Iterator[LabelEntry]:
    """Every committed label pair in a folder, in file name order.

    Each pair's PNG is checked against the JSON's ``mask_sha256``, so training never learns
    from a mismatched pair; the mask itself is decoded by the caller (``read_mask``) when it
    needs it. `statuses` keeps only records with those review statuses (``{"accepted"}`` for
    training). A broken pair raises LabelFormatError, unless `problems` is given: then it is
    appended there and skipped. PNGs without a JSON are uncommitted saves and are skipped.
    """
    folder = Path(label_dir)
    if not folder.is_dir():
        raise LabelFormatError(f"{folder}: the label folder does not exist")
    if statuses is not None:
        for status in statuses:
            _check_choice(status, "statuses", STATUSES)
    # Hidden files are excluded: atomic writes leave their temporaries as ".X.json.*.tmp",
    # and a save in progress stages ".X.json.new" (read as committed_pair says; never moved
    # here: training reading a folder must not break a reviewer's save).
    candidates = sorted(
        p for p in folder.iterdir() if p.suffix == PROVENANCE_SUFFIX and not p.name.startswith(".")
    )
    for listed in candidates:
        stem = listed.stem
        paths = committed_pair(LabelPaths(folder / f"{stem}{MASK_SUFFIX}", listed))
        provenance = paths.provenance
        try:
            record = ProvenanceRecord.from_json(
                _read_file(provenance, "provenance file"), str(provenance)
            )
            if Path(record.photo.file_name).stem != stem:
                raise LabelFormatError(
                    f"{provenance}: records photo {record.photo.file_name!r}, whose label "
                    f"would be {Path(record.photo.file_name).stem}.json"
                )
            if statuses is not None and record.status not in statuses:
                continue
            if not paths.mask.exists():
                raise LabelFormatError(f"{provenance}: its mask {paths.mask.name} is missing")
            _check_pair(paths, record, _read_file(paths.mask, "mask file"))
        except LabelFormatError as exc:
            if problems is None:
                raise
            problems.append(exc)
            continue
        yield LabelEntry(stem=stem, mask=paths.mask, record=record)
