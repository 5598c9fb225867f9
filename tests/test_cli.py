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
