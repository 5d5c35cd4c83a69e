"""The memory tiers: hot (accelerator memory) and warm (RAM).

Values are kept as live objects (no serialisation), moved to the tier's device
when it has one. A tier on an accelerator keeps only values whose producer returned
tensors there: a CPU-born latent would be copied to VRAM and back on every hit for
nothing. Entries with no device record (live objects by reference) are kept as they
are. The bytes of a put are reserved before the copy to the device
starts, so the cap holds even while a copy runs: evict before an out-of-memory
error, never after.
"""
import time
from typing import Callable

import torch

from . import values
from .tier import Entry, EntryMeta, LruIndex, Slot, Tier


class MemoryTier(Tier):
    persistent = False

    def __init__(self, name: str, max_bytes: int, max_entries: int | None = None,
                 ttl_seconds: float | None = None, device=None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(name, clock=clock)
        self.device = device
        self._index = LruIndex(max_bytes, max_entries, ttl_seconds)

    @property
    def max_bytes(self) -> int:
        return self._index.max_bytes

    def describe(self) -> str:
        cap = f"{self._index.max_bytes / 2**30:.3g}GB"
        if self._index.max_entries is not None:
            cap += f"/{self._index.max_entries} entries"
        where = f" on {self.device}" if self.device is not None and str(self.device) != "cpu" else ""
        return f"{self.name} {cap}{where}"

    def get(self, namespace: str, key: str) -> Entry | None:
        with self._lock:
            slot, expired = self._index.lookup(namespace, key, self.clock())
            if expired is not None:
                self._count(namespace).evictions += 1
            if slot is None:
                self._count(namespace).misses += 1
                return None
            c = self._count(namespace)
            c.hits += 1
            c.saved_seconds += slot.meta.compute_seconds
            return Entry(slot.payload, slot.meta)

    def accepts(self, meta: EntryMeta) -> bool:
        """False for a value born off this tier's accelerator (the VRAM tier skips CPU-born values)."""
        device = None if self.device is None else torch.device(self.device)
        if device is None or device.type == "cpu" or meta.devices is None:
            return True
        return any(torch.device(d).type == device.type for d in meta.devices)

    def put(self, namespace: str, key: str, value, *, meta: EntryMeta, size: int | None = None) -> bool:
        if not self.accepts(meta):
            return False
        size = values.nbytes(value) if size is None else int(size)
        with self._lock:
            ok, evicted = self._index.reserve(namespace, key, size, self.clock())
            self._count_evictions(evicted, (namespace, key))
        if not ok:
            return False
        try:
            # the copy runs outside the lock; a live object by reference is kept as it is
            stored = value if meta.devices is None else values.move(value, self.device)
        except Exception as exc:  # e.g. out of device memory: a skipped write, not an error
            with self._lock:
                self._index.release(size)
            self.report_failure("store a value", exc)
            return False
        with self._lock:
            now = self.clock()
            slot = Slot(size, meta, stored, now)
            self._index.commit(namespace, key, slot)
        return True

    def _count_evictions(self, evicted, own_key) -> None:
        for k, _ in evicted:
            if k != own_key:
                self._count(k[0]).evictions += 1

    def delete(self, namespace: str, key: str) -> bool:
        with self._lock:
            return self._index.remove(namespace, key) is not None

    def clear(self, namespace: str | None = None) -> int:
        with self._lock:
            return len(self._index.clear(namespace))

    def keys(self, namespace: str) -> list[str]:
        with self._lock:
            return self._index.keys(namespace)

    def labels(self, namespace: str, limit: int | None = None) -> list[tuple[str, str]]:
        """(key, label) of recently used entries, newest first: a bounded list, for miss explanations."""
        with self._lock:
            return self._index.recent(namespace, limit)

    def usage(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            # expired entries are dropped here too, so statistics never count dead entries
            self._count_evictions(self._index.purge_expired(self.clock()), None)
            return self._index.usage()

    def configure(self, *, max_bytes=None, max_entries=None, ttl_seconds=None) -> None:
        with self._lock:
            evicted = self._index.reconfigure(self.clock(), max_bytes=max_bytes, max_entries=max_entries,
                                              ttl_seconds=ttl_seconds)
            self._count_evictions(evicted, None)
