"""The model contract: what a Hemaview ONNX file must say about itself, in its metadata.

This module is the one definition of the metadata keys. Training writes them at export,
every backend reads them, and a model without them is refused with a message that names
what is missing. The metadata is read from the file's `metadata_props` without building a
session or loading the graph (inference.onnx_file), so a model is checked before any
backend exists and the backend's session is the only one it gets; onnxruntime's
`get_modelmeta()` reads the same values from that session.

The model's SHA-256 is stored inside the file it describes, so it is defined over the file
with that one value zeroed: `file_sha256()` below recomputes it, and a file whose content
no longer matches its recorded digest (damaged, edited) is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from inference.errors import ModelContractError
from inference.fov import (
    DETECTOR,
    DetectorConstants,
    FovParams,
    UnsupportedDetectorError,
    unsupported_detector,
)

SCHEMA_VERSION = 3
#: Schemas this version reads. 2 added the adaptive field-of-view detector's parameters, 3 its
#: fixed numbers (inference.fov.DetectorConstants).
READABLE_SCHEMAS = (1, 2, 3)
PREFIX = "hemaview."

# Every key the contract defines. Values are strings; structured values are JSON.
KEY_SCHEMA_VERSION = PREFIX + "schema_version"
KEY_MODEL_NAME = PREFIX + "model_name"
KEY_MODEL_VERSION = PREFIX + "model_version"
KEY_INPUT_NAME = PREFIX + "input_name"
KEY_INPUT_FORMAT = PREFIX + "input_format"
KEY_OUTPUT_NAME = PREFIX + "output_name"
KEY_EXTRA_OUTPUTS = PREFIX + "extra_outputs"
KEY_PREPROCESS = PREFIX + "preprocess"
KEY_DEFAULT_THRESHOLD = PREFIX + "default_threshold"
KEY_MIN_LESION_AREA = PREFIX + "min_lesion_area_px"
KEY_CLASS_NAMES = PREFIX + "class_names"
KEY_TRAINING_DATA = PREFIX + "training_data"
KEY_ATTRIBUTION = PREFIX + "attribution"
KEY_METRICS = PREFIX + "metrics"
KEY_TRAINING_CONFIG = PREFIX + "training_config"
KEY_TRAINING_COMMIT = PREFIX + "training_commit"
KEY_CREATED = PREFIX + "created"
KEY_SHA256 = PREFIX + "model_sha256"

REQUIRED_KEYS = (
    KEY_SCHEMA_VERSION,
    KEY_MODEL_NAME,
    KEY_INPUT_NAME,
    KEY_INPUT_FORMAT,
    KEY_OUTPUT_NAME,
    KEY_PREPROCESS,
    KEY_DEFAULT_THRESHOLD,
    KEY_MIN_LESION_AREA,
    KEY_CLASS_NAMES,
    KEY_TRAINING_DATA,
    KEY_ATTRIBUTION,
    KEY_METRICS,
    KEY_TRAINING_COMMIT,
    KEY_SHA256,
)

#: The only input layout schemas 1 and 2 know: RGB pixels as uint8, batch first, channels last.
#: Normalisation (mean/std) happens inside the graph, so remote requests carry bytes, not floats.
INPUT_FORMAT_UINT8_NHWC = "uint8-nhwc-rgb"

#: Stand-in written before the digest is known; same length as a hex SHA-256.
SHA256_PLACEHOLDER = "0" * 64

#: The one attribution of the IDRiD data that CC BY 4.0 asks for wherever its photos or a model
#: trained on them are shipped: the models' contracts, the model cards and the viewer's About
#: box all use this text.
IDRID_ATTRIBUTION = (
    "IDRiD dataset (c) Prasanna Porwal, Samiksha Pachade and Manesh Kokare, CC BY 4.0; "
    "Porwal et al., Indian Diabetic Retinopathy Image Dataset (IDRiD): A Database for Diabetic "
    "Retinopathy Screening Research, Data 2018, 3(3):25."
)


#: FovParams fields only schema 1 had (the fixed-threshold detector's).
SCHEMA_1_FOV_ONLY = ("threshold", "min_fill")
#: The first schema that records the field-of-view detector's numbers; see FovParams for how
#: the files before it are read.
FIRST_SCHEMA_WITH_DETECTOR_NUMBERS = 3


@dataclass(frozen=True)
class ClaheParams:
    clip_limit: float = 2.0
    tile_grid: int = 8
    space: str = "lab-l"  # CLAHE on the L channel of CIE Lab: contrast up, hues kept


@dataclass(frozen=True)
class PreprocessRecipe:
    """Everything the photo goes through before the graph; stored in the model file."""

    working_size: int = 1024  # the square the field of view is resized to
    fov: FovParams = field(default_factory=FovParams)  # how the field of view is found
    clahe: ClaheParams = field(default_factory=ClaheParams)
    mask_outside_fov: bool = True
    # Applied inside the graph to the uint8 input; recorded so the recipe is complete.
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, schema: int = SCHEMA_VERSION) -> PreprocessRecipe:
        """Parse a recorded recipe; UnsupportedDetectorError (a ValueError) when its field of
        view is found by a detector this code does not implement."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("the preprocessing recipe is not a JSON object")
        return cls(
            working_size=int(raw["working_size"]),
            fov=_fov_params(dict(raw.get("fov", {})), schema),
            clahe=_build(ClaheParams, raw.get("clahe", {})),
            mask_outside_fov=bool(raw.get("mask_outside_fov", True)),
            mean=_triple(raw.get("mean", (0.485, 0.456, 0.406))),
            std=_triple(raw.get("std", (0.229, 0.224, 0.225))),
        )


