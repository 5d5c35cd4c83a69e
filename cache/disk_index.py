"""The disk tier's persistent index: one SQLite database (WAL mode) beside the entry files.

A row per entry: its id (xxh3_128 of namespace and key, which is also the file's name),
namespace, key, size, LRU stamp, when it was stored, its own expiry, label, pin, and
whether it is still being written. Every query the tier makes walks an index, so a
lookup, a put, an eviction or an expiry costs O(log n) whatever the number of entries,
and the first lookup after a restart reads a few pages instead of every file. Running
per-namespace totals are kept by triggers in the same transactions, so statistics and
cap checks are O(number of namespaces) and right for every process sharing the folder.

Several processes may open the same database: writes run in `BEGIN IMMEDIATE`
transactions (one writer at a time, readers never blocked), and a tier performs the
file operations that go with a row change (rename into place, unlink) inside the
transaction, so the files and the rows never disagree for another process.
Not thread-safe by itself: a tier calls it under its own lock.
"""
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = 1
WRITING, STORED = 0, 1
_BUSY_SECONDS = 5.0  # how long a statement waits for another process's write transaction

_DDL = """
CREATE TABLE IF NOT EXISTS entries(
    id BLOB PRIMARY KEY,          -- xxh3_128(namespace NUL key): the entry file's name
    ns TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,        -- bytes of the file
    lru INTEGER NOT NULL,         -- larger = used more recently
    stored REAL NOT NULL,         -- tier clock when written; the tier's TTL counts from here
    expires REAL,                 -- the entry's own TTL end (NULL: none)
    label TEXT NOT NULL,
    pinned INTEGER NOT NULL,
    state INTEGER NOT NULL,       -- 0 being written (a reservation), 1 stored
    token INTEGER NOT NULL,       -- tells one write of this id from another
    alt INTEGER NOT NULL          -- 0: <id>.safetensors; n: <id>.<n>.safetensors (the name was taken)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_lru ON entries(pinned, lru);
CREATE INDEX IF NOT EXISTS entries_ns ON entries(ns, lru);
CREATE INDEX IF NOT EXISTS entries_stored ON entries(stored);
CREATE INDEX IF NOT EXISTS entries_expires ON entries(expires) WHERE expires IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_writing ON entries(stored) WHERE state = 0;
CREATE TABLE IF NOT EXISTS totals(
    ns TEXT PRIMARY KEY, entries INTEGER NOT NULL, bytes INTEGER NOT NULL,
    writing INTEGER NOT NULL, writing_bytes INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries BEGIN
    INSERT INTO totals(ns, entries, bytes, writing, writing_bytes)
    VALUES (new.ns, new.state, new.state * new.size, 1 - new.state, (1 - new.state) * new.size)
    ON CONFLICT(ns) DO UPDATE SET entries = entries + excluded.entries, bytes = bytes + excluded.bytes,
        writing = writing + excluded.writing, writing_bytes = writing_bytes + excluded.writing_bytes;
END;
CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries BEGIN
    UPDATE totals SET entries = entries - old.state, bytes = bytes - old.state * old.size,
        writing = writing - (1 - old.state), writing_bytes = writing_bytes - (1 - old.state) * old.size
    WHERE ns = old.ns;
    DELETE FROM totals WHERE ns = old.ns AND entries = 0 AND writing = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_changed AFTER UPDATE OF state, size ON entries BEGIN
    UPDATE totals SET entries = entries - old.state + new.state,
        bytes = bytes - old.state * old.size + new.state * new.size,
        writing = writing - (1 - old.state) + (1 - new.state),
        writing_bytes = writing_bytes - (1 - old.state) * old.size + (1 - new.state) * new.size
    WHERE ns = new.ns;
END;
"""
_COLUMNS = "id, ns, key, size, lru, stored, expires, label, pinned, state, token, alt"


@dataclass(frozen=True, slots=True)
class Row:
    id: bytes
    ns: str
    key: str
    size: int
    lru: int
    stored: float
    expires: float | None
    label: str
    pinned: bool
    state: int
    token: int
    alt: int

    def expired(self, now: float, ttl: float | None) -> bool:
        return (ttl is not None and now >= self.stored + ttl) or (self.expires is not None and now >= self.expires)


class IndexDamaged(Exception):
    """The database file is not a usable index (not SQLite, malformed, or another schema)."""


def is_damage(exc: BaseException) -> bool:
    """True for errors that mean the database file itself is broken (not a busy lock or a full disk)."""
    name = getattr(exc, "sqlite_errorname", "")
    return isinstance(exc, IndexDamaged) or name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or (
        type(exc) is sqlite3.DatabaseError)


DB_ERRORS = (sqlite3.Error, IndexDamaged)  # what an index operation may raise


