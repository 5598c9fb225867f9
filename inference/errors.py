"""Errors the inference layer raises; each message is meant for the person using the app."""

from __future__ import annotations


class HemaviewError(Exception):
    """Base of every error Hemaview reports to a user."""


class ImageReadError(HemaviewError):
    """A photo could not be read: missing, empty, truncated, not an image, too large."""


class NotFundusError(HemaviewError):
    """No circular field of view was found: the photo does not look like a fundus photograph."""


class ModelContractError(HemaviewError):
    """A model file is missing, corrupt, or does not describe itself as Hemaview expects."""


class LabelFormatError(HemaviewError):
    """A label file could not be read or does not match its photo."""


class BackendError(HemaviewError):
    """A backend could not run the model (a remote server down, a session that failed)."""
