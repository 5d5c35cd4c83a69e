"""The tier interface and its records; the memory tiers' LRU + TTL + byte-cap index is in lru.py.

A Tier holds entries per (namespace, key). One lock guards metadata; copying
values and file IO run outside it. LruIndex does the bookkeeping like
cachetools' base class: a put first reserves its bytes (evicting least recently
used entries, unpinned first) so a cap is never passed, even for a moment, then
commits. Backend failures are reported once per outage through a listener.
"""
import logging
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

from .errors import CorruptEntry
from .lru import LruIndex, Slot  # noqa: F401  (the memory tiers' index; memory.py imports it from here)

_log = logging.getLogger("recall.cache")


@dataclass(frozen=True, slots=True)
class EntryMeta:
    compute_seconds: float
    created: float
    label: str = ""
    pinned: bool = False
    ttl_seconds: float | None = None  # per-entry lifetime; the shorter of this and the tier's wins
    # The device of each tensor as the producer returned it (values.devices order): a hit is
    # handed back there. None: a live object kept by reference (never moved, never copied).
    devices: tuple[str, ...] | None = None

    def to_doc(self, namespace: str, key: str, **extra) -> dict:
        """The entry-metadata document the persistent tiers store beside a value (disk and Redis alike)."""
        return {"namespace": namespace, "key": key, **extra, "compute_seconds": self.compute_seconds,
                "created": self.created, "label": self.label, "pinned": self.pinned,
                "ttl_seconds": self.ttl_seconds,
                "devices": None if self.devices is None else list(self.devices)}

    @classmethod
    def from_doc(cls, doc: dict) -> "EntryMeta":
        """The metadata of a stored document; CorruptEntry when it is incomplete.

        A document without "devices" was written by a Recall that stored encodings wrapped in a
        {"v", "d"} envelope: read as a value, it would be that envelope, so it is refused (a miss)."""
        if isinstance(doc, dict) and "devices" not in doc:
            raise CorruptEntry("entry written by an older Recall (no device record); it is computed again")
        try:
            ttl, devices = doc.get("ttl_seconds"), doc["devices"]
            return cls(float(doc["compute_seconds"]), float(doc["created"]), str(doc.get("label", "")),
                       bool(doc.get("pinned", False)), None if ttl is None else float(ttl),
                       None if devices is None else tuple(str(d) for d in devices))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptEntry(f"entry metadata is incomplete: {exc}") from exc


@dataclass
class Entry:
    value: Any
    meta: EntryMeta


@dataclass
class TierStats:
    entries: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    saved_seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class Tier:
    """Base of every tier. Subclasses implement get/put/delete/clear/keys/configure."""

    name: str = "tier"
    persistent: bool = False

    def __init__(self, name: str, *, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.clock = clock
        self._lock = threading.RLock()
        self._counters: dict[str, TierStats] = {}   # hits, misses, evictions, saved; entries and bytes come from usage()
        self._listener: Callable[[str, dict], None] | None = None
        self._down = False
        self._warned: set[str] = set()

    # -- the interface -------------------------------------------------------------
    def get(self, namespace: str, key: str) -> Entry | None:
        raise NotImplementedError

    def put(self, namespace: str, key: str, value, *, meta: EntryMeta) -> bool:
        raise NotImplementedError

    def delete(self, namespace: str, key: str) -> bool:
        raise NotImplementedError

    def clear(self, namespace: str | None = None) -> int:
        raise NotImplementedError

    def keys(self, namespace: str) -> list[str]:
        raise NotImplementedError

    def configure(self, *, max_bytes=None, max_entries=None, ttl_seconds=None) -> None:
        raise NotImplementedError

    def usage(self) -> dict[str, tuple[int, int]]:
        """{namespace: (entries, bytes)}; subclasses override."""
        return {}

    def stats(self) -> dict[str, TierStats]:
        usage = self.usage()
        with self._lock:
            out = {}
            for ns in set(usage) | set(self._counters):
                c = self._counters.get(ns, TierStats())
                entries, nbytes = usage.get(ns, (0, 0))
                out[ns] = replace(c, entries=entries, bytes=nbytes, saved_seconds=round(c.saved_seconds, 6))
            return out

    def describe(self) -> str:
        return self.name

    # -- helpers for subclasses ----------------------------------------------------
    def _count(self, namespace: str) -> TierStats:
        c = self._counters.get(namespace)
        if c is None:
            c = self._counters[namespace] = TierStats()
        return c

    def record_hit(self, namespace: str, saved_seconds: float) -> None:
        with self._lock:
            c = self._count(namespace)
            c.hits += 1
            c.saved_seconds += max(0.0, float(saved_seconds))

    def record_miss(self, namespace: str) -> None:
        with self._lock:
            self._count(namespace).misses += 1

    def record_evictions(self, namespace: str, n: int = 1) -> None:
        with self._lock:
            self._count(namespace).evictions += n

    def set_listener(self, fn: Callable[[str, dict], None] | None) -> None:
        self._listener = fn

    def _emit(self, event: str, info: dict) -> None:
        if self._listener is not None:
            try:
                self._listener(event, info)
            except Exception:  # a UI listener must never break caching
                _log.debug("listener failed for %s", event, exc_info=True)

    def report_failure(self, action: str, exc: BaseException) -> None:
        """A backend failure: one warning and one 'backend_down' event per outage."""
        with self._lock:
            first = not self._down
            self._down = True
        if first:
            message = f"[Recall] cache tier '{self.name}' failed to {action}: {exc}. Continuing without it until it recovers."
            _log.warning(message)
            self._emit("backend_down", {"tier": self.name, "message": message})
        else:
            _log.debug("tier %s still failing to %s: %s", self.name, action, exc)

    def report_ok(self) -> None:
        with self._lock:
            was_down = self._down
            self._down = False
        if was_down:
            message = f"[Recall] cache tier '{self.name}' works again."
            _log.info(message)
            self._emit("backend_up", {"tier": self.name, "message": message})

    @property
    def is_down(self) -> bool:
        return self._down

    def warn_once(self, kind: str, message: str) -> None:
        with self._lock:
            first = kind not in self._warned
            self._warned.add(kind)
        if first:
            _log.warning(message)
        else:
            _log.debug(message)
