"""The labelled photos: IDRiD's haemorrhage set and the label folders Hemaview writes.

Each photo is preprocessed once through `training.cache` (the clinic's own preprocessing) and
held in memory as a uint8 working image, a soft lesion mask (the fraction of each working pixel
that is lesion at full resolution) and its field of view.

Decisions worth knowing:
- A photo without a mask (IDRiD_43, whose haemorrhages the owners did not annotate) is "not
  annotated": it has no segmentation target, is never evaluated and never counts as a photo
  without haemorrhage. It can still train the reconstruction decoder.
- An empty mask is kept as a true negative photo (every pixel counts as background), with a
  warning for IDRiD-style data: every photo in IDRiD's haemorrhage set has haemorrhages, so an
  empty mask there more likely means a broken export than a clean retina. An accepted Hemaview
  label that is empty is a reviewer saying "no haemorrhage" and is kept without a warning.
- Photos from Hemaview label folders (only labels whose review status is "accepted") train in
  every fold but are never evaluated, so the cross-validated figures stay comparable with
  IDRiD's; a label whose photo is byte-identical to an IDRiD photo is dropped, so a reviewed
  IDRiD photo cannot leak from a training fold into its own test fold.
- Folds split by photo, seeded, stratified by lesion burden.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference.contract import PreprocessRecipe
from inference.errors import HemaviewError, LabelFormatError
from inference.labels import iter_labels, read_mask
from inference.preprocess import Geometry
from training.cache import load_preprocessed, mask_to_working

REPO_ROOT = Path(__file__).resolve().parent.parent
IDRID_NAME = "idrid-hemorrhage"


class DatasetError(HemaviewError):
    """The training data cannot be used as given; the message says which files and why."""


class DataWarning(UserWarning):
    """Something in the data is suspicious but usable (an empty mask, a mask without photo)."""


#: What an unlabeled pool's photos may be.
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
#: Where IDRiD comes from; the repository ships only the tests' eight photos (tests/data).
IDRID_SOURCE = (
    "IDRiD (CC BY 4.0) is not part of the repository. Download it from its official page, "
    "https://idrid.grand-challenge.org/ (the files are on IEEE DataPort: "
    "https://ieee-dataport.org/open-access/indian-diabetic-retinopathy-image-dataset-idrid). "
    "Either name the unpacked 'A. Segmentation' folder directly, or lay it out as "
    "DATA/idrid-hemorrhage/images/IDRiD_NN.jpg (from 'A. Segmentation/1. Original Images/"
    "a. Training Set') and DATA/idrid-hemorrhage/masks/IDRiD_NN_HE.tif (from 'A. Segmentation/"
    "2. All Segmentation Groundtruths/a. Training Set/3. Haemorrhages'); MoCo pretraining "
    "reads any fundus photos from DATA/idrid-unlabeled/images (IDRiD's 'B. Disease Grading' "
    "photos, without those of the segmentation test split). Then pass --data DATA "
    "(or set HEMAVIEW_DATA=DATA), or give one folder with --data-dir."
)

#: IDRiD's own archive layout, relative to its 'A. Segmentation' folder.
OFFICIAL_IMAGES = Path("1. Original Images") / "a. Training Set"
OFFICIAL_MASKS = Path("2. All Segmentation Groundtruths") / "a. Training Set" / "3. Haemorrhages"


def data_root() -> Path:
    """The folder holding idrid-hemorrhage/ and idrid-unlabeled/: $HEMAVIEW_DATA (set by
    `hemaview-train --data DIR`), else the team's `../shared/data` beside the repository,
    a convenience of the build machines that nothing requires."""
    override = os.environ.get("HEMAVIEW_DATA")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


def default_data_dir() -> Path:
    """`idrid-hemorrhage` under data_root()."""
    return data_root() / IDRID_NAME


def idrid_folders(data_dir: Path) -> tuple[Path, Path] | None:
    """(images, masks) of an IDRiD haemorrhage set: our layout (images/, masks/) or IDRiD's
    own archive (the 'A. Segmentation' folder, or the folder above it); None if neither."""
    data_dir = Path(data_dir)
    candidates = [(data_dir / "images", data_dir / "masks")] + [
        (root / OFFICIAL_IMAGES, root / OFFICIAL_MASKS)
        for root in (data_dir, data_dir / "A. Segmentation")
    ]
    for images, masks in candidates:
        if images.is_dir() and masks.is_dir():
            return images, masks
    return None


def default_cache_dir() -> Path:
    return REPO_ROOT / ".cache" / "preprocessed"


@dataclass(frozen=True)
class PhotoRecord:
    """Where one labelled photo's files are, before anything is decoded."""

    name: str
    image_path: Path
    mask_path: Path | None  # None: not annotated
    source: str  # "idrid" or the label folder it came from
    empty_mask_ok: bool = False  # an empty mask is expected (a reviewer's "no haemorrhage")


