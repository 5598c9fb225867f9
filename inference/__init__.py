"""Hemaview's inference engine: photo in, calibrated haemorrhage probability out.

No Qt and no torch here: the viewer, the batch CLI and the training pipeline all stand on
this package, and a clinic install runs it without either.
"""

from inference.contract import IDRID_ATTRIBUTION, ModelContract, PreprocessRecipe
from inference.errors import (
    BackendError,
    HemaviewError,
    ImageReadError,
    LabelFormatError,
    ModelContractError,
    NotFundusError,
)
from inference.model_file import ModelFile
from inference.photo_io import Photo, read_photo
from inference.postprocess import Lesion
from inference.prediction import PhotoFailure, Prediction, Provenance
from inference.segmenter import Segmenter
from inference.version import __version__

__all__ = [
    "IDRID_ATTRIBUTION",
    "BackendError",
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
    "Segmenter",
    "__version__",
    "read_photo",
]
