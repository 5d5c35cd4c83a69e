"""TieredStore: lookup order, promotion, single flight, failures, unstorable values."""
import logging
import threading

import pytest
import torch

from cache_helpers import latent
from recall_pack.cache.disk import DiskTier
from recall_pack.cache.memory import MemoryTier
from recall_pack.cache.store import IN_FLIGHT, TieredStore
from recall_pack.cache.tier import PersistentTier


@pytest.fixture
def tiers(tmp_path, clock):
    hot = MemoryTier("vram", 10**6, 2, 60, clock=clock)
    warm = MemoryTier("ram", 10**7, None, 60, clock=clock)
    cold = DiskTier("disk", tmp_path / "c", 10**8, clock=clock)
    return hot, warm, cold


@pytest.fixture
def store(tiers, clock):
    return TieredStore(list(tiers), clock=clock, background_writes=False)


def test_put_writes_every_tier_and_get_answers_from_the_top(store, tiers):
    store.put("k", latent(1), compute_seconds=2.0)
    assert all(t.keys("shared") == ["k"] for t in tiers)
    hit = store.get("k")
    assert hit.tier == "vram" and hit.saved_seconds == 2.0


def test_hit_in_a_lower_tier_is_promoted_to_the_tiers_above(store, tiers):
    hot, warm, cold = tiers
    store.put("k", latent(1))
    hot.clear()
    warm.clear()
    assert store.get("k").tier == "disk"
    assert hot.keys("shared") == ["k"] and warm.keys("shared") == ["k"]
    assert store.get("k").tier == "vram"


def test_promotion_respects_the_upper_tiers_caps(store, tiers):
    hot, warm, cold = tiers
    big = {"samples": torch.zeros(400_000)}  # 1.6 MB: over the hot tier's 1 MB cap
    store.put("big", big)
    assert hot.keys("shared") == [] and warm.keys("shared") == ["big"]
    warm.clear()
    assert store.get("big").tier == "disk"
    assert hot.keys("shared") == [] and warm.keys("shared") == ["big"]


def test_namespaces_are_isolated_in_the_store(store):
    store.put("k", latent(1), namespace="user:alice")
    assert store.get("k", namespace="user:bob") is None
    assert store.get("k", namespace="user:alice") is not None


def test_get_or_compute_computes_once_then_hits(store):
    calls = []
    first = store.get_or_compute("k", lambda: calls.append(1) or latent(1), label="a.png")
    second = store.get_or_compute("k", lambda: calls.append(1) or latent(1))
    assert (first.hit, second.hit, len(calls)) == (False, True, 1)
    assert second.tier == "vram" and second.saved_seconds == pytest.approx(first.compute_seconds)
    assert store.recent_keys("shared", 5) == [("k", "a.png")]


def test_a_label_and_pin_given_as_functions_are_worked_out_only_when_the_value_is_stored(store, tiers):
    asked = []
    label = lambda: asked.append("label") or "a.png"  # noqa: E731
    pinned = lambda: asked.append("pinned") or True  # noqa: E731
    assert store.get_or_compute("k", lambda: latent(1), label=label, pinned=pinned).hit is False
    assert sorted(asked) == ["label", "pinned"]
    assert store.get_or_compute("k", lambda: latent(1), label=label, pinned=pinned).hit is True
    assert sorted(asked) == ["label", "pinned"]  # the hit asked for neither
    assert store.recent_keys("shared", 5) == [("k", "a.png")]
    hot = tiers[0]
    store.put("x", latent(2))
    store.put("y", latent(3))  # the hot tier holds 2: the unpinned one goes, the pinned one stays
    assert "k" in hot.keys("shared")


