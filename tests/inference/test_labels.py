"""Labels on disk: what the viewer saves is what training reads, and a crash never loses a label.

Real files in tmp_path, the real IDRiD photo and mask; every check is one a reviewer or the
person training the model would make by opening the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from conftest import idrid_mask, idrid_photo
from PIL import Image

from inference import labels
from inference.errors import HemaviewError, LabelFormatError
from inference.labels import (
    LabelPaths,
    LesionDecision,
    MaskChanges,
    ModelInfo,
    PhotoInfo,
    ProvenanceRecord,
    default_label_dir,
    iter_labels,
    label_paths,
    load_label,
    mask_changes,
    read_mask,
    save_label,
    write_mask_png,
)
from inference.photo_io import read_photo

W, H = 4288, 2848  # every IDRiD photo
MODEL_SHA = "ab" * 32
KST = timezone(timedelta(hours=9))


# --------------------------------------------------------------------------------------------
# helpers


def _record(
    photo_name: str,
    sha256: str,
    width: int,
    height: int,
    *,
    status: str = "accepted",
    lesions: tuple[LesionDecision, ...] = (),
) -> ProvenanceRecord:
    created = datetime(2025, 3, 4, 9, 30, 0, 123456, tzinfo=KST)
    return ProvenanceRecord(
        photo=PhotoInfo(file_name=photo_name, sha256=sha256, width=width, height=height),
        status=status,
        reviewer="dr.kim",
        created=created,
        modified=created + timedelta(minutes=7),
        model=ModelInfo(name="hemaview-unet", sha256=MODEL_SHA, threshold=0.5, device="cuda"),
        changes=MaskChanges(pixels_added=12, pixels_removed=3, dice_vs_suggestion=0.875),
        source="reviewer",
        lesions=lesions,
    )


def _record_for(photo_path: Path, **kwargs: object) -> ProvenanceRecord:
    photo = read_photo(photo_path)
    return _record(photo_path.name, photo.sha256, photo.width, photo.height, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def idrid01_mask() -> np.ndarray:
    return np.array(Image.open(idrid_mask(1))) > 0


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    """A copy of a real IDRiD photo in its own folder, as a clinic's photo folder would be."""
    folder = tmp_path / "photos"
    folder.mkdir()
    return Path(shutil.copy(idrid_photo(1), folder / "IDRiD_01.jpg"))


