"""The cold tier: one safetensors file per entry in sharded folders, indexed in SQLite, surviving restarts.

Each file is the entry's blob (tier.encode_entry: the bytes every persistent tier
holds) whose metadata carries the key, the namespace, the entry's meta and a checksum
(disk_files.py has the layout); reads decode it through tier.decode_entry. The index
(disk_index.py, <root>/v1/index.sqlite3) holds every entry's bookkeeping, so a lookup
reads a few index pages and one file whatever the number of entries, also the first
lookup after a restart; workers sharing the folder share the index, and so see each
other's entries and hold one cap together. A put reserves its bytes in the index
(evicting least recently used entries, unpinned first, and expired ones), writes a
temporary file, then renames it into place and marks the row stored in one
transaction: a crash loses at most the entry being written. A missing or damaged
index is rebuilt from the files in the background (disk_sweep.py) while lookups read
the entry's file directly. A damaged file is a miss, is removed, and is warned about
once; a full disk or an unwritable folder turns writes into skipped writes.
"""
import errno
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Callable

from .disk_files import (INDEX_NAME, LAYOUT, NotOurs, entry_id, file_name, is_foreign,
                         read_entry, remove_own, shard_state)
from .disk_index import DB_ERRORS as _DB_ERRORS
from .disk_index import STORED, WRITING, DiskIndex, IndexDamaged, Row, is_damage
from .disk_write import DiskWrites, _token
from .errors import CorruptEntry
from .tier import Blob, EntryMeta, PersistentTier

_log = logging.getLogger("recall.cache")
_TIERS: "weakref.WeakSet[DiskTier]" = weakref.WeakSet()
_INHERITED: list = []  # connections inherited through fork: never used, never closed (SQLite's rule)


