"""The disk tier's own duties: restart survival, damaged files, full disks, the lazy persistent index."""
import errno
import logging
import os

import pytest
import torch
from safetensors.torch import save

from cache_helpers import latent, meta
from recall_pack.cache.disk import DiskTier
from recall_pack.cache.tier import EntryMeta


@pytest.fixture
def root(tmp_path):
    return tmp_path / "cache"


def tier_at(root, clock, max_bytes=10**7, ttl=None):
    # maintenance runs only when a test calls maintain(): no thread races a test's assertions
    return DiskTier("disk", root, max_bytes, ttl, clock=clock, background=False)


def entry_files(root):
    return sorted(p for p in root.rglob("*.safetensors") if p.is_file())


def test_entries_survive_a_restart_with_their_meta(root, clock):
    tier_at(root, clock).put("ns", "k", latent(1), meta=meta(3.0, "a.png", pinned=True))
    again = tier_at(root, clock)
    entry = again.get("ns", "k")
    assert torch.equal(entry.value["samples"], latent(1)["samples"])
    assert (entry.meta.compute_seconds, entry.meta.label, entry.meta.pinned) == (3.0, "a.png", True)
    assert again.stats()["ns"].entries == 1


def test_files_are_sharded_and_no_temporary_file_is_left(root, clock):
    tier = tier_at(root, clock)
    tier.put("ns", "k", latent(1), meta=meta())
    files = entry_files(root)
    assert len(files) == 1 and files[0].parent.parent == root / "v1" and len(files[0].parent.name) == 2
    assert not list(root.rglob("*.tmp"))


def test_constructing_the_tier_touches_nothing(root, clock):
    tier_at(root, clock)
    assert not root.exists()


