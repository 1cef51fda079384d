"""Exceptions with messages a user can act on (each names the offending file or setting)."""


class BrainsegError(Exception):
    """Base class: anything the library raises on purpose."""


class DataError(BrainsegError, ValueError):
    """A slice, mask, folder or table is missing, unreadable or malformed."""


class ModelLoadError(BrainsegError, ValueError):
    """A model file is missing, corrupt, or not the network the caller expects."""
