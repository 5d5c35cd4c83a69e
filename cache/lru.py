"""The memory tiers' index: LRU order, TTL and hard byte/entry caps, every operation O(1).

Each entry is one Slot that is also a node of a doubly-linked list (least recent first):
one list of unpinned entries and one of pinned ones, so the victim is always at the front
of one of them. A slot sits in its namespace's dict by key (no tuple keys), the totals per
namespace are running sums, and expiry is a FIFO of slots per lifetime (entries sharing a
lifetime expire in the order they were stored), so purging touches only what expired.
Each namespace also keeps a short ring of its most recently used keys for miss
explanations. Only a TTL change walks the entries (a settings change). About 200 bytes per
entry besides the key, the value and its meta. Not thread-safe: a tier calls it under its lock.
"""
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, eq=False)
class Slot:
    """One entry's bookkeeping, and its node in an LRU list."""
    size: int
    meta: Any                  # EntryMeta
    payload: Any = None        # the value
    stored: float = 0.0        # tier clock at put time (TTL counts from here)
    ns: str = ""
    key: str = ""
    newer: "Slot | None" = None
    older: "Slot | None" = None


class _Order:
    """A circular doubly-linked list of slots around a root, least recent first."""
    __slots__ = ("root", "count")

    def __init__(self):
        self.root = Slot(0, None)
        self.root.newer = self.root.older = self.root
        self.count = 0

    def append(self, s: Slot) -> None:
        last = self.root.older
        s.older, s.newer = last, self.root
        last.newer = self.root.older = s
        self.count += 1

    def unlink(self, s: Slot) -> None:
        s.older.newer, s.newer.older = s.newer, s.older
        s.newer = s.older = None
        self.count -= 1

    def oldest(self) -> Slot | None:
        s = self.root.newer
        return None if s is self.root else s

    def newest_first(self):
        s = self.root.older
        while s is not self.root:
            yield s
            s = s.older


