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

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from inference.atomic import atomic_write_bytes, atomic_write_text
from inference.errors import LabelFormatError
from inference.photo_io import MAX_PIXELS, Photo
from inference.version import __version__

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

SCHEMA_VERSION = 1
DEFAULT_LABEL_DIR_NAME = "hemaview-labels"
MASK_SUFFIX = "_HE.png"
PROVENANCE_SUFFIX = ".json"

STATUSES = ("todo", "in_review", "accepted", "rejected")
DEVICES = ("cuda", "cpu", "triton")
FOV_METHODS = ("circle", "bounding-box", "whole-frame")  # as inference.fov names them
DECISIONS = ("accepted", "rejected", "pending")
SOURCES = ("model", "reviewer", "import")

#: Index 0 black, index 1 red. Two entries only, so Pillow writes a 1-bit PNG.
PALETTE = (0, 0, 0, 255, 0, 0)

# zlib level 1: measured on 4288x2848 masks, real (spatially coherent) masks take 20-50 ms and
# stay at tens of kilobytes at every level, so higher levels buy nothing that matters. Speckled
# masks (a thresholded probability map from the batch CLI, a noisy import) are where levels
# differ: about 0.15 s at level 1 against 0.5 s at 6 and 0.9 s at 9, for a file only 10%
# smaller. Saves and autosaves happen while a reviewer works, so the bounded worst case wins.
PNG_COMPRESS_LEVEL = 1

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"\xff\xd8\xff")

BoolMask = npt.NDArray[np.bool_]


# --------------------------------------------------------------------------------------------
# Where labels live


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
# The provenance record


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

    def __post_init__(self) -> None:
        name = _check_str(self.file_name, "photo.file_name")
        if not name or Path(name).name != name:
            raise _fail(f"photo.file_name must be a bare file name, not {name!r}")
        _check_sha256(self.sha256, "photo.sha256")
        _check_int(self.width, "photo.width", 1)
        _check_int(self.height, "photo.height", 1)

    @classmethod
    def from_photo(cls, photo: Photo, file_name: str | None = None) -> PhotoInfo:
        """From a photo read by ``read_photo`` (its file name is taken from ``photo.source``)."""
        return cls(
            file_name=file_name if file_name is not None else Path(photo.source).name,
            sha256=photo.sha256,
            width=photo.width,
            height=photo.height,
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
        object.__setattr__(self, "threshold", _check_fraction(self.threshold, "model.threshold"))
        _check_choice(self.device, "model.device", DEVICES)
        _check_choice(self.fov_method, "model.fov_method", FOV_METHODS)
        if not isinstance(self.forced, bool):
            raise _fail(f"model.forced must be true or false, not {self.forced!r}")
        _check_str(self.file, "model.file")


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
    )


# --------------------------------------------------------------------------------------------
# Mask pixels


def compare_masks(suggestion: npt.ArrayLike, corrected: npt.ArrayLike) -> MaskChanges:
    """Pixels the reviewer added and removed, and the Dice of corrected against suggestion."""
    s = np.asarray(suggestion, dtype=bool)
    c = np.asarray(corrected, dtype=bool)
    if s.shape != c.shape:
        raise LabelFormatError(
            f"cannot compare masks of different sizes: suggestion {s.shape}, corrected {c.shape}"
        )
    both = int(np.count_nonzero(s & c))
    n_s = int(np.count_nonzero(s))
    n_c = int(np.count_nonzero(c))
    # Two empty masks agree completely: the reviewer confirmed "no haemorrhage".
    dice = 1.0 if n_s + n_c == 0 else 2.0 * both / (n_s + n_c)
    return MaskChanges(pixels_added=n_c - both, pixels_removed=n_s - both, dice_vs_suggestion=dice)


def _check_mask(mask: object) -> BoolMask:
    if not isinstance(mask, np.ndarray):
        raise LabelFormatError(f"a mask must be a numpy array, not {type(mask).__name__}")
    # Only bool: a probability map or a 0/255 image passed here by mistake would otherwise be
    # saved as something nobody drew.
    if mask.dtype != np.bool_:
        raise LabelFormatError(f"a mask must be a bool array, not {mask.dtype}")
    if mask.ndim != 2 or mask.shape[0] < 1 or mask.shape[1] < 1:
        raise LabelFormatError(
            f"a mask must be a non-empty (height, width) array, not {mask.shape}"
        )
    return mask


