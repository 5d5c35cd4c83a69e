"""Near matching over a TieredStore: a verified stand-in for an exact miss, never a blind one.

Each encoding stored under near matching gets a companion entry, its thumbnail, under a
key derived from the encoding's key, in the same namespace and tiers (so its bytes count
in every cap and it is evicted like any entry), plus a row in the NearIndex under its
group: the exact key with the pixel content left out (same shape, encoder identity,
other arguments). find() asks the index for hash candidates in the query's group, then,
nearest first, reads each candidate's thumbnail, checks its checksum and the PSNR against
the query's thumbnail, and only then reads the candidate's value. A missing, damaged or
mismatched thumbnail, or a value that is gone, is a miss for that candidate.
"""
import hashlib
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .near_index import MAX_RADIUS, NearIndex
from .perceptual import psnr, thumb_check

_log = logging.getLogger("recall.cache")

DEFAULT_RADIUS = MAX_RADIUS   # hash bits that may differ; wider only costs thumbnail reads
MAX_CANDIDATES = 8            # thumbnails read per lookup at most (nearest first)


@dataclass(frozen=True)
class NearQuery:
    group: str                 # the exact key without the pixel content
    key: str                   # the query's exact key
    dhash: int
    thumb: torch.Tensor        # [B, h, w, C] float16, CPU
    min_db: float              # tolerance: the lowest PSNR accepted


@dataclass
class NearFound:
    value: Any                 # the candidate entry's stored value, as the store returned it
    key: str                   # the candidate's exact key
    tier: str
    saved_seconds: float
    db: float                  # PSNR of the thumbnails (inf: equal thumbnails)
    distance: int              # Hamming distance of the hashes


def thumb_key(key: str) -> str:
    return hashlib.blake2b(f"near-thumb|{key}".encode(), digest_size=20).hexdigest()


class NearMatcher:
    def __init__(self, index: NearIndex, radius: int = DEFAULT_RADIUS):
        self.index = index
        self.radius = radius
        self._lock = threading.Lock()
        self._counts = {"hits": 0, "rejected": 0, "stale": 0, "saved_seconds": 0.0}

    def _bump(self, name: str, by: float = 1) -> None:
        with self._lock:
            self._counts[name] += by

    def stats(self) -> dict:
        with self._lock:
            out = dict(self._counts)
        out["saved_seconds"] = round(out["saved_seconds"], 6)
        out["indexed"] = len(self.index)
        return out

    def remember(self, store, query: NearQuery, *, namespace: str, label: str = "", pinned: bool = False,
                 ttl_seconds: float | None = None) -> None:
        """Keep the query's thumbnail beside its (just stored) encoding and index it."""
        if self.index.contains(query.group, query.key):
            return
        value = {"thumb": query.thumb, "check": thumb_check(query.thumb), "of": query.key}
        store.put(thumb_key(query.key), value, namespace=namespace, label=f"near thumbnail · {label}"[:200],
                  pinned=pinned, ttl_seconds=ttl_seconds)
        self.index.add(query.group, query.key, query.dhash)

    def find(self, store, query: NearQuery, *, namespace: str,
             readable: Callable[[Any], bool] = lambda v: v is not None) -> NearFound | None:
        """The nearest verified entry of the query's group other than the query's own key, or None."""
        tried = 0
        for key, distance in self.index.candidates(query.group, query.dhash, self.radius):
            if key == query.key:
                continue  # its own entry: the exact lookup answers for it
            if tried >= MAX_CANDIDATES:
                break
            tried += 1
            db = self._verify(store, query, key, namespace)
            if db is None:
                continue
            hit = store.get(key, namespace=namespace, count=False)
            if hit is None or not readable(hit.value):
                self._stale(query.group, key)
                continue
            self._bump("hits")
            self._bump("saved_seconds", hit.saved_seconds)
            return NearFound(hit.value, key, hit.tier, hit.saved_seconds, db, distance)
        return None

    def _verify(self, store, query: NearQuery, key: str, namespace: str) -> float | None:
        """The PSNR when the candidate's thumbnail is intact and within tolerance, else None."""
        stored = store.get(thumb_key(key), namespace=namespace, count=False)
        thumb = _intact_thumb(None if stored is None else stored.value, key)
        if thumb is None:
            self._stale(query.group, key)
            return None
        db = psnr(query.thumb, thumb)
        if not db >= query.min_db:  # also NaN
            self._bump("rejected")
            _log.debug("near candidate %s rejected: %.1f dB < %.1f dB", key[:12], db, query.min_db)
            return None
        return db

    def _stale(self, group: str, key: str) -> None:
        self._bump("stale")
        self.index.discard(group, key)


def _intact_thumb(value, key: str) -> torch.Tensor | None:
    """The thumbnail of an entry written by remember() for `key`, when its checksum still holds."""
    if not isinstance(value, dict) or set(value) != {"thumb", "check", "of"}:
        return None
    thumb = value["thumb"]
    if value["of"] != key or not isinstance(thumb, torch.Tensor) or thumb.dim() != 4:
        return None
    try:
        ok = thumb_check(thumb) == value["check"]
    except (RuntimeError, TypeError, ValueError):
        return None
    if not ok:
        _log.warning("[Recall] near match: the stored thumbnail of entry %s fails its checksum; ignoring it.", key[:12])
        return None
    return thumb


def describe_db(db: float) -> str:
    """'52 dB', or 'identical' for equal thumbnails (infinite PSNR)."""
    return "identical" if math.isinf(db) else f"{db:.0f} dB"
