"""The cache engine's exceptions.

Only CacheConfigError reaches the user (a bad setting, named with the allowed
values). Everything else is handled inside the engine: a backend failure
becomes a miss or a skipped write plus one warning, a corrupt entry becomes a
miss, an unstorable value stays out of the persistent tiers.
"""


class CacheError(Exception):
    """Base of every error the cache engine raises."""


class CacheConfigError(CacheError, ValueError):
    """A setting is invalid; the message names the key and the allowed values."""


class CacheBackendError(CacheError):
    """A tier failed (disk full, Redis down); never reaches a workflow."""


class CorruptEntry(CacheError):
    """A stored blob is truncated, corrupted, foreign or of a newer format."""


class UnstorableValue(CacheError, TypeError):
    """A value holds something the persistent format cannot represent exactly."""
