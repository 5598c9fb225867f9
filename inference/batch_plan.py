"""Which photos `hemaview-infer` runs and where each one's results go, settled before any
model is loaded.

Rules the CLI relies on:
- A photo found in a sub-folder of an input folder writes into the same sub-folder of
  --out, so root/patientA/eye.jpg and root/patientB/eye.jpg keep their own results.
- No two photos write the same file. What would still collide (X.jpg and X.png in one
  folder, or photos named one by one from different folders with one name) is refused
  before any work, naming the photos; a photo named twice runs once.
- --out is a folder, or can be made, and can be written in; no label lands in a photo's own
  folder; each photo's output folder is a folder, not a file.
- With --recursive, label folders are not searched for photos: `hemaview-labels` folders
  and --out itself when it lies inside an input folder hold masks and probability maps.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from inference.labels import DEFAULT_LABEL_DIR_NAME, LabelPaths, label_paths
from inference.labels.guard import BESIDE_DIR_NAME
from inference.photo_io import is_photo_path


class PlanError(Exception):
    """A usage problem found before any work: the message says what and how to fix it."""


@dataclass(frozen=True)
class Found:
    """A photo, and its folder relative to the input folder it was found in."""

    photo: Path
    rel: Path = Path()  # "." for a photo named directly or found at the top of its folder


@dataclass(frozen=True)
class Job:
    """One photo and the folder its label pair and probability map go to."""

    photo: Path
    out_dir: Path

    @property
    def label(self) -> LabelPaths:
        return label_paths(self.photo, self.out_dir)

    @property
    def prob(self) -> Path:
        return self.out_dir / f"{self.photo.stem}_prob.png"

    def files(self) -> list[Path]:
        return [self.label.mask, self.prob, self.label.provenance]

    def beside(self) -> Job:
        """The same photo writing into the folder for suggestions beside a reviewed label."""
        return Job(self.photo, self.out_dir / BESIDE_DIR_NAME)


def collect(
    inputs: Iterable[str | Path], recursive: bool, out: Path | None = None
) -> tuple[list[Found], list[str]]:
    """Photos named directly or found in folders (sorted per folder), each once, and the
    problems with the inputs."""
    found: list[Found] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            # a missing or odd file is reported by the reader, in order
            batch = [Found(path)]
        else:
            batch = [Found(p, p.parent.relative_to(path)) for p in _photos_in(path, recursive, out)]
            if not batch:
                problems.append(_no_photos(path, recursive, out))
        for entry in batch:
            key = entry.photo.resolve()
            if key not in seen:
                seen.add(key)
                found.append(entry)
    return found, problems


def _photos_in(folder: Path, recursive: bool, out: Path | None) -> list[Path]:
    if not recursive:
        return sorted(p for p in folder.glob("*") if p.is_file() and is_photo_path(p))
    top = folder.resolve()
    inner_out = out.resolve() if out is not None else None
    if inner_out is not None and top not in inner_out.parents:
        inner_out = None  # only an --out inside this folder can hold our own outputs

    def is_label_folder(photo: Path) -> bool:
        if DEFAULT_LABEL_DIR_NAME in photo.relative_to(folder).parts[:-1]:
            return True
        where = photo.parent.resolve()
        return inner_out is not None and (where == inner_out or inner_out in where.parents)

    return sorted(
        p
        for p in folder.glob("**/*")
        if p.is_file() and is_photo_path(p) and not is_label_folder(p)
    )


def _no_photos(folder: Path, recursive: bool, out: Path | None) -> str:
    if recursive:
        return f"{folder}: no photos in this folder or its sub-folders"
    below = len(_photos_in(folder, True, out))
    if below:
        return (
            f"{folder}: no photos in this folder, but its sub-folders hold {below} "
            f"(--recursive includes them)"
        )
    return f"{folder}: no photos in this folder"


def out_problem(out: Path) -> str | None:
    """Why results cannot be written under `out`, or None. Changes nothing on disk."""
    if out.exists():
        if not out.is_dir():
            return f"--out {out} is a file, not a folder; name a folder for the results"
        return None if _can_write_in(out) else f"--out {out}: no permission to write in it"
    existing = next((p for p in out.parents if p.exists()), Path("."))
    if not existing.is_dir():
        return f"--out {out} cannot be made: {existing} is a file, not a folder"
    if not _can_write_in(existing):
        return f"--out {out} cannot be made: no permission to write in {existing}"
    return None


def _can_write_in(folder: Path) -> bool:
    # A real attempt, not os.access: that ignores ACLs and answers yes to root on a
    # read-only share. The file has no name (O_TMPFILE on Linux) and is gone when closed.
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def plan(found: list[Found], out: Path, *, beside: bool = False) -> list[Job]:
    """Each photo's job; PlanError when two would write one file or a label would land in a
    photo's own folder. `beside`: the folders for suggestions beside reviewed labels count."""
    jobs = [Job(entry.photo, out / entry.rel) for entry in found]
    owners: dict[str, Job] = {}
    clashes: list[str] = []
    for job in jobs:
        if _same_folder(job.out_dir, job.photo.parent):
            raise PlanError(
                f"--out {out} puts the labels of {job.photo} beside the photo; labels are "
                f"never written into a photo folder: choose another folder, such as "
                f"{job.photo.parent / DEFAULT_LABEL_DIR_NAME}"
            )
        for target in job.files() + (job.beside().files() if beside else []):
            # a case-insensitive disk or share gives Eye.jpg and eye.jpg one label
            other = owners.setdefault(os.path.normcase(target).casefold(), job)
            if other is not job:
                clashes.append(f"  {other.photo} and {job.photo}: both would write {target}")
                break
    if clashes:
        raise PlanError(
            "photos whose results would overwrite each other's (same name, different "
            "suffix or folder); nothing was run:\n"
            + "\n".join(clashes)
            + "\nrename one of each, or run them into separate --out folders"
        )
    for folder in sorted({job.out_dir for job in jobs}):
        blocker = next((p for p in (folder, *folder.parents) if p.is_file()), None)
        if blocker is not None:
            raise PlanError(f"{blocker} is a file, so results cannot go into {folder}")
    return jobs


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and os.path.samefile(a, b))
    except OSError:
        return False
