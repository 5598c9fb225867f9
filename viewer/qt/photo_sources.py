"""Where the photos come from: folders and files the reviewer opens (menu, recent folders,
drag and drop), the folder's photos listed, new photos appearing in a watched folder, and the
photo the reviewer was on when they last had the folder open."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from viewer.model.library import PhotoEntry, PhotoLibrary, find_photos
from viewer.qt.photo_list import PhotoListWidget
from viewer.qt.settings import Settings, save_settings


class PhotoSources(QObject):
    opened = Signal(list)  # the sources the reviewer chose: open them (the window asks first)
    added = Signal()  # new photos joined the list (pre-annotate them)

    def __init__(
        self,
        photos: PhotoListWidget,
        *,
        settings: Callable[[], Settings],
        label_dir: Callable[[], Path | None],
        say: Callable[[str, int], None],
        parent: QWidget,
    ):
        super().__init__(parent)
        self.photos, self._parent = photos, parent
        self._settings, self._label_dir, self._say = settings, label_dir, say
        # Photos added to an open folder appear in the list (a camera export, a colleague).
        self.watcher = QFileSystemWatcher(self)
        self.watcher.directoryChanged.connect(self.folder_changed)
        self.folder: Path | None = None  # the folder opened (None: photos named singly)

    def choose_folder(self) -> None:
        recent = self._settings().recent_folders
        start = recent[0] if recent else str(Path.home())
        folder = QFileDialog.getExistingDirectory(
            self._parent, self.tr("Open a folder of photos"), start
        )
        if folder:
            self.opened.emit([folder])

    def choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self._parent,
            self.tr("Open photos"),
            "",
            self.tr("Photos (*.jpg *.jpeg *.png *.tif *.tiff *.bmp *.dcm)"),
        )
        if files:
            self.opened.emit(files)

    def list(self, sources: list[str]) -> PhotoEntry | None:
        """List the photos of `sources`, watch their folders, remember the folder among the
        recent ones; returns the photo to start at (where the reviewer left off, or the first
        readable one), None for an empty list."""
        library = PhotoLibrary.scan(sources, label_dir=self._label_dir())
        self.photos.set_library(library)
        for message in library.skipped:
            self._say(message, 8000)
        first = Path(sources[0])
        folder = first if first.is_dir() else first.parent
        settings = self._settings()
        settings.add_recent(str(folder))
        save_settings(settings)
        if self.watcher.directories():
            self.watcher.removePaths(self.watcher.directories())
        folders = [s for s in sources if Path(s).is_dir()]
        if folders:
            self.watcher.addPaths(folders)
        self.folder = folder if first.is_dir() else None
        return self.where_left_off(library) or library.first_readable()

    def where_left_off(self, library: PhotoLibrary) -> PhotoEntry | None:
        """The photo the reviewer was on when they last had this folder open, if it is
        still there and readable."""
        last = self._settings().last_photo_in(str(self.folder)) if self.folder else None
        entry = library.entry(last) if last is not None else None
        return entry if entry is not None and not entry.has_error else None

    def remember(self, photo: Path) -> None:
        """The reviewer is on `photo`: reopening its folder goes on there."""
        if self.folder is not None:
            settings = self._settings()
            settings.remember_photo(str(self.folder), str(photo))
            save_settings(settings)

    def folder_changed(self, folder: str) -> None:
        """New photos in a watched folder join the list."""
        known = {str(e.path) for e in self.photos.library.entries}
        found = [p for p in find_photos([folder]) if str(p) not in known]
        added = self.photos.add_photos(found)
        if added:
            self._say(
                self.tr("{n} new photo(s) in {folder}").format(n=len(added), folder=folder), 5000
            )
            self.added.emit()
