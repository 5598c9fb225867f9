"""The provenance record of a label: who reviewed which photo, with which model, what
they changed and decided. Plain dataclasses, validated on construction and on reading, and
the enums the viewer uses too (never re-declared there)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference.contract import threshold_problem
from inference.errors import LabelFormatError
from inference.photo_io import Photo
from inference.version import __version__

if TYPE_CHECKING:
    from inference.prediction import Provenance

SCHEMA_VERSION = 1


class ReviewStatus(StrEnum):
    TODO = "todo"
    IN_REVIEW = "in_review"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Decision(StrEnum):
    """A reviewer's verdict on one suggested lesion."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    PENDING = "pending"


class Device(StrEnum):
    """Where the model ran."""

    CUDA = "cuda"
    CPU = "cpu"
    TRITON = "triton"


class Source(StrEnum):
    MODEL = "model"  # unreviewed model output
    REVIEWER = "reviewer"
    IMPORT = "import"


class Finding(StrEnum):
    """What the reviewer said about the photo as a whole, beside the mask."""

    # An empty mask is ambiguous (nothing found, or nothing looked at); this says a person
    # looked and decided there is none.
    NO_HAEMORRHAGE = "no_haemorrhage"


STATUSES = tuple(s.value for s in ReviewStatus)
DEVICES = tuple(d.value for d in Device)
DECISIONS = tuple(d.value for d in Decision)
SOURCES = tuple(s.value for s in Source)
FINDINGS = tuple(f.value for f in Finding)
FOV_METHODS = ("circle", "bounding-box", "whole-frame")  # as inference.fov names them

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def now() -> datetime:
    """The current local time with its UTC offset: the form the record's times must take."""
    return datetime.now().astimezone()


def _fail(message: str) -> LabelFormatError:
    return LabelFormatError(message)


def _check_int(value: object, what: str, minimum: int = 0) -> int:
    # bool is an int subclass; True as a width is a bug, not a 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(f"{what} must be a whole number, not {value!r}")
    if value < minimum:
        raise _fail(f"{what} must be at least {minimum}, not {value}")
    return value


