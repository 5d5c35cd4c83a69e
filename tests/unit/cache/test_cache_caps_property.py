"""Property: under any sequence of puts, gets, deletes and cap changes, no cap is ever passed."""
import torch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_helpers import FakeClock, meta
from recall_pack.cache.disk import DiskTier
from recall_pack.cache.memory import MemoryTier

ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.sampled_from("abcdefgh"), st.integers(1, 600), st.booleans()),
    st.tuples(st.just("get"), st.sampled_from("abcdefgh")),
    st.tuples(st.just("delete"), st.sampled_from("abcdefgh")),
    st.tuples(st.just("tick"), st.integers(1, 40)),
    st.tuples(st.just("cap"), st.integers(0, 4000)),
), max_size=40)


def check(tier, ops, clock, entry_cap):
    check_with(tier, ops, clock, entry_cap, {})


@settings(max_examples=80, deadline=None)
@given(ops)
def test_memory_tier_caps_hold(ops):
    clock = FakeClock()
    check(MemoryTier("ram", 3000, 5, ttl_seconds=100, clock=clock), ops, clock, 5)


@settings(max_examples=40, deadline=None)
@given(ops)
def test_disk_tier_caps_hold(tmp_path_factory, ops):
    clock = FakeClock()
    tier = DiskTier("disk", tmp_path_factory.mktemp("caps"), 6000, ttl_seconds=100, clock=clock)
    check(tier, ops, clock, 10**9)
    on_disk = sum(p.stat().st_size for p in tier.root.rglob("*.safetensors"))
    assert on_disk == sum(s.bytes for s in tier.stats().values())


# The same properties on tiers that already hold many entries: the caps are checked against running
# totals and the victims come from the LRU end, whatever the size. Each tier is filled once per module
# and every example runs on it, so the state (and the record of what each key holds) carries over.
BIG = {"memory": 50_000, "disk": 3_000}


def big_ops(n):
    keys = st.one_of(st.sampled_from("abcdefgh"), st.integers(0, n - 1).map(lambda i: f"pre{i}"))
    return st.lists(st.one_of(
        st.tuples(st.just("put"), keys, st.integers(1, 600), st.booleans()),
        st.tuples(st.just("get"), keys),
        st.tuples(st.just("delete"), keys),
        st.tuples(st.just("tick"), st.integers(1, 40)),
        st.tuples(st.just("cap"), st.integers(-3000, 3000)),  # relative to the filled size
    ), max_size=40)


class Filled:
    def __init__(self, tier, clock, n, entry_cap):
        self.tier, self.clock, self.entry_cap = tier, clock, entry_cap
        self.values = {}
        for i in range(n):
            if tier.put("ns", f"pre{i}", {"samples": torch.full((1,), 1.0)}, meta=meta(pinned=i % 7 == 0)):
                self.values[f"pre{i}"] = 1
        self.full = sum(s.bytes for s in tier.stats().values())

    def run(self, ops):
        ops = [("cap", max(0, self.full + op[1])) if op[0] == "cap" else op for op in ops]
        check_with(self.tier, ops, self.clock, self.entry_cap, self.values)


def check_with(tier, ops, clock, entry_cap, values):
    for op in ops:
        if op[0] == "put":
            _, key, n, pinned = op
            if tier.put("ns", key, {"samples": torch.full((n,), float(n))}, meta=meta(pinned=pinned)):
                values[key] = n
        elif op[0] == "get":
            entry = tier.get("ns", op[1])
            if entry is not None:
                assert entry.value["samples"].numel() == values[op[1]]
        elif op[0] == "delete":
            tier.delete("ns", op[1])
        elif op[0] == "tick":
            clock.advance(op[1])
        else:
            tier.configure(max_bytes=op[1])
        stats = tier.stats().get("ns")
        if stats is not None:
            assert stats.bytes <= tier.max_bytes and stats.entries <= entry_cap


@pytest.fixture(scope="module")
def big_memory():
    clock = FakeClock()
    n = BIG["memory"]
    return Filled(MemoryTier("ram", 4 * n + 2000, n + 3, ttl_seconds=10**6, clock=clock), clock, n, n + 3)


@pytest.fixture(scope="module")
def big_disk(tmp_path_factory):
    clock = FakeClock()
    tier = DiskTier("disk", tmp_path_factory.mktemp("big"), 10**9, ttl_seconds=10**6, clock=clock, background=False)
    return Filled(tier, clock, BIG["disk"], 10**9)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=big_ops(BIG["memory"]))
def test_memory_tier_caps_hold_when_it_holds_many_entries(big_memory, ops):
    big_memory.run(ops)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=big_ops(BIG["disk"]))
def test_disk_tier_caps_hold_when_it_holds_many_entries(big_disk, ops):
    big_disk.run(ops)
    on_disk = sum(p.stat().st_size for p in big_disk.tier.root.rglob("*.safetensors"))
    assert on_disk == sum(s.bytes for s in big_disk.tier.stats().values())
