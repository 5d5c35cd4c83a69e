"""Entries counted once across the local tiers, without walking the disk tier's keys."""
import torch

from recall_pack.cache.disk import DiskTier
from recall_pack.cache.entry_count import DistinctEntries
from recall_pack.cache.memory import MemoryTier
from recall_pack.cache.tier import EntryMeta


def _meta(label="x"):
    return EntryMeta(compute_seconds=0.1, created=0.0, label=label)


def _put(tier, ns, key):
    assert tier.put(ns, key, torch.zeros(4), meta=_meta(key))


def test_an_entry_in_ram_and_on_disk_counts_once_and_one_only_in_ram_counts(tmp_path):
    ram, disk = MemoryTier("ram", 1 << 20), DiskTier("disk", tmp_path, 1 << 24, background=False)
    try:
        for k in ("a", "b", "c"):
            _put(disk, "shared", k)
        for k in ("b", "c", "d"):
            _put(ram, "shared", k)
        _put(ram, "alice", "e")
        counter = DistinctEntries()
        assert counter.count([ram, disk]) == 5                  # a b c d + e
        assert counter.count([ram, disk], ["shared"]) == 4
        assert counter.count([ram, disk], ["alice"]) == 1
        assert counter.count([ram]) == 4
    finally:
        disk.close()


def test_the_disk_keys_are_never_listed_and_the_count_follows_changes(tmp_path, monkeypatch):
    ram, disk = MemoryTier("ram", 1 << 20), DiskTier("disk", tmp_path, 1 << 24, background=False)
    try:
        for i in range(200):
            _put(disk, "shared", f"k{i}")
        _put(ram, "shared", "k0")
        monkeypatch.setattr(disk, "keys", lambda ns: (_ for _ in ()).throw(AssertionError("listed the disk")))
        counter = DistinctEntries()
        assert counter.count([ram, disk]) == 200
        _put(ram, "shared", "new")                   # only in RAM for now
        assert counter.count([ram, disk]) == 201
        _put(disk, "shared", "new")                  # now on disk too: still one entry
        assert counter.count([ram, disk]) == 201
        assert disk.delete("shared", "k5")
        assert counter.count([ram, disk]) == 200
    finally:
        disk.close()
