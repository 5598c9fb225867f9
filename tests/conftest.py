"""Shared fixtures: the real IDRiD photos and the real model (shipped, or exported here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Qt widgets render without a display in tests (set before any Qt import).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parent.parent
# The tests' own photos, inside the repository (tests/data/README.md says which and why).
DATA = REPO / "tests" / "data"
IDRID = DATA / "idrid-hemorrhage"
#: The IDRiD photos in tests/data; IDRiD_43 has no haemorrhage mask (not annotated).
IDRID_NUMBERS = (1, 2, 3, 4, 5, 17, 29, 43)


#: A reviewer's session that autosaves one stroke and then crashes (argv: autosave folder,
#: photo): what the crash-restore tests start from, in a process of its own.
CRASHING_SESSION = """
import os, sys
from pathlib import Path
from inference.photo_io import read_photo
from viewer.model.autosave import Autosaver
from viewer.model.document import Document

folder, path = sys.argv[1], sys.argv[2]
photo = read_photo(path)
doc = Document(Path(path), (photo.width, photo.height), photo.sha256)
doc.begin_stroke()
doc.stroke_to(2000, 1400, 40, True)
doc.end_stroke()
Autosaver(folder).save(doc)
os._exit(1)  # a crash: no clean-up of any kind
"""


def idrid_photo(number: int) -> Path:
    assert number in IDRID_NUMBERS, f"IDRiD_{number:02d} is not among the test photos"
    return IDRID / "images" / f"IDRiD_{number:02d}.jpg"


def idrid_mask(number: int) -> Path:
    assert number in IDRID_NUMBERS and number != 43, f"IDRiD_{number:02d} has no test mask"
    return IDRID / "masks" / f"IDRiD_{number:02d}_HE.tif"


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The shipped model. Missing, it fails every test that needs it: a random network in its
    place would let tests pass that say nothing about what the clinic runs."""
    from inference.resources import shipped_model_path

    shipped = shipped_model_path()
    assert shipped.is_file(), f"the shipped model is missing at {shipped}"
    return shipped


@pytest.fixture(scope="session")
def segmenter(model_path: Path):  # type: ignore[no-untyped-def]
    from inference import Segmenter

    seg = Segmenter.open(model_path)
    yield seg
    seg.close()


@pytest.fixture()
def private_user_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings, caches and autosaves of a window test never touch the real user's folders."""
    from PySide6.QtCore import QStandardPaths

    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(tmp_path / "user" / name.lower()))
    QStandardPaths.setTestModeEnabled(True)


@pytest.fixture()
def discard_on_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing a window with edits asks; a modal box would wait for ever offscreen. The
    answer is the reviewer's "discard": these tests look at what was saved before."""
    from viewer.qt import dialogs

    monkeypatch.setattr(dialogs, "ask_save_changes", lambda *_args: "discard")
