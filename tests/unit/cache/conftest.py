"""Fixtures shared by the cache-engine tests: a fake clock and a factory for every local tier."""
import pytest

from cache_helpers import FakeClock
from recall_pack.cache.disk import DiskTier
from recall_pack.cache.memory import MemoryTier


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_tier(tmp_path, clock):
    """make_tier(kind, max_bytes, max_entries=None, ttl_seconds=None) -> a fresh tier."""
    made = []

    def make(kind, max_bytes=10**7, max_entries=None, ttl_seconds=None):
        made.append(kind)
        if kind == "memory":
            return MemoryTier("ram", max_bytes, max_entries, ttl_seconds, clock=clock)
        if kind == "disk":
            tier = DiskTier("disk", tmp_path / f"cache{len(made)}", max_bytes, ttl_seconds, clock=clock)
            if max_entries is not None:
                tier.configure(max_entries=max_entries)
            return tier
        raise ValueError(kind)
    return make
