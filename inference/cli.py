"""`hemaview-infer`: pre-annotate photos in a batch, writing labels a reviewer can open.

For each photo X it writes, in the output folder: `X_HE.png` (the label at the model's
threshold), `X_prob.png` (the probability as 8-bit grey, 255 = 1.0) and `X.json`
(provenance). Every file is written atomically. It carries on past bad photos, lists
each failure with its reason at the end, and exits 1 if any photo failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from inference.atomic import atomic_write_bytes
from inference.errors import HemaviewError
from inference.labels import (
    LesionDecision,
    ModelInfo,
    PhotoInfo,
    ProvenanceRecord,
    label_paths,
    save_label,
)
from inference.photo_io import is_photo_path
from inference.segmenter import PhotoFailure, Prediction, Segmenter
from inference.version import __version__

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def collect_photos(
    inputs: Iterable[str | Path], recursive: bool = False
) -> tuple[list[Path], list[str]]:
    """Photos named directly or found in folders (sorted), and problems with the inputs."""
    photos: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and is_photo_path(p))
            if not found:
                problems.append(f"{path}: no photos in this folder")
            photos.extend(found)
        else:
            photos.append(path)  # a missing or odd file is reported by the reader, in order
    return photos, problems


def probability_png(probability: np.ndarray) -> bytes:
    """8-bit grey PNG: grey level = round(255 x probability)."""
    grey = np.clip(probability * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".png", grey, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise HemaviewError("could not encode the probability map")
    return encoded.tobytes()


def write_outputs(out_dir: Path, photo_path: Path, prediction: Prediction) -> list[Path]:
    """The label pair and the probability map for one photo; returns what was written."""
    prov = prediction.provenance
    stamp = datetime.now(timezone.utc)
    record = ProvenanceRecord(
        photo=PhotoInfo(photo_path.name, prov.photo_sha256, prov.photo_size[0], prov.photo_size[1]),
        status="todo",
        reviewer="",
        created=stamp,
        modified=stamp,
        model=ModelInfo(prov.model_name, prov.model_sha256, prediction.threshold, prov.device),
        changes=None,
        source="model",
        lesions=tuple(
            LesionDecision(lesion.id, "pending", lesion.bbox, lesion.area_px)
            for lesion in prediction.lesions
        ),
    )
    prob_path = out_dir / f"{photo_path.stem}_prob.png"
    if prob_path.resolve() == photo_path.resolve():
        raise HemaviewError(f"{prob_path}: would overwrite the photo; choose another --out folder")
    # The probability map first: the label pair's JSON is the last file of a photo written.
    atomic_write_bytes(prob_path, probability_png(prediction.probability))
    paths = save_label(out_dir, photo_path, prediction.mask, record)
    return [paths.mask, prob_path, paths.provenance]


class Progress:
    """A one-line progress bar with rate and time left; plain lines when not a terminal."""

    def __init__(self, total: int, stream: TextIO):
        self.total, self.stream = total, stream
        self.start = time.perf_counter()
        self.tty = stream.isatty()

    def update(self, done: int, name: str) -> None:
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * done / max(self.total, 1))
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {rate:.2f} photos/s "
            f"{int(left) // 60}:{int(left) % 60:02d} left  {name}"
        )
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
            if done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hemaview-infer",
        description="Pre-annotate fundus photos with the haemorrhage model.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="PHOTO_OR_FOLDER", help="photos, or folders of photos"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="folder for labels and probability maps"
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="ONNX model (default: the shipped model)"
    )
    parser.add_argument(
        "--threshold", type=float, default=None, help="probability threshold (default: the model's)"
    )
    parser.add_argument(
        "--backend",
        default="local",
        choices=["local", "cpu", "cuda"],
        help="where to run: local (GPU when it binds, else CPU), cpu or cuda",
    )
    parser.add_argument(
        "--recursive", action="store_true", help="look for photos in sub-folders too"
    )
    parser.add_argument("--version", action="version", version=f"hemaview {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = sys.stderr
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        print(
            f"hemaview-infer: --threshold must be between 0 and 1, not {args.threshold}", file=err
        )
        return EXIT_USAGE
    photos, problems = collect_photos(args.inputs, args.recursive)
    for problem in problems:
        print(f"hemaview-infer: {problem}", file=err)
    if not photos:
        print("hemaview-infer: no photos to process", file=err)
        return EXIT_USAGE
    try:
        segmenter = Segmenter.open(args.model, backend=args.backend)
    except HemaviewError as exc:
        print(f"hemaview-infer: cannot use the model: {exc}", file=err)
        return EXIT_USAGE
    print(
        f"model {segmenter.contract.model_name} ({segmenter.model.sha256[:12]}), "
        f"{segmenter.device_reason}",
        file=err,
    )
    progress = Progress(len(photos), err)
    failures: list[tuple[Path, str]] = []
    results = segmenter.predict_many(photos, threshold=args.threshold)
    for done, (source, result) in enumerate(results, start=1):
        path = Path(str(source))
        if isinstance(result, PhotoFailure):
            failures.append((path, result.message))
        else:
            try:
                write_outputs(args.out, path, result)
            except (HemaviewError, OSError) as exc:
                failures.append((path, f"could not write its results: {exc}"))
        progress.update(done, path.name)
    segmenter.close()
    ok = len(photos) - len(failures)
    print(f"{ok} of {len(photos)} photos annotated into {args.out}", file=err)
    if failures:
        print(f"{len(failures)} failed:", file=err)
        for path, message in failures:
            message = message.removeprefix(f"{path}: ")
            print(f"  {path}: {message}", file=err)
        return EXIT_SOME_FAILED
    return EXIT_OK if not problems else EXIT_SOME_FAILED


def label_files_for(out_dir: Path, photo: Path) -> list[Path]:
    """The files `hemaview-infer` writes for one photo (for tests and the viewer)."""
    paths = label_paths(photo, out_dir)
    return [paths.mask, out_dir / f"{photo.stem}_prob.png", paths.provenance]


if __name__ == "__main__":
    sys.exit(main())
