"""The tier interface and its records; the memory tiers' LRU + TTL + byte-cap index is in lru.py.

A Tier holds entries per (namespace, key). One lock guards metadata; copying
values and file IO run outside it. LruIndex does the bookkeeping like
cachetools' base class: a put first reserves its bytes (evicting least recently
used entries, unpinned first) so a cap is never passed, even for a moment, then
commits. Backend failures are reported once per outage through a listener.

PersistentTier is the base of the tiers that hold bytes (disk, Redis): they
implement get_blob/put_blob and two hooks, and share one encode (encode_entry)
and one decode-and-verify step (decode_entry), so every persistent tier holds
the same blob for an entry and rejects damage the same way.
"""
import logging
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

from . import serialize
from .errors import CorruptEntry, UnstorableValue
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
    blob: bytes | None = None  # the bytes a persistent tier decoded the value from (promoted as they are)


@dataclass
class Blob:
    """What a persistent tier read for an entry: the bytes, and where they came from (the tier's own
    handle, given back to its hooks: the disk's index row and file, Redis's key)."""
    data: Any
    where: Any = None


def encode_entry(namespace: str, key: str, value: Any, meta: EntryMeta) -> bytes:
    """The one blob of an entry, for every persistent tier; raises UnstorableValue."""
    return serialize.dumps(value, meta.to_doc(namespace, key))


def decode_entry(namespace: str, key: str, data: Any) -> tuple[Any, EntryMeta]:
    """(value, meta) of a blob read for (namespace, key); CorruptEntry for anything not exactly that
    entry: damaged or foreign bytes, an answer that is not bytes, a blob of another key or namespace."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CorruptEntry(f"the tier answered {data!r:.200} instead of bytes")
    value, doc = serialize.loads(data)
    if doc.get("namespace") != namespace or doc.get("key") != key:
        raise CorruptEntry("entry belongs to another key or namespace")
    return value, EntryMeta.from_doc(doc)


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


class PersistentTier(Tier):
    """Base of the tiers that hold bytes. Subclasses implement get_blob/put_blob (and the hooks);
    get/put are the shared value-level round trip over them (the store writes blobs itself)."""

    persistent = True

    def get_blob(self, namespace: str, key: str) -> Blob | None:
        """The stored bytes, or None (a miss: not stored, unreadable, tier down)."""
        raise NotImplementedError

    def put_blob(self, namespace: str, key: str, blob: bytes, meta: EntryMeta) -> bool:
        """Store encode_entry's bytes; False when refused (oversize, over the caps, down)."""
        raise NotImplementedError

    def blob_damaged(self, namespace: str, key: str, found: Blob, exc: CorruptEntry) -> None:
        """Hook: found did not decode as this entry (remove it, warn)."""

    def blob_used(self, namespace: str, key: str, found: Blob, meta: EntryMeta) -> None:
        """Hook: found decoded as this entry (a tier's recency bookkeeping)."""

    def get(self, namespace: str, key: str) -> Entry | None:
        found = self.get_blob(namespace, key)
        if found is None:
            self.record_miss(namespace)
            return None
        try:
            value, meta = decode_entry(namespace, key, found.data)
        except CorruptEntry as exc:
            self.blob_damaged(namespace, key, found, exc)
            self.record_miss(namespace)
            return None
        self.blob_used(namespace, key, found, meta)
        self.record_hit(namespace, meta.compute_seconds)
        return Entry(value, meta, bytes(found.data))

    def put(self, namespace: str, key: str, value, *, meta: EntryMeta) -> bool:
        try:
            blob = encode_entry(namespace, key, value, meta)
        except UnstorableValue as exc:
            _log.debug("tier %s skips %s: %s", self.name, key, exc)
            return False
        return self.put_blob(namespace, key, blob, meta)