def _fov_params(raw: dict[str, Any], schema: int) -> FovParams:
    if schema == 1:
        for key in SCHEMA_1_FOV_ONLY:
            raw.pop(key, None)
    # The tag first: another detector's parameters need not even have the same names as ours.
    problem = unsupported_detector(str(raw.get("detector", DETECTOR)))
    if problem:
        raise UnsupportedDetectorError(problem)
    constants = raw.pop("constants", None)
    if constants is None and schema >= FIRST_SCHEMA_WITH_DETECTOR_NUMBERS:
        raise ValueError("the field-of-view parameters do not record the detector's constants")
    params = _build(FovParams, raw)
    if constants is None:
        return params  # recorded before the numbers were: the tag's numbers (see FovParams)
    if not isinstance(constants, dict):
        raise ValueError("the field-of-view detector's constants are not a JSON object")
    return replace(params, constants=_build(DetectorConstants, constants))


def _build(cls: Any, raw: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}")
    return cls(**raw)


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)


#: Where a suggestion's threshold starts when no model says (the viewer before one loads).
FALLBACK_THRESHOLD = 0.5
#: A reviewer moves the threshold in steps of this size (the slider and the keys).
THRESHOLD_STEP = 0.01


def threshold_problem(value: float) -> str | None:
    """Why `value` cannot be a probability threshold, or None: the one rule for a model's
    default, `hemaview-infer --threshold`, a label record and the viewer. Strictly between 0
    and 1: at 0 the whole field of view is one lesion, at 1 no pixel can reach it."""
    if not 0.0 < value < 1.0:  # also refuses NaN
        return f"must be between 0 and 1, not {value}"
    return None


def stepped_threshold(value: float) -> float:
    """`value` on the reviewer's steps, kept a step inside the bounds."""
    steps = round(1 / THRESHOLD_STEP)
    return min(max(round(value * steps), 1), steps - 1) / steps


