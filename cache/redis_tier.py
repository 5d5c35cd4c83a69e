"""The shared tier: Redis, so several ComfyUI workers behind one queue share encodings.

Keys are `recall:<namespace>:<key>`; values are the entry's blob (tier.encode_entry:
the disk tier's bytes, safetensors + JSON metadata + checksum, never pickle) and
expire through Redis TTLs (SET ... PX). A read is verified by tier.decode_entry
(the checksum and the namespace/key recorded inside the value), so a tampered,
truncated or misplaced value is a miss and is deleted in the background.

Redis must never slow a workflow down or break it:
- every socket operation has a short timeout (redis_timeout_ms) and redis-py's
  own retries are off;
- a lookup (the only call a run waits for) runs on a lookup thread, and the run
  waits for it at most LOOKUP_WAIT_SHARE of redis_timeout_ms: a down or hung
  server costs a run less than redis_timeout_ms, the network and thread
  hand-off included;
- after a failure a circuit breaker skips Redis for a back-off period (doubling
  up to a cap); lookups never re-test the connection themselves: when the
  back-off ends, a background probe (PING) does, so an outage costs a run at
  most the one lookup that found Redis gone, however many calls the run makes
  (lookup, write, and again after each back-off); the first failure warns once
  and emits "backend_down", the first success after it "backend_up";
- put_blob writes at once on the calling thread (the store's writer thread,
  cache/write_queue.py, never a workflow's), on its own connection with a longer
  read timeout; a value over redis_max_value_bytes is refused with one warning;
  a full Redis (OOM) skips the write with a warning and keeps reads working.
redis-py is imported only when the tier first talks to Redis, so the pack loads
without it; warm_up() does that first talk at start-up, in the background.
"""
import concurrent.futures
import logging
import time
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from .errors import CacheBackendError, CacheConfigError, CorruptEntry
from .tier import Blob, EntryMeta, PersistentTier

_log = logging.getLogger("recall.cache")
PREFIX = "recall"
_GLOB_SPECIAL = "*?[]\\"
LOOKUP_WAIT_SHARE = 0.5   # of redis_timeout_ms: leaves room for thread wake-ups on a loaded machine
_THREADS = 4


def redis_key(namespace: str, key: str) -> str:
    # ':' and '%' in a namespace are escaped so "a:b" can never collide with namespace "a", key "b:..."
    ns = namespace.replace("%", "%25").replace(":", "%3A")
    return f"{PREFIX}:{ns}:{key}"


def _namespace_of(rkey: str) -> str | None:
    parts = rkey.split(":", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    return parts[1].replace("%3A", ":").replace("%25", "%")


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable redis url>"



def default_client_factory(url: str, timeout_s: float, *, read_timeout_s: float | None = None):
    """A redis-py client with bounded timeouts and no retries (the breaker decides when to retry)."""
    import inspect

    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # no CLIENT SETINFO round trips on connect (the argument's name changed in redis-py 7)
    base = getattr(redis.connection, "AbstractConnection", redis.connection.Connection)
    params = inspect.signature(base.__init__).parameters
    quiet = {"driver_info": None} if "driver_info" in params else (
        {"lib_name": None, "lib_version": None} if "lib_name" in params else {})
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=read_timeout_s if read_timeout_s is not None else timeout_s,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        health_check_interval=0,
        **quiet,
    )


