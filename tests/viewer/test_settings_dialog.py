"""The settings dialog as a reviewer reads it, in English and in Korean: real widgets on the
offscreen platform, measured and rendered."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import pytest
from conftest import REPO
from PySide6.QtCore import Qt, QTranslator
from PySide6.QtGui import QColor, QFontMetrics, QFontMetricsF
from PySide6.QtWidgets import QApplication, QLineEdit, QStyle, QStyleOptionFrame

from viewer.qt.settings import Settings
from viewer.qt.settings_dialog import SettingsDialog

QM = REPO / "viewer" / "i18n" / "hemaview_ko.qm"


@pytest.fixture(params=["en", "ko"])
def language(request: pytest.FixtureRequest, qapp: QApplication) -> Iterator[str]:
    translator = QTranslator()
    if request.param == "ko":
        assert translator.load(str(QM))
        assert qapp.installTranslator(translator)
    yield request.param
    if request.param == "ko":
        qapp.removeTranslator(translator)


def placeholder_room(edit: QLineEdit) -> int:
    """The width QLineEdit gives its placeholder at its present size (its contents rectangle
    less its text margins and the 2 px it keeps on each side, as QLineEdit::paintEvent)."""
    option = QStyleOptionFrame()
    edit.initStyleOption(option)
    contents = edit.style().subElementRect(QStyle.SubElement.SE_LineEditContents, option, edit)
    margins = edit.textMargins()
    return contents.width() - margins.left() - margins.right() - 2 * 2


def open_dialog(qtbot, settings: Settings) -> SettingsDialog:  # type: ignore[no-untyped-def]
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.show()  # at the size it opens with: laid out, as the reviewer first sees it
    qtbot.waitExposed(dialog)
    return dialog


def test_every_placeholder_is_shown_whole(qtbot, language: str) -> None:  # type: ignore[no-untyped-def]
    dialog = open_dialog(qtbot, Settings())
    hints = [e for e in dialog.findChildren(QLineEdit) if e.placeholderText()]
    assert len(hints) == 3  # reviewer, label folder, remote address
    if language == "ko":
        assert any("폴더" in e.placeholderText() for e in hints)  # the translation is in use
    for edit in hints:
        text = edit.placeholderText()
        room = placeholder_room(edit)
        # what QLineEdit draws: the placeholder elided to the room it has
        drawn = QFontMetrics(edit.font()).elidedText(text, Qt.TextElideMode.ElideRight, room)
        assert drawn == text, f"{language}: {text!r} is cut to {drawn!r} ({room} px)"
        assert math.ceil(QFontMetricsF(edit.font()).horizontalAdvance(text)) <= room, text


def _luminance(rgb: tuple[int, int, int]) -> float:
    def linear(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize(
    "colour", ["#00e5ff", "#00ffff", "#ffff00", "#00ff00", "#ff0000", "#0000ff", "#808080"]
)
def test_the_colour_swatch_text_is_readable_on_its_colour(qtbot, colour: str) -> None:  # type: ignore[no-untyped-def]
    """The swatch names its colour; the name must read (WCAG's 4.5:1 for normal text), on
    the default cyan as on any colour a reviewer picks."""
    dialog = open_dialog(qtbot, Settings(overlay_colour=colour))
    button = dialog.colour_button
    assert button.text() == colour
    image = button.grab().toImage()
    inner = [
        image.pixelColor(x, y)
        for y in range(4, image.height() - 4)
        for x in range(4, image.width() - 4)
    ]
    pixels = [(c.red(), c.green(), c.blue()) for c in inner]
    background = Counter(pixels).most_common(1)[0][0]
    swatch = QColor(colour)
    # painted flat in the colour itself, not shaded into a lighter one
    assert _contrast(background, (swatch.red(), swatch.green(), swatch.blue())) < 1.1
    text = max(pixels, key=lambda p: _contrast(p, background))  # the glyphs' darkest/lightest
    assert _contrast(text, background) >= 4.5, f"text {text} on {background}"
