"""Property: under any sequence of puts, gets, deletes and cap changes, no cap is ever passed."""
import torch
from hypothesis import given, settings
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
    values = {}
    for op in ops:
        if op[0] == "put":
            _, key, n, pinned = op
            value = {"samples": torch.full((n,), float(n))}
            if tier.put("ns", key, value, meta=meta(pinned=pinned)):
                values[key] = n
        elif op[0] == "get":
            entry = tier.get("ns", op[1])
            if entry is not None:  # a hit is always the value last stored under that key
                assert entry.value["samples"].numel() == values[op[1]]
        elif op[0] == "delete":
            tier.delete("ns", op[1])
        elif op[0] == "tick":
            clock.advance(op[1])
        else:
            tier.configure(max_bytes=op[1])
        stats = tier.stats().get("ns")
        if stats is not None:
            assert stats.bytes <= tier.max_bytes
            assert stats.entries <= entry_cap


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