def _backend_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean 'Redis is unreachable or broken' (open the breaker)."""
    import redis
    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class RedisTier(PersistentTier):
    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, name: str = "redis",
                 max_value_bytes: int = 64 * 2**20, timeout_ms: int = 50,
                 ttl_seconds: float | None = None, write_timeout_s: float = 5.0,
                 backoff_seconds: float = 2.0, max_backoff_seconds: float = 60.0,
                 usage_cache_seconds: float = 30.0,
                 usage_max_keys: int = 100_000,
                 client_factory: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(name, clock=clock)
        self.url = url
        self.max_value_bytes = int(max_value_bytes)
        self.timeout_s = max(1, int(timeout_ms)) / 1000.0
        self.write_timeout_s = max(self.timeout_s, float(write_timeout_s))
        self.ttl_seconds = ttl_seconds if ttl_seconds else None
        self.backoff_seconds = float(backoff_seconds)
        self.max_backoff_seconds = float(max_backoff_seconds)
        self._factory = client_factory or default_client_factory
        self._reader = None   # clients are made on first use: never connect in the constructor
        self._writer_client = None
        self._errors: tuple | None = None
        # the breaker
        self._retry_at = 0.0
        self._backoff = self.backoff_seconds
        self.skipped_writes = 0   # Redis refused (full, read-only) or was down
        self._full = False
        # usage (entries/bytes per namespace) comes from a bounded SCAN, cached
        self.usage_cache_seconds = usage_cache_seconds
        self.usage_max_keys = usage_max_keys
        self._usage: dict[str, tuple[int, int]] = {}
        self._usage_at: float | None = None
        self.lookup_wait_s = self.timeout_s * LOOKUP_WAIT_SHARE
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None  # lookups and probes, made on first use
        self._probe: concurrent.futures.Future | None = None
        self._last_background: concurrent.futures.Future | None = None

    def describe(self) -> str:
        return f"{self.name} at {redact(self.url)}"

    # -- connection and breaker --------------------------------------------------------
    def _client(self, writer: bool = False):
        # made outside the lock: making one imports and inspects redis-py, and a lookup or a
        # write must never wait on the lock for that
        if self._errors is None:
            self._errors = _backend_errors()
        if writer:
            if self._writer_client is None:
                # a separate connection with a longer read timeout: a big value on a slow link is
                # not an outage, and the writer never holds up a lookup
                client = self._factory(self.url, self.timeout_s, read_timeout_s=self.write_timeout_s)
                with self._lock:
                    if self._writer_client is None:
                        self._writer_client = client
            return self._writer_client
        if self._reader is None:
            client = self._factory(self.url, self.timeout_s)
            with self._lock:
                if self._reader is None:
                    self._reader = client
        return self._reader

    def _allowed(self) -> bool:
        """False while the breaker is open; one caller at a time probes after the back-off."""
        with self._lock:
            if not self.is_down:
                return True
            now = self.clock()
            if now < self._retry_at:
                return False
            self._retry_at = now + self._backoff  # others skip while this probe runs
            return True

    def _failed(self, action: str, exc: BaseException) -> None:
        with self._lock:
            if self.is_down:
                self._backoff = min(self._backoff * 2, self.max_backoff_seconds)
            else:
                self._backoff = self.backoff_seconds
            self._retry_at = self.clock() + self._backoff
        self.report_failure(action, exc)

    def _succeeded(self) -> None:
        if self.is_down:
            with self._lock:
                self._backoff = self.backoff_seconds
            self.report_ok()

    def _call(self, action: str, fn: Callable[[Any], Any], *, writer: bool = False, default=None):
        """Run fn(client) guarded by the breaker; a backend error becomes `default` (never raised)."""
        if not self._allowed():
            return default
        try:
            client = self._client(writer)
            result = fn(client)
        except Exception as exc:
            if self._errors is not None and isinstance(exc, self._errors):
                self._failed(action, exc)
                return default
            if isinstance(exc, ImportError):
                self._failed(action, CacheBackendError(f"redis-py is not installed ({exc})"))
                return default
            self._succeeded()  # Redis answered (with an error reply such as OOM or WRONGTYPE): it is up
            raise
        self._succeeded()
        return result

    def warm_up(self) -> bool:
        """Import redis-py and open the lookup connection now, so the first lookup pays neither.

        Called once from a background thread at start-up. A Redis that is down costs one
        timeout here, warns once and opens the breaker, exactly as a failed lookup would.
        """
        return bool(self._call("connect", lambda c: c.ping(), default=False))

    def _threads(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(_THREADS, thread_name_prefix="recall-redis-read")
                # start the threads now: starting one inside a lookup costs milliseconds on a busy machine
                for _ in range(_THREADS):
                    self._pool.submit(time.sleep, 0.001)
            return self._pool

    def _lookup_allowed(self) -> bool:
        """Like _allowed, but a lookup never probes: once the back-off is over it starts a
        background probe and skips Redis itself (the run does not wait for the probe)."""
        with self._lock:
            if not self.is_down:
                return True
            if self.clock() < self._retry_at or (self._probe is not None and not self._probe.done()):
                return False
            self._retry_at = self.clock() + self._backoff
            self._probe = self._in_background(self._reconnect)
            return False

    def _reconnect(self) -> None:
        """The background probe: one PING, past the breaker (which the lookup that started it set)."""
        try:
            self._client().ping()
        except Exception as exc:
            if isinstance(exc, ImportError) or (self._errors is not None and isinstance(exc, self._errors)):
                self._failed("reconnect", exc)
                return
        self._succeeded()  # a PONG, or an error reply: Redis answers

    def _in_background(self, fn, *args) -> concurrent.futures.Future:
        future = self._last_background = self._threads().submit(fn, *args)
        return future

    def wait_background(self, timeout: float | None = None) -> None:
        """Until the last probe or damaged-value delete has finished (tests, benchmarks)."""
        last = self._last_background
        if last is not None:
            concurrent.futures.wait([last], timeout)

    def _bounded(self, action: str, fn: Callable[[Any], Any]):
        """fn(client) for a lookup: at most lookup_wait_s of the caller's time, never raised for outages."""
        deadline = time.perf_counter() + self.lookup_wait_s
        if not self._lookup_allowed():
            return None
        try:
            client = self._client()
        except ImportError as exc:
            self._failed(action, CacheBackendError(f"redis-py is not installed ({exc})"))
            return None
        future = self._threads().submit(fn, client)
        try:
            result = future.result(timeout=max(0.0, deadline - time.perf_counter()))
        except concurrent.futures.TimeoutError:
            self._failed(action, CacheBackendError(f"no answer within {self.lookup_wait_s * 1000:.0f} ms"))
            return None
        except Exception as exc:
            if self._errors is not None and isinstance(exc, self._errors):
                self._failed(action, exc)
                return None
            self._succeeded()  # an error reply (WRONGTYPE, ...): Redis is up
            raise
        self._succeeded()
        return result

    # -- reads ---------------------------------------------------------------------------
    def get_blob(self, namespace: str, key: str) -> Blob | None:
        rkey = redis_key(namespace, key)
        try:
            data = self._bounded("read", lambda c: c.get(rkey))
        except Exception as exc:  # e.g. WRONGTYPE: a foreign value under our key, a miss decode_entry rejects
            data = exc
        return None if data is None else Blob(data, rkey)

    def blob_damaged(self, namespace: str, key: str, found: Blob, exc: CorruptEntry) -> None:
        self._in_background(self._delete_damaged, found.where)  # off the run: the lookup is over
        self.warn_once("corrupt", f"[Recall] cache: removed damaged Redis value {found.where} ({exc}); it counts "
                                  "as a miss. Further damaged values are logged at debug level.")

    def _delete_damaged(self, rkey: str) -> None:
        try:
            self._call("delete a damaged value", lambda c: c.delete(rkey))
        except Exception as err:  # an error reply to DEL: the value stays, still a miss
            _log.debug("could not delete %s: %s", rkey, err)

    # -- writes --------------------------------------------------------------------------
    def _ttl_ms(self, meta: EntryMeta) -> int | None:
        ttls = [t for t in (self.ttl_seconds, meta.ttl_seconds) if t]
        return max(1, int(min(ttls) * 1000)) if ttls else None

    def _refuse_oversize(self, size: int) -> bool:
        self.warn_once("oversize", f"[Recall] cache: a value of {size} bytes exceeds redis_max_value_bytes="
                                   f"{self.max_value_bytes} and is not shared through Redis (it stays in the "
                                   "local tiers). Raise redis_max_value_bytes to share such values.")
        return False

    def put_blob(self, namespace: str, key: str, blob: bytes, meta: EntryMeta) -> bool:
        """Write now (the store calls this on its writer thread); False when refused (oversize, Redis
        down or full)."""
        if len(blob) > self.max_value_bytes:
            return self._refuse_oversize(len(blob))
        with self._lock:
            if self.is_down and self.clock() < self._retry_at:
                self.skipped_writes += 1
                return False
        return self._write(redis_key(namespace, key), blob, self._ttl_ms(meta))

    def _write(self, rkey: str, data: bytes, ttl_ms: int | None) -> bool:
        try:
            ok = self._call("write", lambda c: c.set(rkey, data, px=ttl_ms), writer=True, default=None)
        except Exception as exc:  # a refusal: OOM (maxmemory reached with noeviction), READONLY replica, ...
            self.skipped_writes += 1
            full = "OOM" in str(exc) or type(exc).__name__ == "OutOfMemoryError"
            if full:
                with self._lock:
                    first, self._full = not self._full, True
                (_log.warning if first else _log.debug)(
                    "[Recall] cache: Redis is full (%s); skipped %d write(s). Reads still work. Set "
                    "maxmemory-policy allkeys-lru (or volatile-lru) on the Redis server so it evicts old "
                    "entries instead of refusing writes.", exc, self.skipped_writes)
            else:
                self.warn_once("refused", f"[Recall] cache: Redis refused a write ({exc}); the value stays in "
                                          "the local tiers.")
            return False
        if ok is None:
            self.skipped_writes += 1
            return False
        self._full = False
        with self._lock:
            self._usage_at = None  # the next stats() rescans
        return True

    def close(self) -> None:
        """Stop the lookup threads, drop the connections."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        for client in (self._reader, self._writer_client):
            try:
                if client is not None:
                    client.close()
            except Exception:
                pass
        self._reader = self._writer_client = None

    # -- management ------------------------------------------------------------------------
    def delete(self, namespace: str, key: str) -> bool:
        rkey = redis_key(namespace, key)
        return bool(self._call("delete", lambda c: c.delete(rkey), default=0))

    def _scan(self, client, pattern: str, limit: int | None = None) -> list[str]:
        found = []
        for k in client.scan_iter(match=pattern, count=1000):
            found.append(k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else k)
            if limit is not None and len(found) >= limit:
                break
        return found

    def _pattern(self, namespace: str | None) -> str:
        if namespace is None:
            return f"{PREFIX}:*"
        return _glob_escape(redis_key(namespace, "")) + "*"

    def clear(self, namespace: str | None = None) -> int:
        """Remove this pack's keys (never FLUSHDB: the Redis may hold other data)."""
        def run(c):
            doomed = self._scan(c, self._pattern(namespace))
            removed = 0
            for i in range(0, len(doomed), 500):
                removed += c.unlink(*doomed[i:i + 500])  # freed in the background by Redis
            return removed
        with self._lock:
            self._usage_at = None
        return int(self._call("clear", run, default=0) or 0)

    def keys(self, namespace: str) -> list[str]:
        """This namespace's keys, least idle first where Redis reports idle times (LRU policies)."""
        prefix = redis_key(namespace, "")

        def run(c):
            found = self._scan(c, self._pattern(namespace), self.usage_max_keys)
            try:
                pipe = c.pipeline(transaction=False)
                for k in found:
                    pipe.object("idletime", k)
                idle = pipe.execute(raise_on_error=False)
                order = sorted(range(len(found)),
                               key=lambda i: idle[i] if isinstance(idle[i], int) else float("inf"))
                found = [found[i] for i in order]
            except Exception as exc:  # OBJECT IDLETIME is unavailable under LFU policies
                if self._errors is not None and isinstance(exc, self._errors):
                    raise
            return [k[len(prefix):] for k in found]
        return self._call("list keys", run, default=[]) or []

    def usage(self) -> dict[str, tuple[int, int]]:
        """{namespace: (entries, bytes)} from a SCAN + STRLEN of this pack's keys (at most
        usage_max_keys), cached for usage_cache_seconds so the UI's polling stays cheap."""
        with self._lock:
            if self._usage_at is not None and self.clock() - self._usage_at < self.usage_cache_seconds:
                return dict(self._usage)

        def run(c):
            found = self._scan(c, self._pattern(None), self.usage_max_keys)
            pipe = c.pipeline(transaction=False)
            for k in found:
                pipe.strlen(k)
            sizes = pipe.execute(raise_on_error=False) if found else []
            out: dict[str, list[int]] = {}
            for k, size in zip(found, sizes):
                ns = _namespace_of(k)
                if ns is None or not isinstance(size, int) or size == 0:
                    continue  # expired between SCAN and STRLEN
                acc = out.setdefault(ns, [0, 0])
                acc[0] += 1
                acc[1] += size
            return {ns: (a[0], a[1]) for ns, a in out.items()}

        result = self._call("report statistics", run, default=None)
        with self._lock:
            if result is not None:
                self._usage, self._usage_at = result, self.clock()
            return dict(self._usage)

    def server_stats(self) -> dict:
        """Server-wide numbers Redis keeps itself (evictions and expiries are not per namespace)."""
        def run(c):
            mem, st = c.info("memory"), c.info("stats")
            return {"used_memory": mem.get("used_memory"), "maxmemory": mem.get("maxmemory"),
                    "maxmemory_policy": mem.get("maxmemory_policy"),
                    "evicted_keys": st.get("evicted_keys"), "expired_keys": st.get("expired_keys")}
        return self._call("report statistics", run, default={}) or {}

    def configure(self, *, max_bytes=None, max_entries=None, ttl_seconds=None) -> None:
        """Only the TTL of new writes applies: Redis's maxmemory bounds the bytes, not this worker."""
        if ttl_seconds is not None:
            self.ttl_seconds = ttl_seconds or None
        if max_bytes is not None or max_entries is not None:
            _log.debug("tier %s: byte/entry caps are Redis's maxmemory setting; ignored", self.name)


def build_redis_tier(config) -> RedisTier:
    """The shared tier a CacheConfig asks for. Checks redis-py and the URL; does not connect."""
    try:
        import redis
    except ImportError as exc:
        raise CacheBackendError("[Recall] config: backend=redis needs the redis package "
                                f"({exc}). Install it: pip install redis") from exc
    try:
        redis.connection.ConnectionPool.from_url(config.redis_url)  # parses only, no connection
    except ValueError as exc:
        raise CacheConfigError(f"[Recall] config: redis_url={redact(config.redis_url)!r} is malformed ({exc}) "
                               "(expected redis://host:port/db). Fix redis_url.") from exc
    ttl = config.disk_ttl_hours * 3600 if config.disk_ttl_hours else None
    return RedisTier(config.redis_url, max_value_bytes=config.redis_max_value_bytes,
                     timeout_ms=config.redis_timeout_ms, ttl_seconds=ttl)
