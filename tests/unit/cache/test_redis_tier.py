"""The Redis tier against fakeredis: round trips, namespacing, TTL, refusals, damage, outages.

The breaker's clock is injected (no sleeps); the one timing test uses a real
socket that accepts connections and never answers, to prove the timeout bound.
"""
import logging
import sys
import socket
import time

import pytest
import torch

pytest.importorskip("redis")
fakeredis = pytest.importorskip("fakeredis")

from cache_helpers import FakeClock, FakeRedisServer, latent, meta  # noqa: E402
from recall_pack.cache import config as cache_config  # noqa: E402
from recall_pack.cache import serialize  # noqa: E402
from recall_pack.cache.errors import CacheBackendError, CacheConfigError  # noqa: E402
from recall_pack.cache.memory import MemoryTier  # noqa: E402
from recall_pack.cache.redis_tier import RedisTier, build_redis_tier, redis_key  # noqa: E402
from recall_pack.cache.store import TieredStore  # noqa: E402


@pytest.fixture
def fake():
    return FakeRedisServer()


@pytest.fixture
def make_redis(fake, clock):
    made = []

    def make(**kw):
        tier = RedisTier("redis://fake/0", client_factory=fake.factory, clock=clock, **kw)
        made.append(tier)
        return tier
    yield make
    for t in made:
        t.close()


def conditioning(seed):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 77, 16, generator=g), {"pooled_output": torch.randn(1, 16, generator=g)}]]


def test_latent_dict_round_trips_exactly(make_redis):
    tier = make_redis()
    value = {"samples": torch.randn(1, 4, 8, 8), "batch_index": [0]}
    assert tier.put("shared", "k", value, meta=meta(3.0, "cat.png"))
    entry = tier.get("shared", "k")
    assert torch.equal(entry.value["samples"], value["samples"])
    assert entry.value["samples"].dtype == torch.float32 and entry.value["batch_index"] == [0]
    assert entry.meta.compute_seconds == 3.0 and entry.meta.label == "cat.png"


def test_conditioning_list_round_trips_exactly(make_redis):
    tier = make_redis()
    value = conditioning(1)
    tier.put("shared", "c", value, meta=meta())
    got = tier.get("shared", "c").value
    assert torch.equal(got[0][0], value[0][0])
    assert torch.equal(got[0][1]["pooled_output"], value[0][1]["pooled_output"])


def test_bf16_and_fp16_keep_their_dtype(make_redis):
    tier = make_redis()
    value = {"a": torch.randn(2, 3).to(torch.bfloat16), "b": torch.randn(2, 3).half()}
    tier.put("ns", "k", value, meta=meta())
    got = tier.get("ns", "k").value
    assert got["a"].dtype == torch.bfloat16 and torch.equal(got["a"], value["a"])
    assert got["b"].dtype == torch.float16 and torch.equal(got["b"], value["b"])


def test_keys_are_namespaced_under_recall_prefix(make_redis, fake):
    tier = make_redis()
    tier.put("alice", "k1", latent(1), meta=meta())
    assert fake.client().exists("recall:alice:k1")
    assert tier.get("bob", "k1") is None
    assert tier.keys("alice") == ["k1"] and tier.keys("bob") == []


def test_namespace_with_colon_cannot_collide_with_another_namespace(make_redis):
    tier = make_redis()
    tier.put("a:b", "k", latent(1), meta=meta())
    tier.put("a", "b:k", latent(2), meta=meta())
    assert redis_key("a:b", "k") != redis_key("a", "b:k")
    assert torch.equal(tier.get("a:b", "k").value["samples"], latent(1)["samples"])
    assert tier.keys("a") == ["b:k"]


def test_clear_removes_one_namespace_and_leaves_foreign_keys(make_redis, fake):
    tier = make_redis()
    fake.client().set("someone-else", b"keep me")
    tier.put("alice", "a", latent(1), meta=meta())
    tier.put("alice", "b", latent(2), meta=meta())
    tier.put("bob", "a", latent(3), meta=meta())
    assert tier.clear("alice") == 2
    assert tier.get("bob", "a") is not None
    assert tier.clear() == 1
    assert fake.client().get("someone-else") == b"keep me"


def test_delete_removes_only_that_key(make_redis):
    tier = make_redis()
    tier.put("ns", "a", latent(1), meta=meta())
    tier.put("ns", "b", latent(2), meta=meta())
    assert tier.delete("ns", "a") and not tier.delete("ns", "a")
    assert tier.get("ns", "a") is None and tier.get("ns", "b") is not None


def test_values_get_the_tier_ttl_in_redis(make_redis, fake):
    tier = make_redis(ttl_seconds=600)
    tier.put("ns", "k", latent(1), meta=meta())
    assert 599_000 < fake.client().pttl("recall:ns:k") <= 600_000


