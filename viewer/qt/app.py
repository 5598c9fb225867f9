"""The QApplication: identity for QSettings, translations, and the main window's life."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QLibraryInfo, QLocale, QTranslator
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from inference import __version__, app_icon_path
from viewer.qt.handover import hand_over
from viewer.qt.main_window import MainWindow
from viewer.qt.settings import Settings, load_settings, save_settings

I18N = Path(__file__).resolve().parent.parent / "i18n"


def resolve_language(setting: str) -> str:
    """'en' or 'ko': the setting, or the system locale's when it is 'auto'."""
    if setting in ("en", "ko"):
        return setting
    return "ko" if QLocale.system().language() == QLocale.Language.Korean else "en"


class HemaviewApp(QApplication):
    def __init__(self, argv: list[str], *, language: str | None = None):
        super().__init__(argv)
        self.setOrganizationName("Hemaview")
        self.setApplicationName("Hemaview")
        self.setApplicationVersion(__version__)
        self.setDesktopFileName("hemaview")
        self.setWindowIcon(QIcon(str(app_icon_path())))
        self.settings: Settings = load_settings()
        if language is not None:
            self.settings.language = language
        self._translators: list[QTranslator] = []
        self.language = ""
        self.install_language(self.settings.language)
        self.window: MainWindow | None = None
        self._model_path: str | None = None

    def install_language(self, setting: str) -> str:
        """Install the translators for a language; returns the one in use."""
        for translator in self._translators:
            self.removeTranslator(translator)
        self._translators.clear()
        language = resolve_language(setting)
        if language == "ko":
            ours = QTranslator(self)
            if ours.load(str(I18N / "hemaview_ko.qm")):
                self._translators.append(ours)
            qt = QTranslator(self)
            if qt.load("qtbase_ko", QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath)):
                self._translators.append(qt)
        for translator in self._translators:
            self.installTranslator(translator)
        self.language = language
        return language

    def start(self, paths: list[str], *, model_path: str | None = None) -> MainWindow:
        self._model_path = model_path
        self.window = MainWindow(self.settings, model_path=model_path)
        self.window.fit_to_screen()
        self.window.show()
        # unsaved edits from a crash are asked about first; the answer keeps `paths` open
        self.window.offer_unsaved_edits(paths)
        return self.window

    def switch_language(self, setting: str) -> MainWindow | None:
        """Rebuild the window in another language; the new one takes over the old one's
        photos and document (undo history and unsaved edits included), view and tool."""
        if self.window is not None:
            # The window's settings are the current ones (the dialog gave it a new copy);
            # saving the app's older copy would undo what was just changed with the language.
            self.settings = self.window.settings
        self.settings.language = setting
        save_settings(self.settings)
        self.install_language(setting)
        old = self.window
        if old is None:
            return None
        old.cancel_preannotation()
        window = MainWindow(
            self.settings,
            model_path=self._model_path,
            load_model=old.segmenter is None and old.model_problem is None,
            autosaver=old.autosaver,
        )
        window.restoreGeometry(old.saveGeometry())
        window.show()  # sized first, so the zoom and position it takes over mean the same
        hand_over(old, window)
        old.hide()
        old.deleteLater()
        self.window = window
        return window