@dataclass
class Sample:
    """One photo in memory at working size."""

    name: str
    image: np.ndarray  # (S, S, 3) uint8, the model's input
    mask: np.ndarray | None  # (S, S) float32 lesion fraction; None: not annotated
    fov: np.ndarray  # (S, S) bool
    geometry: Geometry
    image_path: Path
    mask_path: Path | None
    source: str
    lesion_fraction: float  # of the full-resolution photo; NaN when not annotated

    @property
    def annotated(self) -> bool:
        return self.mask is not None

    @property
    def evaluable(self) -> bool:
        """IDRiD photos with a mask: the ones cross-validation evaluates."""
        return self.mask is not None and self.source == "idrid"


@dataclass
class LabelledSet:
    samples: list[Sample]
    recipe: PreprocessRecipe
    data_dir: Path
    label_dirs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was excluded or warned, for the card

    def __len__(self) -> int:
        return len(self.samples)

    def by_name(self) -> dict[str, Sample]:
        return {s.name: s for s in self.samples}

    def evaluable(self) -> list[Sample]:
        return [s for s in self.samples if s.evaluable]

    def summary(self) -> dict[str, object]:
        """What the model was trained on, for the model contract and the card."""
        idrid = [s for s in self.samples if s.source == "idrid"]
        extra = [s for s in self.samples if s.source != "idrid"]
        fractions = [s.lesion_fraction for s in self.samples if s.annotated]
        return {
            "dataset": "IDRiD segmentation, haemorrhage (HE), official training split",
            "idrid_photos": len(idrid),
            "idrid_annotated": sum(s.annotated for s in idrid),
            "not_annotated": sorted(s.name for s in self.samples if not s.annotated),
            "label_folder_photos": len(extra),
            "label_folders": [str(p) for p in self.label_dirs],
            "median_lesion_fraction": float(np.median(fractions)) if fractions else None,
            "camera": "Kowa VX-10a, 50 degree field, 4288x2848 (IDRiD)",
            "working_size": self.recipe.working_size,
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------------------------
# Finding the files


def list_photos(data_dir: Path, limit: int = 0) -> list[Path]:
    """The photos of an unlabeled pool (DIR or DIR/images), sorted; the first `limit` (0: all)."""
    folder = data_dir / "images" if (data_dir / "images").is_dir() else data_dir
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: the folder of unlabeled photos does not exist. {IDRID_SOURCE}"
        )
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise FileNotFoundError(f"no photos in {folder}")
    return photos[:limit] if limit > 0 else photos