def test_shorter_entry_ttl_wins(make_redis, fake):
    tier = make_redis(ttl_seconds=600)
    tier.put("ns", "k", latent(1), meta=meta(ttl=60))
    assert 59_000 < fake.client().pttl("recall:ns:k") <= 60_000


def test_no_ttl_configured_means_no_expiry(make_redis, fake):
    tier = make_redis(ttl_seconds=None)
    tier.put("ns", "k", latent(1), meta=meta())
    assert fake.client().pttl("recall:ns:k") == -1


def test_oversize_value_is_refused_and_not_written(make_redis, fake, caplog):
    tier = make_redis(max_value_bytes=3000)
    with caplog.at_level(logging.WARNING, "recall.cache"):
        assert not tier.put("ns", "big", {"samples": torch.zeros(1, 4, 16, 16)}, meta=meta())
    assert not fake.client().exists("recall:ns:big")
    assert "redis_max_value_bytes=3000" in caplog.text
    assert tier.put("ns", "small", {"samples": torch.zeros(4)}, meta=meta())


def test_unstorable_value_is_refused(make_redis):
    tier = make_redis()
    assert not tier.put("ns", "k", {"fn": object()}, meta=meta())


@pytest.mark.parametrize("damage", ["flip_tensor_byte", "truncate", "foreign", "moved_key"])
def test_tampered_value_is_a_miss_and_deleted(make_redis, fake, damage, caplog):
    tier = make_redis()
    value = latent(1)
    tier.put("ns", "k", value, meta=meta())
    c = fake.client()
    data = bytearray(c.get("recall:ns:k"))
    if damage == "flip_tensor_byte":
        data[-5] ^= 0x40
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "foreign":
        data = b"\x80\x04\x95 a pickle, not ours"
    elif damage == "moved_key":  # a valid value copied under another key is still wrong for that key
        tier.put("ns", "other", latent(2), meta=meta())
        data = bytearray(c.get("recall:ns:other"))
    c.set("recall:ns:k", bytes(data))
    with caplog.at_level(logging.WARNING, "recall.cache"):
        assert tier.get("ns", "k") is None
        tier.wait_background(10)  # the delete runs off the lookup
    assert not c.exists("recall:ns:k")
    assert "damaged Redis value" in caplog.text
    assert tier.stats()["ns"].misses == 1


def test_wrong_redis_type_under_our_key_is_a_miss(make_redis, fake):
    tier = make_redis()
    fake.client().hset("recall:ns:k", "a", "b")
    assert tier.get("ns", "k") is None
    tier.wait_background(10)
    assert not fake.client().exists("recall:ns:k")


def test_shape_metadata_mismatch_is_a_miss(make_redis, fake):
    tier = make_redis()
    tier.put("ns", "k", latent(1), meta=meta())
    c = fake.client()
    data = c.get("recall:ns:k")
    # rewrite the JSON document to claim another shape (same header length)
    swapped = data.replace(b'[1,4,8,8]', b'[1,8,4,8]', 1)
    assert swapped != data
    c.set("recall:ns:k", swapped)
    assert tier.get("ns", "k") is None


def test_stats_count_hits_misses_and_usage_per_namespace(make_redis, clock):
    tier = make_redis(usage_cache_seconds=30)
    tier.put("alice", "a", latent(1), meta=meta(2.0))
    tier.put("bob", "b", latent(2), meta=meta())
    tier.get("alice", "a")
    tier.get("alice", "zz")
    s = tier.stats()
    assert (s["alice"].hits, s["alice"].misses, s["alice"].entries) == (1, 1, 1)
    assert s["alice"].saved_seconds == 2.0 and s["alice"].bytes > 256
    assert s["bob"].entries == 1


def test_connection_error_is_a_fast_miss_with_one_warning(make_redis, fake, clock, caplog):
    tier = make_redis()
    tier.put("ns", "k", latent(1), meta=meta())
    events = []
    tier.set_listener(lambda e, info: events.append(e))
    fake.server.connected = False
    with caplog.at_level(logging.WARNING, "recall.cache"):
        for _ in range(5):
            assert tier.get("ns", "k") is None
        assert not tier.put("ns", "k2", latent(2), meta=meta())
    assert caplog.text.count("failed to") == 1
    assert events == ["backend_down"]


