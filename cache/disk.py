"""The cold tier: one safetensors file per entry in sharded folders, surviving restarts.

Layout: <root>/v1/<2 hex>/<xxh3_128(namespace, key)>.safetensors. Each file is
serialize.dumps() output, whose metadata carries the key, the namespace, the
entry's meta and a checksum. Files are written to a temporary name and renamed,
so a reader sees a whole entry or none. The byte index is built lazily from the
folder on first use (never at import); a damaged, truncated or foreign file is
a miss, is removed, and is warned about once. A full disk or an unwritable
folder turns writes into skipped writes with one warning per outage.
"""
import errno
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Callable

import xxhash

from . import serialize
from .errors import CorruptEntry, UnstorableValue
from .tier import Entry, EntryMeta, LruIndex, Slot, Tier

_log = logging.getLogger("recall.cache")
LAYOUT = "v1"
SUFFIX = ".safetensors"
_MAX_HEADER = 16 * 2**20


def _meta_doc(namespace: str, key: str, meta: EntryMeta, stored: float) -> dict:
    return {"namespace": namespace, "key": key, "stored": stored,
            "compute_seconds": meta.compute_seconds, "created": meta.created,
            "label": meta.label, "pinned": meta.pinned, "ttl_seconds": meta.ttl_seconds}


def _entry_meta(doc: dict) -> EntryMeta:
    try:
        ttl = doc.get("ttl_seconds")
        return EntryMeta(float(doc["compute_seconds"]), float(doc["created"]), str(doc.get("label", "")),
                         bool(doc.get("pinned", False)), None if ttl is None else float(ttl))
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptEntry(f"entry metadata is incomplete: {exc}") from exc


