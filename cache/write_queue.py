"""The persistent tiers' writes: one bounded queue drained by one daemon thread, so a slow disk or
network never delays a workflow.

BoundedWriteQueue is bounded by entry count and by bytes: a submit that would pass either
bound is refused. The thread starts on the first submit and survives any exception a write
raises. PersistentWrites is the store's writer on top of it: one job per put for all the
persistent tiers, serialized once (tier.encode_entry) on the writer thread, and the same
bytes handed to each tier; a promotion's job carries the bytes it was read as. A full queue
drops the write (the memory tiers still hold the value) with one warning per congestion
episode; flush() waits for the queue, and at exit every writer is flushed so a short-lived
worker does not lose the writes it queued just before exiting.
"""
import atexit
import logging
import queue
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from . import values
from .errors import UnstorableValue
from .tier import EntryMeta, PersistentTier, encode_entry

_log = logging.getLogger("recall.cache")
QUEUE_ENTRIES = 256
QUEUE_BYTES = 2**30


class BoundedWriteQueue:
    def __init__(self, write: Callable[[Any], Any], *, name: str, max_entries: int, max_bytes: int):
        self._write = write
        self._name = name
        self._queue: "queue.Queue[tuple[Any, int] | None]" = queue.Queue(maxsize=max(1, int(max_entries)))
        self._max_bytes = int(max_bytes)
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def submit(self, job: Any, size: int) -> bool:
        """Queue one write; False when the queue is full (by entries or bytes)."""
        with self._lock:
            if self._queued_bytes + size > self._max_bytes:
                return False
            try:
                self._queue.put_nowait((job, size))
            except queue.Full:
                return False
            self._queued_bytes += size
            self._start()
        return True

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._drain, name=self._name, daemon=True)
            self._thread.start()

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._write(item[0])
            except Exception:  # the writer thread must survive anything
                _log.debug("%s: a queued write failed", self._name, exc_info=True)
            finally:
                if item is not None:
                    with self._lock:
                        self._queued_bytes -= item[1]
                self._queue.task_done()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued writes are done; True when the queue drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if self._thread is None or not self._thread.is_alive():
                return False
            remaining = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if remaining <= 0:
                return False
            with self._queue.all_tasks_done:
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Finish queued writes (up to timeout), then stop the thread."""
        self.flush(timeout)
        if self._thread is not None and self._thread.is_alive():
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass


@dataclass
class WriteJob:
    namespace: str
    key: str
    meta: EntryMeta
    tiers: list[PersistentTier]
    value: Any = None
    blob: bytes | None = None  # set: bytes read from a persistent tier, written as they are


_live: "weakref.WeakSet[PersistentWrites]" = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for writes in list(_live):
        writes.flush(timeout=2.0)


class PersistentWrites:
    """The store's writes to its persistent tiers. background=False runs each job at once on the
    caller's thread (tests, tools)."""

    def __init__(self, *, background: bool = True, max_entries: int = QUEUE_ENTRIES,
                 max_bytes: int = QUEUE_BYTES):
        self._queue = BoundedWriteQueue(self.run, name="recall-cache-write", max_entries=max_entries,
                                        max_bytes=max_bytes) if background else None
        self._lock = threading.Lock()
        self._congested = False
        self.dropped = 0
        _live.add(self)

    @property
    def pending(self) -> int:
        return 0 if self._queue is None else self._queue.pending

    def submit(self, job: WriteJob) -> bool:
        """Queue job; False when the queue is full (the write is dropped and counted)."""
        if self._queue is None:
            self.run(job)
            return True
        # bytes of what is queued, before serializing: the blob's length, or the value's tensor bytes
        size = len(job.blob) if job.blob is not None else values.nbytes(job.value)
        queued = self._queue.submit(job, size)
        with self._lock:
            if queued:
                if self._queue.pending <= 1:  # the queue had drained: a later drop is a new episode
                    self._congested = False
                return True
            self.dropped += 1
            first, self._congested = not self._congested, True
        (_log.warning if first else _log.debug)(
            "[Recall] cache: the write queue of the persistent tiers is full (they are slower than the "
            "workflow); dropped %d write(s) so far. Those values stay in the memory tiers.", self.dropped)
        return False

    def run(self, job: WriteJob) -> None:
        """Serialize once (unless the job carries its bytes) and give the same bytes to each tier."""
        blob = job.blob
        if blob is None:
            try:
                blob = encode_entry(job.namespace, job.key, job.value, job.meta)
            except UnstorableValue as exc:
                _log.debug("value for %s stays in the memory tiers: %s", job.key, exc)
                return
        for tier in job.tiers:
            try:
                tier.put_blob(job.namespace, job.key, blob, job.meta)
            except Exception as exc:  # a backend failure is a skipped write, never a workflow error
                tier.report_failure("write", exc)

    def stats(self) -> dict:
        return {"queued": self.pending, "dropped": self.dropped}

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued writes are done; True when the queue drained."""
        return True if self._queue is None else self._queue.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        if self._queue is not None:
            self._queue.close(timeout)
