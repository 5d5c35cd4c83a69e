"""A bounded queue of writes drained by one daemon thread, so a slow backend never delays a workflow.

Bounded by entry count and by bytes: a submit that would pass either bound is refused
(the caller counts and reports the drop). The thread starts on the first submit and
survives any exception a write raises.
"""
import logging
import queue
import threading
import time
from typing import Any, Callable

_log = logging.getLogger("recall.cache")


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