class DiskIndex:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.conn = sqlite3.connect(str(self.path), timeout=_BUSY_SECONDS, isolation_level=None,
                                    check_same_thread=False)
        try:
            self._prepare()
        except BaseException:
            self.conn.close()
            raise

    def _prepare(self) -> None:
        c = self.conn
        try:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash never corrupts, commits stay cheap
            c.execute("PRAGMA cache_size=-2048")     # 2 MiB of pages, whatever the number of entries
            version = self._schema()
            if version is None:
                # idempotent, and serialised with any other process creating it at the same moment
                c.executescript("BEGIN IMMEDIATE;" + _DDL + "INSERT OR IGNORE INTO meta VALUES "
                                f"('schema', {SCHEMA}), ('lru', 0), ('complete', 0); COMMIT;")
                version = self._schema()
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise IndexDamaged(str(exc)) from exc
            raise
        if version != SCHEMA:
            raise IndexDamaged(f"index schema {version!r} (this Recall uses {SCHEMA})")

    def _schema(self):
        has_meta = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
        if not has_meta:
            return None
        row = self.conn.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def write(self):
        """One write transaction; file operations done inside it are seen together with the rows."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- meta ------------------------------------------------------------------------------
    def get_meta(self, k: str, default=None):
        row = self.conn.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, k: str, v) -> None:
        self.conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v", (k, v))

    def next_lru(self) -> int:
        return self.conn.execute("UPDATE meta SET v = v + 1 WHERE k = 'lru' RETURNING v").fetchone()[0]

    # -- rows ------------------------------------------------------------------------------
    def row(self, id_: bytes) -> Row | None:
        r = self.conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE id = ?", (id_,)).fetchone()
        return None if r is None else Row(*r)

    def insert(self, row: Row, *, replace: bool = False) -> bool:
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        cur = self.conn.execute(f"{verb} INTO entries ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                                (row.id, row.ns, row.key, row.size, row.lru, row.stored, row.expires,
                                 row.label, int(row.pinned), row.state, row.token, row.alt))
        return cur.rowcount > 0

    def delete(self, id_: bytes, token: int | None = None) -> bool:
        if token is None:
            cur = self.conn.execute("DELETE FROM entries WHERE id = ?", (id_,))
        else:
            cur = self.conn.execute("DELETE FROM entries WHERE id = ? AND token = ?", (id_, token))
        return cur.rowcount > 0

    def mark_stored(self, id_: bytes, token: int) -> bool:
        cur = self.conn.execute("UPDATE entries SET state = 1, lru = ? WHERE id = ? AND token = ? AND state = 0",
                                (self.next_lru(), id_, token))
        return cur.rowcount > 0

    def touch(self, id_: bytes, token: int) -> None:
        self.conn.execute("UPDATE entries SET lru = ? WHERE id = ? AND token = ?", (self.next_lru(), id_, token))

    def expired(self, now: float, ttl: float | None, limit: int) -> list[Row]:
        """Stored entries whose time is up, through the stored/expires indexes (nothing live is read)."""
        rows = []
        if ttl is not None:
            rows += self.conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE stored <= ? AND state = 1 "
                                      "ORDER BY stored LIMIT ?", (now - ttl, limit)).fetchall()
        rows += self.conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE expires <= ? AND state = 1 "
                                  "ORDER BY expires LIMIT ?", (now, limit)).fetchall()
        return list({r[0]: Row(*r) for r in rows}.values())

    def stale_writes(self, before: float, limit: int) -> list[Row]:
        """Reservations older than `before`: their writer died (or is hopelessly slow)."""
        return [Row(*r) for r in self.conn.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE state = 0 AND stored < ? ORDER BY stored LIMIT ?",
            (before, limit))]

    def oldest(self, limit: int) -> list[Row]:
        """Eviction candidates, least recently used first, unpinned before pinned."""
        return [Row(*r) for r in self.conn.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE state = 1 ORDER BY pinned, lru LIMIT ?", (limit,))]

    def totals(self) -> tuple[int, int]:
        """(entries, bytes) over every namespace, reservations included: what the caps are checked against."""
        n, b = self.conn.execute("SELECT COALESCE(SUM(entries + writing), 0), "
                                 "COALESCE(SUM(bytes + writing_bytes), 0) FROM totals").fetchone()
        return int(n), int(b)

    def usage(self) -> dict[str, tuple[int, int]]:
        return {ns: (n, b) for ns, n, b in self.conn.execute(
            "SELECT ns, entries, bytes FROM totals WHERE entries > 0")}

    def namespace_rows(self, ns: str | None, limit: int) -> list[Row]:
        if ns is None:
            q, args = f"SELECT {_COLUMNS} FROM entries LIMIT ?", (limit,)
        else:
            q, args = f"SELECT {_COLUMNS} FROM entries WHERE ns = ? LIMIT ?", (ns, limit)
        return [Row(*r) for r in self.conn.execute(q, args)]

    def keys(self, ns: str) -> list[str]:
        """Reverse eviction order: the first listed goes last (pinned newest first, then the others)."""
        return [k for (k,) in self.conn.execute(
            "SELECT key FROM entries WHERE ns = ? AND state = 1 ORDER BY pinned DESC, lru DESC", (ns,))]

    def recent(self, ns: str, limit: int) -> list[tuple[str, str]]:
        return [(k, label) for k, label in self.conn.execute(
            "SELECT key, label FROM entries WHERE ns = ? AND state = 1 ORDER BY lru DESC LIMIT ?", (ns, limit))]

    def stored(self, ids: list[bytes]) -> set[bytes]:
        """The ids of entries the index holds as stored (not being written)."""
        found: set[bytes] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(r for (r,) in self.conn.execute(
                f"SELECT id FROM entries WHERE state = 1 AND id IN ({marks})", chunk))
        return found

    def known(self, ids: list[bytes]) -> dict[bytes, int]:
        """{id: alt} of the ids the index has."""
        found = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self.conn.execute(f"SELECT id, alt FROM entries WHERE id IN ({marks})", chunk))
        return found
