"""The memory tiers' index: expiry by lifetime queues, replacements, reverse eviction order."""
from cache_helpers import FakeClock, latent, meta
from recall_pack.cache.memory import MemoryTier


def test_an_entry_replaced_later_does_not_hold_back_the_expiry_of_others():
    clock = FakeClock()
    tier = MemoryTier("ram", 10**7, ttl_seconds=60, clock=clock)
    tier.put("ns", "a", latent(1), meta=meta())
    clock.advance(1)
    tier.put("ns", "b", latent(2), meta=meta())
    clock.advance(4)
    tier.put("ns", "a", latent(3), meta=meta())  # a's first record is now stale, ahead of b's
    clock.advance(56)  # b is 60 s old, the new a 56 s
    assert tier.stats()["ns"].entries == 1 and tier.keys("ns") == ["a"]
    assert tier.stats()["ns"].evictions == 1


def test_entries_of_two_lifetimes_expire_each_on_time():
    clock = FakeClock()
    tier = MemoryTier("ram", 10**7, ttl_seconds=1800, clock=clock)
    tier.put("ns", "image", latent(1), meta=meta())
    tier.put("ns", "text", latent(2), meta=meta(ttl=600))
    clock.advance(601)
    assert tier.stats()["ns"].entries == 1
    assert tier.get("ns", "text") is None and tier.get("ns", "image") is not None
    clock.advance(1200)
    assert tier.stats()["ns"].entries == 0


def test_keys_are_listed_in_reverse_eviction_order():
    tier = MemoryTier("ram", 10**7, clock=FakeClock())
    tier.put("ns", "p", latent(1), meta=meta(pinned=True))
    tier.put("ns", "u1", latent(2), meta=meta())
    tier.put("ns", "u2", latent(3), meta=meta())
    tier.get("ns", "u1")
    assert tier.keys("ns") == ["p", "u1", "u2"]  # pinned go last, so they are listed first


def test_a_ttl_change_applies_to_entries_already_stored():
    clock = FakeClock()
    tier = MemoryTier("ram", 10**7, ttl_seconds=3600, clock=clock)
    tier.put("ns", "a", latent(1), meta=meta())
    clock.advance(120)
    tier.configure(ttl_seconds=60)
    assert tier.stats()["ns"].entries == 0 and tier.get("ns", "a") is None
