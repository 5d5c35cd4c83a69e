"""One contract suite, run against every local tier (memory and disk)."""
import threading

import pytest
import torch

from cache_helpers import LOCAL_TIERS, latent, meta

pytestmark = pytest.mark.parametrize("kind", LOCAL_TIERS)


def size_of(make_tier, kind, value):
    """Bytes one entry of this value takes in this tier type (tiers account differently;
    disk entries differ by a few header bytes with the key's length)."""
    probe = make_tier(kind)
    assert probe.put("ns", "k", value, meta=meta())
    return probe.stats()["ns"].bytes


def room_for(n, one):
    """A cap that holds n entries and not n + 1."""
    return n * one + one // 2


def test_put_then_get_returns_equal_value(make_tier, kind):
    tier = make_tier(kind)
    value = latent(1)
    assert tier.put("ns", "a", value, meta=meta(2.5, "img.png"))
    entry = tier.get("ns", "a")
    assert torch.equal(entry.value["samples"], value["samples"])
    assert entry.meta.compute_seconds == 2.5 and entry.meta.label == "img.png"


def test_missing_key_is_a_miss(make_tier, kind):
    tier = make_tier(kind)
    assert tier.get("ns", "nope") is None
    assert tier.stats()["ns"].misses == 1


def test_delete_removes_only_that_key(make_tier, kind):
    tier = make_tier(kind)
    tier.put("ns", "a", latent(1), meta=meta())
    tier.put("ns", "b", latent(2), meta=meta())
    assert tier.delete("ns", "a")
    assert tier.get("ns", "a") is None
    assert tier.get("ns", "b") is not None
    assert not tier.delete("ns", "a")


def test_clear_one_namespace_keeps_others(make_tier, kind):
    tier = make_tier(kind)
    tier.put("alice", "a", latent(1), meta=meta())
    tier.put("alice", "b", latent(2), meta=meta())
    tier.put("bob", "a", latent(3), meta=meta())
    assert tier.clear("alice") == 2
    assert tier.keys("alice") == []
    assert tier.get("bob", "a") is not None
    assert tier.clear() == 1


def test_namespaces_never_see_each_others_entries(make_tier, kind):
    tier = make_tier(kind)
    tier.put("alice", "k", latent(1), meta=meta())
    assert tier.get("bob", "k") is None
    tier.put("bob", "k", latent(2), meta=meta())
    assert torch.equal(tier.get("alice", "k").value["samples"], latent(1)["samples"])
    assert torch.equal(tier.get("bob", "k").value["samples"], latent(2)["samples"])


def test_byte_accounting_follows_puts_replacements_and_deletes(make_tier, kind):
    tier = make_tier(kind)
    one = size_of(make_tier, kind, latent(1))
    tier.put("ns", "a", latent(1), meta=meta())
    tier.put("ns", "b", latent(2), meta=meta())
    assert tier.stats()["ns"].bytes == 2 * one and tier.stats()["ns"].entries == 2
    tier.put("ns", "a", latent(3), meta=meta())  # replacing does not add
    assert tier.stats()["ns"].bytes == 2 * one
    tier.delete("ns", "a")
    assert tier.stats()["ns"].bytes == one and tier.stats()["ns"].entries == 1


def test_least_recently_used_is_evicted_first(make_tier, kind):
    one = size_of(make_tier, kind, latent(0))
    tier = make_tier(kind, max_bytes=room_for(3, one))
    for name in "abc":
        tier.put("ns", name, latent(ord(name)), meta=meta())
    tier.get("ns", "a")  # a becomes most recent; b is now the oldest
    tier.put("ns", "d", latent(4), meta=meta())
    assert tier.keys("ns") == ["d", "a", "c"]
    assert tier.stats()["ns"].evictions == 1


def test_pinned_entries_are_evicted_after_unpinned(make_tier, kind):
    one = size_of(make_tier, kind, latent(0))
    tier = make_tier(kind, max_bytes=room_for(2, one))
    tier.put("ns", "p", latent(1), meta=meta(pinned=True))
    tier.put("ns", "u", latent(2), meta=meta())
    tier.put("ns", "n", latent(3), meta=meta())
    assert sorted(tier.keys("ns")) == ["n", "p"]


def test_entry_cap_evicts_oldest(make_tier, kind):
    tier = make_tier(kind, max_entries=2)
    for name in "abc":
        tier.put("ns", name, latent(ord(name)), meta=meta())
    assert tier.keys("ns") == ["c", "b"]


def test_value_bigger_than_the_cap_is_refused_and_evicts_nothing(make_tier, kind):
    one = size_of(make_tier, kind, latent(0))
    tier = make_tier(kind, max_bytes=room_for(2, one))
    tier.put("ns", "s", latent(1), meta=meta())
    assert not tier.put("ns", "b", latent(2, shape=(1, 4, 64, 64)), meta=meta())
    assert tier.get("ns", "b") is None
    assert tier.keys("ns") == ["s"]


def test_entry_expires_after_ttl_on_the_injected_clock(make_tier, kind, clock):
    tier = make_tier(kind, ttl_seconds=60)
    tier.put("ns", "a", latent(1), meta=meta())
    clock.advance(59)
    assert tier.get("ns", "a") is not None
    clock.advance(2)
    assert tier.get("ns", "a") is None
    assert tier.stats()["ns"].entries == 0


def test_per_entry_ttl_shorter_than_the_tiers_wins(make_tier, kind, clock):
    tier = make_tier(kind, ttl_seconds=3600)
    tier.put("ns", "text", latent(1), meta=meta(ttl=600))
    clock.advance(601)
    assert tier.get("ns", "text") is None


def test_configure_lowers_the_cap_and_evicts_at_once(make_tier, kind):
    one = size_of(make_tier, kind, latent(0))
    tier = make_tier(kind, max_bytes=room_for(5, one))
    for name in "abcd":
        tier.put("ns", name, latent(ord(name)), meta=meta())
    tier.configure(max_bytes=room_for(2, one))
    assert tier.keys("ns") == ["d", "c"]
    assert tier.stats()["ns"].bytes <= 2 * one


def test_hits_and_saved_seconds_are_counted_per_namespace(make_tier, kind):
    tier = make_tier(kind)
    tier.put("ns", "a", latent(1), meta=meta(1.5))
    tier.get("ns", "a")
    tier.get("ns", "a")
    tier.get("other", "a")
    s = tier.stats()
    assert (s["ns"].hits, s["ns"].misses, s["ns"].saved_seconds) == (2, 0, 3.0)
    assert (s["other"].hits, s["other"].misses) == (0, 1)


def test_concurrent_puts_and_gets_keep_the_cap_and_the_values(make_tier, kind):
    one = size_of(make_tier, kind, latent(0))
    tier = make_tier(kind, max_bytes=room_for(4, one))
    errors = []

    def worker(wid):
        try:
            for i in range(25):
                key = f"{wid}{i % 6}"
                value = latent(wid * 100 + i % 6)
                tier.put("ns", key, value, meta=meta())
                entry = tier.get("ns", key)
                # an entry may be evicted by another thread, but never holds another key's value
                if entry is not None and not torch.equal(entry.value["samples"], value["samples"]):
                    errors.append(key)
                assert tier.stats()["ns"].bytes <= room_for(4, one)
        except Exception as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert tier.stats()["ns"].bytes <= room_for(4, one)
    assert tier.stats()["ns"].entries == len(tier.keys("ns"))
