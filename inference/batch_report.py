"""What `hemaview-infer` says while it runs and when it ends: a line per photo, and a summary
that keeps apart what failed, what was skipped on purpose and what to check."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from inference.batch_plan import Job
from inference.errors import HemaviewError, NotFundusError
from inference.labels.guard import replace_refusal
from inference.prediction import PhotoFailure, Prediction

#: Writes one photo's results into a folder (the CLI's write_outputs).
Writer = Callable[[Path, Path, Prediction], object]

SKIP_HINT = "left as it is (--beside-reviewed writes the new suggestion beside it)"


class Progress:
    """A one-line progress bar with rate and time left; plain lines when not a terminal.

    A line that says something about its photo (a failure, a skip, a warning) stays on a
    terminal instead of being overwritten by the next one.
    """

    def __init__(self, total: int, stream: TextIO):
        self.total, self.stream = total, stream
        self.start = time.perf_counter()
        self.tty = stream.isatty()
        self.annotated = 0

    def update(self, done: int, name: str, *, status: str = "", note: str = "") -> None:
        """`status` ("failed", "skipped") replaces the rate: a photo that was not annotated
        says nothing about speed, and a fast failure would inflate it."""
        elapsed = time.perf_counter() - self.start
        width = 24
        filled = int(width * done / max(self.total, 1))
        if not status:
            self.annotated += 1
            rate = self.annotated / elapsed if elapsed > 0 else 0.0
            left = (self.total - done) / rate if rate > 0 else 0.0
            status = f"{rate:.2f} photos/s {int(left) // 60}:{int(left) % 60:02d} left"
        line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {status}  {name}"
        if note:
            line += f": {note}"
        if not self.tty:
            self.stream.write(line + "\n")
        elif note or status in ("failed", "skipped"):
            self.stream.write("\r" + line.ljust(120) + "\n")
        else:
            self.stream.write("\r" + line[:120].ljust(120))
            if done == self.total:
                self.stream.write("\n")
        self.stream.flush()


@dataclass
class Report:
    """What happened to each photo, for the per-photo lines and the summary."""

    total: int
    annotated: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    beside: list[tuple[Path, str]] = field(default_factory=list)
    estimated: list[tuple[Path, str]] = field(default_factory=list)
    no_colour: list[Path] = field(default_factory=list)

    def place(self, job: Job, beside: bool, err: TextIO) -> Job | None:
        """Where the photo's results may go now: its own place, beside the label that holds
        it, or nowhere (recorded as skipped, and said on `err`)."""
        found, why = self._place(job, beside)
        if found is None:
            print(f"{job.photo}: skipped: {why}", file=err)
        return found

    def _place(self, job: Job, beside: bool) -> tuple[Job | None, str]:
        refusal = replace_refusal(job.label, job.photo.name)
        if refusal is None:
            return job, ""
        if beside:
            alternative = job.beside()
            second = replace_refusal(alternative.label, job.photo.name)
            if second is None:
                return alternative, refusal
            refusal += f"; and beside it, {second}"
        self.skipped.append((job.photo, refusal))
        return None, refusal if beside else f"{refusal}; {SKIP_HINT}"

    def record(
        self, job: Job, result: Prediction | PhotoFailure, beside: bool, write: Writer
    ) -> tuple[str, str]:
        """Write one photo's results with `write`; the status and note for its progress
        line."""
        path = job.photo
        if isinstance(result, PhotoFailure):
            message = result.message
            if isinstance(result.error, NotFundusError):
                message += " (--force runs the model on it anyway)"
            self.failures.append((path, message))
            return "failed", ""
        # Checked again: a reviewer may have saved while the model ran. A save landing between
        # this check and the rename below is still overwritten (see labels/guard.py).
        place, why = self._place(job, beside)
        if place is None:
            return "skipped", why
        try:
            write(place.out_dir, path, result)
        except (HemaviewError, OSError) as exc:
            self.failures.append((path, f"could not write its results: {exc}"))
            return "failed", ""
        self.annotated += 1
        notes = list(result.photo.warnings)
        if result.photo.no_colour:
            self.no_colour.append(path)
        if place.out_dir != job.out_dir:
            where = f"{why}; the new suggestion went beside it, into {place.out_dir}"
            self.beside.append((path, where))
            notes.append(where)
        fov = result.geometry.fov
        if fov.estimated:
            self.estimated.append((path, fov.note))
        return "", "; ".join(notes)

    def print(self, out: Path, err: TextIO) -> None:
        print(f"{self.annotated} of {self.total} photos annotated into {out}", file=err)
        sections = [
            # Not failures: nothing was lost, and a later run can write them.
            (self.skipped, f"skipped, not failed: the label in their place was {SKIP_HINT}"),
            (self.beside, "written beside the label in their place, not over it"),
            # Not failures either: each has its result, but one to check.
            (
                [(path, "") for path in self.no_colour],
                "without colour (greyscale or red-free): the model was trained on colour "
                "photos and finds fewer lesions on these (check them)",
            ),
            (self.estimated, "with an estimated field of view (check them)"),
            (self.failures, "failed"),
        ]
        for items, heading in sections:
            if not items:
                continue
            print(f"{len(items)} {heading}:", file=err)
            for path, message in items:
                message = message.removeprefix(f"{path}: ")
                print(f"  {path}: {message}" if message else f"  {path}", file=err)
