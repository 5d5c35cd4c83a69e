"""TieredStore: one cache over ordered tiers (hot -> warm -> cold -> shared).

get() asks the tiers in order and promotes a hit into the tiers above it (each
tier's caps decide whether it fits). A value comes back as its producer returned
it: each tensor on the device recorded at put() (EntryMeta.devices), and a copy
that shares no memory with any tier, so a caller that edits it in place can never
change the cache. On a miss the caller keeps the producer's own value and the memory
tiers keep copies. Live objects put by reference are handed back as they are.

put() writes the memory tiers at once and queues one job for all the persistent
tiers (cache/write_queue.py): the writer thread serializes the value once and gives
the same bytes to each, so neither serializing nor a slow disk or network delays
the workflow; a value that cannot be serialized is found there and stays in the
memory tiers. A hit in a lower persistent tier is promoted into the persistent
tiers above it with the bytes it was read as. get_or_compute() adds single flight:
callers of the same (namespace, key) wait for one computation. A tier that raises
is treated as a miss or a skipped write, with one warning per outage and a
listener event.
"""
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import values
from .names import SHARED_NAMESPACE
from .tier import Entry, EntryMeta, Tier
from .write_queue import QUEUE_BYTES, QUEUE_ENTRIES, PersistentWrites, WriteJob

_log = logging.getLogger("recall.cache")
IN_FLIGHT = "inflight"  # Outcome.tier for a caller that waited on another caller's computation


@dataclass
class Hit:
    value: Any
    tier: str
    saved_seconds: float


@dataclass
class Outcome:
    value: Any
    hit: bool
    tier: str | None
    saved_seconds: float
    compute_seconds: float


class _Flight:
    __slots__ = ("done", "value", "ok", "compute_seconds", "devices")

    def __init__(self):
        self.done = threading.Event()
        self.value = None
        self.ok = False
        self.compute_seconds = 0.0
        self.devices = None


def _handed_out(value, devices, to_device=None):
    """What a caller gets for a stored value: a copy on its recorded devices (or on to_device).
    A live object kept by reference (devices None) is handed on as it is."""
    if devices is None:
        return values.move(value, to_device) if to_device is not None else value
    if to_device is not None:
        return values.move(value, to_device, copy=True)
    return values.restore(value, devices, copy=True)