def test_breaker_skips_redis_until_backoff_then_recovers(make_redis, fake, clock):
    tier = make_redis(backoff_seconds=2.0)
    tier.put("ns", "k", latent(1), meta=meta())
    events = []
    tier.set_listener(lambda e, info: events.append(e))
    fake.server.connected = False
    assert tier.get("ns", "k") is None
    fake.server.connected = True
    assert tier.get("ns", "k") is None          # still inside the back-off: Redis not asked
    clock.advance(2.0)
    assert tier.get("ns", "k") is None          # the lookup only starts a probe in the background
    tier.wait_background(10)
    assert tier.get("ns", "k") is not None      # probe succeeded: reconnected by itself
    assert events == ["backend_down", "backend_up"]


def test_backoff_doubles_while_the_outage_lasts(make_redis, fake, clock):
    tier = make_redis(backoff_seconds=1.0, max_backoff_seconds=3.0)
    fake.server.connected = False
    tier.get("ns", "k")
    for expected in (2.0, 3.0, 3.0):
        before = tier._backoff
        clock.advance(before / 2)    # half-way: skipped, no new failure
        tier.get("ns", "k")
        assert tier._backoff == before
        clock.advance(tier._retry_at - clock())
        tier.get("ns", "k")          # starts the probe, which fails again
        tier.wait_background(10)
        assert tier._backoff == expected


def test_write_when_redis_is_full_is_skipped_with_a_warning(make_redis, fake, caplog):
    import redis
    tier = make_redis()
    tier.put("ns", "ok", latent(1), meta=meta())
    real = fakeredis.FakeRedis.set

    def oom(self, *a, **kw):
        raise redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")
    fakeredis.FakeRedis.set = oom
    try:
        with caplog.at_level(logging.WARNING, "recall.cache"):
            assert not tier.put("ns", "k", latent(2), meta=meta())
            assert not tier.put("ns", "k3", latent(3), meta=meta())
    finally:
        fakeredis.FakeRedis.set = real
    assert caplog.text.count("Redis is full") == 1 and "allkeys-lru" in caplog.text
    assert tier.skipped_writes == 2
    assert tier.get("ns", "ok") is not None  # reads keep working: the breaker stays closed
    assert not tier.is_down


def test_put_blob_writes_at_once_on_the_calling_thread(make_redis, fake):
    tier = make_redis()
    blob = serialize.dumps(latent(1), meta().to_doc("ns", "k"))
    assert tier.put_blob("ns", "k", blob, meta())
    assert fake.client().get("recall:ns:k") == blob


def test_constructor_does_not_connect(fake):
    RedisTier("redis://fake/0", client_factory=fake.factory)
    assert fake.made == 0


def test_hung_redis_costs_one_timeout_then_nothing(clock):
    """A server that accepts and never answers: the lookup gives up within the timeout."""
    pytest.importorskip("redis")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel completes connects; nobody ever reads
    port = listener.getsockname()[1]
    tier = RedisTier(f"redis://127.0.0.1:{port}/0", timeout_ms=50, clock=clock)
    try:
        start = time.perf_counter()
        assert tier.get("ns", "k") is None
        first = time.perf_counter() - start
        start = time.perf_counter()
        assert tier.get("ns", "k") is None
        second = time.perf_counter() - start
    finally:
        tier.close()
        listener.close()
    assert first < 0.05, first           # under the 50 ms promise, thread hand-off included
    assert second < 0.005, second        # breaker open: Redis is not asked


def test_refused_connection_is_a_fast_miss(clock):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    tier = RedisTier(f"redis://127.0.0.1:{port}/0", timeout_ms=50, clock=clock)
    start = time.perf_counter()
    assert tier.get("ns", "k") is None
    assert time.perf_counter() - start < 0.1
    assert tier.is_down


def test_redis_hit_in_store_is_promoted_to_ram(fake, clock):
    redis_tier = RedisTier("redis://fake/0", client_factory=fake.factory, clock=clock)
    worker_a = TieredStore([MemoryTier("ram", 10**7, clock=clock), redis_tier], background_writes=False)
    worker_a.put("k", latent(1), compute_seconds=1.5)
    other = RedisTier("redis://fake/0", client_factory=fake.factory, clock=clock)
    worker_b = TieredStore([MemoryTier("ram", 10**7, clock=clock), other], background_writes=False)
    hit = worker_b.get("k")
    assert hit.tier == "redis" and hit.saved_seconds == 1.5
    assert worker_b.get("k").tier == "ram"


def test_store_reports_backend_events_from_redis(fake, clock):
    tier = RedisTier("redis://fake/0", client_factory=fake.factory, clock=clock)
    store = TieredStore([MemoryTier("ram", 10**7, clock=clock), tier], background_writes=False)
    events = []
    store.add_listener(lambda e, info: events.append((e, info["tier"])))
    fake.server.connected = False
    assert store.get("k") is None
    assert events == [("backend_down", "redis")]


