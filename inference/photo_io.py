"""Reading fundus photographs into RGB uint8 arrays, with a clear refusal for anything else.

Paths are read as bytes by Python and decoded in memory: OpenCV's imread cannot open
non-ASCII paths on Windows, and Korean file names are normal in our clinics.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import ImageReadError

#: Largest photo accepted, in pixels. The largest fundus cameras we know of give about
#: 24 MP; 100 MP leaves room and keeps a full-resolution probability map under 400 MB.
MAX_PIXELS = 100_000_000

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".dcm", ".dicom", ".webp")

_PIL_FORMATS = {"JPEG", "MPO", "PNG", "TIFF", "BMP", "WEBP"}

_EXPECTED = "expected JPEG, PNG, TIFF, BMP or DICOM"

# Pillow's own words ("image file is truncated (1 bytes not processed)") mean nothing to a
# clinic; the usual cause is a photo still being copied from the camera or the share.
_TRUNCATED = (
    "the file is incomplete (truncated): it ends before its image does; it may still be "
    "copying, or was cut short when it was copied or saved"
)

#: What the viewer and the CLI say about a photo without colour (Photo.warnings).
NO_COLOUR_WARNING = (
    "the photo has no colour (greyscale or red-free); the model was trained on colour "
    "photos and finds fewer lesions on it"
)

# What Pillow raises on damaged data besides OSError (struct.error, EOFError, IndexError...).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error)


@dataclass(frozen=True)
class Photo:
    """A photo as the model and the viewer see it: RGB, 8 bits per channel, upright."""

    rgb: np.ndarray  # (H, W, 3) uint8, C-contiguous
    source: str  # the path it came from, or "<array>"
    format: str  # JPEG, PNG, TIFF, BMP, WEBP, DICOM or ARRAY
    conversions: tuple[str, ...] = ()  # what was done to make it RGB uint8, for provenance
    sha256: str = ""  # of the file's bytes (of the pixels for an array): keys caches and labels
    # (width, height) of the photo when `rgb` was decoded at a reduced scale (see min_side)
    full_size: tuple[int, int] | None = None

    @property
    def height(self) -> int:
        """The photo's height in its own pixels (also when `rgb` is reduced)."""
        return self.full_size[1] if self.full_size else int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return self.full_size[0] if self.full_size else int(self.rgb.shape[1])

    @property
    def reduced(self) -> bool:
        return self.full_size is not None and self.full_size[0] != self.rgb.shape[1]

    @functools.cached_property
    def no_colour(self) -> bool:
        """True for a grey or red-free photo, also one stored as three equal channels."""
        return lacks_colour(self.rgb)

    @property
    def warnings(self) -> tuple[str, ...]:
        """What a reviewer should know before trusting the model on this photo, in words."""
        return (NO_COLOUR_WARNING,) if self.no_colour else ()


def lacks_colour(rgb: np.ndarray) -> bool:
    """True when an RGB photo carries one picture, not three: equal channels (a grey or
    red-free photo saved as RGB; JPEG leaves them a few levels apart) or a single lit channel
    (red-free kept as its green channel). A colour fundus photo is far from both: its red
    channel is the brightest by a wide margin.

    Judged on about 65,000 pixels spread over the photo (a few milliseconds for 12 MP, next
    to the 100 or more its decoding takes); the black surround says nothing about colour and
    is left out.
    """
    height, width = rgb.shape[:2]
    step = max(1, int(np.sqrt(height * width / 65_536)))
    # each pixel's channels in ascending order (sorting 3 values beats max and min here)
    sample = np.sort(rgb[::step, ::step].reshape(-1, 3), axis=1).astype(np.int16)
    lit = sample[sample[:, 2] > 24]
    if len(lit) < 100:
        return False  # (nearly) black: nothing to judge; the fundus check refuses it
    tolerance = 12
    equal = np.mean(lit[:, 2] - lit[:, 0] <= tolerance)
    single = np.mean(lit[:, 1] <= tolerance)
    return bool(max(equal, single) >= 0.99)