def test_lru_order_survives_a_restart_and_a_lowered_cap_is_enforced(root, clock):
    tier = tier_at(root, clock)
    for i, name in enumerate("abc"):
        tier.put("ns", name, latent(i), meta=meta())
    tier.get("ns", "a")  # a is now the most recent, b the least
    one = tier.stats()["ns"].bytes // 3
    tier.close()
    again = tier_at(root, clock, max_bytes=2 * one + one // 2)
    assert again.keys("ns") == ["a", "c", "b"]  # the cap is enforced in the background, not on a lookup
    again.maintain()
    assert again.keys("ns") == ["a", "c"]
    assert not tier.path_for("ns", "b").exists() and len(entry_files(root)) == 2


def test_a_lost_index_is_rebuilt_from_the_files_in_mtime_order(root, clock):
    tier = tier_at(root, clock)
    for i, name in enumerate("abc"):
        tier.put("ns", name, latent(i), meta=meta(1.0, f"img {name}"))
    for i, name in enumerate("bca"):  # hits refresh mtimes: they order the rebuild
        os.utime(tier.path_for("ns", name), (1000 + i, 1000 + i))
    tier.close()
    for p in (root / "v1").glob("index.sqlite3*"):
        p.unlink()
    again = tier_at(root, clock)
    assert torch.equal(again.get("ns", "c").value["samples"], latent(2)["samples"])  # read from its file at once
    again.maintain()
    assert again.keys("ns") == ["c", "a", "b"]  # c was just used; then by mtime
    assert again.stats()["ns"].entries == 3 and again.labels("ns")[1] == ("a", "img a")


def test_a_damaged_index_is_replaced_and_rebuilt(root, clock, caplog):
    tier = tier_at(root, clock)
    tier.put("ns", "k", latent(1), meta=meta())
    tier.close()
    for p in (root / "v1").glob("index.sqlite3-*"):
        p.unlink()
    (root / "v1" / "index.sqlite3").write_bytes(b"this is not a database" * 100)
    again = tier_at(root, clock)
    with caplog.at_level(logging.WARNING, logger="recall.cache"):
        assert again.get("ns", "k") is not None
    assert any("index" in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)
    again.maintain()
    assert again.keys("ns") == ["k"] and again.stats()["ns"].entries == 1


def write_damaged(tier, how):
    tier.put("ns", "k", latent(1), meta=meta())
    path = tier.path_for("ns", "k")
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    elif how == "foreign":
        path.write_bytes(save({"weight": torch.randn(4)}))
    elif how == "garbage":
        path.write_bytes(b"\x00garbage" * 10)
    elif how == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("how", ["truncated", "flipped", "garbage", "empty"])
def test_damaged_file_is_a_miss_and_is_removed(root, clock, how, caplog):
    tier = tier_at(root, clock)
    path = write_damaged(tier, how)
    with caplog.at_level(logging.WARNING, logger="recall.cache"):
        assert tier.get("ns", "k") is None
    assert not path.exists()
    assert tier.stats()["ns"].entries == 0 and tier.stats()["ns"].misses == 1
    assert any("damaged cache file" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_damaged_file_found_at_start_up_is_removed(root, clock, how):
    path = write_damaged(tier_at(root, clock), how)
    again = tier_at(root, clock)
    assert again.get("ns", "k") is None
    assert not path.exists()


def test_damaged_files_warn_only_once(root, clock, caplog):
    tier = tier_at(root, clock)
    with caplog.at_level(logging.WARNING, logger="recall.cache"):
        for key in ("a", "b"):
            tier.put("ns", key, latent(1), meta=meta())
            tier.path_for("ns", key).write_bytes(b"junk")
            assert tier.get("ns", key) is None
    assert sum("damaged cache file" in r.getMessage() for r in caplog.records) == 1


def test_a_file_holding_another_keys_entry_is_not_returned(root, clock):
    tier = tier_at(root, clock)
    tier.put("ns", "a", latent(1), meta=meta())
    tier.put("ns", "b", latent(2), meta=meta())
    tier.path_for("ns", "b").write_bytes(tier.path_for("ns", "a").read_bytes())
    assert tier.get("ns", "b") is None


def test_full_disk_skips_writes_with_one_warning_and_reads_go_on(root, clock, monkeypatch, caplog):
    tier = tier_at(root, clock)
    tier.put("ns", "old", latent(1), meta=meta())
    real_open = open

    def full(path, mode="r", *a, **k):
        if "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr("builtins.open", full)
    with caplog.at_level(logging.WARNING, logger="recall.cache"):
        assert not tier.put("ns", "a", latent(2), meta=meta())
        assert not tier.put("ns", "b", latent(3), meta=meta())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "disk is full" in warnings[0].getMessage()
    assert tier.get("ns", "old") is not None
    assert tier.stats()["ns"].entries == 1 and not list(root.rglob("*.tmp"))
    monkeypatch.setattr("builtins.open", real_open)
    assert tier.put("ns", "a", latent(2), meta=meta())  # recovers


def test_unwritable_folder_degrades_to_a_miss(tmp_path, clock):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    tier = DiskTier("disk", blocker / "cache", 10**7, clock=clock)
    assert not tier.put("ns", "k", latent(1), meta=meta())
    assert tier.get("ns", "k") is None
    assert tier.is_down


def test_entry_written_by_another_worker_is_found(root, clock):
    mine, theirs = tier_at(root, clock), tier_at(root, clock)
    mine.keys("ns")  # index built before the other worker writes
    theirs.put("ns", "k", latent(5), meta=meta())
    assert torch.equal(mine.get("ns", "k").value["samples"], latent(5)["samples"])
    assert mine.stats()["ns"].entries == 1


def test_a_rebuild_removes_old_temporary_files_and_keeps_fresh_ones(root, clock):
    shard = root / "v1" / "ab"
    shard.mkdir(parents=True)
    old, fresh = shard / f".{'ab' * 16}.123.tmp", shard / f".{'ab' * 16}.456.tmp"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"another worker is writing this")
    os.utime(old, (1, 1))
    tier_at(root, clock).maintain()  # no index yet: a rebuild
    assert not old.exists() and fresh.exists()


def test_ttl_counts_across_restarts_on_the_wall_clock(root, clock):
    tier_at(root, clock, ttl=100).put("ns", "k", latent(1), meta=meta())
    clock.advance(101)
    assert tier_at(root, clock, ttl=100).get("ns", "k") is None


def test_replacing_an_entry_with_an_oversize_value_leaves_no_orphan_file(root, clock):
    tier = tier_at(root, clock, max_bytes=20_000)
    tier.put("ns", "k", latent(1), meta=meta())
    assert not tier.put("ns", "k", latent(2, shape=(1, 4, 64, 64)), meta=meta())
    assert not tier.path_for("ns", "k").exists()
    assert tier.get("ns", "k") is None and tier.stats()["ns"].bytes == 0


def _lose_index(tier, root):
    tier.close()
    for p in (root / "v1").glob("index.sqlite3*"):
        p.unlink()


@pytest.mark.parametrize("adopted_by", ["rebuild", "lookup"])
def test_an_adopted_entry_ages_from_its_creation(root, clock, adopted_by):
    """The blob carries no disk-specific time: an entry found by its file counts its entry TTL from
    `created` in its metadata, not from the moment the index finds it."""
    tier = tier_at(root, clock)
    tier.put("ns", "old", latent(1), meta=EntryMeta(1.0, clock() - 50, ttl_seconds=60))
    tier.put("ns", "new", latent(2), meta=EntryMeta(1.0, clock(), ttl_seconds=60))
    _lose_index(tier, root)
    again = tier_at(root, clock)
    if adopted_by == "lookup":
        assert again.get("ns", "old") is not None and again.get("ns", "new") is not None
    again.maintain()
    clock.advance(20)  # "old" is 70 s old now, "new" 20 s
    assert again.get("ns", "old") is None
    assert torch.equal(again.get("ns", "new").value["samples"], latent(2)["samples"])
