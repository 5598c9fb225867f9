"""`hemaview-infer` on real photos: outputs, failures, exit codes, atomic writes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import idrid_photo
from PIL import Image

from inference import cli
from inference.labels import read_mask


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    shutil.copy(idrid_photo(1), folder / "IDRiD_01.jpg")
    shutil.copy(idrid_photo(2), folder / "안저사진_02.jpg")  # Korean file names are normal
    (folder / "notes.txt").write_text("not a photo, and not named like one")
    return folder


def test_folder_of_good_photos_exits_zero_with_all_outputs(
    photo_dir: Path, model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = cli.main([str(photo_dir), "--out", str(out), "--model", str(model_path)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "2 of 2 photos annotated" in err
    for stem in ("IDRiD_01", "안저사진_02"):
        label = read_mask(out / f"{stem}_HE.png")
        prob = np.asarray(Image.open(out / f"{stem}_prob.png"))
        record = json.loads((out / f"{stem}.json").read_text())
        assert label.shape == prob.shape == (2848, 4288)
        threshold = record["model"]["threshold"]
        # the label is the probability map at the model's threshold (within 8-bit rounding)
        agree = label == (prob >= round(threshold * 255))
        assert agree.mean() > 0.999
        assert record["photo"]["file_name"] == f"{stem}.jpg"
        assert record["source"] == "model" and record["status"] == "todo"
        assert record["model"]["device"] in ("cpu", "cuda")
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_a_refused_photo_runs_with_force_and_says_so_in_its_provenance(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    # an oval aperture: a retina, but no circle fits; and a flat grey picture: no retina
    rgb = np.asarray(Image.open(idrid_photo(1)).reduce(2))
    oval = np.zeros(rgb.shape[:2], np.uint8)
    import cv2

    cv2.ellipse(oval, (1000, 712), (850, 470), 0, 0, 360, 1, -1)
    Image.fromarray(rgb * oval[..., None]).save(folder / "oval.png")
    Image.new("RGB", (800, 600), (128, 128, 128)).save(folder / "grey.png")
    out = tmp_path / "out"
    args = [str(folder), "--out", str(out), "--model", str(model_path)]

    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "grey.png" in err and "--force runs the model on it anyway" in err
    assert "oval.png: no circular edge found" in err  # has its result, with a warning
    assert json.loads((out / "oval.json").read_text())["model"]["fov_method"] == "bounding-box"
    assert not (out / "grey.json").exists()

    assert cli.main([*args, "--force"]) == 0
    err = capsys.readouterr().err
    assert "2 of 2 photos annotated" in err and "estimated field of view" in err
    model = json.loads((out / "grey.json").read_text())["model"]
    assert model["forced"] is True and model["fov_method"] == "whole-frame"
    assert json.loads((out / "oval.json").read_text())["model"]["forced"] is False


def test_bad_files_are_listed_with_reasons_and_exit_one(model_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(idrid_photo(3), folder / "good.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(idrid_photo(4).read_bytes()[:150_000])
    (folder / "text.png").write_text("hello")
    Image.new("RGB", (800, 600), (128, 128, 128)).save(folder / "grey.png")
    out = tmp_path / "out"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "hemaview-infer"),
            str(folder),
            str(folder / "missing.jpg"),
            "--out",
            str(out),
            "--model",
            str(model_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1, result.stderr
    err = result.stderr
    assert "1 of 6 photos annotated" in err
    assert "5 failed" in err
    for name, reason in [
        ("empty.jpg", "empty"),
        ("truncated.jpg", "truncated"),
        ("text.png", "not a photo"),
        ("grey.png", "not look like a fundus photograph"),
        ("missing.jpg", "not found"),
    ]:
        line = next(x for x in err.splitlines() if name in x and x.startswith("  "))
        assert reason in line, line
    written = sorted(p.name for p in out.iterdir())
    assert written == ["good.json", "good_HE.png", "good_prob.png"]


def test_usage_errors_exit_two(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([str(idrid_photo(1)), "--out", str(tmp_path), "--threshold", "1.5"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
    assert (
        cli.main(
            [str(idrid_photo(1)), "--out", str(tmp_path), "--model", str(tmp_path / "none.onnx")]
        )
        == 2
    )
    assert "model file not found" in capsys.readouterr().err
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    assert cli.main([str(empty), "--out", str(tmp_path / "o"), "--model", str(model_path)]) == 2
    assert "no photos" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_crash_while_writing_leaves_the_previous_results_whole(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = tmp_path / "IDRiD_05.jpg"
    shutil.copy(idrid_photo(5), photo)
    out = tmp_path / "out"
    assert cli.main([str(photo), "--out", str(out), "--model", str(model_path)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    import inference.atomic as atomic

    real_replace = atomic.os.replace
    calls = {"n": 0}

    def crash_on_second(src: str, dst: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", crash_on_second)
    assert (
        cli.main([str(photo), "--out", str(out), "--model", str(model_path), "--threshold", "0.01"])
        == 1
    )
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(after) == set(before)  # no temporary files left behind
    # the label pair is untouched: its PNG write was the one that failed
    assert after["IDRiD_05_HE.png"] == before["IDRiD_05_HE.png"]
    assert after["IDRiD_05.json"] == before["IDRiD_05.json"]


# --- where results go, and what they never overwrite (issue 26) ----------------------------


def _small_photo(number: int, path: Path, mode: str = "RGB") -> Path:
    """A real IDRiD photo at a quarter of its size: the same retina, a quicker test."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(idrid_photo(number)).reduce(4).convert(mode).save(path, quality=90)
    return path


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_recursive_photos_with_one_name_keep_their_own_results(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "clinic"
    eye_a = _small_photo(1, root / "patientA" / "eye.jpg")
    eye_b = _small_photo(2, root / "patientB" / "eye.jpg")
    out = root / "hemaview-labels"  # inside the tree: its masks are not taken for photos
    args = [str(root), "--recursive", "--out", str(out), "--model", str(model_path)]

    for _run in range(2):
        assert cli.main(args) == 0
        assert "2 of 2 photos annotated" in capsys.readouterr().err
    for patient, photo in (("patientA", eye_a), ("patientB", eye_b)):
        record = json.loads((out / patient / "eye.json").read_text())
        assert record["photo"]["sha256"] == _sha256(photo), patient
        assert read_mask(out / patient / "eye_HE.png").shape == (712, 1072)
        assert (out / patient / "eye_prob.png").is_file()
    assert not (out / "eye.json").exists()


def test_photos_that_would_share_results_are_refused_before_any_work(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    _small_photo(1, folder / "eye.jpg")
    _small_photo(2, folder / "eye.png")  # another photo with the same name stem
    other = _small_photo(3, tmp_path / "elsewhere" / "eye.jpg")
    out = tmp_path / "out"
    for inputs in ([str(folder)], [str(folder / "eye.jpg"), str(other)]):
        assert cli.main([*inputs, "--out", str(out), "--model", str(model_path)]) == 2
        err = capsys.readouterr().err
        assert "nothing was run" in err and "SHA-256" not in err  # the model never loaded
        clash = next(line for line in err.splitlines() if "both would write" in line)
        assert str(folder / "eye.jpg") in clash and "eye." in clash.split(" and ")[1]
        assert not out.exists()


def _review(out: Path, photo: Path, reviewer: str) -> bytes:
    """A reviewer opens the suggestion, removes half of it and saves: status in_review."""
    import dataclasses

    from inference.labels import MaskChanges, load_label, now, save_label

    loaded = load_label(out, photo)
    assert loaded is not None
    mask, record = loaded
    edited = mask.copy()
    edited[: mask.shape[0] // 2] = False
    reviewed = dataclasses.replace(
        record,
        status="in_review",
        source="reviewer",
        reviewer=reviewer,
        modified=now(),
        changes=MaskChanges(0, int(mask.sum() - edited.sum()), 0.5),
    )
    save_label(out, photo, edited, reviewed)
    return (out / f"{photo.stem}.json").read_bytes() + (out / f"{photo.stem}_HE.png").read_bytes()


def _label_bytes(out: Path, stem: str) -> bytes:
    return (out / f"{stem}.json").read_bytes() + (out / f"{stem}_HE.png").read_bytes()


def test_a_reviewed_label_or_a_foreign_file_is_never_overwritten(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    reviewed = _small_photo(1, photos / "IDRiD_01.jpg")
    _small_photo(2, photos / "IDRiD_02.jpg")
    _small_photo(3, photos / "IDRiD_03.jpg")  # an untouched suggestion: replaced
    out = photos / "hemaview-labels"  # the viewer's own label folder
    args = [str(photos), "--out", str(out), "--model", str(model_path)]
    assert cli.main(args) == 0
    capsys.readouterr()
    kept = _review(out, reviewed, "kim")
    (out / "IDRiD_02.json").write_text('{"notes": "not a label"')  # someone else's file
    foreign = _label_bytes(out, "IDRiD_02")

    assert cli.main([*args, "--threshold", "0.3"]) == 0  # a skip is not a failure
    err = capsys.readouterr().err
    assert _label_bytes(out, "IDRiD_01") == kept
    assert _label_bytes(out, "IDRiD_02") == foreign
    assert json.loads((out / "IDRiD_03.json").read_text())["model"]["threshold"] == 0.3
    line = next(x for x in err.splitlines() if x.startswith(f"{reviewed}: skipped"))
    assert "reviewer has worked on (status in_review" in line and "kim" in line
    assert "left as it is" in line and "--beside-reviewed" in line
    assert any(x.startswith(f"{photos / 'IDRiD_02.jpg'}: skipped") for x in err.splitlines())
    assert "1 of 3 photos annotated" in err and "2 skipped, not failed" in err
    assert not (out / "model-suggestions").exists()

    assert cli.main([*args, "--threshold", "0.3", "--beside-reviewed"]) == 0
    err = capsys.readouterr().err
    assert _label_bytes(out, "IDRiD_01") == kept and _label_bytes(out, "IDRiD_02") == foreign
    beside = out / "model-suggestions"
    suggestion = json.loads((beside / "IDRiD_01.json").read_text())
    assert suggestion["status"] == "todo" and suggestion["source"] == "model"
    assert (beside / "IDRiD_02_HE.png").is_file() and (beside / "IDRiD_01_prob.png").is_file()
    assert "3 of 3 photos annotated" in err and "2 written beside the label in their place" in err
    # what training and the viewer read is still the reviewer's label
    from inference.labels import LabelFormatError, iter_labels, load_label

    problems: list[LabelFormatError] = []
    stems = {entry.stem: entry.record.status for entry in iter_labels(out, problems=problems)}
    assert stems == {"IDRiD_01": "in_review", "IDRiD_03": "todo"}
    assert [str(p).split(":")[0] for p in problems] == [str(out / "IDRiD_02.json")]
    loaded = load_label(out, reviewed)
    assert loaded is not None and loaded[1].reviewer == "kim"


def test_a_review_saved_while_the_model_runs_is_not_overwritten(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = _small_photo(5, tmp_path / "photos" / "IDRiD_05.jpg")
    out = tmp_path / "labels"
    args = [str(photo), "--out", str(out), "--model", str(model_path)]
    assert cli.main(args) == 0
    saved: list[bytes] = []

    # The real model runs; the reviewer saves after the run started, before its results land.
    real_open = cli.Segmenter.open

    def open_with_a_reviewer(*a: object, **k: object) -> object:
        segmenter = real_open(*a, **k)  # type: ignore[arg-type]
        predict_many = segmenter.predict_many

        def predict_then_review(*pa: object, **pk: object) -> object:
            for item in predict_many(*pa, **pk):  # type: ignore[arg-type]
                saved.append(_review(out, photo, "lee"))
                yield item

        segmenter.predict_many = predict_then_review  # type: ignore[method-assign,assignment]
        return segmenter

    monkeypatch.setattr(cli.Segmenter, "open", open_with_a_reviewer)
    assert cli.main([*args, "--threshold", "0.3"]) == 0
    assert saved and _label_bytes(out, "IDRiD_05") == saved[0]
    assert json.loads((out / "IDRiD_05.json").read_text())["reviewer"] == "lee"


def test_an_out_that_is_a_file_is_refused_before_the_model_runs(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = _small_photo(1, tmp_path / "photos" / "IDRiD_01.jpg")
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep me")
    for out, words in ((a_file, "is a file, not a folder"), (a_file / "sub", "cannot be made")):
        assert cli.main([str(photo), "--out", str(out), "--model", str(model_path)]) == 2
        err = capsys.readouterr().err
        assert f"--out {out}" in err and words in err, err
        assert "SHA-256" not in err and "File exists" not in err  # the model never loaded
    assert a_file.read_text() == "keep me"
    # labels are never written among the photos: refused before the model, not per photo
    assert cli.main([str(photo), "--out", str(photo.parent), "--model", str(model_path)]) == 2
    err = capsys.readouterr().err
    assert "beside the photo" in err and "hemaview-labels" in err and "SHA-256" not in err


def test_a_photo_without_colour_says_so_in_its_line_and_its_label(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from inference.labels import ProvenanceRecord

    folder = tmp_path / "photos"
    _small_photo(3, folder / "colour.jpg")
    grey = _small_photo(3, folder / "red-free.jpg", mode="L")
    out = tmp_path / "out"
    assert cli.main([str(folder), "--out", str(out), "--model", str(model_path)]) == 0
    err = capsys.readouterr().err
    warning = (
        "the photo has no colour (greyscale or red-free); the model was trained on colour "
        "photos and finds fewer lesions on it"
    )
    line = next(x for x in err.splitlines() if x.startswith("[") and "red-free.jpg" in x)
    assert warning in line
    assert not any(warning in x for x in err.splitlines() if "colour.jpg" in x)
    assert "1 without colour" in err and f"  {grey}" in err.splitlines()
    text = (out / "red-free.json").read_text()
    assert json.loads(text)["photo"]["no_colour"] is True
    assert json.loads((out / "colour.json").read_text())["photo"]["no_colour"] is False
    assert ProvenanceRecord.from_json(text).photo.no_colour
    # a label written before the field existed still reads, as "not flagged"
    old = json.loads(text)
    del old["photo"]["no_colour"]
    assert ProvenanceRecord.from_dict(old).photo.no_colour is False


def test_messages_say_what_a_person_can_act_on(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "copying"
    data = idrid_photo(4).read_bytes()
    (folder / "cut.jpg").parent.mkdir()
    (folder / "cut.jpg").write_bytes(data[:-1])  # the last byte not copied yet
    out = tmp_path / "out"
    assert cli.main([str(folder), "--out", str(out), "--model", str(model_path)]) == 1
    err = capsys.readouterr().err
    progress = next(x for x in err.splitlines() if x.startswith("[") and "cut.jpg" in x)
    assert "photos/s" not in progress and "failed" in progress
    failure = next(x for x in err.splitlines() if x.startswith("  ") and "cut.jpg" in x)
    assert "the file is incomplete (truncated)" in failure and "still be copying" in failure
    assert "bytes not processed" not in err

    tree = tmp_path / "by-patient"
    _small_photo(1, tree / "A" / "eye.jpg")
    _small_photo(2, tree / "B" / "left" / "eye.jpg")
    assert cli.main([str(tree), "--out", str(out), "--model", str(model_path)]) == 2
    err = capsys.readouterr().err
    assert "no photos in this folder, but its sub-folders hold 2 (--recursive includes them)" in err
