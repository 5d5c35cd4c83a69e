"""Entries counted once across the local tiers: an encoding kept in RAM and on disk is one
entry with two copies.

The disk tier's count comes from its index totals; only the memory tiers' keys are
checked against it, so the cost grows with what the memory caps hold, never with the
disk's hundreds of thousands of entries. The count is remembered until a tier's totals
change, so the stats panel polling an idle cache costs a few small queries. Redis is
shared with other workers and reports its own count.
"""
from __future__ import annotations

import threading
from typing import Iterable

from .names import REDIS


class DistinctEntries:
    def __init__(self):
        self._lock = threading.Lock()
        self._memo: tuple | None = None   # (usage snapshot, namespaces) -> count
        self._count = 0

    def count(self, tiers: Iterable, namespaces: Iterable[str] | None = None) -> int:
        keep = None if namespaces is None else frozenset(namespaces)
        local = [t for t in tiers if t.name != REDIS]
        usage = {}
        for tier in local:
            try:
                usage[tier.name] = tier.usage()
            except Exception:  # a failing tier is reported by its own health flag
                usage[tier.name] = {}
        snapshot = (tuple((name, tuple(sorted(u.items()))) for name, u in usage.items()), keep)
        with self._lock:
            if snapshot == self._memo:
                return self._count
        count = _count(local, usage, keep)
        with self._lock:
            self._memo, self._count = snapshot, count
        return count


def _count(tiers: list, usage: dict, keep: frozenset | None) -> int:
    """The disk tier's entries plus the memory tiers' keys it does not hold (Recall builds
    at most one tier that persists: the disk)."""
    disk = next((t for t in tiers if hasattr(t, "present")), None)
    memory = [t for t in tiers if t is not disk]
    wanted = lambda ns: keep is None or ns in keep  # noqa: E731
    total = 0 if disk is None else sum(n for ns, (n, _) in usage[disk.name].items() if wanted(ns))
    for ns in {ns for t in memory for ns in usage[t.name] if wanted(ns)}:
        keys: set = set()
        for tier in memory:
            try:
                keys.update(tier.keys(ns))
            except Exception:
                continue
        if disk is not None and keys:
            try:
                keys -= disk.present(ns, list(keys))
            except Exception:
                pass
        total += len(keys)
    return total