class TieredStore:
    def __init__(self, tiers: list[Tier], clock: Callable[[], float] = time.monotonic,
                 background_writes: bool = True, enabled: bool = True,
                 write_queue_entries: int = QUEUE_ENTRIES, write_queue_bytes: int = QUEUE_BYTES):
        self.tiers = list(tiers)
        self.clock = clock
        self.enabled = enabled
        self._lock = threading.Lock()
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._listeners: list[Callable[[str, dict], None]] = []
        self._counts: dict[str, list] = {}  # namespace -> [hits, misses, saved_seconds]
        self.writes = PersistentWrites(background=background_writes, max_entries=write_queue_entries,
                                       max_bytes=write_queue_bytes)
        for tier in self.tiers:
            tier.set_listener(self._emit)

    # -- events ----------------------------------------------------------------------
    def add_listener(self, fn: Callable[[str, dict], None]) -> None:
        self._listeners.append(fn)

    def _emit(self, event: str, info: dict) -> None:
        for fn in list(self._listeners):
            try:
                fn(event, info)
            except Exception:
                _log.debug("cache listener failed", exc_info=True)

    def tier(self, name: str) -> Tier | None:
        return next((t for t in self.tiers if t.name == name), None)

    # -- safe calls into tiers -----------------------------------------------------------
    def _tier_get(self, tier: Tier, namespace: str, key: str):
        try:
            return tier.get(namespace, key)
        except Exception as exc:  # a backend failure is a miss, never a workflow error
            tier.report_failure("read", exc)
            return None

    def _tier_put(self, tier: Tier, namespace: str, key: str, value, meta: EntryMeta) -> bool:
        try:
            return tier.put(namespace, key, value, meta=meta)
        except Exception as exc:
            tier.report_failure("write", exc)
            return False

    def _count(self, namespace: str, hit: bool, saved: float = 0.0) -> None:
        with self._lock:
            c = self._counts.setdefault(namespace, [0, 0, 0.0])
            c[0 if hit else 1] += 1
            c[2] += saved

    # -- lookups ---------------------------------------------------------------------
    def get(self, key: str, *, namespace: str = SHARED_NAMESPACE, to_device=None, count: bool = True) -> Hit | None:
        """count=False: a look-up made on behalf of another one (near matching reads a candidate), left
        out of the hit/miss counts."""
        found = self._lookup(key, namespace, to_device, count)
        return None if found is None else found[0]

    def _lookup(self, key: str, namespace: str, to_device, count: bool = True):
        """(Hit, the tier's own value, its meta) or None."""
        if not self.enabled:
            return None
        for i, tier in enumerate(self.tiers):
            entry = self._tier_get(tier, namespace, key)
            if entry is None:
                continue
            try:
                value = _handed_out(entry.value, entry.meta.devices, to_device)
            except (ValueError, RuntimeError) as exc:  # a record that does not fit the value: a miss
                _log.warning("[Recall] cache: ignoring entry %s in tier %s: %s", key, tier.name, exc)
                continue
            if i > 0:  # the tiers above get the tier's own value, never the caller's copy
                self._promote(self.tiers[:i], namespace, key, entry)
            if count:
                self._count(namespace, True, entry.meta.compute_seconds)
            return Hit(value, tier.name, entry.meta.compute_seconds), entry.value, entry.meta
        if count:
            self._count(namespace, False)
        return None

    def _promote(self, tiers: list[Tier], namespace: str, key: str, entry: Entry) -> None:
        for tier in tiers:
            if not tier.persistent:
                self._tier_put(tier, namespace, key, entry.value, entry.meta)
        self._write_later(tiers, namespace, key, entry.meta, entry.value, entry.blob)

    def _write_later(self, tiers: list[Tier], namespace: str, key: str, meta: EntryMeta, value,
                     blob: bytes | None = None) -> None:
        persistent = [t for t in tiers if t.persistent]
        if persistent:
            self.writes.submit(WriteJob(namespace, key, meta, persistent, value, blob))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for the queued writes of the persistent tiers (tests, benchmarks, shutdown); True
        when the queue drained."""
        return self.writes.flush(timeout)

    # -- writes ----------------------------------------------------------------------
    def put(self, key: str, value, *, namespace: str = SHARED_NAMESPACE, compute_seconds: float = 0.0,
            label: str = "", pinned: bool = False, by_reference: bool | None = False,
            ttl_seconds: float | None = None) -> bool:
        """by_reference None: the store decides, by reference when the value holds something it cannot
        copy (values.copyable). Returns True when the value was kept by reference."""
        if not self.enabled:
            return False
        _, meta = self._put(key, value, namespace, compute_seconds, label, pinned, by_reference, ttl_seconds)
        return meta.devices is None

    def _put(self, key, value, namespace, compute_seconds, label, pinned, by_reference, ttl_seconds):
        """Store value; returns (what the tiers hold, its meta)."""
        label = label() if callable(label) else label
        pinned = pinned() if callable(pinned) else pinned
        if by_reference is None:
            by_reference = not values.copyable(value)
        devices = None if by_reference else values.devices(value)
        meta = EntryMeta(float(compute_seconds), time.time(), label, pinned, ttl_seconds, devices)
        if by_reference:
            # live objects (models, CLIP) go to the lowest memory tier (warm RAM), as they are:
            # the hot tier's few slots are for image encodings
            memory = [t for t in self.tiers if not t.persistent]
            if memory:
                self._tier_put(memory[-1], namespace, key, value, meta)
            return value, meta
        # the tiers keep one copy of their own (shared among them, read only): the caller keeps
        # the producer's value and may edit it in place, even before a background write ran
        value = values.move(value, None, copy=True)
        for tier in self.tiers:
            if not tier.persistent:
                self._tier_put(tier, namespace, key, value, meta)
        self._write_later(self.tiers, namespace, key, meta, value)
        return value, meta

    def get_or_compute(self, key: str, compute: Callable[[], Any], *, namespace: str = SHARED_NAMESPACE,
                       label: str | Callable[[], str] = "", pinned: bool | Callable[[], bool] = False,
                       by_reference: bool = False, ttl_seconds: float | None = None, to_device=None) -> Outcome:
        """label and pinned may be functions: they are called only when the value is stored (a miss),
        so a hit does not pay for them."""
        if not self.enabled:
            start = time.perf_counter()
            value = compute()
            return Outcome(value, False, None, 0.0, time.perf_counter() - start)
        while True:
            with self._lock:
                flight = self._flights.get((namespace, key))
                leader = flight is None
                if leader:
                    flight = self._flights[(namespace, key)] = _Flight()
            if leader:
                break
            flight.done.wait()
            if flight.ok:  # another caller computed it: counted as a hit for this caller
                self._count(namespace, True, flight.compute_seconds)
                value = _handed_out(flight.value, flight.devices, to_device)
                return Outcome(value, True, IN_FLIGHT, flight.compute_seconds, 0.0)
            # the leader failed: try again, possibly as the new leader
        try:
            # waiters get copies of what the tiers hold, never of a value a caller may edit
            found = self._lookup(key, namespace, to_device)
            if found is not None:
                hit, held, meta = found
                flight.value, flight.devices = held, meta.devices
                flight.ok, flight.compute_seconds = True, hit.saved_seconds
                return Outcome(hit.value, True, hit.tier, hit.saved_seconds, 0.0)
            start = time.perf_counter()
            value = compute()
            elapsed = time.perf_counter() - start
            held, meta = self._put(key, value, namespace, elapsed, label, pinned, by_reference, ttl_seconds)
            flight.value, flight.devices = held, meta.devices
            flight.ok, flight.compute_seconds = True, elapsed
            return Outcome(value, False, None, 0.0, elapsed)
        finally:
            with self._lock:
                self._flights.pop((namespace, key), None)
            flight.done.set()

    # -- management --------------------------------------------------------------------
    def delete(self, key: str, *, namespace: str | None = None) -> int:
        removed = 0
        for tier in self.tiers:
            namespaces = [namespace] if namespace is not None else list(tier.stats())
            for ns in namespaces:
                try:
                    removed += bool(tier.delete(ns, key))
                except Exception as exc:
                    tier.report_failure("delete", exc)
        return removed

    def clear(self, *, namespace: str | None = None, tier: str | None = None) -> int:
        removed = 0
        for t in self.tiers:
            if tier is not None and t.name != tier:
                continue
            try:
                removed += t.clear(namespace)
            except Exception as exc:
                t.report_failure("clear", exc)
        return removed

    def stats(self) -> dict:
        tiers = {}
        entries = nbytes = evictions = 0
        for t in self.tiers:
            try:
                per_ns = t.stats()
            except Exception as exc:
                t.report_failure("report statistics", exc)
                per_ns = {}
            tiers[t.name] = {ns: s.as_dict() for ns, s in per_ns.items()}
            for s in per_ns.values():
                entries, nbytes, evictions = entries + s.entries, nbytes + s.bytes, evictions + s.evictions
        with self._lock:
            by_ns = {ns: {"hits": c[0], "misses": c[1], "saved_seconds": round(c[2], 6)}
                     for ns, c in self._counts.items()}
        totals = {"entries": entries, "bytes": nbytes, "evictions": evictions,
                  "hits": sum(c["hits"] for c in by_ns.values()),
                  "misses": sum(c["misses"] for c in by_ns.values()),
                  "saved_seconds": round(sum(c["saved_seconds"] for c in by_ns.values()), 6)}
        return {"enabled": self.enabled, "tiers": tiers, "totals": totals, "namespaces": by_ns,
                "writes": self.writes.stats()}

    def recent_keys(self, namespace: str, limit: int = 20) -> list[tuple[str, str]]:
        """(key, label) most recent first across the local tiers, each key once. Each tier answers
        with at most `limit` of its most recently used entries, so a miss explanation costs the
        same at 100 entries as at 100,000."""
        out, seen = [], set()
        for t in self.tiers:
            labels = getattr(t, "labels", None)
            if labels is None:
                continue
            try:
                pairs = labels(namespace, limit)
            except Exception:
                continue
            for k, label in pairs:
                if k not in seen:
                    seen.add(k)
                    out.append((k, label))
        return out[:limit]

    def configure_tier(self, name: str, **caps) -> bool:
        tier = self.tier(name)
        if tier is None:
            return False
        tier.configure(**caps)
        return True

    def close(self) -> None:
        """Finish the queued writes, then close the tiers."""
        self.writes.close()
        for tier in self.tiers:
            tier_close = getattr(tier, "close", None)
            if tier_close is not None:
                tier_close()
