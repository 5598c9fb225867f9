"""Every command of the app as a QAction with an icon and a shortcut, in one table.

The menus, the toolbar and the shortcut sheet in Help are all built from this table, so a
shortcut is never documented in one place and different in another.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

import qtawesome as qta
from PySide6.QtCore import QCoreApplication, QObject
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu


def tr(text: str) -> str:
    """A text of this module in the user's language (context "Actions").

    lupdate files a bare module-level tr("...") under an empty context, not under "Actions",
    so the literals here are marked with QT_TRANSLATE_NOOP("Actions", ...) for lupdate and
    looked up through this function at run time.
    """
    return QCoreApplication.translate("Actions", text)


def QT_TRANSLATE_NOOP(context: str, text: str) -> str:
    """Marks `text` for lupdate under `context`; returns it untranslated (Qt's is untyped)."""
    return text


@dataclass(frozen=True)
class Spec:
    name: str
    menu: str  # File, Edit, View, Tools, Review, Help
    text: str
    icon: str
    shortcuts: tuple[str, ...] = ()
    checkable: bool = False
    group: str = ""  # exclusive group (tools, presets)
    toolbar: bool = False


SPECS: tuple[Spec, ...] = (
    Spec(
        "open_folder",
        "File",
        QT_TRANSLATE_NOOP("Actions", "Open folder…"),
        "fa5s.folder-open",
        ("Ctrl+O",),
        toolbar=True,
    ),
    Spec(
        "open_files",
        "File",
        QT_TRANSLATE_NOOP("Actions", "Open photos…"),
        "fa5s.images",
        ("Ctrl+Shift+O",),
    ),
    Spec(
        "save",
        "File",
        QT_TRANSLATE_NOOP("Actions", "Save label"),
        "fa5s.save",
        ("Ctrl+S",),
        toolbar=True,
    ),
    Spec(
        "preannotate",
        "File",
        QT_TRANSLATE_NOOP("Actions", "Pre-annotate folder"),
        "fa5s.magic",
        ("Ctrl+P",),
    ),
    Spec(
        "export_accepted",
        "File",
        QT_TRANSLATE_NOOP("Actions", "Export accepted labels…"),
        "fa5s.file-export",
        ("Ctrl+E",),
    ),
    Spec("settings", "File", QT_TRANSLATE_NOOP("Actions", "Settings…"), "fa5s.cog", ("Ctrl+,",)),
    Spec("quit", "File", QT_TRANSLATE_NOOP("Actions", "Quit"), "fa5s.power-off", ("Ctrl+Q",)),
    Spec(
        "undo", "Edit", QT_TRANSLATE_NOOP("Actions", "Undo"), "fa5s.undo", ("Ctrl+Z",), toolbar=True
    ),
    Spec(
        "redo",
        "Edit",
        QT_TRANSLATE_NOOP("Actions", "Redo"),
        "fa5s.redo",
        ("Ctrl+Shift+Z", "Ctrl+Y"),
        toolbar=True,
    ),
    Spec(
        "reset",
        "Edit",
        QT_TRANSLATE_NOOP("Actions", "Reset to the model's suggestion"),
        "fa5s.history",
        ("Ctrl+R",),
    ),
    Spec(
        "toggle_overlay",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Show overlay"),
        "fa5s.eye",
        ("O",),
        checkable=True,
        toolbar=True,
    ),
    Spec(
        "outline",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Outline only"),
        "fa5.circle",
        ("Shift+O",),
        checkable=True,
    ),
    Spec(
        "threshold_up",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Raise threshold"),
        "fa5s.angle-up",
        ("Alt+Up",),
    ),
    Spec(
        "threshold_down",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Lower threshold"),
        "fa5s.angle-down",
        ("Alt+Down",),
    ),
    Spec(
        "preset_original",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Original colours"),
        "fa5s.image",
        ("Alt+1",),
        True,
        "preset",
    ),
    Spec(
        "preset_green",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Red-free (green channel)"),
        "fa5s.leaf",
        ("Alt+2",),
        True,
        "preset",
    ),
    Spec(
        "preset_clahe",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Contrast enhanced (CLAHE)"),
        "fa5s.adjust",
        ("Alt+3",),
        True,
        "preset",
    ),
    Spec(
        "zoom_in",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Zoom in"),
        "fa5s.search-plus",
        ("+", "="),
        toolbar=True,
    ),
    Spec(
        "zoom_out",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Zoom out"),
        "fa5s.search-minus",
        ("-",),
        toolbar=True,
    ),
    Spec(
        "fit",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Fit to window"),
        "fa5s.expand",
        ("0",),
        toolbar=True,
    ),
    Spec(
        "actual_size",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Actual size (100%)"),
        "fa5s.compress",
        ("1",),
    ),
    Spec(
        "previous_photo",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Previous photo"),
        "fa5s.arrow-left",
        ("PgUp", "Ctrl+Left"),
        toolbar=True,
    ),
    Spec(
        "next_photo",
        "View",
        QT_TRANSLATE_NOOP("Actions", "Next photo"),
        "fa5s.arrow-right",
        ("PgDown", "Ctrl+Right"),
        toolbar=True,
    ),
    Spec(
        "tool_pan",
        "Tools",
        QT_TRANSLATE_NOOP("Actions", "Pan"),
        "fa5s.hand-paper",
        ("H",),
        True,
        "tool",
        True,
    ),
    Spec(
        "tool_brush",
        "Tools",
        QT_TRANSLATE_NOOP("Actions", "Brush"),
        "fa5s.paint-brush",
        ("B",),
        True,
        "tool",
        True,
    ),
    Spec(
        "tool_eraser",
        "Tools",
        QT_TRANSLATE_NOOP("Actions", "Eraser"),
        "fa5s.eraser",
        ("E",),
        True,
        "tool",
        True,
    ),
    Spec(
        "tool_fill",
        "Tools",
        QT_TRANSLATE_NOOP("Actions", "Fill region or hole"),
        "fa5s.fill-drip",
        ("F",),
        True,
        "tool",
        True,
    ),
    Spec(
        "tool_lasso_add",
        "Tools",
        QT_TRANSLATE_NOOP("Actions", "Lasso: add"),
        "fa5s.draw-polygon",
        ("L",),
        True,
        "tool",
        True,
    ),
    Spec(
        "tool_lasso_remove",
        "Tools",
        QT_TRANSLATE_NOOP("Actions", "Lasso: remove"),
        "fa5s.cut",
        ("Shift+L",),
        True,
        "tool",
        True,
    ),
    Spec(
        "brush_smaller",
        "Tools",
        QT_TRANSLATE_NOOP("Actions", "Smaller brush"),
        "fa5s.minus-circle",
        ("[",),
    ),
    Spec(
        "brush_larger",
        "Tools",
        QT_TRANSLATE_NOOP("Actions", "Larger brush"),
        "fa5s.plus-circle",
        ("]",),
    ),
    Spec(
        "next_lesion",
        "Review",
        QT_TRANSLATE_NOOP("Actions", "Next lesion"),
        "fa5s.step-forward",
        ("N",),
    ),
    Spec(
        "previous_lesion",
        "Review",
        QT_TRANSLATE_NOOP("Actions", "Previous lesion"),
        "fa5s.step-backward",
        ("Shift+N",),
    ),
    Spec(
        "accept_lesion",
        "Review",
        QT_TRANSLATE_NOOP("Actions", "Accept lesion, go to the next undecided"),
        "fa5s.check",
        ("A",),
    ),
    Spec(
        "reject_lesion",
        "Review",
        QT_TRANSLATE_NOOP("Actions", "Reject lesion, go to the next undecided"),
        "fa5s.times",
        ("X",),
    ),
    Spec(
        "status_in_review",
        "Review",
        QT_TRANSLATE_NOOP("Actions", "Mark in review"),
        "fa5s.pen",
        ("Ctrl+1",),
    ),
    Spec(
        "status_accepted",
        "Review",
        QT_TRANSLATE_NOOP("Actions", "Mark photo accepted"),
        "fa5s.check-double",
        ("Ctrl+Return",),
        toolbar=True,
    ),
    Spec(
        "run_anyway",
        "Review",
        QT_TRANSLATE_NOOP("Actions", "Run the model anyway"),
        "fa5s.play",
    ),
    Spec(
        "status_rejected",
        "Review",
        QT_TRANSLATE_NOOP("Actions", "Mark photo rejected"),
        "fa5s.ban",
        ("Ctrl+Backspace",),
    ),
    Spec(
        "shortcuts",
        "Help",
        QT_TRANSLATE_NOOP("Actions", "Keyboard shortcuts"),
        "fa5s.keyboard",
        ("F1",),
    ),
    Spec("about", "Help", QT_TRANSLATE_NOOP("Actions", "About Hemaview"), "fa5s.info-circle"),
)

MENUS = ("File", "Edit", "View", "Tools", "Review", "Help")


MENU_TITLES = {
    "File": QT_TRANSLATE_NOOP("Actions", "&File"),
    "Edit": QT_TRANSLATE_NOOP("Actions", "&Edit"),
    "View": QT_TRANSLATE_NOOP("Actions", "&View"),
    "Tools": QT_TRANSLATE_NOOP("Actions", "&Tools"),
    "Review": QT_TRANSLATE_NOOP("Actions", "&Review"),
    "Help": QT_TRANSLATE_NOOP("Actions", "&Help"),
}

# The mouse gestures listed under the keyboard shortcuts: what it does, how.
MOUSE = (
    (
        QT_TRANSLATE_NOOP("Actions", "Zoom around the pointer"),
        QT_TRANSLATE_NOOP("Actions", "Mouse wheel"),
    ),
    (
        QT_TRANSLATE_NOOP("Actions", "Brush size"),
        QT_TRANSLATE_NOOP("Actions", "Ctrl + mouse wheel"),
    ),
    (
        QT_TRANSLATE_NOOP("Actions", "Pan while another tool is active"),
        QT_TRANSLATE_NOOP("Actions", "Space + drag, or middle button"),
    ),
)


def menu_title(menu: str) -> str:
    return tr(MENU_TITLES[menu])


def without_mnemonic(title: str) -> str:
    """A menu title as plain text: "&File" -> "File", and the Korean "파일(&F)" -> "파일"."""
    return re.sub(r"\(&[^)]\)", "", title).replace("&", "").strip()


def native(shortcut: str) -> str:
    return QKeySequence(shortcut).toString(QKeySequence.SequenceFormat.NativeText)


def build_actions(
    parent: QObject, handlers: dict[str, Callable[..., object]]
) -> dict[str, QAction]:
    """One QAction per spec, triggered into `handlers[name]` (checkable ones get the state)."""
    actions: dict[str, QAction] = {}
    groups: dict[str, QActionGroup] = {}
    for spec in SPECS:
        action = QAction(qta.icon(spec.icon), tr(spec.text), parent)
        action.setObjectName(spec.name)
        action.setShortcuts([QKeySequence(s) for s in spec.shortcuts])
        action.setCheckable(spec.checkable)
        if spec.shortcuts:
            action.setToolTip(f"{tr(spec.text)} ({native(spec.shortcuts[0])})")
        if spec.group:
            group = groups.setdefault(spec.group, QActionGroup(parent))
            group.setExclusive(True)
            group.addAction(action)
        handler = handlers.get(spec.name)
        if handler is not None:
            if spec.checkable and not spec.group:
                action.toggled.connect(handler)
            else:
                action.triggered.connect(lambda _checked=False, h=handler: h())
        actions[spec.name] = action
    return actions


def install_menus(window: QMainWindow, acts: dict[str, QAction]) -> QMenu:
    """The menu bar and the toolbar from the table; returns the (empty) recent folders menu."""
    menus = {name: window.menuBar().addMenu(menu_title(name)) for name in MENUS}
    toolbar = window.addToolBar(QCoreApplication.translate("Actions", "Tools"))
    toolbar.setObjectName("mainToolbar")
    toolbar.setMovable(False)
    last_menu = None
    recent = None
    for spec in SPECS:
        menus[spec.menu].addAction(acts[spec.name])
        if spec.toolbar:
            if last_menu is not None and spec.menu != last_menu:
                toolbar.addSeparator()
            toolbar.addAction(acts[spec.name])
            last_menu = spec.menu
        if spec.name == "open_files":
            recent = menus["File"].addMenu(QCoreApplication.translate("Actions", "Recent folders"))
    window.addActions(list(acts.values()))
    assert recent is not None, "the File menu lists open_files"
    return recent


def lesion_rule() -> str:
    """How A, X and N move through the lesions, as F1 and the README say it."""
    return QCoreApplication.translate(
        "Actions",
        "A and X decide the lesion under review (the highlighted row), then go on to the "
        "next undecided lesion after it, coming round to the first: a lesion passed over "
        "stays undecided until you come back to it. N and Shift+N step through every "
        "lesion, decided or not.",
    )


def shortcut_sheet_html() -> str:
    """The shortcut sheet shown in Help, from the same table as the actions."""
    rows: list[str] = []
    for menu in MENUS:
        specs = [s for s in SPECS if s.menu == menu and s.shortcuts]
        if not specs:
            continue
        rows.append(
            f"<tr><th colspan=2 align=left><br>{escape(without_mnemonic(menu_title(menu)))}"
            "</th></tr>"
        )
        for spec in specs:
            keys = ", ".join(
                QKeySequence(s).toString(QKeySequence.SequenceFormat.NativeText)
                for s in spec.shortcuts
            )
            rows.append(f"<tr><td>{escape(tr(spec.text))}</td><td><b>{escape(keys)}</b></td></tr>")
        if menu == "Review":
            rows.append(f"<tr><td colspan=2><i>{escape(lesion_rule())}</i></td></tr>")
    mouse = QCoreApplication.translate("Actions", "Mouse")
    rows.append(f"<tr><th colspan=2 align=left><br>{escape(mouse)}</th></tr>")
    rows += [
        f"<tr><td>{escape(tr(what))}</td><td><b>{escape(tr(how))}</b></td></tr>"
        for what, how in MOUSE
    ]
    return "<table cellspacing=4>" + "".join(rows) + "</table>"
