"""The mask codec: a label's mask as a 1-bit palette PNG (index 1 red, so any viewer shows
it), and the readers of IDRiD's palette TIFFs and plain grey or colour masks."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from inference.atomic import atomic_write_bytes
from inference.errors import LabelFormatError
from inference.labels.records import MaskChanges
from inference.photo_io import MAX_PIXELS

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: Index 0 black, index 1 red. Two entries only, so Pillow writes a 1-bit PNG.
PALETTE = (0, 0, 0, 255, 0, 0)

# zlib level 1: measured on 4288x2848 masks, real (spatially coherent) masks take 20-50 ms and
# stay at tens of kilobytes at every level, so higher levels buy nothing that matters. Speckled
# masks (a thresholded probability map from the batch CLI, a noisy import) are where levels
# differ: about 0.15 s at level 1 against 0.5 s at 6 and 0.9 s at 9, for a file only 10%
# smaller. Saves and autosaves happen while a reviewer works, so the bounded worst case wins.
PNG_COMPRESS_LEVEL = 1

_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"\xff\xd8\xff")

BoolMask = npt.NDArray[np.bool_]


def mask_changes(suggestion: npt.ArrayLike, corrected: npt.ArrayLike) -> MaskChanges:
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
