"""The cache engine (ComfyUI-free). See API.md for the public interface."""
from .config import CacheConfig, build_store, load_config
from .errors import CacheBackendError, CacheConfigError, CacheError, CorruptEntry, UnstorableValue
from .fingerprint import FingerprintMemo, fingerprint_patches, fingerprint_tensors
from .keys import build_key, content_key
from .serialize import dumps, flatten, loads, register_object_type, unflatten
from .store import Hit, Outcome, TieredStore
from .tier import Entry, EntryMeta, Tier, TierStats

__all__ = [
    "CacheConfig", "build_store", "load_config",
    "CacheBackendError", "CacheConfigError", "CacheError", "CorruptEntry", "UnstorableValue",
    "FingerprintMemo", "fingerprint_patches", "fingerprint_tensors",
    "build_key", "content_key",
    "dumps", "flatten", "loads", "register_object_type", "unflatten",
    "Hit", "Outcome", "TieredStore",
    "Entry", "EntryMeta", "Tier", "TierStats",
]