class DiskTier(DiskWrites, PersistentTier):
    STALE_WRITE_SECONDS = 600.0  # a reservation this old (tier clock) belongs to a writer that died
    RECENT = 64

    def __init__(self, name: str, root: Path, max_bytes: int, ttl_seconds: float | None = None,
                 clock: Callable[[], float] = time.time, *, max_entries: int | None = None,
                 background: bool = True):
        # wall clock by default: entries outlive the process, so TTLs must too
        super().__init__(name, clock=clock)
        self.root = Path(root)
        self.base = self.root / LAYOUT
        self.max_bytes = int(max_bytes)
        self.max_entries = max_entries
        self.ttl_seconds = None if ttl_seconds is None else float(ttl_seconds)
        self.background = background  # False: maintenance runs only when maintain() is called
        self._db: DiskIndex | None = None
        self._db_pid = 0
        self._rebuild = False       # the next open moves a damaged index aside
        self._complete = False      # the index knows every file (else lookups also try the file)
        self._retry_at = 0.0        # time.monotonic() before which a failed open is not retried
        self._maint: threading.Thread | None = None
        self._stop = threading.Event()
        _TIERS.add(self)

    def describe(self) -> str:
        return f"{self.name} {self.max_bytes / 2**30:.3g}GB at {self.root}"

    def path_for(self, namespace: str, key: str, alt: int = 0) -> Path:
        hexid = entry_id(namespace, key)
        return self.base / hexid[:2] / file_name(hexid, alt)

    def _path(self, hexid: str, alt: int) -> Path:
        return self.base / hexid[:2] / file_name(hexid, alt)

    # -- the index -----------------------------------------------------------------------
    def _index(self) -> DiskIndex | None:
        """The open index, opened on first use (never at construction); None while it cannot be."""
        if self._db is not None and self._db_pid == os.getpid():
            return self._db
        if self._db is not None:
            _INHERITED.append(self._db)
            self._db = None
        if time.monotonic() < self._retry_at:
            return None
        try:
            db = self._connect()
            self._complete = db.get_meta("complete") == 1
            over = self._over(db, 0)
        except (OSError, *_DB_ERRORS) as exc:
            self._retry_at = time.monotonic() + 5.0
            self.report_failure("open its index", exc)
            return None
        self._db, self._db_pid = db, os.getpid()
        if (not self._complete or over) and self.background:
            self._start_maintenance()
        return db

    def _connect(self) -> DiskIndex:
        self.base.mkdir(parents=True, exist_ok=True)
        if shard_state(self.base) != "dir":  # the root may be a link (the admin's choice); nothing below it
            raise NotOurs(errno.ELOOP, "a link or a file where the cache's own folder belongs", str(self.base))
        path = self.base / INDEX_NAME
        if not self._rebuild:
            try:
                return DiskIndex(path)
            except IndexDamaged as exc:
                reason = exc
        else:
            reason = "damaged while in use"
        _log.warning("[Recall] cache: the disk index %s is damaged (%s); it is rebuilt from the entry files "
                     "in the background, and entries stay readable meanwhile.", path, reason)
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(f"{path}{suffix}")
            except FileNotFoundError:
                pass
        self._rebuild = False
        return DiskIndex(path)

    def _db_failure(self, action: str, exc: BaseException) -> None:
        if is_damage(exc) and self._db is not None:
            self._db.close()
            self._db, self._rebuild, self._complete = None, True, False
        self.report_failure(action, exc)

    def _is_complete(self, db: DiskIndex) -> bool:
        if not self._complete:  # another worker may have finished the rebuild
            self._complete = db.get_meta("complete") == 1
        return self._complete

    def _over(self, db: DiskIndex, size: int, entries: int = 0) -> bool:
        n, b = db.totals()
        return b + size > self.max_bytes or (self.max_entries is not None and n + entries > self.max_entries)

    def _drop(self, db: DiskIndex, rows: list[Row]) -> list[Row]:
        """Delete rows and their files (inside the caller's transaction); returns the stored ones."""
        gone = []
        for r in rows:
            if db.delete(r.id, r.token):
                hexid = r.id.hex()
                remove_own(self._path(hexid, r.alt))
                if r.state == WRITING:
                    remove_own(self.base / hexid[:2] / f".{hexid}.{r.token:x}.tmp")
                else:
                    gone.append(r)
        return gone

    def _count_evicted(self, rows) -> None:
        for r in rows:
            self._count(r.ns).evictions += 1

    def _make_room(self, db: DiskIndex, size: int, entries: int, now: float) -> bool:
        """Evict (stale reservations, expired entries, then least recently used) until it fits."""
        gone = self._drop(db, db.stale_writes(now - self.STALE_WRITE_SECONDS, 8))
        gone += self._drop(db, db.expired(now, self.ttl_seconds, 16))
        fits = True
        while self._over(db, size, entries):
            victims = db.oldest(8)
            if not victims:
                fits = False  # only reservations hold the space: refuse rather than pass the cap
                break
            for v in victims:
                gone += self._drop(db, [v])
                if not self._over(db, size, entries):
                    break
        self._count_evicted(gone)
        return fits

    def purge_expired(self, batch: int = 1000) -> int:
        """Remove every expired entry (each costs O(log n); live entries are not read)."""
        return self._drop_in_batches("expire entries", lambda db, n: db.expired(self.clock(), self.ttl_seconds, n),
                                     batch, evictions=True)

    def _drop_in_batches(self, action: str, select, batch: int, *, evictions: bool) -> int:
        """Drop what select(db, batch) returns, one transaction a batch (lookups get through in
        between), until a batch comes back short; returns how many stored entries went."""
        removed = 0
        while True:
            with self._lock:
                db = self._index()
                if db is None:
                    return removed
                try:
                    with db.write():
                        rows = select(db, batch)
                        gone = self._drop(db, rows)
                except _DB_ERRORS as exc:
                    self._db_failure(action, exc)
                    return removed
                if evictions:
                    self._count_evicted(gone)
            removed += len(gone)
            if len(rows) < batch:
                return removed

    # -- the interface -------------------------------------------------------------------
    def get_blob(self, namespace: str, key: str) -> Blob | None:
        hexid = entry_id(namespace, key)
        id_ = bytes.fromhex(hexid)
        row, direct = None, False
        with self._lock:
            db = self._index()
            try:
                if db is None:
                    direct = True  # no index (read-only folder, say): read the file itself
                else:
                    row = db.row(id_)
                    if row is not None and ((row.ns, row.key) != (namespace, key) or row.state != STORED):
                        row = None  # another key with the same 128-bit id, or still being written
                    elif row is not None and row.expired(self.clock(), self.ttl_seconds):
                        with db.write():
                            self._count_evicted(self._drop(db, [row]))
                        row = None
                    elif row is None:
                        direct = not self._is_complete(db)  # a rebuild is under way: the file may be unknown
            except _DB_ERRORS as exc:
                self._db_failure("read its index", exc)
                row, direct = None, True
        if row is None and not direct:
            return None
        path = self._path(hexid, row.alt if row is not None else 0)
        try:
            if shard_state(path.parent) != "dir" or (direct and shard_state(self.base) != "dir"):
                raise NotOurs(errno.ENOTDIR, "the shard is not a plain folder", str(path.parent))
            data = read_entry(path)
        except (FileNotFoundError, NotADirectoryError, NotOurs) as exc:
            _log.debug("tier %s: no entry file for %s: %s", self.name, key, exc)
            self._forget(id_, None if row is None else row.token)
            return None
        except OSError as exc:
            self.report_failure("read an entry", exc)
            return None
        return Blob(data, (id_, row, path))

    def blob_used(self, namespace: str, key: str, found: Blob, meta: EntryMeta) -> None:
        id_, row, _ = found.where
        with self._lock:
            db = self._index()
            if db is None:
                return
            try:
                with db.write():
                    if row is not None:
                        db.touch(id_, row.token)
                        return
                    # found by its file during a rebuild: adopt it now; its age counts from its creation
                    expires = None if meta.ttl_seconds is None else meta.created + meta.ttl_seconds
                    if db.insert(Row(id_, namespace, key, len(found.data), db.next_lru(), meta.created, expires,
                                     meta.label, meta.pinned, STORED, _token(), 0)):
                        self._make_room(db, 0, 0, self.clock())
            except _DB_ERRORS as exc:
                self._db_failure("update its index", exc)

    def _forget(self, id_: bytes, token: int | None) -> None:
        """Drop the index row of id_ written with token (None: there is no row to drop)."""
        if token is None:
            return
        with self._lock:
            db = self._index()
            try:
                if db is not None:
                    db.delete(id_, token)
            except _DB_ERRORS as exc:
                self._db_failure("update its index", exc)

    def blob_damaged(self, namespace: str, key: str, found: Blob, exc: CorruptEntry) -> None:
        id_, row, path = found.where
        if is_foreign(found.data):
            self._forget(id_, None if row is None else row.token)
            self.warn_once("foreign", f"[Recall] cache: {path} is not a Recall cache entry (a safetensors file "
                                      "without Recall's metadata); it is left in place and counts as a miss.")
            return
        removed, why = False, "the index is unavailable"
        with self._lock:
            db = self._index()
            try:
                if db is not None:
                    with db.write():
                        current = db.row(id_)
                        if current is None or (row is not None and current.token == row.token):
                            if current is not None:
                                db.delete(id_, current.token)
                            removed, why = remove_own(path)
                        else:
                            removed, why = True, ""  # rewritten meanwhile: the new file is not the damaged one
                else:
                    removed, why = remove_own(path)
            except _DB_ERRORS as err:
                self._db_failure("update its index", err)
        if removed:
            self.warn_once("corrupt", f"[Recall] cache: removed damaged cache file {path} ({exc}); it counts as "
                                      "a miss. Further damaged files are logged at debug level.")
        else:
            self.warn_once("corrupt-kept", f"[Recall] cache: damaged cache file {path} ({exc}) could not be "
                                           f"removed ({why}); it counts as a miss. Check the folder's permissions.")

    def delete(self, namespace: str, key: str) -> bool:
        hexid = entry_id(namespace, key)
        id_ = bytes.fromhex(hexid)
        with self._lock:
            db = self._index()
            if db is None:
                return False
            try:
                with db.write():
                    row = db.row(id_)
                    if row is not None and (row.ns, row.key) == (namespace, key):
                        return bool(self._drop(db, [row]))
                    if row is None and not self._is_complete(db):
                        path = self._path(hexid, 0)
                        existed = path.is_file()
                        return remove_own(path)[0] and existed
            except _DB_ERRORS as exc:
                self._db_failure("delete", exc)
        return False

    def clear(self, namespace: str | None = None) -> int:
        return self._drop_in_batches("clear", lambda db, n: db.namespace_rows(namespace, n), 500, evictions=False)

    def keys(self, namespace: str) -> list[str]:
        self.purge_expired()
        with self._lock:
            db = self._index()
            return [] if db is None else db.keys(namespace)

    def present(self, namespace: str, keys: list[str]) -> set[str]:
        """The keys among `keys` stored here, from the index alone (no file is read)."""
        ids = {bytes.fromhex(entry_id(namespace, k)): k for k in keys}
        with self._lock:
            db = self._index()
            try:
                return set() if db is None else {ids[i] for i in db.stored(list(ids))}
            except _DB_ERRORS as exc:
                self._db_failure("read its index", exc)
                return set()

    def labels(self, namespace: str, limit: int | None = None) -> list[tuple[str, str]]:
        """(key, label) of the most recently used entries, newest first: a bounded list, for miss explanations."""
        with self._lock:
            db = self._index()
            try:
                return [] if db is None else db.recent(namespace, self.RECENT if limit is None else limit)
            except _DB_ERRORS as exc:
                self._db_failure("read its index", exc)
                return []

    def usage(self) -> dict[str, tuple[int, int]]:
        self.purge_expired()  # statistics never count dead entries
        with self._lock:
            db = self._index()
            try:
                return {} if db is None else db.usage()
            except _DB_ERRORS as exc:
                self._db_failure("read its index", exc)
                return {}

    def configure(self, *, max_bytes=None, max_entries=None, ttl_seconds=None) -> None:
        with self._lock:
            if max_bytes is not None:
                self.max_bytes = int(max_bytes)
            if max_entries is not None:
                self.max_entries = int(max_entries)
            if ttl_seconds is not None:
                self.ttl_seconds = float(ttl_seconds)  # applied at query time: no row is rewritten
            db = self._index()
            if db is None:
                return
            try:
                with db.write():
                    self._make_room(db, 0, 0, self.clock())
            except _DB_ERRORS as exc:
                self._db_failure("evict", exc)

    # -- background maintenance ----------------------------------------------------------
    def _start_maintenance(self) -> None:
        if self._maint is not None and self._maint.is_alive():
            return
        self._maint = threading.Thread(target=self.maintain, name="recall-disk-maintenance", daemon=True)
        self._maint.start()

    def maintain(self) -> None:
        """Rebuild the index from the files if it is incomplete, then enforce the caps (a cap lowered
        while the pack was down). Runs on its own thread and connection; callable directly (tests)."""
        from .disk_sweep import run_maintenance
        run_maintenance(self)

    def wait_for_maintenance(self, timeout: float | None = None) -> None:
        thread = self._maint
        if thread is not None:
            thread.join(timeout)

    def close(self) -> None:
        self._stop.set()
        self.wait_for_maintenance(10.0)
        with self._lock:
            if self._db is not None and self._db_pid == os.getpid():
                self._db.close()
            self._db = None


def _after_fork_in_child() -> None:
    for tier in list(_TIERS):
        tier._lock = threading.RLock()  # a lock held by a parent thread at the fork would never be freed
        tier._maint = None
        tier._stop = threading.Event()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
