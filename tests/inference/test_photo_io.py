"""Reading photos: real files on disk, real IDRiD photos, and every way a file can be wrong."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import idrid_photo
from PIL import Image, ImageFile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from inference.errors import ImageReadError
from inference.photo_io import (
    MAX_PIXELS,
    Photo,
    decode_photo,
    is_photo_path,
    read_photo,
    to_rgb8,
)

IDRID_PHOTO = idrid_photo(1)  # 4288x2848 JPEG

OPHTHALMIC_8BIT = UID("1.2.840.10008.5.1.4.1.1.77.1.5.1")
OPHTHALMIC_16BIT = UID("1.2.840.10008.5.1.4.1.1.77.1.5.2")


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idrid() -> Photo:
    """The real IDRiD photo, decoded once for the tests that compare against it."""
    return read_photo(IDRID_PHOTO)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _cv2_bytes(ext: str, array: np.ndarray) -> bytes:
    """Encode with OpenCV, which takes colour as BGR: pass RGB, get an RGB file."""
    if array.ndim == 3:
        array = array[:, :, [2, 1, 0, 3][: array.shape[2]]]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(array))
    assert ok
    return buf.tobytes()


def _pil_bytes(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _zero_png(width: int, height: int) -> bytes:
    """A valid 1-bit grey PNG of zeros, compressed row by row (a 108 MP one is ~13 KB)."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _with_exif_orientation(png: bytes, orientation: int) -> bytes:
    """Insert an eXIf chunk with the orientation tag right after a PNG's IHDR chunk."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    body = exif.tobytes()
    body = body.removeprefix(b"Exif\x00\x00")
    end_of_ihdr = 8 + 4 + 4 + 13 + 4
    return png[:end_of_ihdr] + _png_chunk(b"eXIf", body) + png[end_of_ihdr:]


def _dicom(
    path: Path, pixels: np.ndarray, photometric: str, bits_stored: int, jpeg: bytes = b""
) -> Path:
    """A minimal valid ophthalmic photography DICOM file written by pydicom: uncompressed, or
    holding the given JPEG (for which `pixels` gives only the shape)."""
    meta = FileMetaDataset()
    sop_class = OPHTHALMIC_8BIT if pixels.dtype == np.uint8 else OPHTHALMIC_16BIT
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OP"
    ds.PatientName = "Test^Fundus"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if jpeg:
        ds.PixelData = encapsulate([jpeg])
        ds["PixelData"].VR = "OB"
    else:
        little_endian = pixels.astype(pixels.dtype.newbyteorder("<"))
        ds.PixelData = np.ascontiguousarray(little_endian).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _refusal(source: Path | np.ndarray, **kwargs: int) -> str:
    with pytest.raises(ImageReadError) as caught:
        read_photo(source, **kwargs)
    return str(caught.value)


def _quadrants(height: int, width: int) -> np.ndarray:
    """Four flat colours, one a quadrant, so every turn and flip gives a different picture."""
    rgb = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    rgb[:h, :w] = (220, 30, 30)  # red top left
    rgb[:h, w:] = (30, 200, 40)  # green top right
    rgb[h:, :w] = (30, 40, 210)  # blue bottom left
    rgb[h:, w:] = (240, 240, 240)  # white bottom right
    return rgb


def _mean_error(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --- real photos and real paths ------------------------------------------------------------


def test_real_idrid_jpeg_reads_as_upright_rgb_with_the_file_hash(idrid: Photo) -> None:
    data = IDRID_PHOTO.read_bytes()
    assert idrid.rgb.shape == (2848, 4288, 3)
    assert (idrid.height, idrid.width) == (2848, 4288)
    assert idrid.rgb.dtype == np.uint8
    assert idrid.rgb.flags.c_contiguous
    assert idrid.format == "JPEG"
    assert idrid.conversions == ()
    assert idrid.source == str(IDRID_PHOTO)
    assert idrid.sha256 == hashlib.sha256(data).hexdigest()
    # Channels are RGB, not OpenCV's BGR: a fundus is red, and OpenCV's decode agrees.
    red, green, blue = (float(idrid.rgb[:, :, c].mean()) for c in range(3))
    assert red > green > blue
    opencv_bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert opencv_bgr is not None
    assert _mean_error(idrid.rgb, opencv_bgr[:, :, ::-1]) < 1.5


def test_korean_file_name_in_korean_folder_reads_the_same_photo(
    tmp_path: Path, idrid: Photo
) -> None:
    path = _write(tmp_path / "환자 김민수" / "안저사진_좌안_2024.jpg", IDRID_PHOTO.read_bytes())
    photo = read_photo(path)
    assert photo.source == str(path)
    assert "안저사진_좌안_2024.jpg" in photo.source
    assert photo.sha256 == idrid.sha256
    assert np.array_equal(photo.rgb, idrid.rgb)


def test_missing_korean_file_is_named_in_the_refusal(tmp_path: Path) -> None:
    message = _refusal(tmp_path / "없는폴더" / "안저사진.jpg")
    assert "안저사진.jpg" in message
    assert "not found" in message


def test_decode_photo_from_bytes_matches_reading_the_file(idrid: Photo) -> None:
    data = IDRID_PHOTO.read_bytes()
    photo = decode_photo(data[:200_000] + data[200_000:], name="from-memory.jpg")
    assert photo.source == "from-memory.jpg"
    assert photo.sha256 == idrid.sha256
    assert photo.rgb.shape == idrid.rgb.shape


# --- orientation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("orientation", "turns"), [(6, -1), (8, 1)])
def test_exif_rotated_jpeg_comes_out_upright(tmp_path: Path, orientation: int, turns: int) -> None:
    stored = _quadrants(48, 80)  # landscape as stored; the tag says "turn to portrait"
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _pil_bytes(Image.fromarray(stored), "JPEG", quality=95, exif=exif)
    photo = read_photo(_write(tmp_path / f"rotated{orientation}.jpg", data))
    upright = np.rot90(stored, turns)  # orientation 6: turn clockwise; 8: anticlockwise
    assert photo.rgb.shape == (80, 48, 3)
    assert _mean_error(photo.rgb, upright) < 4
    assert _mean_error(photo.rgb, np.rot90(stored, -turns)) > 60  # not the other way round
    assert f"EXIF orientation {orientation} applied" in photo.conversions


def test_reduced_decode_keeps_the_full_size_and_the_picture() -> None:
    full = read_photo(idrid_photo(1))
    reduced = read_photo(idrid_photo(1), min_side=1000)
    assert reduced.rgb.shape == (1424, 2144, 3)  # 1/2 scale: 1424 is the last side >= 1000
    assert (reduced.width, reduced.height) == (full.width, full.height) == (4288, 2848)
    assert reduced.reduced and not full.reduced
    assert reduced.sha256 == full.sha256
    halved = cv2.resize(full.rgb, (2144, 1424), interpolation=cv2.INTER_AREA)
    assert _mean_error(reduced.rgb, halved) < 3


def test_reduced_decode_of_a_rotated_jpeg_reports_the_upright_size(tmp_path: Path) -> None:
    stored = _quadrants(480, 800)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _pil_bytes(Image.fromarray(stored), "JPEG", quality=95, exif=exif)
    photo = read_photo(_write(tmp_path / "rotated.jpg", data), min_side=100)
    assert (photo.width, photo.height) == (480, 800)
    assert photo.rgb.shape == (200, 120, 3)  # 1/4 scale, upright
    upright = cv2.resize(np.rot90(stored, -1), (120, 200), interpolation=cv2.INTER_AREA)
    assert _mean_error(photo.rgb, upright) < 6


def test_reduced_decode_still_refuses_a_truncated_jpeg(tmp_path: Path) -> None:
    data = idrid_photo(2).read_bytes()
    path = _write(tmp_path / "cut.jpg", data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_photo(path, min_side=500)


def test_jpeg_with_upright_exif_tag_is_left_as_stored(tmp_path: Path) -> None:
    stored = _quadrants(48, 80)
    exif = Image.Exif()
    exif[0x0112] = 1
    data = _pil_bytes(Image.fromarray(stored), "JPEG", quality=95, exif=exif)
    photo = read_photo(_write(tmp_path / "upright.jpg", data))
    assert photo.rgb.shape == (48, 80, 3)
    assert _mean_error(photo.rgb, stored) < 4
    assert not any("orientation" in c for c in photo.conversions)


def test_exif_rotated_16_bit_png_comes_out_upright(tmp_path: Path) -> None:
    # 16-bit colour takes another decoder than 8-bit; the orientation must still apply.
    stored = _quadrants(6, 10).astype(np.uint16) * 257
    data = _with_exif_orientation(_cv2_bytes(".png", stored), 6)
    photo = read_photo(_write(tmp_path / "rotated16.png", data))
    assert np.array_equal(photo.rgb, np.rot90(_quadrants(6, 10), -1))
    assert "EXIF orientation 6 applied" in photo.conversions


# --- grey, 16-bit, alpha, palette, BMP -----------------------------------------------------


def test_grey_png_becomes_rgb_with_the_same_levels(tmp_path: Path) -> None:
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (10, 1))
    photo = read_photo(_write(tmp_path / "grey.png", _pil_bytes(Image.fromarray(grey), "PNG")))
    assert photo.rgb.shape == (10, 64, 3)
    for c in range(3):
        assert np.array_equal(photo.rgb[:, :, c], grey)
    assert "grey converted to RGB" in photo.conversions


@pytest.mark.parametrize(
    ("top", "bits"),
    [(65535, 16), (4095, 12)],
    ids=["full-16-bit", "12-bit-in-16"],
)
def test_16_bit_grey_png_is_scaled_by_the_bits_it_uses(tmp_path: Path, top: int, bits: int) -> None:
    ramp = np.linspace(0, top, 256).round().astype(np.uint16)
    grey = np.tile(ramp, (4, 1))
    photo = read_photo(_write(tmp_path / f"grey{bits}.png", _cv2_bytes(".png", grey)))
    out = photo.rgb[:, :, 0]
    assert np.array_equal(out, (grey >> (bits - 8)).astype(np.uint8))
    assert out.min() == 0 and out.max() == 255  # neither black nor saturated: the full range
    assert np.count_nonzero(out == 255) <= 8
    assert np.all(np.diff(out[0].astype(int)) >= 0)
    assert f"16-bit ({bits} bits used) converted to 8-bit" in photo.conversions
    assert "grey converted to RGB" in photo.conversions


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize(("top", "bits"), [(65535, 16), (4095, 12)], ids=["16-bit", "12-bit"])
def test_16_bit_rgb_keeps_its_colours_and_range(
    tmp_path: Path, ext: str, top: int, bits: int
) -> None:
    ramp = np.linspace(0, top, 128).round().astype(np.uint16)
    red = np.tile(ramp, (8, 1))
    rgb16 = np.dstack([red, red // 2, red // 4])
    photo = read_photo(_write(tmp_path / f"colour{bits}{ext}", _cv2_bytes(ext, rgb16)))
    assert photo.format == ("PNG" if ext == ".png" else "TIFF")
    assert photo.rgb.shape == (8, 128, 3)
    assert np.array_equal(photo.rgb, (rgb16 >> (bits - 8)).astype(np.uint8))
    assert photo.rgb[:, :, 0].max() == 255  # a 12-bit photo is not 16 times too dark
    assert photo.rgb[:, :, 2].max() < 70  # and channels stay in RGB order
    assert any("16-bit" in c and f"({bits} bits used)" in c for c in photo.conversions)


def test_rgba_png_is_composited_and_the_alpha_recorded(tmp_path: Path) -> None:
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[:, :, :3] = (200, 80, 20)
    rgba[:, :10, 3] = 255  # left half opaque, right half transparent
    path = _write(tmp_path / "alpha.png", _pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    photo = read_photo(path)
    assert photo.rgb.shape == (10, 20, 3)
    assert np.all(photo.rgb[:, :10] == (200, 80, 20))
    assert np.all(photo.rgb[:, 10:] == 0)
    assert any("alpha" in c for c in photo.conversions)


def test_palette_png_is_expanded_to_its_colours(tmp_path: Path) -> None:
    indices = np.zeros((6, 9), np.uint8)
    indices[:, 3:6] = 1
    indices[:, 6:] = 2
    image = Image.fromarray(indices, "L").convert("P")
    image.putpalette([10, 20, 30, 200, 0, 0, 0, 150, 250] + [0] * (256 * 3 - 9))
    photo = read_photo(_write(tmp_path / "palette.png", _pil_bytes(image, "PNG")))
    assert np.all(photo.rgb[:, :3] == (10, 20, 30))
    assert np.all(photo.rgb[:, 3:6] == (200, 0, 0))
    assert np.all(photo.rgb[:, 6:] == (0, 150, 250))
    assert "palette converted to RGB" in photo.conversions


def test_bmp_reads_exactly(tmp_path: Path) -> None:
    rgb = _quadrants(14, 22)
    photo = read_photo(_write(tmp_path / "photo.bmp", _pil_bytes(Image.fromarray(rgb), "BMP")))
    assert photo.format == "BMP"
    assert np.array_equal(photo.rgb, rgb)
    assert photo.conversions == ()


# --- DICOM ---------------------------------------------------------------------------------


def test_dicom_rgb_reads_exactly(tmp_path: Path) -> None:
    rgb = _quadrants(30, 40)
    path = _dicom(tmp_path / "검사" / "fundus.dcm", rgb, "RGB", 8)
    photo = read_photo(path)
    assert photo.format == "DICOM"
    assert np.array_equal(photo.rgb, rgb)
    assert photo.conversions == ()
    assert photo.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_dicom_is_recognised_without_a_dcm_suffix(tmp_path: Path) -> None:
    rgb = _quadrants(30, 40)
    path = _dicom(tmp_path / "IM000001", rgb, "RGB", 8)
    photo = read_photo(path)
    assert photo.format == "DICOM"
    assert np.array_equal(photo.rgb, rgb)


def test_dicom_16_bit_monochrome2_is_scaled_to_8_bit(tmp_path: Path) -> None:
    ramp = np.linspace(0, 4095, 64).round().astype(np.uint16)
    grey = np.tile(ramp, (16, 1))
    photo = read_photo(_dicom(tmp_path / "grey16.dcm", grey, "MONOCHROME2", 12))
    assert photo.rgb.shape == (16, 64, 3)
    assert np.array_equal(photo.rgb[:, :, 1], (grey >> 4).astype(np.uint8))
    assert photo.rgb.min() == 0 and photo.rgb.max() == 255
    assert "grey converted to RGB" in photo.conversions
    assert any("16-bit" in c for c in photo.conversions)


def test_dicom_monochrome1_is_inverted_within_its_bit_depth(tmp_path: Path) -> None:
    grey = np.full((8, 8), 3000, np.uint16)  # MONOCHROME1: 0 is white, 4095 black
    grey[:, 4:] = 1000
    photo = read_photo(_dicom(tmp_path / "mono1.dcm", grey, "MONOCHROME1", 12))
    assert np.all(photo.rgb[:, :4] == (4095 - 3000) >> 4)  # dark grey, not black
    assert np.all(photo.rgb[:, 4:] == (4095 - 1000) >> 4)
    assert "DICOM MONOCHROME1 inverted" in photo.conversions


def test_dicom_ybr_full_comes_out_in_its_true_colours(tmp_path: Path) -> None:
    rgb = _quadrants(20, 20)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    photo = read_photo(_dicom(tmp_path / "ybr.dcm", ybr, "YBR_FULL", 8))
    assert _mean_error(photo.rgb, rgb) < 2  # converted once, not twice
    assert "DICOM YBR_FULL converted to RGB" in photo.conversions


def test_jpeg_compressed_dicom_from_a_camera_comes_out_in_its_true_colours(
    tmp_path: Path,
) -> None:
    rgb = _quadrants(32, 48)
    jpeg = _pil_bytes(Image.fromarray(rgb), "JPEG", quality=95)
    path = _dicom(tmp_path / "camera.dcm", rgb, "YBR_FULL_422", 8, jpeg=jpeg)
    photo = read_photo(path)
    assert photo.rgb.shape == (32, 48, 3)
    assert _mean_error(photo.rgb, rgb) < 5
    assert "DICOM YBR_FULL_422 converted to RGB" in photo.conversions


def test_truncated_dicom_is_refused(tmp_path: Path) -> None:
    full = _dicom(tmp_path / "full.dcm", _quadrants(60, 80), "RGB", 8).read_bytes()
    path = _write(tmp_path / "cut.dcm", full[: len(full) // 2])
    message = _refusal(path)
    assert "cut.dcm" in message
    assert "truncated" in message


# --- refusals ------------------------------------------------------------------------------


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.jpg", b"")
    message = _refusal(path)
    assert str(path) in message
    assert "empty" in message


def test_truncated_real_jpeg_is_refused_not_filled_in_grey(tmp_path: Path) -> None:
    data = IDRID_PHOTO.read_bytes()
    path = _write(tmp_path / "잘린사진.jpg", data[: len(data) // 2])
    message = _refusal(path)
    assert str(path) in message
    assert "truncated" in message


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp"])
def test_truncated_png_tiff_and_bmp_are_refused(tmp_path: Path, ext: str) -> None:
    rng = np.random.default_rng(7)
    data = _cv2_bytes(ext, rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    path = _write(tmp_path / f"cut{ext}", data[: len(data) * 2 // 3])
    message = _refusal(path)
    assert str(path) in message
    assert "truncated" in message


def test_text_file_named_like_a_photo_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "photo.jpg", "환자 메모: not an image at all\n".encode())
    message = _refusal(path)
    assert str(path) in message
    assert "not a photo" in message


def test_unsupported_image_format_is_refused(tmp_path: Path) -> None:
    data = _pil_bytes(Image.new("RGB", (8, 8), (255, 0, 0)), "GIF")
    path = _write(tmp_path / "anim.gif", data)
    message = _refusal(path)
    assert str(path) in message
    assert "GIF" in message and "not supported" in message


def test_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "사진.jpg"
    folder.mkdir()
    message = _refusal(folder)
    assert str(folder) in message
    assert "folder" in message


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "IDRiD_99.jpg"
    message = _refusal(path)
    assert str(path) in message
    assert "not found" in message


def test_photo_above_a_given_pixel_limit_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "small.png", _pil_bytes(Image.new("RGB", (100, 80)), "PNG"))
    assert read_photo(path, max_pixels=8000).width == 100  # exactly at the limit is fine
    message = _refusal(path, max_pixels=7999)
    assert str(path) in message
    assert "100x80" in message and "too large" in message


def test_zero_png_helper_makes_a_real_readable_png(tmp_path: Path) -> None:
    photo = read_photo(_write(tmp_path / "zeros.png", _zero_png(37, 11)))
    assert photo.rgb.shape == (11, 37, 3)
    assert not photo.rgb.any()
    assert "1-bit converted to 8-bit" in photo.conversions


def test_decompression_bomb_is_refused_before_any_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _zero_png(12000, 9000)  # 108 MP of zeros in ~13 KB
    assert len(data) < 100_000 and MAX_PIXELS < 12000 * 9000
    path = _write(tmp_path / "bomb.png", data)
    decoded: list[str] = []

    def no_decoding(self: ImageFile.ImageFile) -> None:
        decoded.append("Pillow load")
        raise AssertionError("the pixels were decoded")

    def no_opencv(*args: object) -> None:
        decoded.append("cv2.imdecode")
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(cv2, "imdecode", no_opencv)
    message = _refusal(path)
    assert decoded == []
    assert str(path) in message
    assert "12000x9000" in message and "too large" in message


def test_image_beyond_pillows_own_bomb_limit_is_refused_with_our_words(tmp_path: Path) -> None:
    path = _write(tmp_path / "huge.png", _zero_png(20000, 20000))
    message = _refusal(path)
    assert str(path) in message
    assert "too large" in message


# --- arrays --------------------------------------------------------------------------------


def test_uint8_rgb_array_is_taken_as_is_and_copied() -> None:
    rgb = _quadrants(10, 12)
    photo = read_photo(rgb)
    assert photo.source == "<array>" and photo.format == "ARRAY"
    assert photo.conversions == ()
    assert np.array_equal(photo.rgb, rgb)
    assert photo.sha256 == hashlib.sha256(rgb.tobytes()).hexdigest()
    rgb[:] = 0  # the caller reusing its buffer does not change the photo
    assert photo.rgb.any()


def test_grey_array_becomes_rgb() -> None:
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10)
    photo = read_photo(grey)
    assert photo.rgb.shape == (6, 10, 3)
    assert np.array_equal(photo.rgb[:, :, 2], grey)
    assert photo.conversions == ("grey converted to RGB",)


def test_float_array_in_0_to_1_is_scaled_to_0_to_255() -> None:
    rgb = np.zeros((4, 4, 3), np.float32)
    rgb[..., 0] = 1.0
    rgb[..., 1] = 0.5
    photo = read_photo(rgb)
    assert np.all(photo.rgb[..., 0] == 255)
    assert np.all(photo.rgb[..., 1] == 128)
    assert np.all(photo.rgb[..., 2] == 0)
    assert any("floating point" in c for c in photo.conversions)


def test_float_array_above_255_is_scaled_not_saturated() -> None:
    grey = np.linspace(0, 4095, 50, dtype=np.float64).reshape(5, 10)
    rgb, notes = to_rgb8(grey)
    assert rgb.max() == 255 and rgb.min() == 0
    assert np.count_nonzero(rgb[:, :, 0] == 255) == 1
    assert any("floating point" in n for n in notes)


def test_bool_array_becomes_black_and_white() -> None:
    mask = np.zeros((5, 5), bool)
    mask[2, :] = True
    photo = read_photo(mask)
    assert set(np.unique(photo.rgb)) == {0, 255}
    assert np.all(photo.rgb[2] == 255)
    assert "1-bit converted to 8-bit" in photo.conversions


def test_rgba_array_is_composited_on_black() -> None:
    rgba = np.full((4, 6, 4), 200, np.uint8)
    rgba[:, :3, 3] = 0
    rgba[:, 3:, 3] = 255
    photo = read_photo(rgba)
    assert np.all(photo.rgb[:, :3] == 0)
    assert np.all(photo.rgb[:, 3:] == 200)
    assert "alpha channel removed (composited on black)" in photo.conversions


def test_16_bit_array_is_scaled() -> None:
    rgb16 = np.zeros((3, 3, 3), np.uint16)
    rgb16[..., 0] = 4095
    rgb16[..., 1] = 2048
    photo = read_photo(rgb16)
    assert np.all(photo.rgb[..., 0] == 255)
    assert np.all(photo.rgb[..., 1] == 128)
    assert "16-bit (12 bits used) converted to 8-bit" in photo.conversions


def test_arrays_that_are_not_images_are_refused() -> None:
    with pytest.raises(ImageReadError, match="unsupported image shape"):
        read_photo(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ImageReadError, match="no pixels"):
        read_photo(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(ImageReadError, match="negative"):
        read_photo(np.full((4, 4), -3, np.int16))


def test_array_above_the_pixel_limit_is_refused() -> None:
    message = _refusal(np.zeros((50, 40, 3), np.uint8), max_pixels=1999)
    assert "50" in message and "too large" in message


# --- names ---------------------------------------------------------------------------------


def test_is_photo_path_knows_photo_suffixes() -> None:
    assert is_photo_path("안저사진.JPG")
    assert is_photo_path(Path("scan/IM0001.dcm"))
    assert is_photo_path("a.tiff") and is_photo_path("b.bmp") and is_photo_path("c.png")
    assert not is_photo_path("notes.txt")
    assert not is_photo_path("labels.json")
    assert not is_photo_path("._IDRiD_01.jpg")  # macOS resource-fork litter


def test_a_jpeg_cut_inside_its_header_is_called_truncated(tmp_path: Path) -> None:
    data = idrid_photo(3).read_bytes()
    path = _write(tmp_path / "cut-early.jpg", data[:30_000])
    assert "truncated" in _refusal(path)


# --- photos without colour -----------------------------------------------------------------


def test_a_grey_or_red_free_photo_is_flagged_however_it_is_stored(tmp_path: Path) -> None:
    colour = Image.open(IDRID_PHOTO).reduce(2)
    green = np.asarray(colour)[:, :, 1]
    red_free_rgb = np.zeros((*green.shape, 3), np.uint8)
    red_free_rgb[:, :, 1] = green  # red-free kept as the green channel of a colour file
    stored = {
        "grey.jpg": _pil_bytes(colour.convert("L"), "JPEG", quality=90),
        # three channels, one picture: what many cameras write for a red-free photo
        "grey-as-rgb.jpg": _pil_bytes(colour.convert("L").convert("RGB"), "JPEG", quality=75),
        "grey-as-rgb.png": _pil_bytes(Image.fromarray(green).convert("RGB"), "PNG"),
        "green-only.jpg": _pil_bytes(Image.fromarray(red_free_rgb), "JPEG", quality=90),
    }
    for name, data in stored.items():
        photo = read_photo(_write(tmp_path / name, data), min_side=500)
        assert photo.no_colour, name
        assert photo.warnings == (
            "the photo has no colour (greyscale or red-free); the model was trained on "
            "colour photos and finds fewer lesions on it",
        ), name
    for number in (1, 2, 43):
        photo = read_photo(idrid_photo(number))
        assert not photo.no_colour and photo.warnings == (), number


def test_a_truncated_jpeg_is_called_incomplete_in_plain_words(tmp_path: Path) -> None:
    data = idrid_photo(4).read_bytes()
    for cut in (1, len(data) // 2):  # the last byte missing: a copy that has not finished
        message = _refusal(_write(tmp_path / "copying.jpg", data[:-cut]))
        assert "copying.jpg: the file is incomplete (truncated)" in message
        assert "still be copying" in message
        assert "bytes not processed" not in message and "image file is" not in message
