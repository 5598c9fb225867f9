"""A folder pre-annotated two ways, side by side: `hemaview-infer` and the viewer's background
pre-annotation, with the bare model's rate over the same photos.

    .venv/bin/python bench/bench_batch.py [--data DIR] [--photos N] [--repeats 3]

By default on the eight full-size 4288x2848 IDRiD photos of tests/data; --data takes any
folder of photos (e.g. 499 half-size ones). Per repeat, interleaved, it measures photos per
second of:

- `hemaview-infer` as it is: its results written on a writer thread while the next photos
  are read, run and post-processed (inference.cli.ResultWriter);
- the same CLI writing in its main loop, one photo after another, as it did before: the
  baseline, measured in this very run;
- the viewer's background pre-annotation of the same folder: what its worker does
  (viewer/qt/workers.py, without Qt): `predict_many` with one photo read ahead, each result
  put in a prediction cache (working map, lesion count and uncertainty);
- the bare model over the photos' input tensors, one after another.

It prints the medians and the ratios (machines are noisy; compare ratios from one run).
Outputs are written under a temporary folder and removed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_inference import bare_session  # noqa: E402

from inference import Prediction, Segmenter, cli  # noqa: E402
from inference.batch_plan import Job  # noqa: E402
from inference.batch_report import Progress, Report  # noqa: E402
from inference.photo_io import is_photo_path  # noqa: E402
from inference.prediction import PhotoFailure  # noqa: E402
from inference.system import physical_cores  # noqa: E402
from viewer.model.pred_cache import PredictionCache, PredictionSummary  # noqa: E402

DATA = REPO / "tests" / "data" / "idrid-hemorrhage" / "images"


class WritingInTheLoop:
    """The CLI's writing as it was before the writer thread: in its main loop."""

    def __init__(self, report: Report, progress: Progress, *, beside: bool):
        self.report, self.progress, self.beside = report, progress, beside

    def put(self, done: int, job: Job, result: Prediction | PhotoFailure) -> None:
        status, note = self.report.record(job, result, self.beside, cli.write_outputs)
        self.progress.update(done, job.photo.name, status=status, note=note)

    def __enter__(self) -> WritingInTheLoop:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class Opened:
    """Stands for `Segmenter` in the CLI: hands it the segmenter already open, so a run is
    timed from its first photo, not from loading the model."""

    def __init__(self, seg: Segmenter):
        self.seg = seg

    def open(self, *args: object, **kwargs: object) -> Segmenter:
        return self.seg


def run_cli(seg: Segmenter, folder: Path, out: Path, *, in_loop: bool) -> float:
    """Photos per second of one `hemaview-infer` run into an empty folder."""
    writer = getattr(cli, "ResultWriter", None)  # absent before the writer thread
    if in_loop and writer is not None:
        cli.ResultWriter = WritingInTheLoop  # type: ignore[assignment,misc]
    segmenter, close = cli.Segmenter, seg.close
    cli.Segmenter = Opened(seg)  # type: ignore[assignment,misc]
    seg.close = lambda: None  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            code = cli.main([str(folder), "--out", str(out)])
        elapsed = time.perf_counter() - t0
    finally:
        cli.Segmenter = segmenter  # type: ignore[misc]
        seg.close = close  # type: ignore[method-assign]
        if writer is not None:
            cli.ResultWriter = writer  # type: ignore[misc]
    if code != 0:
        raise SystemExit(f"hemaview-infer exited {code}")
    return len(list(out.glob("*_prob.png"))) / elapsed


def run_preannotation(seg: Segmenter, photos: list[Path], cache_dir: Path) -> float:
    """Photos per second of what the viewer's pre-annotation worker does, without Qt."""
    cache = PredictionCache(cache_dir)
    t0 = time.perf_counter()
    done = 0
    for _, outcome in seg.predict_many(photos, prefetch=1):
        if isinstance(outcome, Prediction):
            cache.put(outcome, seg.cache_key)
            PredictionSummary.of(outcome)
            done += 1
    return done / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--photos", type=int, default=0, help="the first N (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    photos = sorted(p for p in args.data.iterdir() if is_photo_path(p))[: args.photos or None]
    if not photos:
        print(f"no photos in {args.data}", file=sys.stderr)
        return 2
    seg = Segmenter.open(args.model, backend="cpu")
    session = bare_session(seg.model.data)
    name_in, name_out = seg.contract.input_name, seg.contract.output_name
    inputs = [seg.prepare(p)[1].image[None] for p in photos]
    print(f"model {seg.model.path.name} {seg.model.sha256[:12]}, {seg.device_reason}")
    print(f"{len(photos)} photos from {args.data}, {args.repeats} repeats, interleaved\n")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for photo in photos:  # a folder of just these photos
            (folder / photo.name).symlink_to(photo.resolve())
        rates: dict[str, list[float]] = {"cli": [], "cli_in_loop": [], "pre": [], "bare": []}
        for r in range(args.repeats):
            t0 = time.perf_counter()
            for tensor in inputs:
                session.run([name_out], {name_in: tensor})
            rates["bare"].append(len(inputs) / (time.perf_counter() - t0))
            rates["cli"].append(run_cli(seg, folder, Path(tmp) / f"out{r}", in_loop=False))
            rates["cli_in_loop"].append(run_cli(seg, folder, Path(tmp) / f"loop{r}", in_loop=True))
            rates["pre"].append(run_preannotation(seg, photos, Path(tmp) / f"cache{r}"))
    seg.close()

    names = {
        "cli": "hemaview-infer (writing on its own thread)",
        "cli_in_loop": "hemaview-infer writing in its loop (before)",
        "pre": "viewer pre-annotation (predict_many + cache)",
        "bare": "bare session.run, same tensors",
    }
    bare = statistics.median(rates["bare"])
    print(f"| run ({physical_cores()} threads) | photos/s (median) | / bare model |")
    print("| --- | ---: | ---: |")
    for key, label in names.items():
        rate = statistics.median(rates[key])
        print(f"| {label} | {rate:.2f} | {rate / bare:.2f} |")

    def per_repeat(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True))

    print(
        f"\nhemaview-infer / its writing in the loop: {per_repeat('cli', 'cli_in_loop'):.2f}; "
        f"hemaview-infer / viewer pre-annotation: {per_repeat('cli', 'pre'):.2f} "
        "(per-repeat medians)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