def test_single_flight_two_callers_wait_for_one_compute(store):
    started, release, calls = threading.Event(), threading.Event(), []

    def slow():
        calls.append(1)
        started.set()
        release.wait(5)
        return latent(7)

    results = []
    first = threading.Thread(target=lambda: results.append(store.get_or_compute("k", slow)))
    first.start()
    started.wait(5)
    second = threading.Thread(target=lambda: results.append(store.get_or_compute("k", slow)))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert len(calls) == 1
    assert sorted(r.hit for r in results) == [False, True]
    waiter = next(r for r in results if r.hit)
    assert waiter.tier in (IN_FLIGHT, "vram")
    assert torch.equal(waiter.value["samples"], latent(7)["samples"])


def test_a_failed_compute_is_raised_and_the_next_caller_computes(store):
    def boom():
        raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        store.get_or_compute("k", boom)
    assert store.get_or_compute("k", lambda: latent(1)).hit is False


def test_unstorable_value_stays_in_memory_tiers_only(store, tiers):
    hot, warm, cold = tiers
    value = {"samples": torch.zeros(2), "control": object()}
    store.put("k", value)
    assert cold.keys("shared") == []
    assert store.get("k").value["control"] is value["control"]


def test_by_reference_values_go_to_ram_unchanged(store, tiers):
    hot, warm, cold = tiers
    model = object()
    store.put("m", model, by_reference=True)
    assert warm.keys("shared") == ["m"] and hot.keys("shared") == [] and cold.keys("shared") == []
    assert store.get("m").value is model


class BrokenTier(PersistentTier):
    def __init__(self):
        super().__init__("redis")
        self.fail = True
        self.written = []

    def get_blob(self, namespace, key):
        if self.fail:
            raise ConnectionError("connection refused")
        return None

    def put_blob(self, namespace, key, blob, meta):
        if self.fail:
            raise ConnectionError("connection refused")
        self.written.append(key)
        return True

    def clear(self, namespace=None):
        return 0


def test_a_failing_tier_is_a_miss_with_one_warning_and_events(tiers, clock, caplog):
    broken = BrokenTier()
    store = TieredStore([tiers[1], broken], clock=clock, background_writes=False)
    events = []
    store.add_listener(lambda e, info: events.append((e, info["tier"])))
    with caplog.at_level(logging.WARNING, logger="recall.cache"):
        assert store.get("x") is None
        store.put("x", latent(1))
        assert store.get("y") is None
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
    assert events == [("backend_down", "redis")]
    broken.fail = False
    store.put("z", latent(1))
    assert broken.written == ["z"]
    broken.report_ok()
    assert events[-1] == ("backend_up", "redis")


def test_background_writes_reach_the_disk_after_flush(tiers, clock):
    store = TieredStore(list(tiers), clock=clock, background_writes=True)
    store.put("k", latent(1))
    store.flush()
    assert tiers[2].keys("shared") == ["k"]
    store.close()


def test_disabled_store_neither_reads_nor_writes(store, tiers):
    store.enabled = False
    outcome = store.get_or_compute("k", lambda: latent(1))
    assert outcome.hit is False and all(t.keys("shared") == [] for t in tiers)


def test_stats_report_tiers_namespaces_and_totals(store):
    store.get_or_compute("k", lambda: latent(1), namespace="a")
    store.get_or_compute("k", lambda: latent(1), namespace="a")
    s = store.stats()
    assert s["namespaces"]["a"]["hits"] == 1 and s["namespaces"]["a"]["misses"] == 1
    assert s["totals"]["entries"] == 3 and set(s["tiers"]) == {"vram", "ram", "disk"}


def test_clear_by_tier_and_delete_by_key(store, tiers):
    store.put("k", latent(1))
    store.put("j", latent(2))
    assert store.clear(tier="vram") == 2
    assert store.delete("k") == 2  # ram and disk
    assert store.get("k") is None and store.get("j").tier == "ram"


def test_to_device_moves_a_hits_tensors(store):
    store.put("k", latent(1))
    hit = store.get("k", to_device="cpu")
    assert hit.value["samples"].device.type == "cpu"
