"""Whether a model's suggestion may replace the label already in a label folder.

One rule for every writer of model output (the batch CLI, the viewer's batch
pre-annotation): only an untouched model suggestion (status "todo", source "model") is ever
replaced. A label a reviewer has touched, another photo's label, or a file that is not a
Hemaview label at all is left as it is; a caller may write the new suggestion beside it, in
``BESIDE_DIR_NAME``, which neither training (``iter_labels`` reads one folder, not its
sub-folders) nor the viewer (``label_paths``) reads as the label.

Checking is not locking: a reviewer who saves between the last check and the writer's rename
is still overwritten. Writers check before running the model and again just before writing,
which leaves a window of milliseconds; label folders live on network shares, where no lock
that every platform honours exists.
"""

from __future__ import annotations

from pathlib import Path

from inference.errors import LabelFormatError
from inference.labels.records import ProvenanceRecord, ReviewStatus, Source
from inference.labels.store import LabelPaths, committed_pair, label_paths

#: The sub-folder of a label folder where a suggestion goes when a reviewed label holds its
#: place (`hemaview-infer --beside-reviewed`).
BESIDE_DIR_NAME = "model-suggestions"


def is_untouched_suggestion(record: ProvenanceRecord) -> bool:
    """True for model output nobody has reviewed: the only label a new suggestion replaces."""
    return record.status == ReviewStatus.TODO and record.source == Source.MODEL


def beside_paths(photo_path: str | Path, label_dir: str | Path) -> LabelPaths:
    """Where a suggestion goes when the label's own place is taken by a reviewed label."""
    return label_paths(photo_path, Path(label_dir) / BESIDE_DIR_NAME)


def replace_refusal(paths: LabelPaths, photo_name: str) -> str | None:
    """Why a model's suggestion for `photo_name` must not replace the label at `paths`, in
    words naming the file; None when it may (no label there, or an untouched suggestion for
    the same photo)."""
    # A save caught between its commit point and its renames is a saved label.
    pair = committed_pair(paths)
    if not pair.provenance.exists():
        if pair.mask.exists():
            return (
                f"{pair.mask} has no {pair.provenance.name} beside it: not a label Hemaview wrote"
            )
        return None
    try:
        record = ProvenanceRecord.from_json(pair.provenance.read_bytes(), str(pair.provenance))
    except OSError as exc:
        return f"{pair.provenance} cannot be read ({exc.strerror or exc})"
    except LabelFormatError as exc:
        return f"{exc}: not a label this Hemaview can read"
    if record.photo.file_name != photo_name:
        return f"{pair.provenance} holds the label of another photo, {record.photo.file_name}"
    if not is_untouched_suggestion(record):
        who = f", reviewer {record.reviewer}" if record.reviewer else ""
        return (
            f"{pair.provenance} holds a label a reviewer has worked on (status "
            f"{record.status}, source {record.source}{who})"
        )
    return None
