"""Every command of the app as a QAction with an icon and a shortcut, in one table.

The menus, the toolbar and the shortcut sheet in Help are all built from this table, so a
shortcut is never documented in one place and different in another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape

import qtawesome as qta
from PySide6.QtCore import QCoreApplication, QObject
from PySide6.QtGui import QAction, QActionGroup, QKeySequence


def tr(text: str) -> str:
    return QCoreApplication.translate("Actions", text)


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
    Spec("open_folder", "File", "Open folder…", "fa5s.folder-open", ("Ctrl+O",), toolbar=True),
    Spec("open_files", "File", "Open photos…", "fa5s.images", ("Ctrl+Shift+O",)),
    Spec("save", "File", "Save label", "fa5s.save", ("Ctrl+S",), toolbar=True),
    Spec("preannotate", "File", "Pre-annotate folder", "fa5s.magic", ("Ctrl+P",)),
    Spec("export_accepted", "File", "Export accepted labels…", "fa5s.file-export", ("Ctrl+E",)),
    Spec("settings", "File", "Settings…", "fa5s.cog", ("Ctrl+,",)),
    Spec("quit", "File", "Quit", "fa5s.power-off", ("Ctrl+Q",)),
    Spec("undo", "Edit", "Undo", "fa5s.undo", ("Ctrl+Z",), toolbar=True),
    Spec("redo", "Edit", "Redo", "fa5s.redo", ("Ctrl+Shift+Z", "Ctrl+Y"), toolbar=True),
    Spec("reset", "Edit", "Reset to the model's suggestion", "fa5s.history", ("Ctrl+R",)),
    Spec(
        "toggle_overlay", "View", "Show overlay", "fa5s.eye", ("O",), checkable=True, toolbar=True
    ),
    Spec("outline", "View", "Outline only", "fa5.circle", ("Shift+O",), checkable=True),
    Spec("threshold_up", "View", "Raise threshold", "fa5s.angle-up", ("Alt+Up",)),
    Spec("threshold_down", "View", "Lower threshold", "fa5s.angle-down", ("Alt+Down",)),
    Spec("preset_original", "View", "Original colours", "fa5s.image", ("Alt+1",), True, "preset"),
    Spec(
        "preset_green", "View", "Red-free (green channel)", "fa5s.leaf", ("Alt+2",), True, "preset"
    ),
    Spec(
        "preset_clahe",
        "View",
        "Contrast enhanced (CLAHE)",
        "fa5s.adjust",
        ("Alt+3",),
        True,
        "preset",
    ),
    Spec("zoom_in", "View", "Zoom in", "fa5s.search-plus", ("+", "="), toolbar=True),
    Spec("zoom_out", "View", "Zoom out", "fa5s.search-minus", ("-",), toolbar=True),
    Spec("fit", "View", "Fit to window", "fa5s.expand", ("0",), toolbar=True),
    Spec("actual_size", "View", "Actual size (100%)", "fa5s.compress", ("1",)),
    Spec(
        "previous_photo",
        "View",
        "Previous photo",
        "fa5s.arrow-left",
        ("PgUp", "Ctrl+Left"),
        toolbar=True,
    ),
    Spec(
        "next_photo",
        "View",
        "Next photo",
        "fa5s.arrow-right",
        ("PgDown", "Ctrl+Right"),
        toolbar=True,
    ),
    Spec("tool_pan", "Tools", "Pan", "fa5s.hand-paper", ("H",), True, "tool", True),
    Spec("tool_brush", "Tools", "Brush", "fa5s.paint-brush", ("B",), True, "tool", True),
    Spec("tool_eraser", "Tools", "Eraser", "fa5s.eraser", ("E",), True, "tool", True),
    Spec("tool_fill", "Tools", "Fill region or hole", "fa5s.fill-drip", ("F",), True, "tool", True),
    Spec("tool_lasso_add", "Tools", "Lasso: add", "fa5s.draw-polygon", ("L",), True, "tool", True),
    Spec(
        "tool_lasso_remove", "Tools", "Lasso: remove", "fa5s.cut", ("Shift+L",), True, "tool", True
    ),
    Spec("brush_smaller", "Tools", "Smaller brush", "fa5s.minus-circle", ("[",)),
    Spec("brush_larger", "Tools", "Larger brush", "fa5s.plus-circle", ("]",)),
    Spec("next_lesion", "Review", "Next lesion", "fa5s.step-forward", ("N",)),
    Spec("previous_lesion", "Review", "Previous lesion", "fa5s.step-backward", ("Shift+N",)),
    Spec("accept_lesion", "Review", "Accept lesion", "fa5s.check", ("A",)),
    Spec("reject_lesion", "Review", "Reject lesion", "fa5s.times", ("X",)),
    Spec("status_in_review", "Review", "Mark in review", "fa5s.pen", ("Ctrl+1",)),
    Spec(
        "status_accepted",
        "Review",
        "Mark photo accepted",
        "fa5s.check-double",
        ("Ctrl+Return",),
        toolbar=True,
    ),
    Spec("status_rejected", "Review", "Mark photo rejected", "fa5s.ban", ("Ctrl+Backspace",)),
    Spec("shortcuts", "Help", "Keyboard shortcuts", "fa5s.keyboard", ("F1",)),
    Spec("about", "Help", "About Hemaview", "fa5s.info-circle"),
)

MENUS = ("File", "Edit", "View", "Tools", "Review", "Help")


def menu_title(menu: str) -> str:
    return {
        "File": tr("&File"),
        "Edit": tr("&Edit"),
        "View": tr("&View"),
        "Tools": tr("&Tools"),
        "Review": tr("&Review"),
        "Help": tr("&Help"),
    }[menu]


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


def shortcut_sheet_html() -> str:
    """The shortcut sheet shown in Help, from the same table as the actions."""
    rows: list[str] = []
    for menu in MENUS:
        specs = [s for s in SPECS if s.menu == menu and s.shortcuts]
        if not specs:
            continue
        rows.append(
            f"<tr><th colspan=2 align=left><br>{escape(menu_title(menu).replace('&', ''))}"
            "</th></tr>"
        )
        for spec in specs:
            keys = ", ".join(
                QKeySequence(s).toString(QKeySequence.SequenceFormat.NativeText)
                for s in spec.shortcuts
            )
            rows.append(f"<tr><td>{escape(tr(spec.text))}</td><td><b>{escape(keys)}</b></td></tr>")
    extra = [
        (tr("Zoom around the pointer"), tr("Mouse wheel")),
        (tr("Brush size"), tr("Ctrl + mouse wheel")),
        (tr("Pan while another tool is active"), tr("Space + drag, or middle button")),
    ]
    rows.append(f"<tr><th colspan=2 align=left><br>{escape(tr('Mouse'))}</th></tr>")
    rows += [f"<tr><td>{escape(a)}</td><td><b>{escape(b)}</b></td></tr>" for a, b in extra]
    return "<table cellspacing=4>" + "".join(rows) + "</table>"
