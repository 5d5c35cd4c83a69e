"""The tier interface, its records, and the LRU + TTL + byte-cap index that local tiers share.

A Tier holds entries per (namespace, key). One lock guards metadata; copying
values and file IO run outside it. LruIndex does the bookkeeping like
cachetools' base class: a put first reserves its bytes (evicting least recently
used entries, unpinned first) so a cap is never passed, even for a moment, then
commits. Backend failures are reported once per outage through a listener.
"""
import heapq
import itertools
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Callable

_log = logging.getLogger("recall.cache")


@dataclass(frozen=True, slots=True)
class EntryMeta:
    compute_seconds: float
    created: float
    label: str = ""
    pinned: bool = False
    ttl_seconds: float | None = None  # per-entry lifetime; the shorter of this and the tier's wins


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


@dataclass(slots=True)
class Slot:
    """One entry's bookkeeping in an LruIndex."""
    size: int
    expires: float | None
    meta: EntryMeta
    payload: Any = None  # the value
    stored: float = 0.0  # tier clock at put time (TTL counts from here)
    seq: int = -1        # set when committed: tells a live heap record from a stale one
    used: int = -1       # recency stamp, for full listings in LRU order


@dataclass
class _Counters:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    saved_seconds: float = 0.0


class Tier:
    """Base of every tier. Subclasses implement get/put/delete/clear/keys/configure."""

    name: str = "tier"
    persistent: bool = False

    def __init__(self, name: str, *, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.clock = clock
        self._lock = threading.RLock()
        self._counters: dict[str, _Counters] = {}
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
                c = self._counters.get(ns, _Counters())
                entries, nbytes = usage.get(ns, (0, 0))
                out[ns] = TierStats(entries, nbytes, c.hits, c.misses, c.evictions, round(c.saved_seconds, 6))
            return out

    def describe(self) -> str:
        return self.name

    # -- helpers for subclasses ----------------------------------------------------
    def _count(self, namespace: str) -> _Counters:
        c = self._counters.get(namespace)
        if c is None:
            c = self._counters[namespace] = _Counters()
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


class LruIndex:
    """LRU order, TTL and hard byte/entry caps over Slots keyed by (namespace, key).

    Every operation is O(1) or O(log n) in the number of entries: unpinned and pinned
    entries sit in two ordered dicts (least recent first), so the victim is always at the
    front of one of them; expiry is a heap of (expires, seq) with lazy deletion; per-namespace
    totals are kept as running sums; and each namespace keeps a short ring of its most recent
    keys for miss explanations. Only a TTL change touches every entry (a settings change).
    Not thread-safe by itself: the owning tier calls it under its lock.
    """

    RECENT = 64  # recent keys kept per namespace for miss explanations

    def __init__(self, max_bytes: int, max_entries: int | None, ttl_seconds: float | None):
        self.max_bytes = int(max_bytes)
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.slots: "OrderedDict[tuple[str, str], Slot]" = OrderedDict()   # unpinned, oldest first
        self.pinned: "OrderedDict[tuple[str, str], Slot]" = OrderedDict()  # pinned, oldest first
        self.totals: dict[str, list[int]] = {}  # namespace -> [entries, bytes]
        self.used = 0          # committed bytes
        self.reserved = 0      # bytes of puts in flight
        self.pending = 0       # puts in flight
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._recent: dict[str, "OrderedDict[str, str]"] = {}  # namespace -> {key: label}, newest last
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self.slots) + len(self.pinned)

    def expiry(self, meta: EntryMeta, stored: float) -> float | None:
        """When an entry stored at `stored` (tier clock) expires: the shorter TTL wins."""
        ttls = [t for t in (self.ttl_seconds, meta.ttl_seconds) if t is not None]
        return stored + min(ttls) if ttls else None

    def get(self, ns: str, key: str) -> Slot | None:
        k = (ns, key)
        return self.slots.get(k) or self.pinned.get(k)

    def lookup(self, ns: str, key: str, now: float) -> tuple[Slot | None, Slot | None]:
        """(live slot, expired slot removed); a live hit becomes most recent."""
        slot = self.get(ns, key)
        if slot is None:
            return None, None
        if slot.expires is not None and now >= slot.expires:
            self.remove(ns, key)
            return None, slot
        self._touch(ns, key, slot)
        return slot, None

    def _touch(self, ns: str, key: str, slot: Slot) -> None:
        (self.pinned if slot.meta.pinned else self.slots).move_to_end((ns, key))
        slot.used = next(self._seq)
        recent = self._recent.get(ns)
        if recent is None:
            recent = self._recent[ns] = OrderedDict()
        recent[key] = slot.meta.label
        recent.move_to_end(key)
        if len(recent) > self.RECENT:
            recent.popitem(last=False)

    def remove(self, ns: str, key: str) -> Slot | None:
        k = (ns, key)
        slot = self.slots.pop(k, None)
        if slot is None:
            slot = self.pinned.pop(k, None)
        if slot is not None:
            self.used -= slot.size
            acc = self.totals[ns]
            acc[0] -= 1
            acc[1] -= slot.size
            if acc[0] == 0:
                del self.totals[ns]
        return slot

    def fits(self, size: int) -> bool:
        return size <= self.max_bytes and (self.max_entries is None or self.max_entries >= 1)

    def reserve(self, ns: str, key: str, size: int, now: float) -> tuple[bool, list]:
        """Make room for a new entry. Returns (reserved?, evicted [(key, slot)]) - the caller
        frees the evicted slots' payloads even when the reservation failed."""
        evicted = []
        old = self.remove(ns, key)  # the replaced value is stale whatever happens next
        if old is not None:
            evicted.append(((ns, key), old))
        if not self.fits(size):
            return False, evicted
        evicted.extend(self.purge_expired(now))
        while self._over(size):
            victim = self._victim()
            if victim is None:  # only puts in flight hold the space: refuse rather than pass the cap
                return False, evicted
            evicted.append((victim, self.remove(*victim)))
        self.reserved += size
        self.pending += 1
        return True, evicted

    def _over(self, size: int) -> bool:
        if self.used + self.reserved + size > self.max_bytes:
            return True
        return self.max_entries is not None and len(self) + self.pending + 1 > self.max_entries

    def _victim(self) -> tuple[str, str] | None:
        # caps are hard: pinned entries go too when nothing else is left
        for order in (self.slots, self.pinned):
            if order:
                return next(iter(order))
        return None

    def purge_expired(self, now: float) -> list[tuple[tuple[str, str], Slot]]:
        """Remove entries whose time is up: O(log n) per expired entry, nothing for live ones."""
        gone = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, k = heapq.heappop(heap)
            slot = self.get(*k)
            if slot is not None and slot.seq == seq:  # else a stale record of a replaced entry
                gone.append((k, self.remove(*k)))
        return gone

    def commit(self, ns: str, key: str, slot: Slot) -> Slot | None:
        """Turn a reservation into an entry; returns a slot it replaced (a concurrent put)."""
        self.reserved -= slot.size
        self.pending -= 1
        old = self.remove(ns, key)
        self._add(ns, key, slot)
        return old

    def _add(self, ns: str, key: str, slot: Slot) -> None:
        slot.seq = next(self._seq)
        (self.pinned if slot.meta.pinned else self.slots)[(ns, key)] = slot
        self.used += slot.size
        acc = self.totals.get(ns)
        if acc is None:
            acc = self.totals[ns] = [0, 0]
        acc[0] += 1
        acc[1] += slot.size
        if slot.expires is not None:
            heapq.heappush(self._heap, (slot.expires, slot.seq, (ns, key)))
            if len(self._heap) > 2 * len(self) + 64:  # drop stale records now and then
                self._rebuild_heap()
        self._touch(ns, key, slot)

    def _rebuild_heap(self) -> None:
        self._heap = [(s.expires, s.seq, k) for order in (self.slots, self.pinned)
                      for k, s in order.items() if s.expires is not None]
        heapq.heapify(self._heap)

    def release(self, size: int) -> None:
        self.reserved -= size
        self.pending -= 1

    def reconfigure(self, now: float, *, max_bytes=None, max_entries=None,
                    ttl_seconds=None) -> list[tuple[tuple[str, str], Slot]]:
        """New caps and lifetime (None keeps one); returns what had to go to fit them."""
        if max_bytes is not None:
            self.max_bytes = int(max_bytes)
        if max_entries is not None:
            self.max_entries = int(max_entries)
        if ttl_seconds is not None:
            self.ttl_seconds = float(ttl_seconds)
            for order in (self.slots, self.pinned):
                for slot in order.values():
                    slot.expires = self.expiry(slot.meta, slot.stored)
            self._rebuild_heap()
        return self.shrink(now)

    def shrink(self, now: float) -> list[tuple[tuple[str, str], Slot]]:
        """Evict until the (new) caps hold."""
        evicted = self.purge_expired(now)
        while self.used + self.reserved > self.max_bytes or (
                self.max_entries is not None and len(self) + self.pending > self.max_entries):
            victim = self._victim()
            if victim is None:
                break
            evicted.append((victim, self.remove(*victim)))
        return evicted

    def clear(self, ns: str | None = None) -> list[tuple[tuple[str, str], Slot]]:
        if ns is None:
            doomed = list(self.slots) + list(self.pinned)
        else:  # walks the tier: clearing a namespace is a rare, explicit request
            doomed = [k for order in (self.slots, self.pinned) for k in order if k[0] == ns]
        gone = [(k, self.remove(*k)) for k in doomed]
        if ns is None:
            self._recent.clear()
            self._heap = []
        else:
            self._recent.pop(ns, None)
        return gone

    def usage(self) -> dict[str, tuple[int, int]]:
        return {ns: (a[0], a[1]) for ns, a in self.totals.items()}

    def keys(self, ns: str) -> list[str]:
        """Every key of a namespace, most recent first (a full listing: O(n log n))."""
        found = [(s.used, k) for order in (self.slots, self.pinned) for (n, k), s in order.items() if n == ns]
        return [k for _, k in sorted(found, reverse=True)]

    def recent(self, ns: str, limit: int | None = None) -> list[tuple[str, str]]:
        """(key, label) of up to RECENT recently used live entries of a namespace, newest first."""
        out = []
        for key, label in reversed(self._recent.get(ns, {}).items()):
            if self.get(ns, key) is not None:
                out.append((key, label))
                if limit is not None and len(out) >= limit:
                    break
        return out
