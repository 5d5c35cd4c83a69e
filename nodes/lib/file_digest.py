"""Content digests of files (model weights, LoRA files, input images), memoised by path, size, mtime and inode.

ComfyUI-free. The Recall Cache keys loaders on what a file contains, not on its
name: a renamed identical model still hits, a file replaced behind the same name
misses. Hashing a 2 GB checkpoint takes a second or two, so a digest is kept per
(path, size, mtime_ns, inode) in memory and, when a memo file is given, on disk
(JSON, written atomically) so that a restart does not hash every model again.
Any change to the file (new content means a new mtime or inode) re-hashes it. One
FileDigests serves the Recall Cache's loader files and the LCM-LoRA loader alike; a
loader that needs the bytes anyway reads them through read(), which hashes what it read.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import xxhash

_log = logging.getLogger("recall.cache")
_CHUNK = 8 << 20
_MEMO_VERSION = 1
_MAX_MEMO = 4096
_RACY_SECONDS = 2.0


def read_file_bytes(path: str | os.PathLike) -> bytearray:
    """The whole file in one writable buffer (tensors can then view it without copying)."""
    buf = bytearray(os.path.getsize(path))
    with open(path, "rb") as f:
        got = f.readinto(buf)
    return buf if got == len(buf) else buf[:got]  # the file shrank while we read: what is there


def hash_bytes(data) -> str:
    """The same digest hash_file gives for a file holding these bytes."""
    return xxhash.xxh3_128(data).hexdigest()


def hash_file(path: str | os.PathLike) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


class FileDigests:
    """digest(path) -> hex content digest, computed once per file version."""

    def __init__(self, memo_path: Path | None = None, hasher=hash_file, clock=time.time):
        self._memo_path = memo_path
        self._hasher = hasher
        self._clock = clock
        self._lock = threading.Lock()
        self._memo: dict[str, list] = {}
        self._loaded = memo_path is None
        self.hashed = 0   # files actually read (tests and the benchmark check the memo works)

    @staticmethod
    def _stamp(st: os.stat_result) -> list:
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def _load(self) -> None:
        self._loaded = True
        try:
            doc = json.loads(self._memo_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(doc, dict) and doc.get("version") == _MEMO_VERSION and isinstance(doc.get("files"), dict):
            self._memo = {k: v for k, v in doc["files"].items()
                          if isinstance(v, list) and len(v) == 4 and isinstance(v[3], str)}

    def _save(self) -> None:
        if self._memo_path is None:
            return
        try:
            self._memo_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._memo_path.with_name(f"{self._memo_path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": _MEMO_VERSION, "files": self._memo}), encoding="utf-8")
            os.replace(tmp, self._memo_path)
        except OSError as exc:  # the memo only saves time; hashing again is always correct
            _log.debug("file digest memo not written: %s", exc)

    def known(self, path: str | os.PathLike) -> str | None:
        """The digest remembered for the file as it is now (one stat, nothing read), or None."""
        key = os.path.realpath(path)
        return self._known(key, self._stamp(os.stat(key)))

    def _known(self, key: str, stamp: list) -> str | None:
        with self._lock:
            if not self._loaded:
                self._load()
            known = self._memo.get(key)
            return known[3] if known is not None and known[:3] == stamp else None

    def digest(self, path: str | os.PathLike) -> str:
        key = os.path.realpath(path)
        st = os.stat(key)
        known = self._known(key, self._stamp(st))
        if known is not None:
            return known
        digest = self._hasher(key)  # outside the lock: hashing a model takes seconds
        self._remember(key, st, digest)
        return digest

    def read(self, path: str | os.PathLike) -> tuple[str, bytearray]:
        """(digest, bytes) of a file read once; the digest is remembered like digest()'s."""
        key = os.path.realpath(path)
        st = os.stat(key)  # before the read: a file replaced meanwhile gets a stamp that never matches
        data = read_file_bytes(key)
        digest = hash_bytes(data)
        self._remember(key, st, digest)
        return digest, data

    def _remember(self, key: str, st: os.stat_result, digest: str) -> None:
        self.hashed += 1
        stamp = self._stamp(st)
        if st.st_mtime_ns >= (self._clock() - _RACY_SECONDS) * 1e9:
            # written moments ago: a second write in the same clock tick could keep size and
            # mtime, so such a stamp is not trusted (git's "racy clean" rule)
            return
        with self._lock:
            self._memo[key] = stamp + [digest]
            while len(self._memo) > _MAX_MEMO:
                self._memo.pop(next(iter(self._memo)))
            self._save()


# -- proving that a file has not changed while this process ran --------------------------

def file_stamp(path: str | os.PathLike) -> list:
    """[device, inode, size, mtime_ns, ctime_ns] of the file a path resolves to.

    ctime cannot be set from user space and moves on every write, rename, replacement or
    metadata change, so two versions of a file never share a stamp (unless the clock was
    set back); an inode number reused by a new file comes with a new ctime.
    """
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def process_start_time() -> float | None:
    """Wall-clock seconds when this process started, or None when it cannot be told.

    Anything this process loaded from a file was loaded after this moment; a file whose
    ctime (and that of the folders and links leading to it) is older therefore held the
    same bytes when it was loaded as now.
    """
    try:  # Linux: start time in clock ticks after boot, boot time in seconds
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        pass
    try:
        import psutil  # ComfyUI depends on it; the pack does not
        return float(psutil.Process(os.getpid()).create_time())
    except Exception:  # no psutil, or a platform it cannot read
        return None


def _links_and_self(path: str, depth: int = 0) -> list[str]:
    """The path and every symbolic link met while resolving it (any component, any depth)."""
    seen = [path]
    parts = Path(os.path.abspath(path)).parts
    current = parts[0]
    for i, part in enumerate(parts[1:], 1):
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            if depth > 32:
                raise OSError(f"too many levels of symbolic links: {path}")
            seen.append(candidate)
            target = os.path.join(current, os.readlink(candidate))
            rest = os.path.join(target, *parts[i + 1:]) if i + 1 < len(parts) else target
            return seen + _links_and_self(rest, depth + 1)
        current = candidate
    return seen


def unchanged_since(paths, before: float) -> bool:
    """True when each path, and each link on the way to it, last changed before `before`.

    A path that does not exist is skipped (the caller lists the nearest existing folder
    too). Any error reading a path means "not proven".
    """
    limit_ns = int(before * 1e9)
    try:
        for path in paths:
            if not os.path.lexists(path):
                continue
            for p in _links_and_self(str(path)):
                if os.path.lexists(p) and os.lstat(p).st_ctime_ns >= limit_ns:
                    return False
    except OSError:
        return False
    return True