def is_photo_path(path: str | os.PathLike[str]) -> bool:
    """True for file names with a photo suffix (case-insensitive), hidden files excluded."""
    p = Path(path)
    return p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith(".")


def read_photo(
    source: str | os.PathLike[str] | np.ndarray,
    *,
    max_pixels: int = MAX_PIXELS,
    min_side: int | None = None,
) -> Photo:
    """Read a path or take an array; return an upright RGB uint8 photo or raise ImageReadError.

    With `min_side`, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (in the DCT, which is
    several times faster than decoding in full) as long as its shorter side stays at least
    `min_side`: the model needs far fewer pixels than a 12-MP photo holds.
    """
    if isinstance(source, np.ndarray):
        if source.ndim >= 2:  # the size is checked before any conversion work
            _check_size(int(source.shape[1]), int(source.shape[0]), max_pixels, "<array>")
        rgb, conversions = to_rgb8(source)
        if np.shares_memory(rgb, source):
            rgb = rgb.copy()  # the photo must not change when the caller's array does
        digest = hashlib.sha256(rgb.tobytes()).hexdigest()
        return Photo(rgb, "<array>", "ARRAY", tuple(conversions), digest)
    path = Path(source)
    name = str(path)
    if path.is_dir():  # checked first: Windows reports reading a folder as "permission denied"
        raise ImageReadError(f"{name}: is a folder, not a photo")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise ImageReadError(f"{name}: is a folder, not a photo") from None
    except PermissionError:
        raise ImageReadError(f"{name}: permission denied") from None
    except OSError as exc:
        raise ImageReadError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    return decode_photo(data, name=name, max_pixels=max_pixels, min_side=min_side)


