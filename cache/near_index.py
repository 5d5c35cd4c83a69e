"""Candidates for a near match: entries of one group whose perceptual hash is within a Hamming radius.

Multi-index hashing: the 64-bit hash is cut into four 16-bit bands, each indexed (with
the group) in SQLite. Two hashes at most 7 bits apart have, by pigeonhole, one band at
most 1 bit apart; so a lookup probes, per band, the band's value and its 16 one-bit
neighbours (4 x 17 index seeks) and then checks the full distance of what it finds. The
cost depends on how many entries share a band value, not on how many entries there are.

The index lives beside the disk tier (its own SQLite file) so a restart finds the
candidates without reading any entry, or in memory when there is no disk tier. It only
points at entries: a row whose entry was evicted is found stale on use and dropped by the
caller (`discard`); rows past max_rows are dropped oldest first.
"""
import logging
import sqlite3
import threading
from pathlib import Path

from .perceptual import hamming

_log = logging.getLogger("recall.cache")

BANDS = 4
BAND_BITS = 16
MAX_RADIUS = 7           # the most the four-band probe guarantees to find (see above)
_MASK = (1 << BAND_BITS) - 1
_SCHEMA_VERSION = 2
_CACHE_KB = 32 * 1024    # SQLite page cache: the whole index at 100k entries (~10 MB) stays in memory
_MAX_GROUP_IDS = 4096    # group key -> row id memo

# Groups are numbered so that each row and each band index holds a small integer, not the
# 40-character group key: the index at 100k entries fits in the page cache.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (id INTEGER PRIMARY KEY, grp TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS near (
    gid INTEGER NOT NULL, key TEXT NOT NULL, hash INTEGER NOT NULL,
    b0 INTEGER NOT NULL, b1 INTEGER NOT NULL, b2 INTEGER NOT NULL, b3 INTEGER NOT NULL,
    PRIMARY KEY (gid, key));
CREATE INDEX IF NOT EXISTS near_b0 ON near (gid, b0);
CREATE INDEX IF NOT EXISTS near_b1 ON near (gid, b1);
CREATE INDEX IF NOT EXISTS near_b2 ON near (gid, b2);
CREATE INDEX IF NOT EXISTS near_b3 ON near (gid, b3);
"""


def bands(h: int) -> list[int]:
    return [(h >> (BAND_BITS * i)) & _MASK for i in range(BANDS)]


def _signed(h: int) -> int:
    """SQLite integers are signed 64-bit: store the hash's bit pattern as one."""
    return h - (1 << 64) if h >= 1 << 63 else h


def _unsigned(h: int) -> int:
    return h + (1 << 64) if h < 0 else h


def _neighbours(value: int) -> list[int]:
    return [value] + [value ^ (1 << b) for b in range(BAND_BITS)]


class NearIndex:
    """(group, key, hash) rows; candidates(group, hash, radius) -> [(key, distance)], nearest first."""

    def __init__(self, path: Path | None = None, max_rows: int = 1_000_000):
        self.path = None if path is None else Path(path)
        self.max_rows = int(max_rows)
        self._lock = threading.Lock()
        self._gids: dict[str, int] = {}
        self._db = self._open()
        self._rows = self._db.execute("SELECT count(*) FROM near").fetchone()[0]

    def _open(self) -> sqlite3.Connection:
        if self.path is None:
            return self._connect(":memory:")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect(str(self.path))
            if db.execute("PRAGMA user_version").fetchone()[0] not in (0, _SCHEMA_VERSION):
                raise sqlite3.DatabaseError("written by another version")
            db.execute("SELECT gid, key, hash, b0, b1, b2, b3 FROM near LIMIT 1").fetchall()
            return db
        except sqlite3.DatabaseError as exc:
            # an index is only a way to find entries: a damaged one is rebuilt empty, never trusted
            _log.warning("[Recall] near-match index %s is unreadable (%s); starting it afresh.", self.path, exc)
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            return self._connect(str(self.path))

    def _connect(self, where: str) -> sqlite3.Connection:
        db = sqlite3.connect(where, check_same_thread=False, isolation_level=None)
        db.execute(f"PRAGMA cache_size=-{_CACHE_KB}")
        if where != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        return db

    def __len__(self) -> int:
        return self._rows

    def _gid(self, group: str, create: bool) -> int | None:
        """The group's row id (under the lock); None for a group never indexed when not creating."""
        gid = self._gids.get(group)
        if gid is None:
            row = self._db.execute("SELECT id FROM groups WHERE grp = ?", (group,)).fetchone()
            if row is None and not create:
                return None
            if row is None:
                gid = self._db.execute("INSERT INTO groups (grp) VALUES (?)", (group,)).lastrowid
            else:
                gid = row[0]
            if len(self._gids) >= _MAX_GROUP_IDS:
                self._gids.clear()
            self._gids[group] = gid
        return gid

    def add(self, group: str, key: str, h: int) -> None:
        with self._lock:
            row = (self._gid(group, True), key, _signed(h), *bands(h))
            cur = self._db.execute("INSERT OR IGNORE INTO near (gid, key, hash, b0, b1, b2, b3) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            self._rows += cur.rowcount
            if self._rows > self.max_rows:
                self._trim()

    def add_many(self, rows) -> None:
        """(group, key, hash) rows in one transaction (rebuilding an index, filling a benchmark)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                data = [(self._gid(g, True), k, _signed(h), *bands(h)) for g, k, h in rows]
                before = self._db.total_changes
                self._db.executemany("INSERT OR IGNORE INTO near (gid, key, hash, b0, b1, b2, b3) "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?)", data)
                self._rows += self._db.total_changes - before
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._gids.clear()  # ids created in the rolled-back transaction are gone
                raise
            if self._rows > self.max_rows:
                self._trim()

    def _trim(self) -> None:
        excess = self._rows - self.max_rows + max(1, self.max_rows // 10)  # trim in batches, not per add
        cur = self._db.execute("DELETE FROM near WHERE rowid IN (SELECT rowid FROM near ORDER BY rowid LIMIT ?)",
                               (excess,))
        self._rows -= cur.rowcount

    def contains(self, group: str, key: str) -> bool:
        with self._lock:
            gid = self._gid(group, False)
            return gid is not None and self._db.execute(
                "SELECT 1 FROM near WHERE gid = ? AND key = ?", (gid, key)).fetchone() is not None

    def candidates(self, group: str, h: int, radius: int) -> list[tuple[str, int]]:
        if not 0 <= radius <= MAX_RADIUS:
            raise ValueError(f"[Recall] near match: radius {radius} is out of range (expected 0..{MAX_RADIUS}).")
        probes = [_neighbours(b) for b in bands(h)]
        marks = ",".join("?" * (BAND_BITS + 1))
        sql = " UNION ".join(f"SELECT key, hash FROM near WHERE gid = ? AND b{i} IN ({marks})" for i in range(BANDS))
        with self._lock:
            gid = self._gid(group, False)
            if gid is None:
                return []
            rows = self._db.execute(sql, [x for i in range(BANDS) for x in (gid, *probes[i])]).fetchall()
        found = [(key, hamming(h, _unsigned(stored))) for key, stored in rows]
        return sorted([(k, d) for k, d in found if d <= radius], key=lambda kd: (kd[1], kd[0]))

    def discard(self, group: str, key: str) -> None:
        with self._lock:
            gid = self._gid(group, False)
            if gid is None:
                return
            cur = self._db.execute("DELETE FROM near WHERE gid = ? AND key = ?", (gid, key))
            self._rows -= cur.rowcount

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM near")
            self._db.execute("DELETE FROM groups")
            self._gids.clear()
            self._rows = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