def _check_fraction(value: object, what: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _fail(f"{what} must be a number, not {value!r}")
    number = float(value)
    if not (0.0 <= number <= 1.0):  # also refuses NaN
        raise _fail(f"{what} must lie between 0 and 1, not {value!r}")
    return number


def _check_threshold(value: object, what: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _fail(f"{what} must be a number, not {value!r}")
    problem = threshold_problem(float(value))
    if problem:
        raise _fail(f"{what} {problem}")
    return float(value)


def _check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"{what} must be text, not {value!r}")
    return value


def _check_choice(value: object, what: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(f"{what} must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def _check_sha256(value: object, what: str, *, allow_empty: bool = False) -> str:
    if allow_empty and value == "":
        return ""
    if not isinstance(value, str) or not _SHA256_RE.match(value):
        raise _fail(f"{what} must be 64 lowercase hexadecimal digits, not {value!r}")
    return value


def _check_time(value: object, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise _fail(f"{what} must be a datetime, not {value!r}")
    # Reviews happen in several clinics; a time without its offset cannot be ordered.
    if value.tzinfo is None or value.utcoffset() is None:
        raise _fail(f"{what} must carry a timezone (use labels.now()), got {value.isoformat()}")
    return value


@dataclass(frozen=True)
class PhotoInfo:
    """Which photo a label belongs to: its file name, its bytes' SHA-256 and its size."""

    file_name: str
    sha256: str
    width: int
    height: int
    # A grey or red-free photo: the model learned from colour and finds fewer lesions on it.
    # Optional and additive (no schema change): files from before it read as False (nobody
    # checked then), and older readers ignore it.
    no_colour: bool = False

    def __post_init__(self) -> None:
        name = _check_str(self.file_name, "photo.file_name")
        if not name or Path(name).name != name:
            raise _fail(f"photo.file_name must be a bare file name, not {name!r}")
        _check_sha256(self.sha256, "photo.sha256")
        _check_int(self.width, "photo.width", 1)
        _check_int(self.height, "photo.height", 1)
        if not isinstance(self.no_colour, bool):
            raise _fail(f"photo.no_colour must be true or false, not {self.no_colour!r}")

    @classmethod
    def from_photo(cls, photo: Photo, file_name: str | None = None) -> PhotoInfo:
        """From a photo read by ``read_photo`` (its file name is taken from ``photo.source``)."""
        return cls(
            file_name=file_name if file_name is not None else Path(photo.source).name,
            sha256=photo.sha256,
            width=photo.width,
            height=photo.height,
            no_colour=photo.no_colour,
        )


@dataclass(frozen=True)
class ModelInfo:
    """The model whose suggestion the label started from, and where it ran."""

    name: str
    sha256: str
    threshold: float
    device: str  # "cuda", "cpu" or "triton"
    # How the field of view the model saw was found: a fitted circle, or an estimate (a
    # reviewer should know the suggestion may be off near the edge); labels written before
    # this field read as "circle", which is what they had.
    fov_method: str = "circle"
    forced: bool = False  # the photo was refused as not a fundus photograph and run on request
    file: str = ""  # the model file that ran (hemorrhage.onnx or its INT8 hemorrhage-int8.onnx)

    def __post_init__(self) -> None:
        if not _check_str(self.name, "model.name"):
            raise _fail("model.name must not be empty")
        _check_sha256(self.sha256, "model.sha256")
        object.__setattr__(self, "threshold", _check_threshold(self.threshold, "model.threshold"))
        _check_choice(self.device, "model.device", DEVICES)
        _check_choice(self.fov_method, "model.fov_method", FOV_METHODS)
        if not isinstance(self.forced, bool):
            raise _fail(f"model.forced must be true or false, not {self.forced!r}")
        _check_str(self.file, "model.file")

    @classmethod
    def from_provenance(cls, provenance: Provenance, threshold: float) -> ModelInfo:
        """The model of a prediction, at the threshold its mask was cut at. Recorded as it
        ran: an unknown device is refused here, never rewritten."""
        return cls(
            provenance.model_name,
            provenance.model_sha256,
            threshold,
            provenance.device,
            fov_method=provenance.fov.get("method", "circle"),
            forced=bool(provenance.fov.get("forced", False)),
            file=provenance.model_file,
        )


@dataclass(frozen=True)
class MaskChanges:
    """What the reviewer changed against the model's suggestion, in full-resolution pixels."""

    pixels_added: int
    pixels_removed: int
    dice_vs_suggestion: float

    def __post_init__(self) -> None:
        _check_int(self.pixels_added, "changes.pixels_added")
        _check_int(self.pixels_removed, "changes.pixels_removed")
        dice = _check_fraction(self.dice_vs_suggestion, "changes.dice_vs_suggestion")
        object.__setattr__(self, "dice_vs_suggestion", dice)


@dataclass(frozen=True)
class LesionDecision:
    """The reviewer's verdict on one suggested lesion (ids as in ``postprocess.Lesion``)."""

    id: int
    decision: str  # "accepted", "rejected" or "pending"
    bbox: tuple[int, int, int, int]  # x, y, width, height in full-resolution pixels
    area_px: int

    def __post_init__(self) -> None:
        _check_int(self.id, "lesion id")
        where = f"lesion {self.id}"
        _check_choice(self.decision, f"{where}: decision", DECISIONS)
        if not isinstance(self.bbox, tuple | list) or len(self.bbox) != 4:
            raise _fail(f"{where}: bbox must be [x, y, width, height], not {self.bbox!r}")
        x, y, w, h = self.bbox
        bbox = (
            _check_int(x, f"{where}: bbox x"),
            _check_int(y, f"{where}: bbox y"),
            _check_int(w, f"{where}: bbox width", 1),
            _check_int(h, f"{where}: bbox height", 1),
        )
        object.__setattr__(self, "bbox", bbox)
        _check_int(self.area_px, f"{where}: area_px")
        if self.area_px > w * h:
            raise _fail(f"{where}: area_px {self.area_px} exceeds its {w}x{h} bbox")


@dataclass(frozen=True)
class ProvenanceRecord:
    """Everything the ``X.json`` beside a label says about where the label came from.

    ``mask_sha256`` is filled in by ``save_label`` from the PNG's bytes; leave it empty when
    building a record to save.
    """

    photo: PhotoInfo
    status: str  # "todo", "in_review", "accepted" or "rejected"
    reviewer: str
    created: datetime
    modified: datetime
    model: ModelInfo | None  # None: the label did not start from a model's suggestion
    changes: MaskChanges | None  # against the model's suggestion; None without a model
    source: str  # "model" (unreviewed model output), "reviewer" or "import"
    lesions: tuple[LesionDecision, ...] = ()
    mask_sha256: str = ""
    app_version: str = __version__
    schema_version: int = SCHEMA_VERSION
    # "no_haemorrhage": the reviewer explicitly chose it (None: no such statement). Optional
    # and additive: files without it read as None, and older readers ignore it.
    finding: str | None = None

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise _fail(_schema_message(self.schema_version))
        if not isinstance(self.photo, PhotoInfo):
            raise _fail(f"photo must be a PhotoInfo, not {type(self.photo).__name__}")
        _check_choice(self.status, "status", STATUSES)
        _check_str(self.reviewer, "reviewer")
        _check_time(self.created, "created")
        _check_time(self.modified, "modified")
        if self.model is not None and not isinstance(self.model, ModelInfo):
            raise _fail(f"model must be a ModelInfo or null, not {type(self.model).__name__}")
        if self.changes is not None and not isinstance(self.changes, MaskChanges):
            raise _fail(f"changes must be a MaskChanges or null, not {type(self.changes).__name__}")
        _check_choice(self.source, "source", SOURCES)
        if self.source == "model" and self.model is None:
            raise _fail('source "model" needs the model it came from (model is null)')
        if self.changes is not None and self.model is None:
            raise _fail("changes are measured against a model's suggestion, but model is null")
        lesions = tuple(self.lesions)
        for lesion in lesions:
            if not isinstance(lesion, LesionDecision):
                raise _fail(f"lesions must hold LesionDecision items, not {lesion!r}")
            x, y, w, h = lesion.bbox
            if x + w > self.photo.width or y + h > self.photo.height:
                raise _fail(
                    f"lesion {lesion.id}: bbox {list(lesion.bbox)} reaches outside the "
                    f"{self.photo.width}x{self.photo.height} photo"
                )
        ids = [lesion.id for lesion in lesions]
        if len(set(ids)) != len(ids):
            raise _fail(f"lesion ids must be unique; got {ids}")
        object.__setattr__(self, "lesions", lesions)
        _check_sha256(self.mask_sha256, "mask_sha256", allow_empty=True)
        _check_str(self.app_version, "app_version")
        if self.finding is not None:
            _check_choice(self.finding, "finding", FINDINGS)

    def empty_label_problem(self, mask_is_empty: bool) -> str | None:
        """Why an accepted label must not become a training example, or None.

        An empty mask with no model suggestion behind it says "no haemorrhage" only when the
        reviewer chose that explicitly: otherwise it may be a photo nobody looked at with a
        model that had not run yet, and training would learn a false negative.
        """
        if not mask_is_empty or self.model is not None:
            return None
        if self.finding == Finding.NO_HAEMORRHAGE:
            return None
        return (
            f"{self.photo.file_name}: accepted with nothing marked and no model suggestion, "
            "and the reviewer did not record 'no haemorrhage'; open it in Hemaview and "
            "accept it as 'no haemorrhage', or mark its lesions"
        )

    # -- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "photo": dataclasses.asdict(self.photo),
            "status": self.status,
            "reviewer": self.reviewer,
            "created": self.created.isoformat(),
            "modified": self.modified.isoformat(),
            "model": None if self.model is None else dataclasses.asdict(self.model),
            "changes": None if self.changes is None else dataclasses.asdict(self.changes),
            "lesions": [
                {"id": x.id, "decision": x.decision, "bbox": list(x.bbox), "area_px": x.area_px}
                for x in self.lesions
            ],
            "mask_sha256": self.mask_sha256,
            "source": self.source,
            "finding": self.finding,
            "app_version": self.app_version,
        }

    def to_json(self) -> str:
        # ensure_ascii=False keeps Korean file names readable to a person opening the file.
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: object, source: str = "<dict>") -> ProvenanceRecord:
        """Validate and build a record; every problem is a LabelFormatError naming `source`."""
        try:
            return _record_from_dict(data)
        except LabelFormatError as exc:
            raise LabelFormatError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "<json>") -> ProvenanceRecord:
        if isinstance(text, bytes):
            if not text:
                raise LabelFormatError(f"{source}: the provenance file is empty (0 bytes)")
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise LabelFormatError(
                    f"{source}: not a provenance file (not UTF-8 text)"
                ) from None
        if not text.strip():
            raise LabelFormatError(f"{source}: the provenance file is empty")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LabelFormatError(
                f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        return cls.from_dict(data, source)


def _schema_message(version: object) -> str:
    return (
        f"label schema version {version!r} is not one this Hemaview reads (it reads "
        f"{SCHEMA_VERSION}); the label was written by a different version of Hemaview"
    )


def _require(data: Mapping[str, Any], key: str, where: str = "") -> Any:
    if key not in data:
        raise _fail(f"missing field '{where}{key}'")
    return data[key]


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(f"{what} must be a JSON object, not {value!r}")
    return value


def _parse_time(value: object, what: str) -> datetime:
    text = _check_str(value, what)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"{what} is not an ISO 8601 time: {text!r}") from None
    return _check_time(parsed, what)


def _record_from_dict(data: object) -> ProvenanceRecord:
    top = _object(data, "the provenance record")
    if "schema_version" not in top:
        raise _fail("no schema_version: not a Hemaview provenance file")
    version = top["schema_version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise _fail(_schema_message(version))

    photo_d = _object(_require(top, "photo"), "photo")
    photo = PhotoInfo(
        file_name=_require(photo_d, "file_name", "photo."),
        sha256=_require(photo_d, "sha256", "photo."),
        width=_require(photo_d, "width", "photo."),
        height=_require(photo_d, "height", "photo."),
        no_colour=photo_d.get("no_colour", False),
    )
    model_v = _require(top, "model")
    model = None
    if model_v is not None:
        model_d = _object(model_v, "model")
        model = ModelInfo(
            name=_require(model_d, "name", "model."),
            sha256=_require(model_d, "sha256", "model."),
            threshold=_require(model_d, "threshold", "model."),
            device=_require(model_d, "device", "model."),
            fov_method=model_d.get("fov_method", "circle"),
            forced=model_d.get("forced", False),
            file=model_d.get("file", ""),
        )
    changes_v = _require(top, "changes")
    changes = None
    if changes_v is not None:
        changes_d = _object(changes_v, "changes")
        changes = MaskChanges(
            pixels_added=_require(changes_d, "pixels_added", "changes."),
            pixels_removed=_require(changes_d, "pixels_removed", "changes."),
            dice_vs_suggestion=_require(changes_d, "dice_vs_suggestion", "changes."),
        )
    lesions_v = _require(top, "lesions")
    if not isinstance(lesions_v, list):
        raise _fail(f"lesions must be a JSON list, not {lesions_v!r}")
    lesions = []
    for n, item in enumerate(lesions_v):
        d = _object(item, f"lesions[{n}]")
        where = f"lesions[{n}]."
        bbox = _require(d, "bbox", where)
        if not isinstance(bbox, list):
            raise _fail(f"{where}bbox must be a list [x, y, width, height], not {bbox!r}")
        lesions.append(
            LesionDecision(
                id=_require(d, "id", where),
                decision=_require(d, "decision", where),
                bbox=tuple(bbox),  # type: ignore[arg-type]  # length checked by LesionDecision
                area_px=_require(d, "area_px", where),
            )
        )
    return ProvenanceRecord(
        photo=photo,
        status=_require(top, "status"),
        reviewer=_require(top, "reviewer"),
        created=_parse_time(_require(top, "created"), "created"),
        modified=_parse_time(_require(top, "modified"), "modified"),
        model=model,
        changes=changes,
        source=_require(top, "source"),
        lesions=tuple(lesions),
        mask_sha256=_require(top, "mask_sha256"),
        app_version=_require(top, "app_version"),
        schema_version=SCHEMA_VERSION,
        finding=top.get("finding"),
    )
