"""User settings with bounds and a schema version, stored with QSettings where the
platform expects them (registry on Windows, ~/.config on Linux)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from PySide6.QtCore import QSettings

from viewer.model.tools import MAX_BRUSH_RADIUS, MIN_BRUSH_RADIUS
from viewer.model.view_state import PRESETS

SCHEMA_VERSION = 1
MAX_RECENT = 10
LANGUAGES = ("auto", "en", "ko")


@dataclass
class Settings:
    """Every user setting, with its default; `clamped()` keeps each within its bounds."""

    reviewer: str = ""
    language: str = "auto"  # auto: from the system locale
    # Cyan: it stands out on the red-orange fundus and is neither the yellow of hard exudates
    # nor the dark red of the haemorrhages it marks.
    overlay_colour: str = "#00e5ff"
    overlay_opacity: float = 0.55
    overlay_filled: bool = True
    display_preset: str = "original"
    brush_radius: float = 12.0  # image pixels
    label_dir: str = ""  # empty: a hemaview-labels folder beside the photos
    recent_folders: list[str] = field(default_factory=list)
    remote_address: str = ""  # host:port of a Triton server; empty: local only
    remote_budget_s: float = 1.0  # seconds per 10 photos the local backend may take
    remote_tls: bool = False
    # The photo last opened in each folder opened, so reopening a folder goes on there.
    last_photos: list[str] = field(default_factory=list)

    def clamped(self) -> Settings:
        self.language = self.language if self.language in LANGUAGES else "auto"
        self.display_preset = self.display_preset if self.display_preset in PRESETS else "original"
        self.overlay_opacity = min(max(float(self.overlay_opacity), 0.0), 1.0)
        self.brush_radius = min(max(float(self.brush_radius), MIN_BRUSH_RADIUS), MAX_BRUSH_RADIUS)
        self.remote_budget_s = min(max(float(self.remote_budget_s), 0.0), 3600.0)
        self.reviewer = self.reviewer.strip()[:80]
        if not _is_colour(self.overlay_colour):
            self.overlay_colour = Settings.overlay_colour
        self.recent_folders = [str(p) for p in self.recent_folders if p][:MAX_RECENT]
        self.last_photos = [str(p) for p in self.last_photos if p][: 4 * MAX_RECENT]
        return self

    def remember_photo(self, folder: str, path: str) -> None:
        """`path` is where the reviewer is in the folder they opened (one photo per folder;
        stored as "FOLDER<TAB>PHOTO", a list of strings being what QSettings keeps well)."""
        folder, path = os.path.abspath(folder), os.path.abspath(path)
        others = [e for e in self.last_photos if e.partition("\t")[0] != folder]
        self.last_photos = [f"{folder}\t{path}", *others][: 4 * MAX_RECENT]

    def last_photo_in(self, folder: str) -> str | None:
        """The photo last opened in `folder`, or None."""
        folder = os.path.abspath(folder)
        for entry in self.last_photos:
            where, _, photo = entry.partition("\t")
            if where == folder and photo:
                return photo
        return None

    def add_recent(self, folder: str) -> None:
        self.recent_folders = [folder, *[f for f in self.recent_folders if f != folder]][
            :MAX_RECENT
        ]


def _is_colour(text: str) -> bool:
    return (
        isinstance(text, str)
        and len(text) == 7
        and text.startswith("#")
        and all(c in "0123456789abcdefABCDEF" for c in text[1:])
    )


def _coerce(value: Any, default: Any) -> Any:
    """QSettings gives strings back from INI files: coerce to the default's type."""
    try:
        if isinstance(default, bool):
            return value in (True, "true", "True", "1", 1)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, list):
            if value is None:
                return []
            return [str(v) for v in (value if isinstance(value, list) else [value])]
        return str(value)
    except (TypeError, ValueError):
        return default


def load_settings(store: QSettings | None = None) -> Settings:
    store = store or QSettings()
    settings = Settings()
    if int(_coerce(store.value("schema_version", SCHEMA_VERSION), SCHEMA_VERSION)) > SCHEMA_VERSION:
        return settings.clamped()  # written by a newer Hemaview: keep the defaults, change nothing
    for f in fields(Settings):
        if store.contains(f.name):
            setattr(settings, f.name, _coerce(store.value(f.name), getattr(settings, f.name)))
    return settings.clamped()


def save_settings(settings: Settings, store: QSettings | None = None) -> None:
    store = store or QSettings()
    settings.clamped()
    store.setValue("schema_version", SCHEMA_VERSION)
    for f in fields(Settings):
        store.setValue(f.name, getattr(settings, f.name))
    store.sync()