class DiskTier(Tier):
    persistent = True

    def __init__(self, name: str, root: Path, max_bytes: int, ttl_seconds: float | None = None,
                 clock: Callable[[], float] = time.time):
        # wall clock by default: entries outlive the process, so TTLs must too
        super().__init__(name, clock=clock)
        self.root = Path(root)
        self._index = LruIndex(max_bytes, None, ttl_seconds)
        self._loaded = False

    def describe(self) -> str:
        return f"{self.name} {self._index.max_bytes / 2**30:.3g}GB at {self.root}"

    def path_for(self, namespace: str, key: str) -> Path:
        digest = xxhash.xxh3_128(f"{namespace}\0{key}".encode("utf-8", "surrogatepass")).hexdigest()
        return self.root / LAYOUT / digest[:2] / (digest + SUFFIX)

    # -- the lazy index --------------------------------------------------------------
    def _ensure_index(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            found = []
            base = self.root / LAYOUT
            try:
                paths = list(base.glob("*/*")) if base.is_dir() else []
            except OSError as exc:
                self.report_failure("read its folder", exc)
                paths = []
            for path in paths:
                record = self._scan_file(path)
                if record is not None:
                    found.append(record)
            found.sort(key=lambda r: r[0])  # oldest use first = LRU order
            for mtime, ns, key, slot in found:
                self._index.slots[(ns, key)] = slot
                self._index.used += slot.size
            doomed = self._index.shrink(self.clock())  # the cap may have been lowered since
            self._loaded = True
        self._unlink_slots(doomed)

    def _scan_file(self, path: Path):
        if path.name.endswith(".tmp"):
            self._unlink(path)  # left by a crash mid-write
            return None
        if not path.name.endswith(SUFFIX):
            return None  # not ours to judge: only entry-named files are removed
        try:
            st = path.stat()
            doc = self._read_header(path)
            m = doc["meta"]
            ns, key = m["namespace"], m["key"]
            if path != self.path_for(ns, key):
                raise CorruptEntry("file name does not match its key")
            meta = _entry_meta(m)
            stored = float(m.get("stored", st.st_mtime))
        except (CorruptEntry, KeyError, TypeError) as exc:
            self._corrupt(path, exc)
            return None
        except OSError:
            return None
        slot = Slot(st.st_size, self._index.expiry(meta, stored), meta, path, stored)
        return st.st_mtime, ns, key, slot

    @staticmethod
    def _read_header(path: Path) -> dict:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CorruptEntry("file shorter than a safetensors header")
            size = int.from_bytes(head, "little")
            if size <= 0 or size > _MAX_HEADER:
                raise CorruptEntry(f"implausible header length {size}")
            header = fh.read(size)
            if len(header) < size:
                raise CorruptEntry("header truncated")
        return serialize.parse_header(header)

    def _corrupt(self, path: Path, exc: Exception) -> None:
        self._unlink(path)
        self.warn_once("corrupt", f"[Recall] cache: removed damaged cache file {path} ({exc}); "
                                  "it counts as a miss. Further damaged files are logged at debug level.")

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            _log.debug("could not remove %s: %s", path, exc)

    def _unlink_slots(self, slots) -> None:
        for _, slot in slots:
            self._unlink(slot.payload)

    # -- the interface -----------------------------------------------------------------
    def get(self, namespace: str, key: str) -> Entry | None:
        self._ensure_index()
        path = self.path_for(namespace, key)
        with self._lock:
            slot, expired = self._index.lookup(namespace, key, self.clock())
            if expired is not None:
                self._count(namespace).evictions += 1
        if expired is not None:
            self._unlink(path)
        if slot is None and (expired is not None or not path.exists()):
            self.record_miss(namespace)
            return None
        # not in our index but on disk: another worker sharing the folder wrote it
        try:
            data = path.read_bytes()
            value, doc = serialize.loads(data)
            if doc.get("namespace") != namespace or doc.get("key") != key:
                raise CorruptEntry("entry belongs to another key or namespace")
            meta = _entry_meta(doc)
        except FileNotFoundError:
            with self._lock:
                self._index.remove(namespace, key)
            self.record_miss(namespace)
            return None
        except CorruptEntry as exc:
            with self._lock:
                self._index.remove(namespace, key)
            self._corrupt(path, exc)
            self.record_miss(namespace)
            return None
        except OSError as exc:
            self.report_failure("read an entry", exc)
            self.record_miss(namespace)
            return None
        if slot is None:
            with self._lock:
                if (namespace, key) not in self._index.slots:
                    stored = float(doc.get("stored", self.clock()))
                    new = Slot(len(data), self._index.expiry(meta, stored), meta, path, stored)
                    self._index.slots[(namespace, key)] = new
                    self._index.used += new.size
                    doomed = self._index.shrink(self.clock())
                else:
                    doomed = []
            self._unlink_slots([d for d in doomed if d[0] != (namespace, key)])
        try:
            os.utime(path)  # the file's mtime carries LRU order across restarts
        except OSError:
            pass
        self.record_hit(namespace, meta.compute_seconds)
        return Entry(value, meta)

    def put(self, namespace: str, key: str, value, *, meta: EntryMeta) -> bool:
        self._ensure_index()
        now = self.clock()
        try:
            blob = serialize.dumps(value, _meta_doc(namespace, key, meta, now))
        except UnstorableValue as exc:
            _log.debug("tier %s skips %s: %s", self.name, key, exc)
            return False
        path = self.path_for(namespace, key)
        with self._lock:
            ok, evicted = self._index.reserve(namespace, key, len(blob), now)
            for k, _ in evicted:
                if k != (namespace, key):
                    self._count(k[0]).evictions += 1
        if not ok:  # the replaced entry's file goes too: it left the index, so it must leave the disk
            self._unlink_slots(evicted)
            return False
        self._unlink_slots([e for e in evicted if e[0] != (namespace, key)])
        tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(blob)
            os.replace(tmp, path)
        except OSError as exc:
            with self._lock:
                self._index.release(len(blob))
            self._unlink(tmp)
            hint = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
            self.report_failure(f"write to {self.root}{hint}", exc)
            return False
        with self._lock:
            self._index.commit(namespace, key, Slot(len(blob), self._index.expiry(meta, now), meta, path, now))
        self.report_ok()
        return True

    def delete(self, namespace: str, key: str) -> bool:
        self._ensure_index()
        with self._lock:
            slot = self._index.remove(namespace, key)
        path = self.path_for(namespace, key)
        existed = slot is not None or path.exists()
        self._unlink(path)
        return existed

    def clear(self, namespace: str | None = None) -> int:
        self._ensure_index()
        with self._lock:
            doomed = [k for k in self._index.slots if namespace is None or k[0] == namespace]
            slots = [(k, self._index.remove(*k)) for k in doomed]
        self._unlink_slots(slots)
        return len(slots)

    def keys(self, namespace: str) -> list[str]:
        self._ensure_index()
        with self._lock:
            return self._index.keys(namespace)

    def labels(self, namespace: str) -> list[tuple[str, str]]:
        self._ensure_index()
        with self._lock:
            return [(k, self._index.slots[(namespace, k)].meta.label) for k in self._index.keys(namespace)]

    def usage(self) -> dict[str, tuple[int, int]]:
        self._ensure_index()
        with self._lock:
            return self._index.usage()

    def configure(self, *, max_bytes=None, max_entries=None, ttl_seconds=None) -> None:
        self._ensure_index()
        with self._lock:
            evicted = self._index.reconfigure(self.clock(), max_bytes=max_bytes, max_entries=max_entries,
                                              ttl_seconds=ttl_seconds)
            for k, _ in evicted:
                self._count(k[0]).evictions += 1
        self._unlink_slots(evicted)
