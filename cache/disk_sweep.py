"""Background maintenance of the disk tier: rebuild a missing or damaged index from the files, enforce caps.

Runs on its own thread and SQLite connection, never on a workflow's path: lookups meanwhile
read an unknown entry's file directly (one open, O(1)). The rebuild lists the plain shard
folders, adopts each entry file the index does not know (in the order of the files' mtimes,
which every hit refreshes, so LRU order survives), removes damaged files and temporary files
left by a crashed writer, and leaves everything else - links, other names, someone else's
safetensors files - alone. Work is done in small transactions so other workers keep writing.
"""
import logging
import sqlite3
import time

from . import serialize
from .disk_files import (INDEX_NAME, entry_id, header_doc, is_temporary, parse_name, read_head, remove_own,
                         shard_files, shards)
from .disk_index import STORED, DiskIndex, IndexDamaged, Row
from .errors import CorruptEntry
from .tier import EntryMeta

_log = logging.getLogger("recall.cache")
BATCH = 256
STALE_TMP_SECONDS = 3600.0  # wall clock (file mtimes): a temporary file this old belongs to a dead writer


def run_maintenance(tier) -> None:
    with tier._lock:
        if tier._index() is None:
            return
    try:
        db = DiskIndex(tier.base / INDEX_NAME)
    except (OSError, sqlite3.Error, IndexDamaged) as exc:
        _log.debug("disk maintenance could not open the index: %s", exc)
        return
    try:
        if db.get_meta("complete") != 1:
            rebuild(tier, db)
        if not tier._stop.is_set():
            shrink(tier, db)
    except (OSError, sqlite3.Error) as exc:
        _log.warning("[Recall] cache: maintenance of the disk cache at %s stopped: %s. It is retried at "
                     "the next start.", tier.root, exc)
    finally:
        db.close()


def _row(head: bytes, hexid: str, alt: int, size: int, lru: int):
    """A Row for an entry file, "foreign" for someone else's safetensors file, "damaged" otherwise."""
    top = header_doc(head)
    if top is None:
        return "damaged"
    if not (isinstance(top.get("__metadata__"), dict) and "recall" in top["__metadata__"]):
        return "foreign"
    try:
        m = serialize.parse_header(head[8:])["meta"]
        ns, key = m["namespace"], m["key"]
        meta = EntryMeta.from_doc(m)
    except (CorruptEntry, KeyError, TypeError, ValueError):
        return "damaged"
    if not isinstance(ns, str) or not isinstance(key, str) or entry_id(ns, key) != hexid:
        return "damaged"  # a copy under another entry's name
    # the blob carries no tier-specific time: an adopted entry's age counts from its creation
    expires = None if meta.ttl_seconds is None else meta.created + meta.ttl_seconds
    return Row(bytes.fromhex(hexid), ns, key, size, lru, meta.created, expires, meta.label, meta.pinned, STORED,
               int.from_bytes(bytes.fromhex(hexid)[:7], "little"), alt)


def rebuild(tier, db: DiskIndex) -> None:
    files = []
    wall = time.time()
    for shard in shards(tier.base):
        for name, mtime, size in shard_files(shard):
            parsed = parse_name(name)
            if parsed is not None and parsed[0][:2] == shard.name:
                files.append((mtime, parsed[0], parsed[1]))
            elif is_temporary(name) and wall - mtime > STALE_TMP_SECONDS:
                remove_own(shard / name)
        if tier._stop.is_set():
            return
    files.sort()
    adopted = removed = 0
    for start in range(0, len(files), BATCH):
        if tier._stop.is_set():
            return
        batch = files[start:start + BATCH]
        known = db.known([bytes.fromhex(h) for _, h, _ in batch])
        now = tier.clock()
        rows, doomed = [], []
        for i, (mtime, hexid, alt) in enumerate(batch):
            id_ = bytes.fromhex(hexid)
            path = tier._path(hexid, alt)
            if id_ in known:
                if known[id_] != alt:
                    doomed.append(path)  # a second file for one entry: the index keeps the other
                continue
            try:
                head, size = read_head(path)
            except OSError:
                continue
            row = _row(head, hexid, alt, size, start + i - len(files))  # older than any use since
            if row == "foreign":
                continue
            if row == "damaged" or row.expired(now, tier.ttl_seconds):
                doomed.append(path)
                continue
            known[id_] = alt
            rows.append(row)
        with db.write():
            adopted += sum(db.insert(r) for r in rows)  # a worker may have stored one meanwhile
            for path in doomed:
                removed += remove_own(path)[0]
        shrink(tier, db)
    with db.write():
        db.set_meta("complete", 1)
    tier._complete = True
    _log.info("[Recall] cache: rebuilt the disk index at %s: %d entries adopted, %d damaged or expired files "
              "removed.", tier.root, adopted, removed)


def shrink(tier, db: DiskIndex) -> None:
    """Expired entries, then least recently used ones, until the tier's caps hold."""
    while not tier._stop.is_set():
        with db.write():
            gone = tier._drop(db, db.expired(tier.clock(), tier.ttl_seconds, BATCH))
            if not gone:
                n, b = db.totals()
                for victim in db.oldest(BATCH):
                    if b <= tier.max_bytes and (tier.max_entries is None or n <= tier.max_entries):
                        break
                    if tier._drop(db, [victim]):
                        gone.append(victim)
                        n, b = n - 1, b - victim.size
        with tier._lock:
            tier._count_evicted(gone)
        if not gone:
            return