def scan_idrid(data_dir: Path) -> list[PhotoRecord]:
    """IDRiD's layout: images/NAME.jpg with masks/NAME_HE.tif (a missing mask: not annotated)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: the IDRiD data folder does not exist. {IDRID_SOURCE}")
    folders = idrid_folders(data_dir)
    if folders is None:
        raise DatasetError(
            f"{data_dir}: not an IDRiD haemorrhage folder (expected images/IDRiD_NN.jpg and "
            f"masks/IDRiD_NN_HE.tif inside it). {IDRID_SOURCE}"
        )
    images_dir, masks_dir = folders
    images = sorted(
        p
        for p in images_dir.iterdir()
        if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff")
        and not p.name.startswith(".")
    )
    if not images:
        raise DatasetError(f"{images_dir}: holds no photos")
    masks = {p.name[: -len("_HE.tif")]: p for p in masks_dir.glob("*_HE.tif")}
    records = [
        PhotoRecord(name=p.stem, image_path=p, mask_path=masks.get(p.stem), source="idrid")
        for p in images
    ]
    orphans = sorted(set(masks) - {p.stem for p in images})
    if orphans:
        warnings.warn(
            f"{masks_dir}: masks without a photo are ignored: {', '.join(orphans)}",
            DataWarning,
            stacklevel=2,
        )
    if not any(r.mask_path for r in records):
        raise DatasetError(f"{masks_dir}: no mask matches any photo in {images_dir}")
    return records


def scan_label_folder(
    label_dir: Path, photo_dir: Path | None = None
) -> tuple[list[PhotoRecord], list[str]]:
    """Accepted Hemaview labels in `label_dir`; their photos in `photo_dir` (default: the
    folder above, where the viewer puts `hemaview-labels`). Returns records and problems."""
    label_dir = Path(label_dir)
    photo_dir = Path(photo_dir) if photo_dir is not None else label_dir.parent
    problems: list[LabelFormatError] = []
    try:
        entries = list(iter_labels(label_dir, statuses={"accepted"}, problems=problems))
    except LabelFormatError as exc:
        raise DatasetError(str(exc)) from None
    records: list[PhotoRecord] = []
    notes = [f"skipped a broken label: {p}" for p in problems]
    for entry in entries:
        photo = photo_dir / entry.record.photo.file_name
        if not photo.is_file():
            notes.append(f"{entry.stem}: accepted label, but its photo {photo} is missing; skipped")
            continue
        digest = hashlib.sha256(photo.read_bytes()).hexdigest()
        if digest != entry.record.photo.sha256:
            notes.append(f"{entry.stem}: the photo {photo} changed since it was labelled; skipped")
            continue
        if entry.record.model is None:  # only then can an empty mask be a non-decision
            try:
                empty = not read_mask(entry.mask).any()
            except LabelFormatError as exc:
                notes.append(f"skipped a broken label: {exc}")
                continue
            problem = entry.record.empty_label_problem(empty)
            if problem is not None:
                notes.append(f"{problem}; skipped")
                continue
        records.append(
            PhotoRecord(
                name=entry.stem,
                image_path=photo,
                mask_path=entry.mask,
                source=str(label_dir),
                empty_mask_ok=True,
            )
        )
    return records, notes


# ----------------------------------------------------------------------------------------------
# Loading into memory


def load_sample(record: PhotoRecord, recipe: PreprocessRecipe, cache_dir: Path) -> Sample:
    """Preprocess (or read from the cache) one photo and bring its mask to working size."""
    try:
        cached = load_preprocessed(record.image_path, recipe, cache_dir)
    except HemaviewError as exc:
        raise DatasetError(f"{record.image_path}: {exc}") from None
    except OSError as exc:
        raise DatasetError(f"{record.image_path}: cannot be read ({exc})") from None
    g = cached.geometry
    mask = None
    fraction = float("nan")
    if record.mask_path is not None:
        try:
            full = read_mask(record.mask_path, expected_size=(g.full_width, g.full_height))
        except LabelFormatError as exc:
            raise DatasetError(f"{record.name}: {exc}") from None
        fraction = float(np.count_nonzero(full)) / full.size
        if fraction == 0.0 and not record.empty_mask_ok:
            warnings.warn(
                f"{record.mask_path}: the mask is empty; the photo is kept as a photo without "
                f"haemorrhage. Every photo of IDRiD's haemorrhage set has some, so check the file.",
                DataWarning,
                stacklevel=2,
            )
        # area resampling can overshoot 1 by a rounding error; a fraction stays in [0, 1]
        mask = np.clip(mask_to_working(full, g), 0.0, 1.0)
    return Sample(
        name=record.name,
        image=cached.image,
        mask=mask,
        fov=cached.fov,
        geometry=g,
        image_path=record.image_path,
        mask_path=record.mask_path,
        source=record.source,
        lesion_fraction=fraction,
    )


def _label_folder_records(
    records: Sequence[PhotoRecord],
    label_dirs: Sequence[Path],
    label_photo_dir: Path | None,
    notes: list[str],
) -> list[PhotoRecord]:
    """The accepted labels of Hemaview label folders that add a photo to `records`: not one of
    IDRiD's own (by content: its own mask is used) nor a name already taken. Why each other
    one is left out goes to `notes`."""
    added: list[PhotoRecord] = []
    idrid_digests = {hashlib.sha256(r.image_path.read_bytes()).hexdigest(): r.name for r in records}
    taken = {r.name for r in records}
    for label_dir in label_dirs:
        extra, problems = scan_label_folder(Path(label_dir), label_photo_dir)
        notes.extend(problems)
        for r in extra:
            digest = hashlib.sha256(r.image_path.read_bytes()).hexdigest()
            if digest in idrid_digests:
                notes.append(
                    f"{r.name}: the labelled photo is IDRiD's {idrid_digests[digest]}; "
                    "IDRiD's own mask is used, so folds stay leak-free"
                )
                continue
            if r.name in taken:
                notes.append(
                    f"{r.name} from {label_dir}: a photo of that name is already in "
                    "the set; skipped"
                )
                continue
            taken.add(r.name)
            added.append(r)
    return added


def load_labelled_set(
    data_dir: Path | None = None,
    recipe: PreprocessRecipe | None = None,
    *,
    cache_dir: Path | None = None,
    label_dirs: Sequence[Path] = (),
    label_photo_dir: Path | None = None,
    names: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 0,
) -> LabelledSet:
    """Every labelled photo in memory. `names` keeps only those IDRiD photos (tests, smoke runs).

    All problems in the data are collected and raised together, so one run names every file
    that needs fixing.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    recipe = recipe or PreprocessRecipe()
    workers = workers or min(8, os.cpu_count() or 1)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    records = scan_idrid(data_dir)
    if names is not None:
        wanted = set(names)
        unknown = wanted - {r.name for r in records}
        if unknown:
            raise DatasetError(f"{data_dir}: no photos named {', '.join(sorted(unknown))}")
        records = [r for r in records if r.name in wanted]
    notes = [
        f"{r.name}: no haemorrhage mask (not annotated); excluded from the segmentation "
        "loss and from evaluation"
        for r in records
        if r.mask_path is None
    ]
    if label_dirs:
        records += _label_folder_records(records, label_dirs, label_photo_dir, notes)
    samples: list[Sample] = []
    errors: list[str] = []

    def one(record: PhotoRecord) -> Sample | str:
        try:
            return load_sample(record, recipe, cache_dir)
        except DatasetError as exc:
            return str(exc)

    # OpenCV and the JPEG decoder release the GIL, so threads preprocess photos in parallel.
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(records)))) as pool:
        for i, item in enumerate(pool.map(one, records)):  # in order: the set is deterministic
            if isinstance(item, str):
                errors.append(item)
            else:
                samples.append(item)
            if progress is not None:
                progress(i + 1, len(records))
    if errors:
        raise DatasetError(
            f"{len(errors)} labelled photo(s) cannot be used:\n  " + "\n  ".join(errors)
        )
    for note in notes:
        if "skipped" in note:
            warnings.warn(note, DataWarning, stacklevel=2)
    return LabelledSet(
        samples=samples,
        recipe=recipe,
        data_dir=data_dir,
        label_dirs=[Path(p) for p in label_dirs],
        notes=notes,
    )


