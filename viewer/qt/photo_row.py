"""Drawing one row of the photo list: thumbnail, name, review status, lesion count, error badge."""

from __future__ import annotations

import qtawesome as qta
from PySide6.QtCore import QModelIndex, QObject, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
)

from viewer.model.library import PhotoEntry
from viewer.qt.photo_list_model import EntryRole
from viewer.qt.thumbnails import THUMB_H, THUMB_W

_STATUS_ICONS = {
    "todo": ("fa5.circle", "#8a8a8a"),
    "in_review": ("fa5s.pen", "#d88a00"),
    "accepted": ("fa5s.check-circle", "#2e9d46"),
    "rejected": ("fa5s.times-circle", "#c8323c"),
}
_ERROR_ICON = ("fa5s.exclamation-triangle", "#d0302a")


class PhotoItemDelegate(QStyledItemDelegate):
    """Thumbnail at the left; name, status and lesion count beside it; error badge."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._icons: dict[str, QIcon] = {}

    def _icon(self, key: str) -> QIcon:
        if key not in self._icons:
            name, colour = _ERROR_ICON if key == "error" else _STATUS_ICONS[key]
            self._icons[key] = qta.icon(name, color=colour)
        return self._icons[key]

    def status_text(self, status: str) -> str:
        return {
            "todo": self.tr("To do"),
            "in_review": self.tr("In review"),
            "accepted": self.tr("Accepted"),
            "rejected": self.tr("Rejected"),
        }.get(status, status)

    def detail_text(self, entry: PhotoEntry) -> str:
        if entry.error:
            return (
                self.tr("Unreadable") if entry.unreadable else self.tr("No overlay: {0}")
            ).format(entry.error.split(": ")[-1])
        if entry.prediction_state == "running":
            return self.tr("Predicting…")
        if entry.prediction_state == "queued":
            return self.tr("Waiting for the model")
        count = entry.lesion_count
        if count is None:
            return ""
        # Chosen in code rather than with %n: no English translation file is needed for it.
        text = self.tr("1 lesion") if count == 1 else self.tr("{0} lesions").format(count)
        if entry.uncertainty is not None:
            text += " · " + self.tr("{0:.1%} unsure").format(entry.uncertainty)
        return text

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # type: ignore[override]
        # no wider than the list shows: the text is elided to fit
        view = option.widget
        width = view.viewport().width() if isinstance(view, QAbstractScrollArea) else 0
        return QSize(min(THUMB_W + 200, width) if width > 0 else THUMB_W + 200, THUMB_H + 10)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:  # type: ignore[override]
        entry = index.data(EntryRole)
        if not isinstance(entry, PhotoEntry):
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        style = opt.widget.style() if opt.widget is not None else None
        painter.save()
        if style is not None:
            style.drawPrimitive(
                QStyle.PrimitiveElement.PE_PanelItemViewItem, opt, painter, opt.widget
            )
        rect = opt.rect
        thumb_rect = QRect(rect.left() + 5, rect.top() + 5, THUMB_W, THUMB_H)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            size = pixmap.deviceIndependentSize().toSize()
            size.scale(thumb_rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(thumb_rect.center())
            painter.drawPixmap(target, pixmap)
        else:
            painter.fillRect(thumb_rect, QColor(40, 40, 40))
        if entry.error:
            badge = QRect(thumb_rect.right() - 20, thumb_rect.bottom() - 20, 18, 18)
            painter.fillRect(badge.adjusted(-1, -1, 1, 1), QColor(255, 255, 255, 200))
            self._icon("error").paint(painter, badge)

        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        text_colour = opt.palette.highlightedText() if selected else opt.palette.text()
        left = thumb_rect.right() + 10
        width = max(rect.right() - left - 4, 10)
        line = opt.fontMetrics.height()
        top = rect.top() + 6
        font = QFont(opt.font)
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(text_colour.color())
        name = opt.fontMetrics.elidedText(entry.name, Qt.TextElideMode.ElideMiddle, width)
        painter.drawText(QRect(left, top, width, line), Qt.AlignmentFlag.AlignLeft, name)
        painter.setFont(opt.font)
        icon_rect = QRect(left, top + line + 3, line, line)
        self._icon(entry.status).paint(painter, icon_rect)
        status = opt.fontMetrics.elidedText(
            self.status_text(entry.status), Qt.TextElideMode.ElideRight, width - line - 4
        )
        painter.drawText(
            QRect(left + line + 4, top + line + 3, width - line - 4, line),
            Qt.AlignmentFlag.AlignLeft,
            status,
        )
        detail = opt.fontMetrics.elidedText(
            self.detail_text(entry), Qt.TextElideMode.ElideRight, width
        )
        if entry.error:
            painter.setPen(QColor(_ERROR_ICON[1]))
        painter.drawText(
            QRect(left, top + 2 * line + 6, width, line), Qt.AlignmentFlag.AlignLeft, detail
        )
        painter.restore()