class LruIndex:
    RECENT = 64  # recent keys kept per namespace for miss explanations

    def __init__(self, max_bytes: int, max_entries: int | None, ttl_seconds: float | None):
        self.max_bytes = int(max_bytes)
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._ns: dict[str, dict[str, Slot]] = {}
        self._unpinned, self._pinned = _Order(), _Order()
        self.totals: dict[str, list[int]] = {}  # namespace -> [entries, bytes]
        self.used = 0          # committed bytes
        self.reserved = 0      # bytes of puts in flight
        self.pending = 0       # puts in flight
        self._expiry: dict[float, deque] = {}  # lifetime -> slots in the order they were stored
        self._records = 0
        self._recent: dict[str, "OrderedDict[str, str]"] = {}

    def __len__(self) -> int:
        return self._unpinned.count + self._pinned.count

    def lifetime(self, meta) -> float | None:
        ttls = [t for t in (self.ttl_seconds, meta.ttl_seconds) if t is not None]
        return min(ttls) if ttls else None

    def expiry(self, meta, stored: float) -> float | None:
        """When an entry stored at `stored` (tier clock) expires: the shorter TTL wins."""
        life = self.lifetime(meta)
        return None if life is None else stored + life

    def get(self, ns: str, key: str) -> Slot | None:
        d = self._ns.get(ns)
        return None if d is None else d.get(key)

    def lookup(self, ns: str, key: str, now: float) -> tuple[Slot | None, Slot | None]:
        """(live slot, expired slot removed); a live hit becomes most recent."""
        slot = self.get(ns, key)
        if slot is None:
            return None, None
        expires = self.expiry(slot.meta, slot.stored)
        if expires is not None and now >= expires:
            self.remove(ns, key)
            return None, slot
        order = self._order(slot)
        order.unlink(slot)
        order.append(slot)
        self._note_recent(slot)
        return slot, None

    def _order(self, slot: Slot) -> _Order:
        return self._pinned if slot.meta.pinned else self._unpinned

    def _note_recent(self, slot: Slot) -> None:
        recent = self._recent.get(slot.ns)
        if recent is None:
            recent = self._recent[slot.ns] = OrderedDict()
        recent[slot.key] = slot.meta.label
        recent.move_to_end(slot.key)
        if len(recent) > self.RECENT:
            recent.popitem(last=False)

    def remove(self, ns: str, key: str) -> Slot | None:
        d = self._ns.get(ns)
        slot = None if d is None else d.pop(key, None)
        if slot is None:
            return None
        self._order(slot).unlink(slot)
        self.used -= slot.size
        acc = self.totals[ns]
        acc[0] -= 1
        acc[1] -= slot.size
        if acc[0] == 0:
            del self.totals[ns], self._ns[ns]
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
            evicted.append(((victim.ns, victim.key), self.remove(victim.ns, victim.key)))
        self.reserved += size
        self.pending += 1
        return True, evicted

    def _over(self, size: int) -> bool:
        if self.used + self.reserved + size > self.max_bytes:
            return True
        return self.max_entries is not None and len(self) + self.pending + 1 > self.max_entries

    def _victim(self) -> Slot | None:
        # caps are hard: pinned entries go too when nothing else is left
        return self._unpinned.oldest() or self._pinned.oldest()

    def purge_expired(self, now: float) -> list[tuple[tuple[str, str], Slot]]:
        """Remove entries whose time is up: O(1) per expired entry, nothing for live ones."""
        gone = []
        for life, fifo in self._expiry.items():
            while fifo:
                s = fifo[0]
                if self.get(s.ns, s.key) is s and now < s.stored + life:
                    break  # the oldest live entry of this lifetime: the rest are younger
                fifo.popleft()
                self._records -= 1
                if self.get(s.ns, s.key) is s:
                    gone.append(((s.ns, s.key), self.remove(s.ns, s.key)))
        return gone

    def commit(self, ns: str, key: str, slot: Slot) -> Slot | None:
        """Turn a reservation into an entry; returns a slot it replaced (a concurrent put)."""
        self.reserved -= slot.size
        self.pending -= 1
        old = self.remove(ns, key)
        slot.ns, slot.key = ns, key
        d = self._ns.get(ns)
        if d is None:
            d = self._ns[ns] = {}
            self.totals[ns] = [0, 0]
        d[key] = slot
        self._order(slot).append(slot)
        self.used += slot.size
        acc = self.totals[ns]
        acc[0] += 1
        acc[1] += slot.size
        life = self.lifetime(slot.meta)
        if life is not None:
            fifo = self._expiry.get(life)
            if fifo is None:
                fifo = self._expiry[life] = deque()
            fifo.append(slot)
            self._records += 1
            if self._records > 2 * len(self) + 64:  # drop records of replaced entries now and then
                self._rebuild_expiry()
        self._note_recent(slot)
        return old

    def _slots(self):
        for d in self._ns.values():
            yield from d.values()

    def _rebuild_expiry(self) -> None:
        groups: dict[float, list] = {}
        for s in self._slots():
            life = self.lifetime(s.meta)
            if life is not None:
                groups.setdefault(life, []).append(s)
        self._expiry = {life: deque(sorted(g, key=lambda s: s.stored)) for life, g in groups.items()}
        self._records = sum(len(f) for f in self._expiry.values())

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
            self._rebuild_expiry()
        return self.shrink(now)

    def shrink(self, now: float) -> list[tuple[tuple[str, str], Slot]]:
        """Evict until the (new) caps hold."""
        evicted = self.purge_expired(now)
        while self.used + self.reserved > self.max_bytes or (
                self.max_entries is not None and len(self) + self.pending > self.max_entries):
            victim = self._victim()
            if victim is None:
                break
            evicted.append(((victim.ns, victim.key), self.remove(victim.ns, victim.key)))
        return evicted

    def clear(self, ns: str | None = None) -> list[tuple[tuple[str, str], Slot]]:
        names = list(self._ns) if ns is None else [ns] if ns in self._ns else []
        gone = [((n, k), self.remove(n, k)) for n in names for k in list(self._ns[n])]
        if ns is None:
            self._recent.clear()
            self._expiry, self._records = {}, 0
        else:
            self._recent.pop(ns, None)
        return gone

    def usage(self) -> dict[str, tuple[int, int]]:
        return {ns: (a[0], a[1]) for ns, a in self.totals.items()}

    def keys(self, ns: str) -> list[str]:
        """Every key of a namespace in reverse eviction order: the first listed goes last
        (pinned entries newest first, then the others newest first). A full listing: O(n)."""
        return [s.key for order in (self._pinned, self._unpinned) for s in order.newest_first() if s.ns == ns]

    def recent(self, ns: str, limit: int | None = None) -> list[tuple[str, str]]:
        """(key, label) of up to RECENT recently used live entries of a namespace, newest first."""
        out = []
        for key, label in reversed(self._recent.get(ns, {}).items()):
            if self.get(ns, key) is not None:
                out.append((key, label))
                if limit is not None and len(out) >= limit:
                    break
        return out