# ----------------------------------------------------------------------------------------------
# Cross-validation folds


def kfold_split(samples: Sequence[Sample], k: int, seed: int = 0) -> list[list[str]]:
    """Evaluable photos split into k folds by photo (names), stratified by lesion burden.

    Photos are ranked by lesion fraction and dealt out in groups of k, each group shuffled by
    the seed, so every fold gets small-lesion and large-lesion photos alike.
    """
    evaluable = sorted(
        (s for s in samples if s.evaluable), key=lambda s: (s.lesion_fraction, s.name)
    )
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    if len(evaluable) < k:
        raise DatasetError(f"{len(evaluable)} annotated photos cannot make {k} folds")
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    for start in range(0, len(evaluable), k):
        group = evaluable[start : start + k]
        # only the last group can be short, so fold sizes differ by one at most
        for sample, slot in zip(group, rng.permutation(k)):
            folds[int(slot)].append(sample.name)
    return [sorted(f) for f in folds]


def split_for_fold(
    samples: Sequence[Sample], folds: list[list[str]], fold: int
) -> tuple[list[Sample], list[Sample]]:
    """(train, test) for one fold: test is the fold's photos; train is everything else,
    including photos that are never evaluated (not annotated, label folders)."""
    held_out = set(folds[fold])
    train = [s for s in samples if s.name not in held_out]
    test = [s for s in samples if s.name in held_out]
    return train, test
