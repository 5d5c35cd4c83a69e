"""The disk tier's write path: reserve the bytes in the index, write a temporary file, rename it in.

The bytes are the entry's blob (tier.encode_entry), the same for every persistent tier.

A put first reserves its bytes (a row marked as being written, after evicting what must
go), so the cap holds for every process sharing the folder even while files are being
written; the rename into place and the row's change to stored happen in one transaction,
and a reservation whose writer died is released by a later put. The file name is the
entry's id, or an alternate beside it when something that is not an entry holds the name.
"""
import errno
import logging
import os
from pathlib import Path

from .disk_files import MAX_ALT, entry_id, is_foreign, read_head, remove_own, shard_state
from .disk_index import DB_ERRORS as _DB_ERRORS
from .disk_index import WRITING, Row
from .tier import EntryMeta

_log = logging.getLogger("recall.cache")


def _token() -> int:
    return int.from_bytes(os.urandom(8), "little") >> 2  # urandom: a forked child must not repeat its parent


class DiskWrites:
    """put_blob() and its steps; mixed into DiskTier (which owns the index, the lock and the caps)."""

    def put_blob(self, namespace: str, key: str, blob: bytes, meta: EntryMeta) -> bool:
        now = self.clock()
        hexid = entry_id(namespace, key)
        id_, token, size = bytes.fromhex(hexid), _token(), len(blob)
        shard = self.base / hexid[:2]
        with self._lock:
            db = self._index()
            if db is None or not self._shard_ready(shard):
                return False
            try:
                with db.write():
                    alt = self._reserve(db, id_, hexid, namespace, key, size, meta, now, token)
            except _DB_ERRORS as exc:
                self._db_failure("reserve space", exc)
                return False
            except OSError as exc:
                self.report_failure(f"write to {self.root}", exc)
                return False
        if alt is None:
            return False
        tmp = shard / f".{hexid}.{token:x}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(blob)
        except OSError as exc:
            remove_own(tmp)
            self._forget(id_, token)
            hint = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
            self.report_failure(f"write to {self.root}{hint}", exc)
            return False
        placed = self._place(id_, token, tmp, self._path(hexid, alt))
        if not placed:
            remove_own(tmp)
            return False
        self.report_ok()
        return True

    def _shard_ready(self, shard: Path) -> bool:
        state = shard_state(shard)
        if state == "missing":
            try:
                shard.mkdir(exist_ok=True)
            except OSError as exc:
                self.report_failure(f"write to {self.root}", exc)
                return False
            state = shard_state(shard)
        if state == "dir":
            return True
        self.warn_once("shard", f"[Recall] cache: {shard} is a link or a file, not a folder of the cache "
                                "(expected a plain folder); entries that belong there are not stored on disk "
                                "and nothing is read or removed through it. Remove it to store them.")
        return False

    def _reserve(self, db, id_, hexid, namespace, key, size, meta, now, token) -> int | None:
        """Inside a write transaction: room for the entry and its reservation row; the file name to use."""
        old = db.row(id_)
        if old is not None:  # the replaced value is stale whatever happens next: row and file go
            db.delete(id_)
            remove_own(self._path(hexid, old.alt))
        if size > self.max_bytes or (self.max_entries is not None and self.max_entries < 1):
            return None
        if not self._make_room(db, size, 1, now):
            return None
        alt = self._free_name(hexid)
        if alt is None:
            return None
        expires = None if meta.ttl_seconds is None else now + meta.ttl_seconds
        db.insert(Row(id_, namespace, key, size, 0, now, expires, meta.label, meta.pinned, WRITING, token, alt),
                  replace=True)
        return alt

    def _free_name(self, hexid: str) -> int | None:
        """The first of <id>.safetensors, <id>.1.safetensors, ... not held by something that isn't ours."""
        for alt in range(MAX_ALT + 1):
            path = self._path(hexid, alt)
            try:
                head, _ = read_head(path)
            except FileNotFoundError:
                return alt
            except OSError:  # a folder, a link, a FIFO: not ours to replace
                head = None
            if head is not None and not is_foreign(head):
                return alt  # a damaged or orphaned entry of ours: replaced
            self.warn_once("name-taken", f"[Recall] cache: {path} is not a cache entry (a folder, a link or "
                                         "someone else's file); the entry is stored under another name beside it.")
        return None

    def _place(self, id_: bytes, token: int, tmp: Path, path: Path) -> bool:
        """Rename the written file into place and mark its row stored, together."""
        with self._lock:
            db = self._index()
            if db is None:
                return False
            try:
                with db.write():
                    row = db.row(id_)
                    if row is None or row.token != token:
                        return False  # replaced, evicted or cleared while it was being written
                    os.replace(tmp, path)
                    db.mark_stored(id_, token)
                return True
            except _DB_ERRORS as exc:
                self._db_failure("update its index", exc)
            except OSError as exc:
                self.report_failure(f"write to {self.root}", exc)
                try:
                    with db.write():
                        db.delete(id_, token)
                except _DB_ERRORS:
                    pass
            return False
