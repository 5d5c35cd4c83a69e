"""A persistent memo of weight fingerprints: (how a model was loaded) -> fingerprint of its weights.

Hashing a text encoder's weights (umt5-xxl: 6.7-11 GB) costs seconds and reads every
byte; this memo lets a restarted server skip it. It only stores and checks; deciding
whether a live model is proven to come from the files named in a key is the caller's
job (nodes/identity.py). An entry answers a lookup only when all of these match:
- the key: loader, its options, the files, the ComfyUI and torch versions;
- the stamps of the files now (device, inode, size, mtime, ctime: any change to a
  file, or a file replaced under the same name, gives another stamp);
- the live model's structure (names, dtypes, shapes), so a model converted or cast
  differently on load is never taken for the remembered one.

JSON in the cache folder, written to a temporary file and renamed; a damaged or
foreign memo is ignored with one warning and rewritten on the next record. Several
workers may share the folder: a record merges into what is on disk, and a lost
record only costs a hash. Never pickle.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

_log = logging.getLogger("recall.cache")
FORMAT = "recall-weights-memo"
VERSION = 1
MAX_ENTRIES = 2048


def _valid(entry) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("stamps"), list)
            and isinstance(entry.get("structure"), str) and isinstance(entry.get("weights"), str)
            and isinstance(entry.get("used", 0), (int, float)))


class WeightsMemo:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, dict] | None = None   # read on first use, never at import
        self._warned = False

    def _read(self) -> dict[str, dict]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self._warn(f"cannot be read ({exc})")
            return {}
        try:
            doc = json.loads(text)
            if not (isinstance(doc, dict) and doc.get("format") == FORMAT and doc.get("version") == VERSION
                    and isinstance(doc.get("entries"), dict)):
                raise ValueError("not a weights memo of this version")
        except ValueError as exc:
            self._warn(f"is damaged or foreign ({exc})")
            return {}
        return {k: v for k, v in doc["entries"].items() if isinstance(k, str) and _valid(v)}

    def _warn(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            _log.warning("[Recall] encoder identity memo %s %s; it is ignored, and models are "
                         "fingerprinted by their weights until it is rewritten.", self.path, what)

    def _ensure(self) -> dict[str, dict]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def lookup(self, key: str, stamps: list, structure: str) -> str | None:
        with self._lock:
            entry = self._ensure().get(key)
        if entry is None or entry["stamps"] != stamps or entry["structure"] != structure:
            return None
        return entry["weights"]

    def record(self, key: str, stamps: list, structure: str, weights: str) -> None:
        entry = {"stamps": stamps, "structure": structure, "weights": weights, "used": self._clock()}
        with self._lock:
            entries = self._ensure()
            if entries.get(key) == entry:
                return
            merged = self._read() if self.path.exists() else {}
            merged.update({k: v for k, v in entries.items() if k not in merged})
            merged[key] = entry
            if len(merged) > MAX_ENTRIES:  # oldest first out
                for k in sorted(merged, key=lambda k: merged[k].get("used", 0))[:len(merged) - MAX_ENTRIES]:
                    del merged[k]
            self._entries = merged
            self._write(merged)

    def _write(self, entries: dict) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"format": FORMAT, "version": VERSION, "entries": entries}),
                           encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # the memo only saves time: hashing again is always correct
            _log.debug("encoder identity memo not written: %s", exc)
            try:
                tmp.unlink()
            except OSError:
                pass

    def __len__(self) -> int:
        with self._lock:
            return len(self._ensure())