def decode_photo(
    data: bytes,
    *,
    name: str = "<bytes>",
    max_pixels: int = MAX_PIXELS,
    min_side: int | None = None,
) -> Photo:
    """Decode the bytes of a photo file (JPEG, PNG, TIFF, BMP, WebP or DICOM)."""
    if len(data) == 0:
        raise ImageReadError(f"{name}: the file is empty (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    if _looks_like_dicom(data, name):
        rgb, conversions = _decode_dicom(data, name, max_pixels)
        return Photo(rgb, name, "DICOM", tuple(conversions), digest)
    rgb, fmt, conversions, full_size = _decode_pillow(data, name, max_pixels, min_side)
    return Photo(rgb, name, fmt, tuple(conversions), digest, full_size)


def to_rgb8(array: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Convert grey, 16-bit, float, bool or alpha arrays to (H, W, 3) uint8 RGB.

    Accepts (H, W), (H, W, 1), (H, W, 2) (grey and alpha), (H, W, 3) and (H, W, 4) (RGBA);
    returns the array and a list of the conversions made, in words.
    """
    conversions: list[str] = []
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ImageReadError(
            f"unsupported image shape {a.shape}: expected (H, W), (H, W, 3) or (H, W, 4)"
        )
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageReadError(f"the image has no pixels (shape {a.shape})")
    if a.dtype != np.uint8:
        a, note = _to_uint8(a)
        conversions.append(note)
    if a.ndim == 3 and a.shape[2] in (2, 4):
        alpha = a[:, :, -1:].astype(np.uint16)
        a = ((a[:, :, :-1].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
        conversions.append("alpha channel removed (composited on black)")
        if a.shape[2] == 1:
            a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
        conversions.append("grey converted to RGB")
    return np.ascontiguousarray(a), conversions


def _to_uint8(a: np.ndarray) -> tuple[np.ndarray, str]:
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255, "1-bit converted to 8-bit"
    if np.issubdtype(a.dtype, np.floating):
        finite = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(finite.max()) if finite.size else 0.0
        if top <= 1.0:
            scale, how = 255.0, " (0-1 scaled)"
        elif top <= 255.0:
            scale, how = 1.0, ""
        else:  # e.g. 12- or 16-bit values stored as floats: scale rather than saturate
            scale, how = 255.0 / top, " (scaled to its maximum)"
        out = np.clip(finite * scale + 0.5, 0, 255).astype(np.uint8)
        return out, "floating point converted to 8-bit" + how
    if np.issubdtype(a.dtype, np.integer):
        top = int(a.max()) if a.size else 0
        if top < 0 or int(a.min()) < 0:
            raise ImageReadError("the image has negative pixel values")
        # Many cameras store 10- or 12-bit data in 16-bit containers: scale by the depth
        # actually used, so a 12-bit photo does not come out 16 times too dark.
        bits = 8 if top <= 255 else 10 if top <= 1023 else 12 if top <= 4095 else 16
        if top > 65535:
            bits = top.bit_length()
        shift = max(bits - 8, 0)
        out = (a >> shift).astype(np.uint8) if shift else a.astype(np.uint8)
        return out, f"{a.dtype.itemsize * 8}-bit ({bits} bits used) converted to 8-bit"
    raise ImageReadError(f"unsupported pixel type {a.dtype}")


def _to_rgb8_named(array: np.ndarray, name: str) -> tuple[np.ndarray, list[str]]:
    try:
        return to_rgb8(array)
    except ImageReadError as exc:
        raise ImageReadError(f"{name}: {exc}") from None


def _check_size(width: int, height: int, max_pixels: int, name: str) -> None:
    if width < 1 or height < 1:
        raise ImageReadError(f"{name}: the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageReadError(
            f"{name}: {width}x{height} pixels ({width * height / 1e6:.3g} megapixels) is too "
            f"large: the limit for a photo is {max_pixels / 1e6:.3g} megapixels"
        )


def _sniff(data: bytes) -> str | None:
    """The format the first bytes announce, to word the refusal of a damaged file."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:2] == b"BM" and len(data) >= 14 and data[6:10] == b"\x00\x00\x00\x00":
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _exif_orientation(im: Any) -> int:
    """The EXIF orientation (2 to 8) when one asks for a turn or flip, else 1."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF; we ignore it
            value = im.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block does not make a damaged photo
        return 1
    return value if isinstance(value, int) and 2 <= value <= 8 else 1


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an array as Pillow's ImageOps.exif_transpose does."""
    turns = {
        2: lambda: a[:, ::-1],
        3: lambda: a[::-1, ::-1],
        4: lambda: a[::-1],
        5: lambda: a.swapaxes(0, 1),
        6: lambda: np.rot90(a, -1),
        7: lambda: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda: np.rot90(a, 1),
    }
    return np.ascontiguousarray(turns[orientation]()) if orientation in turns else a


def _deep_colour(im: Any, data: bytes, fmt: str) -> bool:
    """True for colour images with more than 8 bits a channel, which Pillow cuts to 8 bits."""
    if im.mode not in ("RGB", "RGBA", "LA"):
        return False
    if fmt == "PNG":
        return data[12:16] == b"IHDR" and len(data) > 24 and data[24] == 16
    if fmt == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258, 8)  # BitsPerSample
        bits = bits if isinstance(bits, tuple) else (bits,)
        return any(isinstance(b, int) and b > 8 for b in bits)
    return False


def _decode_pillow(
    data: bytes, name: str, max_pixels: int, min_side: int | None = None
) -> tuple[np.ndarray, str, list[str], tuple[int, int] | None]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    conversions: list[str] = []
    try:
        with warnings.catch_warnings():
            # Our own pixel limit applies; Pillow's decompression-bomb warning is noise here,
            # and so are its warnings about corrupt EXIF: damage is reported by load() below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        kind = _sniff(data)
        if kind is not None:
            raise ImageReadError(
                f"{name}: starts like a {kind} file but is truncated or damaged"
            ) from None
        raise ImageReadError(f"{name}: not a photo Hemaview can read ({_EXPECTED})") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{name}: the image is too large to open ({exc})") from None
    except _DECODE_ERRORS as exc:
        if "truncated" in str(exc).lower():
            raise ImageReadError(f"{name}: {_TRUNCATED}") from None
        raise ImageReadError(f"{name}: damaged image file ({exc})") from None
    fmt = im.format or "?"
    if fmt not in _PIL_FORMATS:
        raise ImageReadError(f"{name}: {fmt} images are not supported ({_EXPECTED})")
    _check_size(im.width, im.height, max_pixels, name)
    if fmt == "MPO":
        fmt = "JPEG"  # multi-picture JPEG from some cameras: the first picture is the photo
    stored_size = (im.width, im.height)
    if fmt == "JPEG" and min_side and im.mode in ("RGB", "L", "YCbCr"):
        factor = next((k for k in (8, 4, 2) if min(stored_size) // k >= min_side), 1)
        if factor > 1:
            im.draft(im.mode, (-(-im.width // factor), -(-im.height // factor)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Pillow refuses truncated files (unlike OpenCV, which fills them in grey and
            # carries on), so Pillow reads every file in full, even where OpenCV decodes it.
            im.load()
    except _DECODE_ERRORS as exc:
        message = str(exc)
        lowered = message.lower()
        if any(w in lowered for w in ("truncated", "broken data stream", "premature", "eof")):
            raise ImageReadError(f"{name}: {_TRUNCATED}") from None
        if fmt in ("TIFF", "PNG"):  # a compression or layout Pillow lacks: libtiff/libpng may
            return (*_decode_opencv(data, name, fmt, _exif_orientation(im)), None)
        raise ImageReadError(f"{name}: damaged image file ({message})") from None
    orientation = _exif_orientation(im) if fmt in ("JPEG", "TIFF", "WEBP", "PNG") else 1
    if _deep_colour(im, data, fmt):
        # Pillow keeps only the top 8 bits of 16-bit colour; a 12-bit photo in a 16-bit
        # file would come out 16 times too dark. OpenCV keeps all 16.
        return (*_decode_opencv(data, name, fmt, orientation), None)
    if orientation != 1:
        im = ImageOps.exif_transpose(im)  # type: ignore[assignment]
        conversions.append(f"EXIF orientation {orientation} applied")
    mode = im.mode
    try:
        if mode == "RGB":
            rgb = np.asarray(im)
        elif mode in ("L", "I;16", "I;16B", "I;16L", "I;16N", "I", "F", "1"):
            arr = np.asarray(im)
            if mode.startswith("I;16"):
                arr = arr.astype(np.uint16)
            rgb, notes = _to_rgb8_named(arr, name)
            conversions += notes
        elif mode in ("RGBA", "LA", "RGBa", "La"):
            rgb, notes = _to_rgb8_named(np.asarray(im.convert("RGBA")), name)
            conversions += notes
        elif mode in ("P", "PA"):
            has_alpha = mode == "PA" or "transparency" in im.info
            flat = im.convert("RGBA" if has_alpha else "RGB")
            rgb, notes = _to_rgb8_named(np.asarray(flat), name)
            conversions += ["palette converted to RGB", *notes]
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            rgb = np.asarray(im.convert("RGB"))
            conversions.append(f"{mode} converted to RGB")
        elif fmt in ("TIFF", "PNG"):
            return (*_decode_opencv(data, name, fmt, orientation), None)
        else:
            raise ImageReadError(f"{name}: unsupported pixel format {mode}")
    except ValueError as exc:  # a conversion Pillow does not offer
        raise ImageReadError(f"{name}: unsupported pixel format {mode} ({exc})") from None
    # EXIF orientations 5 to 8 turn the photo by 90 degrees: width and height swap.
    w, h = stored_size[::-1] if orientation in (5, 6, 7, 8) else stored_size
    full_size = None if (w, h) == (rgb.shape[1], rgb.shape[0]) else (int(w), int(h))
    return np.ascontiguousarray(rgb), fmt, conversions, full_size


def _decode_opencv(
    data: bytes, name: str, fmt: str, orientation: int
) -> tuple[np.ndarray, str, list[str]]:
    """For what Pillow cannot hold, such as 16-bit colour; called only after the size check."""
    import cv2

    # IMREAD_UNCHANGED keeps 16 bits and alpha, and ignores EXIF orientation: applied below.
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError(f"{name}: damaged or unsupported {fmt} file")
    conversions: list[str] = []
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]  # OpenCV decodes BGR
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    if orientation != 1:
        arr = _orient(arr, orientation)
        conversions.append(f"EXIF orientation {orientation} applied")
    rgb, notes = _to_rgb8_named(arr, name)
    return rgb, fmt, conversions + notes


def _looks_like_dicom(data: bytes, name: str) -> bool:
    return data[128:132] == b"DICM" or name.lower().endswith((".dcm", ".dicom"))


def _decode_dicom(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, list[str]]:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut, pixel_array

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=data[128:132] != b"DICM")
    except (InvalidDicomError, KeyError, *_DECODE_ERRORS) as exc:
        raise ImageReadError(f"{name}: not a readable DICOM file ({exc})") from None
    if "PixelData" not in ds:
        raise ImageReadError(f"{name}: the DICOM file holds no image")
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits_stored = int(ds.get("BitsStored", 8) or 8)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    except (TypeError, ValueError) as exc:
        raise ImageReadError(f"{name}: the DICOM image description is damaged ({exc})") from None
    photometric = str(ds.get("PhotometricInterpretation", "RGB" if samples == 3 else ""))
    _check_size(cols, rows, max_pixels, name)
    try:
        # pixel_array converts YBR to RGB itself; index=0 decodes only the first frame.
        pixels = pixel_array(ds, index=0 if frames > 1 else None)
    except Exception as exc:  # pydicom raises many types for unsupported or damaged pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        bits_allocated = int(ds.get("BitsAllocated", 8) or 8)
        expected = rows * cols * samples * frames * bits_allocated // 8
        held = len(ds.PixelData or b"")
        if syntax is not None and not syntax.is_compressed and held < expected:
            raise ImageReadError(
                f"{name}: the file is truncated: the image holds {held} of its {expected} bytes"
            ) from None
        how = f" stored as {syntax.name}" if syntax is not None else ""
        raise ImageReadError(
            f"{name}: the DICOM image{how} cannot be decoded: damaged, truncated or "
            f"compressed in a way Hemaview cannot read ({exc})"
        ) from None
    conversions: list[str] = []
    if frames > 1:
        conversions.append(f"first of {frames} DICOM frames used")
    if samples == 3 and photometric.startswith("YBR"):
        conversions.append(f"DICOM {photometric} converted to RGB")
    if samples == 1 and photometric == "PALETTE COLOR":
        try:
            pixels = apply_color_lut(pixels, ds)
        except Exception as exc:
            raise ImageReadError(f"{name}: the DICOM colour palette is damaged ({exc})") from None
        conversions.append("DICOM palette converted to RGB")
    elif samples == 1:
        bits_stored = min(max(bits_stored, 1), 32)
        dtype = np.uint8 if bits_stored <= 8 else np.uint16 if bits_stored <= 16 else np.uint32
        if signed:
            pixels = pixels.astype(np.int64) + (1 << (bits_stored - 1))
            conversions.append("DICOM signed values shifted to unsigned")
        if photometric == "MONOCHROME1":  # 0 is white: invert within the stored bit depth
            top = (1 << bits_stored) - 1
            pixels = top - np.clip(pixels.astype(np.int64), 0, top)
            conversions.append("DICOM MONOCHROME1 inverted")
        if signed or photometric == "MONOCHROME1":
            pixels = np.clip(pixels, 0, (1 << bits_stored) - 1).astype(dtype)
    rgb, notes = _to_rgb8_named(pixels, name)
    return rgb, conversions + notes
