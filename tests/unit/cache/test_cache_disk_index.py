"""The disk tier at scale: the persistent index, restarts, workers sharing a folder, crashes mid-write."""
import os
import sys

import pytest
import torch

from cache_helpers import latent, meta
from recall_pack.cache.disk import DiskTier
from recall_pack.cache.disk_files import entry_id
from recall_pack.cache.disk_index import STORED, Row

_seen: list | None = None  # (event, path) while a test counts; an audit hook cannot be removed once added


def _audit(event, args):
    if _seen is not None and event in ("open", "os.scandir", "os.listdir", "glob.glob", "os.walk"):
        _seen.append((event, str(args[0]) if args else ""))


sys.addaudithook(_audit)


class count_file_access:
    """Records every file open and folder listing Python makes under `root` (SQLite's own I/O is C)."""

    def __init__(self, root):
        self.root = str(root)
        self.events: list = []

    def __enter__(self):
        global _seen
        _seen = []
        return self

    def __exit__(self, *exc):
        global _seen
        self.events = [e for e in _seen if e[1].startswith(self.root) or e[0] != "open"]
        _seen = None


def tier_at(root, clock, max_bytes=10**9, **kw):
    return DiskTier("disk", root, max_bytes, clock=clock, background=False, **kw)


def on_disk(root):
    return sum(p.stat().st_size for p in root.rglob("*.safetensors"))


def add_many(tier, n, size=128):
    """n entries the quick way: a small file per entry and its index row, in one transaction.
    (Through put() this would take minutes; the files only need to exist, they are never read.)"""
    db = tier._index()
    payload = b"\0" * size
    with db.write():
        for i in range(n):
            hexid = entry_id("ns", f"key{i}")
            path = tier._path(hexid, 0)
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(payload)
            db.insert(Row(bytes.fromhex(hexid), "ns", f"key{i}", size, db.next_lru(), tier.clock(), None,
                          f"label {i}", False, STORED, i, 0))


def test_first_lookup_after_a_restart_opens_one_file_of_100k(tmp_path, clock):
    root = tmp_path / "cache"
    tier = tier_at(root, clock)
    add_many(tier, 100_000)
    tier.put("ns", "wanted", latent(7), meta=meta(2.0, "a.png"))
    tier.close()
    again = tier_at(root, clock)
    with count_file_access(root) as seen:
        entry = again.get("ns", "wanted")
    assert torch.equal(entry.value["samples"], latent(7)["samples"])
    opens = [p for e, p in seen.events if e == "open"]
    assert opens == [str(again.path_for("ns", "wanted"))]
    assert not [e for e in seen.events if e[0] != "open"]  # no folder was listed
    with count_file_access(root) as seen:
        stats = again.stats()["ns"]
        recent = again.labels("ns", 5)
    assert stats.entries == 100_001 and seen.events == []
    assert recent[0] == ("wanted", "a.png") and len(recent) == 5


def test_a_miss_after_a_restart_opens_no_file(tmp_path, clock):
    root = tmp_path / "cache"
    tier = tier_at(root, clock)
    tier.put("ns", "k", latent(1), meta=meta())
    tier.close()
    again = tier_at(root, clock)
    with count_file_access(root) as seen:
        assert again.get("ns", "other") is None
    assert seen.events == []


def test_two_workers_see_each_others_entries_and_share_one_cap(tmp_path, clock):
    root = tmp_path / "cache"
    probe = tier_at(tmp_path / "probe", clock)
    probe.put("ns", "p", latent(0), meta=meta())
    one = probe.stats()["ns"].bytes
    mine, theirs = tier_at(root, clock, 3 * one + one // 2), tier_at(root, clock, 3 * one + one // 2)
    mine.put("ns", "a", latent(1), meta=meta())
    theirs.put("ns", "b", latent(2), meta=meta())
    assert torch.equal(mine.get("ns", "b").value["samples"], latent(2)["samples"])
    for name in "cd":
        theirs.put("ns", name, latent(3), meta=meta())
    assert mine.keys("ns") == theirs.keys("ns") == ["d", "c", "b"]  # a went: one cap over both
    assert on_disk(root) == mine.stats()["ns"].bytes <= 3 * one + one // 2


def test_a_forked_worker_writes_through_its_own_connection(tmp_path, clock):
    root = tmp_path / "cache"
    tier = tier_at(root, clock)
    tier.put("ns", "parent", latent(1), meta=meta())
    pid = os.fork()
    if pid == 0:  # the child: uses the tier object it inherited
        ok = tier.put("ns", "child", latent(2), meta=meta()) and tier.get("ns", "parent") is not None
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert torch.equal(tier.get("ns", "child").value["samples"], latent(2)["samples"])
    assert tier.keys("ns") == ["child", "parent"]  # the parent's connection still works


def test_a_crash_mid_write_loses_only_the_entry_being_written(tmp_path, clock, monkeypatch):
    root = tmp_path / "cache"
    tier = tier_at(root, clock)
    tier.put("ns", "kept", latent(1), meta=meta())

    def crash(*a, **k):
        raise KeyboardInterrupt("the process dies here")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        tier.put("ns", "lost", latent(2), meta=meta())
    monkeypatch.undo()
    again = tier_at(root, clock)  # the next start
    assert again.get("ns", "lost") is None
    assert torch.equal(again.get("ns", "kept").value["samples"], latent(1)["samples"])
    clock.advance(DiskTier.STALE_WRITE_SECONDS + 1)
    again.put("ns", "new", latent(3), meta=meta())  # a put releases the dead writer's reservation
    assert not list(root.rglob("*.tmp"))
    assert sorted(again.keys("ns")) == ["kept", "new"]
    assert on_disk(root) == again.stats()["ns"].bytes


def test_ttls_survive_a_restart_and_expire_through_the_index(tmp_path, clock):
    root = tmp_path / "cache"
    tier = tier_at(root, clock, ttl_seconds=100)
    tier.put("ns", "short", latent(1), meta=meta(ttl=10))
    tier.put("ns", "long", latent(2), meta=meta())
    tier.close()
    clock.advance(11)
    again = tier_at(root, clock, ttl_seconds=100)
    assert again.stats()["ns"].entries == 1 and again.get("ns", "short") is None
    clock.advance(90)
    assert again.stats().get("ns") is None or again.stats()["ns"].entries == 0
    assert on_disk(root) == 0


def test_miss_explanations_read_a_bounded_number_of_recent_entries(tmp_path, clock):
    tier = tier_at(tmp_path / "cache", clock)
    for i in range(100):
        tier.put("ns", f"k{i}", {"samples": torch.zeros(1)}, meta=meta(label=f"seed {i}"))
    recent = tier.labels("ns")
    assert len(recent) == DiskTier.RECENT and recent[0] == ("k99", "seed 99")
