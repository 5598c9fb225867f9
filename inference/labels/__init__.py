"""The label file format: a corrected haemorrhage mask and its provenance, on disk.

Three parts of Hemaview meet here: the viewer and the batch CLI write labels, and the training
pipeline reads them back as training data. One module owns the format so that what is
written is exactly what is read.

For a photo ``X.jpg`` (any suffix) the label folder holds

- ``X_HE.png``: a palette PNG at the photo's full size, index 0 background (black) and index 1
  haemorrhage (red), so any image viewer shows it as a picture, not as a black rectangle;
- ``X.json``: the provenance record (who, when, which model, what the reviewer changed,
  per-lesion decisions) with the SHA-256 of the PNG's bytes.

The PNG is written first and the JSON last, each atomically: the JSON is the commit marker.
A pair whose ``mask_sha256`` does not match the PNG on disk (a crash between the two writes,
or files copied by hand from different saves) is reported, never used silently.

Readers also accept IDRiD's ``X_HE.tif`` (a 1-bit palette TIFF holding 0 and 1) and plain
greyscale or RGB masks. Palette masks are read by their index values: converting IDRiD's
masks to greyscale first turns lesion pixels into 76, and a threshold at 128 then erases
every lesion.
"""

from inference.errors import LabelFormatError
from inference.labels.codec import (
    PALETTE,
    BoolMask,
    decode_mask,
    encode_mask_png,
    mask_changes,
    read_mask,
    write_mask_png,
)
from inference.labels.records import (
    DECISIONS,
    DEVICES,
    FINDINGS,
    FOV_METHODS,
    SCHEMA_VERSION,
    SOURCES,
    STATUSES,
    Decision,
    Device,
    Finding,
    LesionDecision,
    MaskChanges,
    ModelInfo,
    PhotoInfo,
    ProvenanceRecord,
    ReviewStatus,
    Source,
    now,
)
from inference.labels.store import (
    DEFAULT_LABEL_DIR_NAME,
    MASK_SUFFIX,
    PROVENANCE_SUFFIX,
    LabelEntry,
    LabelPaths,
    committed_pair,
    default_label_dir,
    iter_labels,
    label_paths,
    load_label,
    recover_pending,
    save_label,
)

__all__ = [
    "DECISIONS",
    "DEFAULT_LABEL_DIR_NAME",
    "DEVICES",
    "FINDINGS",
    "FOV_METHODS",
    "MASK_SUFFIX",
    "PALETTE",
    "PROVENANCE_SUFFIX",
    "SCHEMA_VERSION",
    "SOURCES",
    "STATUSES",
    "BoolMask",
    "Decision",
    "Device",
    "Finding",
    "LabelEntry",
    "LabelFormatError",
    "LabelPaths",
    "LesionDecision",
    "MaskChanges",
    "ModelInfo",
    "PhotoInfo",
    "ProvenanceRecord",
    "ReviewStatus",
    "Source",
    "committed_pair",
    "decode_mask",
    "default_label_dir",
    "encode_mask_png",
    "iter_labels",
    "label_paths",
    "load_label",
    "mask_changes",
    "now",
    "read_mask",
    "recover_pending",
    "save_label",
    "write_mask_png",
]
