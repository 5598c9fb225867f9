"""Hemaview's inference engine: photo in, calibrated haemorrhage probability out.

No Qt and no torch here: the viewer, the batch CLI and the training pipeline all stand on
this package, and a clinic install runs it without either.
"""

from inference.atomic import atomic_write_bytes, atomic_write_text
from inference.cancel import Cancel
from inference.contract import (
    FALLBACK_THRESHOLD,
    IDRID_ATTRIBUTION,
    THRESHOLD_STEP,
    ModelContract,
    PreprocessRecipe,
    stepped_threshold,
)
from inference.dispatch import Dispatcher
from inference.errors import (
    BackendError,
    HemaviewError,
    ImageReadError,
    LabelFormatError,
    ModelContractError,
    NotFundusError,
)
from inference.fov import FieldOfView
from inference.local_devices import bundled_cuda_status, runtime_summary
from inference.model_file import ModelFile
from inference.photo_io import Photo, is_photo_path, read_photo
from inference.postprocess import Lesion
from inference.prediction import PhotoFailure, Prediction, Provenance
from inference.preprocess import Geometry, apply_clahe
from inference.remote import RemoteConfig, remote_health
from inference.resources import app_icon_path, sample_photos_dir, shipped_model_path
from inference.segmenter import Segmenter
from inference.version import __version__

# What the viewer may use (held by an import-linter contract): these names, and the two
# public subpackages `inference.labels` (the label format) and `inference.anatomy`.
__all__ = [
    "FALLBACK_THRESHOLD",
    "IDRID_ATTRIBUTION",
    "THRESHOLD_STEP",
    "BackendError",
    "Cancel",
    "Dispatcher",
    "FieldOfView",
    "Geometry",
    "HemaviewError",
    "ImageReadError",
    "LabelFormatError",
    "Lesion",
    "ModelContract",
    "ModelContractError",
    "ModelFile",
    "NotFundusError",
    "Photo",
    "PhotoFailure",
    "Prediction",
    "PreprocessRecipe",
    "Provenance",
    "RemoteConfig",
    "Segmenter",
    "__version__",
    "app_icon_path",
    "apply_clahe",
    "atomic_write_bytes",
    "atomic_write_text",
    "bundled_cuda_status",
    "is_photo_path",
    "read_photo",
    "remote_health",
    "runtime_summary",
    "sample_photos_dir",
    "shipped_model_path",
    "stepped_threshold",
]
