"""The viewer's document: photo, probability, editable mask, undo history, review state. Qt-free."""