def test_build_from_config_uses_its_limits_without_connecting():
    cfg = cache_config.CacheConfig(backend="redis", redis_url="redis://127.0.0.1:1/3",
                                   redis_max_value_bytes=1234, redis_timeout_ms=20, disk_ttl_hours=2)
    tier = build_redis_tier(cfg)
    assert (tier.max_value_bytes, tier.timeout_s, tier.ttl_seconds) == (1234, 0.02, 7200)
    assert tier._reader is None


def test_malformed_url_is_a_config_error():
    cfg = cache_config.CacheConfig(backend="redis", redis_url="redis://host:notaport/0")
    with pytest.raises(CacheConfigError, match="redis_url"):
        build_redis_tier(cfg)


def test_password_is_not_logged():
    tier = RedisTier("redis://user:s3cret@host:6379/0")
    assert "s3cret" not in tier.describe()


def test_values_use_the_shared_byte_format(make_redis, fake):
    tier = make_redis()
    tier.put("ns", "k", latent(1), meta=meta(label="x"))
    value, doc = serialize.loads(fake.client().get("recall:ns:k"))
    assert torch.equal(value["samples"], latent(1)["samples"]) and doc["key"] == "k"


def test_build_without_redis_py_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    with pytest.raises(CacheBackendError, match="pip install redis"):
        build_redis_tier(cache_config.CacheConfig(backend="redis"))


def test_tier_without_redis_py_is_a_miss_with_one_warning(monkeypatch, clock, caplog):
    monkeypatch.setitem(sys.modules, "redis", None)
    tier = RedisTier("redis://127.0.0.1:6379/0", clock=clock)
    with caplog.at_level(logging.WARNING, "recall.cache"):
        assert tier.get("ns", "k") is None
        assert tier.get("ns", "k") is None
    assert caplog.text.count("redis-py is not installed") == 1


def test_error_reply_during_outage_counts_as_recovery(make_redis, fake, clock):
    tier = make_redis()
    events = []
    tier.set_listener(lambda e, info: events.append(e))
    fake.server.connected = False
    tier.get("ns", "k")
    fake.server.connected = True
    fake.client().hset("recall:ns:k", "a", "b")  # a WRONGTYPE reply: Redis is up
    clock.advance(tier._retry_at - clock())
    tier.get("ns", "k")
    tier.wait_background(10)
    assert tier.get("ns", "k") is None
    assert events == ["backend_down", "backend_up"] and not tier.is_down


def _hung_listener():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # the kernel completes connects; nobody ever reads
    return listener, listener.getsockname()[1]


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return None, port


@pytest.mark.parametrize("outage", [_hung_listener, _closed_port], ids=["hung", "down"])
def test_an_outage_adds_under_50ms_to_a_run_however_many_calls_it_makes(clock, outage):
    """A run's calls to the shared tier (lookups, writes), also across back-offs that end
    mid-run, cost it less than redis_timeout_ms in all: probes run in the background and
    writes on the store's writer thread. Lookups count the time inside the Redis tier (the
    local tiers' work is not the outage's); writes count the whole put the run waits for."""
    listener, port = outage()
    redis_tier = RedisTier(f"redis://127.0.0.1:{port}/0", timeout_ms=50, clock=clock, backoff_seconds=1.0)
    spent = []

    def timed(name, fn):
        def call(*a, **kw):
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent.append((name, round(time.perf_counter() - start, 4)))
        return call
    redis_tier.get = timed("get", redis_tier.get)
    store = TieredStore([MemoryTier("ram", 2**30, None, None, clock=clock), redis_tier], clock=clock)
    put = timed("put", store.put)
    redis_tier._client()   # made once per process, outage or not (a warm-up at start-up makes them)
    redis_tier._client(writer=True)
    redis_tier._threads()
    try:
        for step in range(6):
            for i in range(5):  # lookups of a run, each a miss, then its writes
                assert store.get(f"k{step}-{i}", namespace="ns") is None
                put(f"k{step}-{i}", latent(i), namespace="ns", compute_seconds=0.1)
            clock.advance(redis_tier._backoff + 0.001)  # the back-off ends: the next lookup would re-test
    finally:
        redis_tier.wait_background(5)
        store.close()
        if listener is not None:
            listener.close()
    assert len(spent) == 60
    lookups = [t for name, t in spent if name == "get"]
    assert sum(lookups) < 0.05, [s for s in spent if s[1] > 0.002]
    # a write only queues: it never waits for the network (timeouts 50 ms and 5 s) nor serializes;
    # what it spends is copying the value and, on this shared machine, waiting for the GIL
    assert max(t for name, t in spent if name == "put") < 0.05, [s for s in spent if s[1] > 0.002]
