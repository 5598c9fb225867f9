"""A window rebuilt in another language goes on from its predecessor: the same photos, the
same document (mask, undo history, unsaved edits, the lesion under review), zoom and position,
tool and overlay. Nothing is read again from disk and nothing is asked."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from viewer.qt.main_window import MainWindow

VIEW_FIELDS = ("overlay_visible", "outline", "opacity", "preset")


def hand_over(old: MainWindow, new: MainWindow) -> None:
    """Move what `old` shows into `new` (shown and sized already, so the zoom and position it
    takes mean the same); `old` keeps no document afterwards."""
    if old.segmenter is not None:
        new.set_segmenter(old.segmenter)
    new.model_problem = old.model_problem
    new.model_label.setText(old.model_label.text())
    for name in VIEW_FIELDS:
        new.view.set(name, getattr(old.view, name))
    if old.photos.library.entries:
        new.photos.set_library(old.photos.library)
        if old.watcher.directories():
            new.watcher.addPaths(old.watcher.directories())
    new.current, old.current = old.current, None
    if new.current is not None:
        new.canvas.set_document(new.current.document, new.current.photo.rgb)
        new.photos.set_current(new.current.document.path)  # already open: no load
    if old.loader.in_flight is not None:  # the photo the reviewer was moving to
        new.loader.request(old.loader.in_flight)
    new.show_document_state()
    under_review = old.panel.lesions.current_id()
    if under_review is not None:
        new.panel.lesions.select_id(under_review)
    new.canvas.show_as(old.canvas)  # last: selecting the lesion centred on it
    if new.segmenter is not None and new.photos.library.entries:
        new.start_preannotation()