@dataclass(frozen=True)
class ModelContract:
    """The parsed contract of one model file."""

    schema_version: int
    model_name: str
    model_version: str
    input_name: str
    input_format: str
    output_name: str
    preprocess: PreprocessRecipe
    default_threshold: float
    min_lesion_area_px: int
    class_names: tuple[str, ...]
    training_data: dict[str, Any]
    attribution: str
    metrics: dict[str, Any]
    training_commit: str
    sha256: str
    training_config: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    extra_outputs: tuple[str, ...] = ()

    def to_metadata(self) -> dict[str, str]:
        """The metadata map export writes into the ONNX file."""
        return {
            KEY_SCHEMA_VERSION: str(self.schema_version),
            KEY_MODEL_NAME: self.model_name,
            KEY_MODEL_VERSION: self.model_version,
            KEY_INPUT_NAME: self.input_name,
            KEY_INPUT_FORMAT: self.input_format,
            KEY_OUTPUT_NAME: self.output_name,
            KEY_EXTRA_OUTPUTS: json.dumps(list(self.extra_outputs)),
            KEY_PREPROCESS: self.preprocess.to_json(),
            KEY_DEFAULT_THRESHOLD: repr(float(self.default_threshold)),
            KEY_MIN_LESION_AREA: str(int(self.min_lesion_area_px)),
            KEY_CLASS_NAMES: json.dumps(list(self.class_names)),
            KEY_TRAINING_DATA: json.dumps(self.training_data, sort_keys=True),
            KEY_ATTRIBUTION: self.attribution,
            KEY_METRICS: json.dumps(self.metrics, sort_keys=True),
            KEY_TRAINING_CONFIG: json.dumps(self.training_config, sort_keys=True),
            KEY_TRAINING_COMMIT: self.training_commit,
            KEY_CREATED: self.created,
            KEY_SHA256: self.sha256,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str], *, source: str = "the model") -> ModelContract:
        """Parse and validate; raise ModelContractError naming what is missing or wrong."""
        if not any(k.startswith(PREFIX) for k in meta):
            raise ModelContractError(
                f"{source} is not a Hemaview model: its metadata holds no model contract "
                f"(expected keys such as {KEY_SCHEMA_VERSION}, {KEY_PREPROCESS})"
            )
        missing = [k for k in REQUIRED_KEYS if not meta.get(k)]
        if missing:
            raise ModelContractError(
                f"{source} has an incomplete model contract; missing: {', '.join(missing)}"
            )
        try:
            version = int(meta[KEY_SCHEMA_VERSION])
        except ValueError:
            raise ModelContractError(
                f"{source}: schema version {meta[KEY_SCHEMA_VERSION]!r} is not a number"
            ) from None
        if version not in READABLE_SCHEMAS:
            raise ModelContractError(
                f"{source} uses model contract schema {version}; this Hemaview reads schemas "
                f"{', '.join(map(str, READABLE_SCHEMAS))}. Use a model exported for this version."
            )
        if meta[KEY_INPUT_FORMAT] != INPUT_FORMAT_UINT8_NHWC:
            raise ModelContractError(
                f"{source}: input format {meta[KEY_INPUT_FORMAT]!r} is unknown "
                f"(expected {INPUT_FORMAT_UINT8_NHWC!r})"
            )
        try:
            threshold = float(meta[KEY_DEFAULT_THRESHOLD])
            min_area = int(meta[KEY_MIN_LESION_AREA])
            recipe = PreprocessRecipe.from_json(meta[KEY_PREPROCESS], schema=version)
            class_names = tuple(str(c) for c in json.loads(meta[KEY_CLASS_NAMES]))
            training_data = json.loads(meta[KEY_TRAINING_DATA])
            metrics = json.loads(meta[KEY_METRICS])
            config = json.loads(meta.get(KEY_TRAINING_CONFIG) or "{}")
            extra = tuple(json.loads(meta.get(KEY_EXTRA_OUTPUTS) or "[]"))
        except UnsupportedDetectorError as exc:
            # Its photos would be cropped unlike the photos it was trained on.
            raise ModelContractError(
                f"{source}: {exc}. Use a model exported for this version of Hemaview."
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelContractError(f"{source}: the model contract is malformed ({exc})") from None
        problem = threshold_problem(threshold)
        if problem:
            raise ModelContractError(f"{source}: the default threshold {problem}")
        if recipe.working_size < 32:
            raise ModelContractError(f"{source}: working size {recipe.working_size} is too small")
        sha = meta[KEY_SHA256].lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ModelContractError(f"{source}: recorded SHA-256 {sha!r} is not a hex digest")
        return cls(
            schema_version=version,
            model_name=meta[KEY_MODEL_NAME],
            model_version=meta.get(KEY_MODEL_VERSION, ""),
            input_name=meta[KEY_INPUT_NAME],
            input_format=meta[KEY_INPUT_FORMAT],
            output_name=meta[KEY_OUTPUT_NAME],
            preprocess=recipe,
            default_threshold=threshold,
            min_lesion_area_px=min_area,
            class_names=class_names,
            training_data=training_data,
            attribution=meta[KEY_ATTRIBUTION],
            metrics=metrics,
            training_commit=meta[KEY_TRAINING_COMMIT],
            sha256=sha,
            training_config=config,
            created=meta.get(KEY_CREATED, ""),
            extra_outputs=extra,
        )


def file_sha256(data: bytes, recorded: str) -> str:
    """SHA-256 of a model file's bytes with its own recorded digest zeroed.

    The digest is written into the file after it was computed over the placeholder, so
    replacing it back gives the bytes that were hashed.
    """
    needle = recorded.encode("ascii")
    if needle != SHA256_PLACEHOLDER.encode("ascii"):
        count = data.count(needle)
        if count != 1:
            raise ModelContractError(
                f"the model file holds its recorded SHA-256 {count} times (expected once)"
            )
        data = data.replace(needle, SHA256_PLACEHOLDER.encode("ascii"))
    return hashlib.sha256(data).hexdigest()


def stamp_sha256(path: Path) -> str:
    """Fill in the digest of a model file written with SHA256_PLACEHOLDER; return the digest.

    The placeholder is an ASCII string of fixed length, so replacing it keeps every
    protobuf length prefix valid. The file is rewritten atomically.
    """
    from inference.atomic import atomic_write_bytes

    data = path.read_bytes()
    placeholder = SHA256_PLACEHOLDER.encode("ascii")
    if data.count(placeholder) != 1:
        raise ModelContractError(f"{path}: expected exactly one SHA-256 placeholder in the file")
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(path, data.replace(placeholder, digest.encode("ascii")))
    return digest