def _folder_listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _small_mask(seed: int, shape: tuple[int, int] = (30, 40)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < 0.2


# --------------------------------------------------------------------------------------------
# names and folders


def test_label_names_follow_the_photo_stem_whatever_its_suffix(tmp_path: Path) -> None:
    out = tmp_path / "labels"
    assert label_paths("/clinic/photos/IDRiD_01.jpg", out) == LabelPaths(
        mask=out / "IDRiD_01_HE.png", provenance=out / "IDRiD_01.json"
    )
    assert label_paths("scan.2024.TIFF", out).mask == out / "scan.2024_HE.png"
    assert label_paths("eye.jpeg", out).provenance == out / "eye.json"
    assert default_label_dir("/clinic/photos/IDRiD_01.jpg") == Path(
        "/clinic/photos/hemaview-labels"
    )


# --------------------------------------------------------------------------------------------
# the mask PNG


def test_full_size_mask_round_trips_bit_exact(tmp_path: Path, idrid01_mask: np.ndarray) -> None:
    # Real lesions plus speckle along every edge and corner, where an off-by-one would show.
    mask = idrid01_mask | (np.random.default_rng(1).random((H, W)) < 0.01)
    mask[0, :] = True
    mask[:, -1] = True
    mask[-1, 0] = False
    path = tmp_path / "IDRiD_01_HE.png"
    digest = write_mask_png(path, mask)

    back = read_mask(path, expected_size=(W, H))
    assert back.dtype == np.bool_
    assert back.shape == (H, W)
    assert np.array_equal(back, mask)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_png_is_a_palette_image_any_viewer_shows_red(
    tmp_path: Path, idrid01_mask: np.ndarray
) -> None:
    path = tmp_path / "IDRiD_01_HE.png"
    write_mask_png(path, idrid01_mask)

    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.mode == "P"
        assert im.size == (W, H)
        palette = im.getpalette()
        assert palette is not None
        assert palette[:6] == [0, 0, 0, 255, 0, 0]
        indices = np.array(im)
        rgb = np.array(im.convert("RGB"))
    assert set(np.unique(indices)) == {0, 1}
    ys, xs = np.nonzero(idrid01_mask)
    assert tuple(rgb[ys[0], xs[0]]) == (255, 0, 0)
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert int((rgb == (255, 0, 0)).all(axis=-1).sum()) == int(idrid01_mask.sum())
    # IHDR: bit depth 1, colour type 3 (palette): a full-size label stays small.
    data = path.read_bytes()
    assert (data[24], data[25]) == (1, 3)
    assert len(data) < 200_000


def test_only_bool_masks_are_written(tmp_path: Path) -> None:
    probability = np.full((10, 10), 0.7, dtype=np.float32)
    with pytest.raises(LabelFormatError, match="bool"):
        write_mask_png(tmp_path / "x_HE.png", probability)  # type: ignore[arg-type]
    with pytest.raises(LabelFormatError, match="height, width"):
        write_mask_png(tmp_path / "x_HE.png", np.zeros((4, 4, 3), dtype=bool))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# reading other people's masks


def test_idrid_tif_keeps_its_lesions(idrid01_mask: np.ndarray) -> None:
    path = idrid_mask(1)
    with Image.open(path) as im:
        assert im.mode == "P"  # the format trap is real for this file
        trap = np.array(im.convert("L")) >= 128  # what a greyscale-first reader gets
    assert int(trap.sum()) == 0

    mask = read_mask(path, expected_size=(W, H))
    photo = read_photo(idrid_photo(1))
    assert mask.shape == (photo.height, photo.width)
    assert int(mask.sum()) == 35430  # 0.29% of the photo: small, like most IDRiD masks
    assert np.array_equal(mask, idrid01_mask)


@pytest.mark.parametrize("lesion_value", [255, 1])
def test_greyscale_two_level_masks(tmp_path: Path, lesion_value: int) -> None:
    truth = _small_mask(2)
    path = tmp_path / f"grey_{lesion_value}.png"
    Image.fromarray(truth.astype(np.uint8) * lesion_value).save(path)
    with Image.open(path) as im:
        assert im.mode == "L"
    assert np.array_equal(read_mask(path), truth)


def test_greyscale_trap_output_is_still_read_as_lesion(tmp_path: Path) -> None:
    # Someone converted an IDRiD mask to greyscale and saved it: lesions became 76.
    path = tmp_path / "IDRiD_01_HE_grey.png"
    with Image.open(idrid_mask(1)) as im:
        im.convert("L").save(path)
    assert int(read_mask(path).sum()) == 35430


def test_many_level_greyscale_is_thresholded_at_half_range(tmp_path: Path) -> None:
    # A mask saved as JPEG or painted with a soft brush: values all over the range.
    values = np.array([[0, 3, 127, 128, 200, 255]], dtype=np.uint8)
    path = tmp_path / "soft.png"
    Image.fromarray(values).save(path)
    assert read_mask(path).tolist() == [[False, False, False, True, True, True]]


def test_rgb_mask_any_non_black_pixel_is_lesion(tmp_path: Path) -> None:
    rgb = np.zeros((5, 6, 3), dtype=np.uint8)
    rgb[1, 2] = (255, 0, 0)
    rgb[3, 4] = (0, 90, 0)
    rgb[4, 0] = (1, 1, 1)
    path = tmp_path / "colour.png"
    Image.fromarray(rgb).save(path)
    expected = np.zeros((5, 6), dtype=bool)
    expected[1, 2] = expected[3, 4] = expected[4, 0] = True
    assert np.array_equal(read_mask(path), expected)


def test_unreadable_mask_files_get_clear_messages(tmp_path: Path, idrid01_mask: np.ndarray) -> None:
    with pytest.raises(LabelFormatError, match="not found"):
        read_mask(tmp_path / "missing_HE.png")

    empty = tmp_path / "empty_HE.png"
    empty.write_bytes(b"")
    with pytest.raises(LabelFormatError, match="empty"):
        read_mask(empty)

    text = tmp_path / "notes_HE.png"
    text.write_text("these are my notes, not a mask\n", encoding="utf-8")
    with pytest.raises(LabelFormatError, match="not an image"):
        read_mask(text)

    with pytest.raises(LabelFormatError, match="folder"):
        read_mask(tmp_path)

    good = tmp_path / "good_HE.png"
    write_mask_png(good, idrid01_mask)
    cut = tmp_path / "cut_HE.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(LabelFormatError, match="truncated"):
        read_mask(cut)

    cut_tif = tmp_path / "cut_HE.tif"
    cut_tif.write_bytes(idrid_mask(1).read_bytes()[:700_000])
    with pytest.raises(LabelFormatError, match="truncated"):
        read_mask(cut_tif)


def test_wrong_size_names_both_sizes(tmp_path: Path) -> None:
    path = tmp_path / "half_HE.png"
    write_mask_png(path, np.zeros((H // 2, W // 2), dtype=bool))
    with pytest.raises(LabelFormatError) as caught:
        read_mask(path, expected_size=(W, H))
    assert "2144x1424" in str(caught.value)
    assert "4288x2848" in str(caught.value)
    assert isinstance(caught.value, HemaviewError)


# --------------------------------------------------------------------------------------------
# comparing with the model's suggestion


def test_mask_changes_on_a_hand_made_example() -> None:
    suggestion = np.array(
        [
            [1, 1, 0, 0],
            [1, 1, 0, 0],
            [0, 0, 0, 0],
        ],
        dtype=bool,
    )
    corrected = np.array(
        [
            [1, 1, 0, 0],
            [1, 0, 0, 1],
            [0, 0, 0, 1],
        ],
        dtype=bool,
    )
    changes = mask_changes(suggestion, corrected)
    assert changes.pixels_added == 2
    assert changes.pixels_removed == 1
    assert changes.dice_vs_suggestion == pytest.approx(2 * 3 / (4 + 5))

    empty = np.zeros((3, 4), dtype=bool)
    assert mask_changes(empty, empty) == MaskChanges(0, 0, 1.0)
    assert mask_changes(suggestion, empty) == MaskChanges(0, 4, 0.0)
    with pytest.raises(LabelFormatError, match="different sizes"):
        mask_changes(suggestion, np.zeros((4, 3), dtype=bool))


# --------------------------------------------------------------------------------------------
# the provenance record


def test_record_round_trips_through_json() -> None:
    record = _record(
        "IDRiD_01.jpg",
        "cd" * 32,
        W,
        H,
        lesions=(
            LesionDecision(id=1, decision="accepted", bbox=(100, 200, 30, 20), area_px=410),
            LesionDecision(id=2, decision="rejected", bbox=(4000, 2800, 8, 9), area_px=50),
            LesionDecision(id=3, decision="pending", bbox=(0, 0, 1, 1), area_px=1),
        ),
    )
    text = record.to_json()
    data = json.loads(text)
    assert data["schema_version"] == 1
    assert data["photo"] == {
        "file_name": "IDRiD_01.jpg",
        "sha256": "cd" * 32,
        "width": W,
        "height": H,
        "no_colour": False,
    }
    assert data["created"] == "2025-03-04T09:30:00.123456+09:00"
    assert data["model"]["device"] == "cuda"
    assert data["lesions"][1] == {
        "id": 2,
        "decision": "rejected",
        "bbox": [4000, 2800, 8, 9],
        "area_px": 50,
    }
    assert ProvenanceRecord.from_json(text) == record
    assert ProvenanceRecord.from_dict(record.to_dict()) == record


def test_record_without_a_model_stores_null() -> None:
    record = dataclasses.replace(
        _record("a.jpg", "cd" * 32, 10, 10), model=None, changes=None, source="import"
    )
    data = record.to_dict()
    assert data["model"] is None
    assert data["changes"] is None
    assert ProvenanceRecord.from_dict(json.loads(json.dumps(data))) == record


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(schema_version=2), "schema version 2"),
        (lambda d: d.pop("schema_version"), "no schema_version"),
        (lambda d: d.update(status="done"), "status must be one of"),
        (lambda d: d["model"].update(device="tpu"), "model.device"),
        (lambda d: d["model"].update(threshold=1.5), "model.threshold"),
        (lambda d: d["photo"].update(width="4288"), "photo.width"),
        (lambda d: d["photo"].update(sha256="xyz"), "photo.sha256"),
        (lambda d: d.update(created="2025-03-04T09:30:00"), "timezone"),
        (lambda d: d.update(modified="yesterday"), "ISO 8601"),
        (lambda d: d.pop("reviewer"), "missing field 'reviewer'"),
        (lambda d: d.update(model=None), "model is null"),
        (
            lambda d: d["lesions"].append(
                {"id": 1, "decision": "maybe", "bbox": [0, 0, 2, 2], "area_px": 3}
            ),
            "lesion 1: decision must be one of accepted, rejected, pending",
        ),
        (lambda d: d["lesions"].append({"id": 1, "decision": "accepted"}), "lesions.0..bbox"),
        (
            lambda d: d["lesions"].append(
                {"id": 1, "decision": "accepted", "bbox": [4280, 0, 20, 5], "area_px": 3}
            ),
            "outside",
        ),
    ],
)
def test_malformed_records_are_refused_with_the_reason(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    data = _record("IDRiD_01.jpg", "cd" * 32, W, H).to_dict()
    edit(data)
    with pytest.raises(LabelFormatError, match=message) as caught:
        ProvenanceRecord.from_dict(data, source="IDRiD_01.json")
    assert str(caught.value).startswith("IDRiD_01.json: ")


def test_malformed_json_files(tmp_path: Path) -> None:
    with pytest.raises(LabelFormatError, match=r"not valid JSON \(line 1"):
        ProvenanceRecord.from_json('{"schema_version": 1, ', source="x.json")
    with pytest.raises(LabelFormatError, match="empty"):
        ProvenanceRecord.from_json(b"", source="x.json")
    with pytest.raises(LabelFormatError, match="UTF-8"):
        ProvenanceRecord.from_json(b"\xff\xfe\x00garbage", source="x.json")
    with pytest.raises(LabelFormatError, match="JSON object"):
        ProvenanceRecord.from_json("[1, 2, 3]", source="x.json")


def test_times_must_carry_a_timezone() -> None:
    record = _record("a.jpg", "cd" * 32, 10, 10)
    with pytest.raises(LabelFormatError, match="timezone"):
        dataclasses.replace(record, modified=datetime(2025, 3, 4, 9, 30))
    assert labels.now().utcoffset() is not None
    utc = dataclasses.replace(record, modified=datetime(2025, 3, 4, 0, 0, tzinfo=UTC))
    assert ProvenanceRecord.from_json(utc.to_json()).modified == utc.modified


# --------------------------------------------------------------------------------------------
# saving and loading a label pair


def test_save_and_load_a_real_photo_label(photo: Path, idrid01_mask: np.ndarray) -> None:
    out = default_label_dir(photo)
    record = _record_for(photo)
    paths = save_label(out, photo, idrid01_mask, record)

    assert paths == LabelPaths(out / "IDRiD_01_HE.png", out / "IDRiD_01.json")
    on_disk = json.loads(paths.provenance.read_text(encoding="utf-8"))
    assert on_disk["mask_sha256"] == hashlib.sha256(paths.mask.read_bytes()).hexdigest()
    assert on_disk["photo"]["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()

    loaded = load_label(out, photo)
    assert loaded is not None
    mask, back = loaded
    assert np.array_equal(mask, idrid01_mask)
    assert back == dataclasses.replace(record, mask_sha256=on_disk["mask_sha256"])
    # The photo folder holds only the photo and the label folder: the photo was not touched.
    assert sorted(p.name for p in photo.parent.iterdir()) == ["IDRiD_01.jpg", "hemaview-labels"]
    assert photo.read_bytes() == idrid_photo(1).read_bytes()


def test_load_label_of_an_unlabelled_photo_is_none(photo: Path) -> None:
    assert load_label(default_label_dir(photo), photo) is None
    # A PNG without its JSON is a save that never committed.
    write_mask_png(label_paths(photo, default_label_dir(photo)).mask, np.zeros((H, W), bool))
    assert load_label(default_label_dir(photo), photo) is None


def test_korean_file_names(tmp_path: Path, idrid01_mask: np.ndarray) -> None:
    folder = tmp_path / "환자 사진"
    folder.mkdir()
    photo = Path(shutil.copy(idrid_photo(1), folder / "안저사진_01.jpg"))
    out = folder / "라벨"
    paths = save_label(out, photo, idrid01_mask, _record_for(photo))

    assert paths.mask == out / "안저사진_01_HE.png"
    assert sorted(p.name for p in out.iterdir()) == ["안저사진_01.json", "안저사진_01_HE.png"]
    assert '"file_name": "안저사진_01.jpg"' in paths.provenance.read_text(encoding="utf-8")
    assert np.array_equal(read_mask(paths.mask), idrid01_mask)
    loaded = load_label(out, photo)
    assert loaded is not None
    assert np.array_equal(loaded[0], idrid01_mask)
    assert [entry.stem for entry in iter_labels(out)] == ["안저사진_01"]


def test_crash_while_renaming_leaves_the_previous_label_whole(
    photo: Path, idrid01_mask: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = default_label_dir(photo)
    record = _record_for(photo)
    save_label(out, photo, idrid01_mask, record)
    before = _folder_listing(out)

    edited = idrid01_mask.copy()
    edited[1000:1100, 2000:2100] = True

    def power_cut(src: object, dst: object) -> None:
        raise OSError("simulated power cut")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        save_label(out, photo, edited, dataclasses.replace(record, reviewer="dr.lee"))
    monkeypatch.undo()

    assert _folder_listing(out) == before  # same names (no temporaries left), same bytes
    loaded = load_label(out, photo)
    assert loaded is not None
    assert np.array_equal(loaded[0], idrid01_mask)
    assert loaded[1].reviewer == "dr.kim"


def test_crash_in_the_encoder_writes_nothing(
    photo: Path, idrid01_mask: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = default_label_dir(photo)
    record = _record_for(photo)
    save_label(out, photo, idrid01_mask, record)
    before = _folder_listing(out)

    def broken_encoder(mask: np.ndarray) -> bytes:
        raise MemoryError("simulated out of memory while encoding")

    monkeypatch.setattr(labels.codec, "encode_mask_png", broken_encoder)
    with pytest.raises(MemoryError):
        save_label(out, photo, ~idrid01_mask, record)
    assert _folder_listing(out) == before


@pytest.mark.parametrize("crash_at", [1, 2, 3, 4])
def test_a_crash_at_any_step_leaves_the_old_or_the_new_label_whole(
    photo: Path, idrid01_mask: np.ndarray, monkeypatch: pytest.MonkeyPatch, crash_at: int
) -> None:
    # The renames of a save: staged PNG, staged JSON, PNG into place, JSON into place.
    out = default_label_dir(photo)
    record = _record_for(photo)
    save_label(out, photo, idrid01_mask, record)

    real_replace = os.replace
    calls: list[str] = []

    def die(src: str, dst: str) -> None:
        calls.append(str(dst))
        if len(calls) == crash_at:
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", die)
    edited = idrid01_mask.copy()
    edited[:50, :50] = True
    with pytest.raises(OSError, match="simulated crash"):
        save_label(out, photo, edited, dataclasses.replace(record, reviewer="dr.lee"))
    monkeypatch.undo()

    # Readers see the old pair or the new one, whichever the save had committed to, and
    # change nothing on disk (a colleague's save may be in progress, not crashed).
    left_behind = _folder_listing(out)
    loaded = load_label(out, photo)
    assert loaded is not None
    expected, reviewer = (idrid01_mask, "dr.kim") if crash_at <= 2 else (edited, "dr.lee")
    assert np.array_equal(loaded[0], expected)
    assert loaded[1].reviewer == reviewer
    assert [entry.stem for entry in iter_labels(out)] == ["IDRiD_01"]
    assert next(iter_labels(out)).record.reviewer == reviewer
    assert _folder_listing(out) == left_behind
    # The next writer finishes or discards the interrupted save, then writes its own.
    save_label(out, photo, expected, dataclasses.replace(record, reviewer="dr.park"))
    assert sorted(p.name for p in out.iterdir()) == ["IDRiD_01.json", "IDRiD_01_HE.png"]


def test_mask_swapped_by_hand_is_detected(photo: Path, idrid01_mask: np.ndarray) -> None:
    out = default_label_dir(photo)
    paths = save_label(out, photo, idrid01_mask, _record_for(photo))
    # Someone copies in another photo's mask under this name (same size, so it would load).
    write_mask_png(paths.mask, np.array(Image.open(idrid_mask(2))) > 0)

    with pytest.raises(LabelFormatError) as caught:
        load_label(out, photo)
    message = str(caught.value)
    assert "IDRiD_01_HE.png" in message
    assert "does not match" in message
    with pytest.raises(LabelFormatError, match="does not match"):
        list(iter_labels(out))


def test_label_of_a_changed_photo_is_refused(photo: Path, idrid01_mask: np.ndarray) -> None:
    out = default_label_dir(photo)
    save_label(out, photo, idrid01_mask, _record_for(photo))
    shutil.copy(idrid_photo(2), photo)  # a different photo took over the name
    with pytest.raises(LabelFormatError, match="photo has changed"):
        load_label(out, photo)
    assert load_label(out, photo, check_photo=False) is not None


def test_malformed_json_on_disk_is_reported_with_its_path(
    photo: Path, idrid01_mask: np.ndarray
) -> None:
    out = default_label_dir(photo)
    paths = save_label(out, photo, idrid01_mask, _record_for(photo))
    paths.provenance.write_text('{"schema_version": 1, "photo": {', encoding="utf-8")
    with pytest.raises(LabelFormatError) as caught:
        load_label(out, photo)
    assert str(caught.value).startswith(str(paths.provenance))
    assert "not valid JSON" in str(caught.value)


def test_refuses_to_write_onto_or_beside_the_photo(photo: Path, idrid01_mask: np.ndarray) -> None:
    record = _record_for(photo)
    with pytest.raises(LabelFormatError, match="is the photo itself"):
        save_label(photo, photo, idrid01_mask, record)
    with pytest.raises(LabelFormatError, match="beside the photos"):
        save_label(photo.parent, photo, idrid01_mask, record)
    assert sorted(p.name for p in photo.parent.iterdir()) == ["IDRiD_01.jpg"]
    assert photo.read_bytes() == idrid_photo(1).read_bytes()


def test_refuses_a_mask_or_record_that_does_not_fit_the_photo(
    photo: Path, idrid01_mask: np.ndarray
) -> None:
    out = default_label_dir(photo)
    record = _record_for(photo)
    with pytest.raises(LabelFormatError) as caught:
        save_label(out, photo, idrid01_mask[::2, ::2], record)
    assert "2144x1424" in str(caught.value)
    assert "4288x2848" in str(caught.value)
    other = dataclasses.replace(record, photo=dataclasses.replace(record.photo, file_name="b.jpg"))
    with pytest.raises(LabelFormatError, match=r"'b\.jpg'"):
        save_label(out, photo, idrid01_mask, other)
    assert not out.exists()


def test_same_stem_photos_do_not_overwrite_each_other(tmp_path: Path) -> None:
    out = tmp_path / "labels"
    mask = _small_mask(3)
    save_label(out, tmp_path / "eye.jpg", mask, _record("eye.jpg", "cd" * 32, 40, 30))
    before = _folder_listing(out)
    with pytest.raises(LabelFormatError, match=r"already holds the label of 'eye\.jpg'"):
        save_label(out, tmp_path / "eye.png", ~mask, _record("eye.png", "ef" * 32, 40, 30))
    assert _folder_listing(out) == before


# --------------------------------------------------------------------------------------------
# the folder as training data


def test_iter_labels_yields_every_committed_pair(tmp_path: Path) -> None:
    out = tmp_path / "labels"
    photos = tmp_path / "photos"
    masks = {}
    for n, (name, status) in enumerate(
        [("b.jpg", "accepted"), ("a.tif", "rejected"), ("c.png", "accepted"), ("d.jpg", "todo")]
    ):
        masks[Path(name).stem] = _small_mask(n)
        save_label(
            out,
            photos / name,
            masks[Path(name).stem],
            _record(name, "cd" * 32, 40, 30, status=status),
        )
    # What must not count: an uncommitted PNG, an atomic-write temporary, unrelated files.
    write_mask_png(out / "orphan_HE.png", _small_mask(9))
    (out / ".b.json.x1y2.tmp").write_text("{", encoding="utf-8")
    (out / "notes.txt").write_text("hello", encoding="utf-8")

    entries = list(iter_labels(out))
    assert [e.stem for e in entries] == ["a", "b", "c", "d"]
    for stem, mask_path, record in entries:
        assert mask_path == out / f"{stem}_HE.png"
        assert Path(record.photo.file_name).stem == stem
        assert np.array_equal(read_mask(mask_path, (40, 30)), masks[stem])

    accepted = list(iter_labels(out, statuses={"accepted"}))
    assert [(e.stem, e.record.status) for e in accepted] == [("b", "accepted"), ("c", "accepted")]


def test_iter_labels_reports_broken_pairs(tmp_path: Path) -> None:
    out = tmp_path / "labels"
    for n, name in enumerate(["a.jpg", "b.jpg", "c.jpg"]):
        save_label(out, tmp_path / name, _small_mask(n), _record(name, "cd" * 32, 40, 30))
    (out / "b_HE.png").unlink()
    (out / "c.json").write_text("{oops", encoding="utf-8")

    with pytest.raises(LabelFormatError, match=r"b_HE\.png is missing"):
        list(iter_labels(out))

    problems: list[LabelFormatError] = []
    assert [e.stem for e in iter_labels(out, problems=problems)] == ["a"]
    assert len(problems) == 2
    assert "b_HE.png is missing" in str(problems[0])
    assert "c.json" in str(problems[1]) and "not valid JSON" in str(problems[1])

    with pytest.raises(LabelFormatError, match="does not exist"):
        list(iter_labels(tmp_path / "nowhere"))


def test_reading_during_a_save_in_progress_does_not_break_the_save(
    photo: Path, idrid01_mask: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A colleague (or training) reads the label between the save's staging and its renames:
    the read sees a whole pair and the save still completes."""
    out = default_label_dir(photo)
    record = _record_for(photo)
    save_label(out, photo, idrid01_mask, record)
    edited = idrid01_mask.copy()
    edited[:80, :80] = True
    real_replace = os.replace
    seen: list[str] = []

    def read_in_between(src: str, dst: str) -> None:
        if str(dst).endswith("IDRiD_01_HE.png"):  # the staged pair is whole: read now
            loaded = load_label(out, photo)
            assert loaded is not None
            seen.append(loaded[1].reviewer)
            seen.extend(entry.record.reviewer for entry in iter_labels(out))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", read_in_between)
    save_label(out, photo, edited, dataclasses.replace(record, reviewer="dr.lee"))
    monkeypatch.undo()
    assert seen == ["dr.lee", "dr.lee"]  # the committed save, read without moving a file
    loaded = load_label(out, photo)
    assert loaded is not None and np.array_equal(loaded[0], edited)
    assert sorted(p.name for p in out.iterdir()) == ["IDRiD_01.json", "IDRiD_01_HE.png"]
