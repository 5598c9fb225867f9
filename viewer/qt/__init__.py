"""Qt widgets that only show the document and forward user actions."""
