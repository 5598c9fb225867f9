"""The Korean user interface: a complete, consistent translation that the window really shows."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO
from PySide6.QtCore import QCoreApplication, QStandardPaths, QTranslator
from PySide6.QtWidgets import QApplication, QCheckBox, QDockWidget, QGroupBox

from viewer.qt.actions import MENUS, SPECS, menu_title, shortcut_sheet_html
from viewer.qt.main_window import MainWindow
from viewer.qt.settings import Settings

TS = REPO / "viewer" / "i18n" / "hemaview_ko.ts"
QM = REPO / "viewer" / "i18n" / "hemaview_ko.qm"
BIN = Path(sys.executable).parent

# str.format fields ({name}, {0}, {0:.1%}), QProgressBar's %v/%m, Qt's %1 and %n
PLACEHOLDER = re.compile(r"\{[^{}]*\}|%[vmn]|%\d+")
# a menu mnemonic: "&File", "파일(&F)"; "&&" is a literal ampersand
MNEMONIC = re.compile(r"(?<!&)&(?=[^&\s])")
HANGUL = re.compile(r"[\uac00-\ud7a3]")
KOREAN_MENUS = ["파일(&F)", "편집(&E)", "보기(&V)", "도구(&T)", "검토(&R)", "도움말(&H)"]


def messages() -> list[tuple[str, str, ET.Element]]:
    """(context, source, translation element) of every message in the .ts."""
    found = []
    for context in ET.parse(TS).getroot().iter("context"):
        name = context.findtext("name") or ""
        for message in context.iter("message"):
            translation = message.find("translation")
            assert translation is not None, (name, message.findtext("source"))
            found.append((name, message.findtext("source") or "", translation))
    return found


def test_every_message_is_translated_with_the_same_placeholders() -> None:
    found = messages()
    assert len(found) > 100
    for context, source, translation in found:
        where = f"{context}: {source!r}"
        assert translation.get("type") is None, f"{where} is {translation.get('type')}"
        text = translation.text or ""
        assert text.strip(), f"{where} has an empty translation"
        assert Counter(PLACEHOLDER.findall(text)) == Counter(PLACEHOLDER.findall(source)), (
            f"{where}: the placeholders differ in {text!r}"
        )
        assert len(MNEMONIC.findall(text)) == len(MNEMONIC.findall(source)), (
            f"{where}: the & mnemonics differ in {text!r}"
        )
        if re.search(r"[a-z]{3}", re.sub(r"<[^>]*>", "", PLACEHOLDER.sub("", source))):
            # words (not "GPU", "{name}: {problem}") come out in Korean
            assert HANGUL.search(text), f"{where} is not in Korean: {text!r}"


def test_the_ts_has_every_translatable_text_of_the_source() -> None:
    """A new or changed self.tr(...) text needs scripts/update-translations and a translation."""
    run = subprocess.run(
        [str(REPO / "scripts" / "update-translations"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_the_committed_qm_is_compiled_from_the_ts(tmp_path: Path) -> None:
    out = tmp_path / "hemaview_ko.qm"
    subprocess.run(
        [str(BIN / "pyside6-lrelease"), "-silent", str(TS), "-qm", str(out)],
        check=True,
        timeout=120,
    )
    assert out.read_bytes() == QM.read_bytes(), "run scripts/update-translations"


@pytest.fixture()
def private_user_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings, caches and autosaves of a test never touch the real user's folders."""
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(tmp_path / "user" / name.lower()))
    QStandardPaths.setTestModeEnabled(True)
    yield
    QStandardPaths.setTestModeEnabled(False)


@pytest.fixture()
def korean(qapp: QApplication) -> Iterator[QTranslator]:
    translator = QTranslator()
    assert translator.load(str(QM))
    assert qapp.installTranslator(translator)
    yield translator
    qapp.removeTranslator(translator)


def build_window(qtbot) -> MainWindow:  # type: ignore[no-untyped-def]
    window = MainWindow(Settings(), load_model=False)
    qtbot.addWidget(window)
    return window


def widget_texts(window: MainWindow) -> dict[str, list[str]]:
    return {
        "menus": [a.text() for a in window.menuBar().actions()],
        "docks": sorted(d.windowTitle() for d in window.findChildren(QDockWidget)),
        "groups": sorted(g.title() for g in window.findChildren(QGroupBox)),
        "checks": sorted(c.text() for c in window.findChildren(QCheckBox)),
        "actions": [window.acts[name].text() for name in ("open_folder", "save", "preset_green")],
    }


@pytest.mark.usefixtures("private_user_folders")
def test_the_window_speaks_korean_and_english_again_without_the_translator(
    qtbot,  # type: ignore[no-untyped-def]
    qapp: QApplication,
    korean: QTranslator,
) -> None:
    texts = widget_texts(build_window(qtbot))
    assert texts["menus"] == KOREAN_MENUS
    assert texts["docks"] == sorted(["사진", "검토"])
    assert "오버레이" in texts["groups"] and "오버레이 표시" in texts["checks"]
    assert texts["actions"] == ["폴더 열기…", "레이블 저장", "무적색 (녹색 채널)"]
    # every command of the table is translated (a Spec text lupdate cannot see would not be)
    untranslated = [
        s.text for s in SPECS if QCoreApplication.translate("Actions", s.text) == s.text
    ]
    assert untranslated == []
    sheet = shortcut_sheet_html()
    assert "<br>파일</th>" in sheet and "마우스 휠" in sheet and "Ctrl+O" in sheet

    qapp.removeTranslator(korean)
    texts = widget_texts(build_window(qtbot))
    assert texts["menus"] == ["&File", "&Edit", "&View", "&Tools", "&Review", "&Help"]
    assert texts["menus"] == [menu_title(m) for m in MENUS]
    assert texts["docks"] == sorted(["Photos", "Review"])
    assert "Overlay" in texts["groups"] and "Show overlay" in texts["checks"]
    assert texts["actions"] == ["Open folder…", "Save label", "Red-free (green channel)"]