def encode_mask_png(mask: BoolMask) -> bytes:
    """The bytes of the palette PNG for a bool (H, W) mask."""
    from PIL import Image

    m = _check_mask(mask)
    height, width = m.shape
    # A bool array's bytes are exactly 0 and 1: the palette indices, without a copy.
    indices = np.ascontiguousarray(m).view(np.uint8)
    image = Image.frombuffer("P", (width, height), indices.tobytes(), "raw", "P", 0, 1)
    image.putpalette(PALETTE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def write_mask_png(path: str | os.PathLike[str], mask: BoolMask) -> str:
    """Write the mask as a palette PNG, atomically; return the SHA-256 of the bytes written."""
    # Encode fully in memory first: an encoder failure must not even create a temporary file.
    data = encode_mask_png(mask)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _read_file(path: Path, what: str) -> bytes:
    # Python reads the bytes and Pillow decodes from memory, so non-ASCII paths work wherever
    # Python's own file API does (OpenCV's imread does not on Windows).
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LabelFormatError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise LabelFormatError(f"{path}: is a folder, not a {what}") from None
    except PermissionError:
        raise LabelFormatError(f"{path}: permission denied") from None
    except OSError as exc:
        raise LabelFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return data


def read_mask(
    path: str | os.PathLike[str], expected_size: tuple[int, int] | None = None
) -> BoolMask:
    """Read a mask file into a bool (H, W) array; `expected_size` is the photo's (width, height).

    Accepts Hemaview's palette PNG, IDRiD's palette TIFF, greyscale masks (0/255, 0/1, any
    two-level mask, or a threshold at half range for anything else) and colour masks (any
    non-black pixel is lesion).
    """
    p = Path(path)
    return decode_mask(_read_file(p, "mask file"), name=str(p), expected_size=expected_size)


def decode_mask(
    data: bytes, name: str = "<bytes>", expected_size: tuple[int, int] | None = None
) -> BoolMask:
    """Decode the bytes of a mask file; see ``read_mask``."""
    from PIL import Image, UnidentifiedImageError

    if len(data) == 0:
        raise LabelFormatError(f"{name}: the mask file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit applies below; Pillow's bomb warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Damaged TIFF tags warn before failing; the LabelFormatError below says it all.
            warnings.simplefilter("ignore", UserWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        # A TIFF keeps its directory at the end of the file (IDRiD's do), so a cut-off TIFF
        # is unidentifiable rather than short; its signature tells the two cases apart.
        if data.startswith(_IMAGE_SIGNATURES):
            raise LabelFormatError(f"{name}: the mask file is truncated or damaged") from None
        raise LabelFormatError(
            f"{name}: not an image, so not a mask (expected PNG or TIFF)"
        ) from None
    except Image.DecompressionBombError:
        raise LabelFormatError(f"{name}: the mask is larger than Hemaview accepts") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise LabelFormatError(f"{name}: damaged mask file ({exc})") from None
    width, height = image.size
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        raise LabelFormatError(f"{name}: a {width}x{height} mask is not a size Hemaview accepts")
    if expected_size is not None and (width, height) != tuple(expected_size):
        ew, eh = expected_size
        raise LabelFormatError(
            f"{name}: the mask is {width}x{height} pixels but the photo is {ew}x{eh}; "
            "a label must be at the photo's full size"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Damaged TIFF tags warn before failing; the LabelFormatError below says it all.
            warnings.simplefilter("ignore", UserWarning)
            image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise LabelFormatError(f"{name}: the mask file is truncated or damaged ({exc})") from None
    try:
        return _image_to_mask(image, name)
    except (OSError, ValueError) as exc:
        raise LabelFormatError(f"{name}: the mask cannot be decoded ({exc})") from None


def _image_to_mask(image: PILImage, name: str) -> BoolMask:
    mode: str = image.mode
    if mode == "1":
        return np.asarray(image, dtype=bool).copy()
    if mode in ("P", "PA"):
        indices = np.asarray(image.getchannel(0) if mode == "PA" else image)
        # Raw index values, never a greyscale conversion (which maps IDRiD's red index 1 to 76).
        if int(indices.max(initial=0)) <= 1:
            lesion = indices > 0
        else:
            # Many colours: an ordinary picture saved with a palette. Use its colours.
            lesion = _colour_to_mask(np.asarray(image.convert("RGBA")))
        if mode == "PA":
            lesion &= np.asarray(image.getchannel("A")) >= 128
        return lesion
    if mode in ("L", "LA"):
        grey = np.asarray(image.getchannel(0))
        lesion = _grey_to_mask(grey, 255)
        if mode == "LA":
            lesion &= np.asarray(image.getchannel("A")) >= 128
        return lesion
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image)
        if mode == "F":
            top = 1.0 if float(np.nanmax(values, initial=0.0)) <= 1.0 else 255.0
            return np.nan_to_num(values, nan=0.0) >= top / 2
        return _grey_to_mask(values.astype(np.int64, copy=False), 65535)
    if mode in ("RGB", "RGBA"):
        return _colour_to_mask(np.asarray(image))
    if mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
        return _colour_to_mask(np.asarray(image.convert("RGBA")))
    raise LabelFormatError(f"{name}: unsupported mask pixel format {mode}")


def _grey_to_mask(grey: np.ndarray, full_range: int) -> BoolMask:
    top = int(grey.max(initial=0))
    if top == 0:
        return np.zeros(grey.shape, dtype=bool)
    # A two-level mask (0 and one value) is exact whatever that value is: 0/255, 0/1, and the
    # 0/76 that the greyscale trap makes of IDRiD masks. Anything else (a JPEG-saved mask, an
    # anti-aliased brush) is thresholded at half range.
    if not np.any((grey != 0) & (grey != top)):
        return grey > 0
    return grey > full_range // 2


def _colour_to_mask(rgba: np.ndarray) -> BoolMask:
    lesion: BoolMask = np.any(rgba[..., :3] > 0, axis=-1)
    if rgba.shape[-1] == 4:
        # An overlay-style mask on a transparent background is lesion only where it is opaque.
        lesion &= rgba[..., 3] >= 128
    return lesion


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

    data = encode_mask_png(m)
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
