"""Content digests of files (model weights, input images), memoised by path, size, mtime and inode.

ComfyUI-free. The Recall Cache keys loaders on what a file contains, not on its
name: a renamed identical model still hits, a file replaced behind the same name
misses. Hashing a 2 GB checkpoint takes a second or two, so a digest is kept per
(path, size, mtime_ns, inode) in memory and, when a memo file is given, on disk
(JSON, written atomically) so that a restart does not hash every model again.
Any change to the file (new content means a new mtime or inode) re-hashes it.
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

    def digest(self, path: str | os.PathLike) -> str:
        key = os.path.realpath(path)
        st = os.stat(key)
        stamp = self._stamp(st)
        with self._lock:
            if not self._loaded:
                self._load()
            known = self._memo.get(key)
            if known is not None and known[:3] == stamp:
                return known[3]
        digest = self._hasher(key)  # outside the lock: hashing a model takes seconds
        self.hashed += 1
        if st.st_mtime_ns >= (self._clock() - _RACY_SECONDS) * 1e9:
            # written moments ago: a second write in the same clock tick could keep size and
            # mtime, so such a stamp is not trusted (git's "racy clean" rule)
            return digest
        with self._lock:
            self._memo[key] = stamp + [digest]
            while len(self._memo) > _MAX_MEMO:
                self._memo.pop(next(iter(self._memo)))
            self._save()
        return digest
