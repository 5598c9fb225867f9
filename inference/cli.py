"""`hemaview-infer`: pre-annotate photos in a batch, writing labels a reviewer can open.

For each photo X it writes, in the output folder: `X_HE.png` (the label at the model's
threshold), `X_prob.png` (the probability as 8-bit grey, 255 = 1.0) and `X.json`
(provenance). A photo found in a sub-folder (--recursive) writes into the same sub-folder of
the output folder. Every file is written atomically. It carries on past bad photos, lists
each failure with its reason at the end, and exits 1 if any photo failed; 2 for a usage
problem, found before any model runs (photos that would overwrite each other's results, an
--out that is a file or cannot be written).

A label already in the output folder is replaced only while it is an untouched model
suggestion: a reviewer's label, another photo's label or a file that is not a Hemaview label
is left as it is, and the photo is skipped (said per photo and in the summary; a skip is not a
failure). `--beside-reviewed` writes the new suggestion into a `model-suggestions` sub-folder
instead (see inference/labels/guard.py, which also says what the check cannot promise).

With `--remote HOST:PORT` the photos the local backend cannot finish within the budget
(`--budget S`, default: 10 photos per second) go to a Triton server; a photo sent back by
the server runs locally, and a photo fails only if neither side could process it. The
authorisation header for the server, if it needs one, is read from the environment
variable HEMAVIEW_TRITON_AUTHORIZATION (never from the command line, which others can
see).

`hemaview-infer --triton-repo DIR [--model PATH] [--cpu]` writes a Triton model repository
for the model instead (see packaging/triton/README.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import cv2
import numpy as np

from inference.atomic import atomic_write_bytes
from inference.batch_plan import Job, PlanError, collect, out_problem, plan
from inference.batch_report import Progress, Report
from inference.contract import threshold_problem
from inference.errors import HemaviewError
from inference.labels import (
    LesionDecision,
    ModelInfo,
    PhotoInfo,
    ProvenanceRecord,
    label_paths,
    save_label,
)
from inference.prediction import PhotoFailure, PhotoSource, Prediction
from inference.segmenter import Segmenter
from inference.version import __version__

if TYPE_CHECKING:
    from inference.dispatch import RemoteConfig

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
AUTH_ENV = "HEMAVIEW_TRITON_AUTHORIZATION"


def probability_png(probability: np.ndarray) -> bytes:
    """8-bit grey PNG: grey level = round(255 x probability)."""
    # clip(p * 255 + 0.5, 0, 255) in one buffer: three fewer 12-MP temporaries
    scaled = np.multiply(probability, 255.0)
    scaled += 0.5
    np.clip(scaled, 0, 255, out=scaled)
    grey = scaled.astype(np.uint8)
    ok, encoded = cv2.imencode(".png", grey, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise HemaviewError("could not encode the probability map")
    return encoded.tobytes()


def write_outputs(out_dir: Path, photo_path: Path, prediction: Prediction) -> list[Path]:
    """The label pair and the probability map for one photo; returns what was written."""
    prov = prediction.provenance
    stamp = datetime.now(timezone.utc)
    record = ProvenanceRecord(
        photo=PhotoInfo(
            photo_path.name,
            prov.photo_sha256,
            prov.photo_size[0],
            prov.photo_size[1],
            no_colour=prediction.photo.no_colour,
        ),
        status="todo",
        reviewer="",
        created=stamp,
        modified=stamp,
        model=ModelInfo.from_provenance(prov, prediction.threshold),
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


class ResultWriter:
    """Writes each photo's results and says so, one photo after another in the order they
    come, on a thread of its own: encoding a 12-MP probability map and a label costs more than
    a small model's run, so the next photos are read, run and post-processed meanwhile.

    The rules stay `Report.record`'s: the label's place is checked again just before its
    files are written, never over a reviewer's label. The lines (and the summary's lists) come
    in the same order as before; at most `AHEAD` photos wait to be written, as full-size maps
    are large. A bug in writing is raised in the caller, at its next `put` or at the end.
    """

    AHEAD = 2

    def __init__(self, report: Report, progress: Progress, *, beside: bool):
        self.report, self.progress, self.beside = report, progress, beside
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hemaview-write")
        self.waiting: deque[Future[None]] = deque()

    def put(self, done: int, job: Job, result: Prediction | PhotoFailure) -> None:
        while self.waiting and (self.waiting[0].done() or len(self.waiting) >= self.AHEAD):
            self.waiting.popleft().result()
        self.waiting.append(self.pool.submit(self._write, done, job, result))

    def _write(self, done: int, job: Job, result: Prediction | PhotoFailure) -> None:
        status, note = self.report.record(job, result, self.beside, write_outputs)
        self.progress.update(done, job.photo.name, status=status, note=note)

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            while self.waiting:
                self.waiting.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hemaview-infer",
        description="Pre-annotate fundus photos with the haemorrhage model.",
    )
    parser.add_argument(
        "inputs", nargs="*", metavar="PHOTO_OR_FOLDER", help="photos, or folders of photos"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for labels and probability maps"
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
        "--recursive",
        action="store_true",
        help="look for photos in sub-folders too; their results go into the same "
        "sub-folders of --out",
    )
    parser.add_argument(
        "--beside-reviewed",
        action="store_true",
        help="where --out already holds a photo's label that a reviewer has worked on (or a "
        "file that is not a Hemaview label), write the new suggestion beside it, into a "
        "model-suggestions sub-folder that the viewer and training never read as the label "
        "(default: leave that photo out)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="run the model on photos refused as not fundus photographs too, on the whole "
        "frame (recorded in each photo's provenance)",
    )
    remote = parser.add_argument_group("remote Triton server")
    remote.add_argument(
        "--remote",
        metavar="HOST:PORT",
        default=None,
        help="send what the local backend cannot finish within the budget to this Triton "
        "server (gRPC; grpcs://, http:// or https:// pick another protocol or TLS)",
    )
    remote.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="S",
        help="seconds the whole run may take before photos overflow to the server "
        "(default: 10 photos per second; 0 sends all it can to the server)",
    )
    remote.add_argument(
        "--remote-ca", type=Path, default=None, help="PEM file of the CAs to trust (TLS)"
    )
    remote.add_argument(
        "--remote-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds one request to the server may take (default: 30)",
    )
    remote.add_argument(
        "--remote-model", default=None, help="the model's name on the server (default: its own)"
    )
    repo = parser.add_argument_group("Triton model repository")
    repo.add_argument(
        "--triton-repo",
        type=Path,
        default=None,
        metavar="DIR",
        help="write a Triton model repository for the model into DIR and exit",
    )
    repo.add_argument(
        "--cpu",
        action="store_true",
        help="with --triton-repo: the CPU stand-in (Python backend) instead of the GPU one",
    )
    repo.add_argument(
        "--max-batch", type=int, default=8, help="with --triton-repo: max_batch_size (default 8)"
    )
    parser.add_argument("--version", action="version", version=f"hemaview {__version__}")
    return parser


def write_triton_repo(args: argparse.Namespace, err: TextIO) -> int:
    from inference.model_file import ModelFile
    from inference.triton_repo import RepoSettings, write_repository

    try:
        model = ModelFile.open(args.model)
    except HemaviewError as exc:
        print(f"hemaview-infer: cannot use the model: {exc}", file=err)
        return EXIT_USAGE
    try:
        settings = RepoSettings(
            max_batch_size=args.max_batch,
            preferred_batch_sizes=tuple(
                sorted({b for b in (args.max_batch // 2, args.max_batch) if b >= 1})
            ),
        )
        folder = write_repository(args.triton_repo, model, cpu=args.cpu, settings=settings)
    except (ValueError, OSError) as exc:
        print(f"hemaview-infer: cannot write the repository: {exc}", file=err)
        return EXIT_USAGE
    kind = "CPU stand-in (python backend)" if args.cpu else "production (onnxruntime, GPU)"
    print(
        f"wrote {kind} model {folder.name} ({model.sha256[:12]}) into {args.triton_repo}",
        file=err,
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    err = sys.stderr
    if args.triton_repo is not None:
        if args.inputs or args.out is not None or args.remote is not None:
            print("hemaview-infer: --triton-repo takes no photos, --out or --remote", file=err)
            return EXIT_USAGE
        return write_triton_repo(args, err)
    if not args.inputs or args.out is None:
        print("hemaview-infer: give photos (or folders) and --out DIR", file=err)
        parser.print_usage(err)
        return EXIT_USAGE
    if args.budget is not None and (args.budget < 0 or args.remote is None):
        print("hemaview-infer: --budget needs --remote and a value >= 0", file=err)
        return EXIT_USAGE
    remote = None
    if args.remote is not None:
        from inference.dispatch import RemoteConfig

        try:
            remote = RemoteConfig.parse(
                args.remote,
                ca_file=str(args.remote_ca) if args.remote_ca else None,
                request_timeout_s=args.remote_timeout,
                model_name=args.remote_model,
                authorization=os.environ.get(AUTH_ENV) or None,
            )
        except ValueError as exc:
            print(f"hemaview-infer: --remote: {exc}", file=err)
            return EXIT_USAGE
    bad_threshold = None if args.threshold is None else threshold_problem(args.threshold)
    if bad_threshold:
        print(f"hemaview-infer: --threshold {bad_threshold}", file=err)
        return EXIT_USAGE
    found, problems = collect(args.inputs, args.recursive, args.out)
    for problem in problems:
        print(f"hemaview-infer: {problem}", file=err)
    if not found:
        print("hemaview-infer: no photos to process", file=err)
        return EXIT_USAGE
    # Everything that would make every photo fail is found here, before the model loads.
    out_issue = out_problem(args.out)
    if out_issue is not None:
        print(f"hemaview-infer: {out_issue}", file=err)
        return EXIT_USAGE
    try:
        jobs = plan(found, args.out, beside=args.beside_reviewed)
    except PlanError as exc:
        print(f"hemaview-infer: {exc}", file=err)
        return EXIT_USAGE
    report = Report(total=len(jobs))
    runnable: dict[str, Job] = {}
    for job in jobs:  # no model time for a photo whose label must stay as it is
        if report.place(job, args.beside_reviewed, err) is not None:
            runnable[str(job.photo)] = job
    if runnable:
        code = _annotate(args, remote, runnable, report, err)
        if code is not None:
            return code
    report.print(args.out, err)
    if report.failures:
        return EXIT_SOME_FAILED
    return EXIT_OK if not problems else EXIT_SOME_FAILED


def _annotate(
    args: argparse.Namespace,
    remote: RemoteConfig | None,
    runnable: dict[str, Job],
    report: Report,
    err: TextIO,
) -> int | None:
    """Run the model on the photos and write each one's results; an exit code if it could
    not start."""
    try:
        segmenter = Segmenter.open(args.model, backend=args.backend)
    except HemaviewError as exc:
        print(f"hemaview-infer: cannot use the model: {exc}", file=err)
        return EXIT_USAGE
    print(
        f"model {segmenter.model_reason}, SHA-256 {segmenter.model.sha256[:12]}; "
        f"{segmenter.device_reason}",
        file=err,
    )
    photos = [job.photo for job in runnable.values()]
    progress = Progress(len(photos), err)
    results: Iterable[tuple[PhotoSource, Prediction | PhotoFailure]]
    dispatcher = None
    if remote is not None:
        from inference.dispatch import Dispatcher

        dispatcher = Dispatcher(segmenter, remote, budget_s=args.budget)
        budget = dispatcher.budget_for(len(photos))
        print(f"remote: {remote.describe()}, budget {budget:g} s", file=err)
        results = (
            (item.source, item.result)
            for item in dispatcher.run(photos, threshold=args.threshold, force=args.force)
        )
    else:
        results = segmenter.predict_many(photos, threshold=args.threshold, force=args.force)
    with ResultWriter(report, progress, beside=args.beside_reviewed) as writer:
        for done, (source, result) in enumerate(results, start=1):
            writer.put(done, runnable[str(source)], result)
    if dispatcher is not None:
        dispatcher.close()
        if dispatcher.last_report is not None:
            print(dispatcher.last_report.summary(), file=err)
    segmenter.close()
    return None


def label_files_for(out_dir: Path, photo: Path) -> list[Path]:
    """The files `hemaview-infer` writes for one photo (for tests and the viewer)."""
    paths = label_paths(photo, out_dir)
    return [paths.mask, out_dir / f"{photo.stem}_prob.png", paths.provenance]


if __name__ == "__main__":
    sys.exit(main())
