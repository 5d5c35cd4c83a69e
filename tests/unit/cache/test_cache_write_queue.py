"""The store's writes to the persistent tiers: one bounded queue, one serialization per miss on the
writer thread, the same bytes in every persistent tier, drops that lose nothing the memory tiers
hold, damage that is a miss, values that cannot be serialized kept in memory, a flush at exit."""
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from cache_helpers import FakeRedisServer, latent
from recall_pack.cache import serialize
from recall_pack.cache.disk import DiskTier
from recall_pack.cache.memory import MemoryTier
from recall_pack.cache.redis_tier import RedisTier, redis_key
from recall_pack.cache.store import TieredStore

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def fake():
    pytest.importorskip("redis")
    pytest.importorskip("fakeredis")
    return FakeRedisServer()


@pytest.fixture
def dumps_calls(monkeypatch):
    """Every serialize.dumps call, as the name of the thread it ran on."""
    calls = []
    real = serialize.dumps

    def counted(*a, **kw):
        calls.append(threading.current_thread().name)
        return real(*a, **kw)
    monkeypatch.setattr(serialize, "dumps", counted)
    return calls


def make_store(tmp_path, clock, fake, **kw):
    ram = MemoryTier("ram", 10**7, None, None, clock=clock)
    disk = DiskTier("disk", tmp_path / "disk", 10**8, background=False)
    # a generous lookup bound: on a loaded test machine a 25 ms wait could open the breaker
    redis = RedisTier("redis://fake/0", client_factory=fake.factory, clock=clock, timeout_ms=5000)
    return TieredStore([ram, disk, redis], clock=clock, **kw), ram, disk, redis


def disk_bytes(disk, key, namespace="shared"):
    return disk.path_for(namespace, key).read_bytes()


def test_a_miss_is_serialized_once_for_disk_and_redis(tmp_path, clock, fake, dumps_calls):
    store, ram, disk, redis = make_store(tmp_path, clock, fake)
    out = store.get_or_compute("k", lambda: latent(1))
    assert store.flush(10)
    assert out.hit is False and len(dumps_calls) == 1
    assert disk_bytes(disk, "k") == fake.client().get(redis_key("shared", "k"))  # one blob for both
    store.close()


def test_serializing_runs_on_the_writer_thread(tmp_path, clock, fake, dumps_calls):
    store, *_ = make_store(tmp_path, clock, fake)
    store.put("k", latent(1))
    assert store.flush(10)
    assert dumps_calls == ["recall-cache-write"]
    assert dumps_calls[0] != threading.current_thread().name
    store.close()


def test_a_redis_hit_is_promoted_into_disk_with_its_own_bytes(tmp_path, clock, fake, dumps_calls):
    other = TieredStore([RedisTier("redis://fake/0", client_factory=fake.factory, clock=clock, timeout_ms=5000)],
                        clock=clock)
    other.put("k", latent(2), compute_seconds=1.5)  # another worker's miss
    assert other.flush(10)
    shared = fake.client().get(redis_key("shared", "k"))
    store, ram, disk, redis = make_store(tmp_path, clock, fake)
    hit = store.get("k")
    assert store.flush(10)
    assert hit.tier == "redis" and torch.equal(hit.value["samples"], latent(2)["samples"])
    assert len(dumps_calls) == 1  # the other worker's, none for the promotion
    assert disk_bytes(disk, "k") == shared
    ram.clear()
    assert store.get("k").tier == "disk"
    other.close()
    store.close()


def test_a_full_queue_drops_with_one_warning_and_memory_tiers_still_answer(tmp_path, clock, fake, caplog):
    store, ram, disk, redis = make_store(tmp_path, clock, fake, write_queue_entries=1)
    store.writes._queue._start = lambda: None  # no writer thread drains the queue, so it fills
    with caplog.at_level(logging.WARNING, "recall.cache"):
        for name in "abc":
            store.put(name, latent(ord(name)))
    assert caplog.text.count("write queue of the persistent tiers is full") == 1
    assert store.stats()["writes"] == {"queued": 1, "dropped": 2}
    for name in "abc":
        hit = store.get(name)
        assert hit.tier == "ram" and torch.equal(hit.value["samples"], latent(ord(name))["samples"])
    del store.writes._queue._start  # the writer drains the one queued write
    store.writes._queue._start()
    assert store.flush(10)
    assert disk.keys("shared") == ["a"] and redis.keys("shared") == ["a"]
    store.close()


