"""The disk tier never reaches outside its folder and never removes what is not its own."""
import errno
import logging
import os

import torch
from safetensors.torch import save

from cache_helpers import latent, meta
from recall_pack.cache import disk_files
from recall_pack.cache.disk import DiskTier


def tier_at(root, clock, max_bytes=10**7):
    return DiskTier("disk", root, max_bytes, clock=clock, background=False)


def plant_outside(tmp_path, hexid):
    """A folder outside the cache holding a model file and a file named like a damaged entry."""
    outside = tmp_path / "models"
    outside.mkdir()
    model = outside / "model.safetensors"
    model.write_bytes(save({"weight": torch.ones(4)}))
    lookalike = outside / disk_files.file_name(hexid)
    lookalike.write_bytes(b"not an entry, but named like one")
    return outside, {p: p.read_bytes() for p in (model, lookalike)}


def test_a_symlinked_shard_is_never_entered_and_its_files_survive(tmp_path, clock, caplog):
    root = tmp_path / "cache"
    tier = tier_at(root, clock)
    tier.put("ns", "other", latent(1), meta=meta())
    hexid = disk_files.entry_id("ns", "k")
    outside, before = plant_outside(tmp_path, hexid)
    (root / "v1" / hexid[:2]).symlink_to(outside, target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="recall.cache"):
        assert tier.get("ns", "k") is None
        assert not tier.put("ns", "k", latent(2), meta=meta())
        assert not tier.delete("ns", "k")
    assert any("is a link or a file" in r.getMessage() for r in caplog.records)
    tier.clear()
    tier.close()
    for p in (root / "v1").glob("index.sqlite3*"):
        p.unlink()
    again = tier_at(root, clock)
    again.maintain()  # a rebuild walks the shards: not the linked one
    again.clear()
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in outside.iterdir()) == sorted(p.name for p in before)


def test_a_foreign_safetensors_file_in_a_shard_survives_a_rebuild(tmp_path, clock):
    root = tmp_path / "cache"
    tier = tier_at(root, clock)
    tier.put("ns", "k", latent(1), meta=meta())
    shard = tier.path_for("ns", "k").parent
    foreign = shard / "model.safetensors"
    foreign.write_bytes(save({"weight": torch.ones(4)}))
    tier.close()
    for p in (root / "v1").glob("index.sqlite3*"):
        p.unlink()
    again = tier_at(root, clock)
    again.maintain()
    again.clear()
    assert foreign.exists() and again.get("ns", "k") is None


def test_a_foreign_file_at_an_entrys_path_is_left_alone_and_the_entry_stored_beside_it(tmp_path, clock):
    tier = tier_at(tmp_path / "cache", clock)
    tier.put("ns", "k", latent(1), meta=meta())
    path = tier.path_for("ns", "k")
    foreign = save({"weight": torch.ones(4)})
    path.write_bytes(foreign)
    assert tier.get("ns", "k") is None and path.read_bytes() == foreign
    assert tier.put("ns", "k", latent(2), meta=meta())
    assert torch.equal(tier.get("ns", "k").value["samples"], latent(2)["samples"])
    assert path.read_bytes() == foreign
    tier.delete("ns", "k")
    assert path.read_bytes() == foreign and tier.get("ns", "k") is None


def test_a_link_at_an_entrys_path_is_not_followed(tmp_path, clock):
    tier = tier_at(tmp_path / "cache", clock)
    hexid = disk_files.entry_id("ns", "k")
    outside, before = plant_outside(tmp_path, hexid)
    tier.put("ns", "k", latent(1), meta=meta())
    path = tier.path_for("ns", "k")
    path.unlink()
    path.symlink_to(outside / disk_files.file_name(hexid))
    assert tier.get("ns", "k") is None  # the link's target is named like an entry: still not read
    assert tier.put("ns", "k", latent(2), meta=meta())
    assert tier.get("ns", "k") is not None and path.is_symlink()
    tier.clear()
    assert {p: p.read_bytes() for p in before} == before


def test_a_folder_at_an_entrys_path_does_not_stop_it_being_stored(tmp_path, clock, caplog):
    root = tmp_path / "cache"
    tier = tier_at(root, clock)
    path = tier.path_for("ns", "k")
    (path / "inside").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="recall.cache"):
        for i in range(3):
            assert tier.put("ns", "k", latent(i), meta=meta())
            assert torch.equal(tier.get("ns", "k").value["samples"], latent(i)["samples"])
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert not tier.is_down and (path / "inside").is_dir()
    tier.close()
    for p in (root / "v1").glob("index.sqlite3*"):
        p.unlink()
    again = tier_at(root, clock)
    again.maintain()  # the entry stored beside the folder is found by a rebuild too
    assert again.keys("ns") == ["k"]


def test_a_damaged_file_that_cannot_be_removed_is_not_reported_removed(tmp_path, clock, monkeypatch, caplog):
    tier = tier_at(tmp_path / "cache", clock)
    tier.put("ns", "k", latent(1), meta=meta())
    path = tier.path_for("ns", "k")
    path.write_bytes(b"junk")

    def read_only(p, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(p))

    monkeypatch.setattr(disk_files.os, "unlink", read_only)
    with caplog.at_level(logging.WARNING, logger="recall.cache"):
        assert tier.get("ns", "k") is None
    messages = [r.getMessage() for r in caplog.records]
    assert path.exists()
    assert not any("removed damaged" in m for m in messages)
    assert any("could not be removed" in m and "Read-only" in m for m in messages)


def test_a_layout_folder_linked_out_of_the_cache_is_refused(tmp_path, clock):
    root = tmp_path / "cache"
    root.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "v1").symlink_to(outside, target_is_directory=True)
    tier = tier_at(root, clock)
    assert not tier.put("ns", "k", latent(1), meta=meta())
    assert tier.get("ns", "k") is None and tier.is_down
    assert list(outside.iterdir()) == []
    assert os.path.islink(root / "v1")