def test_a_new_congestion_episode_warns_again(tmp_path, clock, fake, caplog):
    store, ram, disk, redis = make_store(tmp_path, clock, fake, write_queue_entries=1)
    entered, gate = threading.Event(), threading.Event()
    real = disk.put_blob

    def gated(*a, **kw):  # holds the writer inside a write until the test opens the gate
        entered.set()
        gate.wait(10)
        return real(*a, **kw)
    disk.put_blob = gated
    with caplog.at_level(logging.WARNING, "recall.cache"):
        for episode in range(2):
            entered.clear()
            gate.clear()
            store.put(f"written{episode}", latent(1))
            assert entered.wait(10)  # the writer holds it: the queue itself is empty
            store.put(f"queued{episode}", latent(2))
            store.put(f"dropped{episode}", latent(3))
            gate.set()
            assert store.flush(10)
    assert caplog.text.count("write queue of the persistent tiers is full") == 2
    assert store.stats()["writes"]["dropped"] == 2
    assert sorted(redis.keys("shared")) == ["queued0", "queued1", "written0", "written1"]
    store.close()


def test_the_queue_counts_the_tensor_bytes_of_what_it_holds(tmp_path, clock, fake):
    value = {"samples": torch.zeros(1, 4, 64, 64)}  # 64 KiB of tensor bytes
    store, *_ = make_store(tmp_path, clock, fake, write_queue_bytes=60_000)
    store.writes._queue._start = lambda: None
    store.put("big", value)
    assert store.stats()["writes"] == {"queued": 0, "dropped": 1}
    roomy, *_ = make_store(tmp_path / "roomy", clock, fake, write_queue_bytes=80_000)
    roomy.writes._queue._start = lambda: None
    roomy.put("big", value)
    assert roomy.stats()["writes"] == {"queued": 1, "dropped": 0}


def test_a_damaged_blob_on_disk_and_in_redis_is_a_miss_and_removed(tmp_path, clock, fake, caplog):
    store, ram, disk, redis = make_store(tmp_path, clock, fake)
    store.put("k", latent(1))
    assert store.flush(10)
    path, rkey = disk.path_for("shared", "k"), redis_key("shared", "k")
    damaged = bytearray(path.read_bytes())
    damaged[-5] ^= 0x40  # one tensor byte
    path.write_bytes(bytes(damaged))
    fake.client().set(rkey, bytes(damaged))
    ram.clear()
    with caplog.at_level(logging.WARNING, "recall.cache"):
        assert store.get("k") is None
        redis.wait_background(10)
    assert not path.exists() and not fake.client().exists(rkey)
    assert "removed damaged cache file" in caplog.text and "removed damaged Redis value" in caplog.text
    out = store.get_or_compute("k", lambda: latent(3))
    assert out.hit is False and torch.equal(out.value["samples"], latent(3)["samples"])
    store.close()


def test_a_value_that_cannot_be_serialized_stays_in_memory_without_error(tmp_path, clock, fake, caplog):
    store, ram, disk, redis = make_store(tmp_path, clock, fake)
    value = {"samples": torch.ones(2, dtype=torch.complex64)}  # copied, but no exact byte format
    with caplog.at_level(logging.WARNING, "recall.cache"):
        assert store.put("k", value) is False  # a copy, not a reference
        assert store.flush(10)
    assert caplog.records == []
    assert disk.keys("shared") == [] and redis.keys("shared") == []
    hit = store.get("k")
    assert hit.tier == "ram" and torch.equal(hit.value["samples"], value["samples"])
    store.close()


def test_the_store_keeps_a_value_it_cannot_copy_by_reference_when_asked_to_decide(tmp_path, clock, fake):
    store, ram, disk, redis = make_store(tmp_path, clock, fake)
    model = object()
    assert store.put("m", {"model": model, "x": torch.ones(1)}, by_reference=None) is True
    assert store.put("t", latent(1), by_reference=None) is False
    assert store.flush(10)
    assert store.get("m").value["model"] is model
    assert disk.keys("shared") == ["t"] and sorted(ram.keys("shared")) == ["m", "t"]
    store.close()


_EXITING_WORKER = """
import atexit, sys, threading, types
from pathlib import Path
package = types.ModuleType("recall_pack")
package.__path__ = [sys.argv[1]]
sys.modules["recall_pack"] = package
import torch
from recall_pack.cache.disk import DiskTier
from recall_pack.cache.store import TieredStore
gate = threading.Event()
disk = DiskTier("disk", Path(sys.argv[2]), 10**8, background=False)
real = disk.put_blob
disk.put_blob = lambda *a, **kw: gate.wait(30) and real(*a, **kw)
store = TieredStore([disk])
store.put("k", {"samples": torch.ones(1, 4, 8, 8)})
atexit.register(gate.set)  # runs before the store's own flush at exit (last registered, first run)
"""


def test_a_short_lived_worker_does_not_lose_its_queued_write_at_exit(tmp_path):
    subprocess.run([sys.executable, "-c", _EXITING_WORKER, str(REPO), str(tmp_path / "disk")],
                   check=True, timeout=120)
    disk = DiskTier("disk", tmp_path / "disk", 10**8, background=False)
    assert torch.equal(disk.get("shared", "k").value["samples"], torch.ones(1, 4, 8, 8))
    disk.close()
