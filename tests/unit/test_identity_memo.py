"""Encoder identities across restarts: remembered per loader file, re-hashed when anything is in doubt.

A "restart" here is what a new process has: a fresh per-object memo, a fresh model object
holding the same weights, and a WeightsMemo read back from the same file.
"""
import contextlib
import json
import logging
import os
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from recall_pack.cache.config import CacheConfig
from recall_pack.cache.weights_memo import WeightsMemo
from recall_pack.nodes import identity, runtime
from support.recall_runtime import use_runtime
from recall_pack.nodes.lib.file_digest import unchanged_since
from recall_pack.nodes.model_origin import Origin


class FakeVAE:
    """The attributes of comfy.sd.VAE that identity reads."""

    def __init__(self, seed, dtype=torch.float32):
        torch.manual_seed(seed)
        self.first_stage_model = torch.nn.Conv2d(3, 4, 3).to(dtype)
        self.patcher = SimpleNamespace(patches={}, patches_uuid="base", backup={}, hook_backup={})
        self.vae_dtype = dtype
        self.latent_dim = 2

    def throw_exception_if_invalid(self):
        pass


class World:
    """A model file, a memo file, and processes that start after the file was written."""

    def __init__(self, tmp_path, monkeypatch, runtimes: contextlib.ExitStack):
        self.tmp, self.monkeypatch, self.runtimes = tmp_path, monkeypatch, runtimes
        self.file = tmp_path / "models" / "vae.safetensors"
        self.file.parent.mkdir()
        self.file.write_bytes(b"weights v1")
        self.memo_path = tmp_path / "cache" / "encoder_identities.json"
        self.hashes = []
        original = identity.fingerprint_tensors
        monkeypatch.setattr(identity, "fingerprint_tensors", lambda sd: self.hashes.append(1) or original(sd))

    def start(self, started_at=None):
        """A new process: empty in-memory memos; by default it starts after every file was written."""
        self.monkeypatch.setattr(identity, "_weights_memo", type(identity._weights_memo)())
        self.memo = WeightsMemo(self.memo_path)
        self.install(time.time() + 2 * identity.SETTLE_SECONDS if started_at is None else started_at)
        self.hashes.clear()

    def install(self, started_at):
        """A runtime holding this process's memo and start time (None: unknown)."""
        self.runtimes.enter_context(use_runtime(runtime.Runtime(CacheConfig(), weights_memo=self.memo,
                                                                started_at=started_at)))

    def origin(self, options=None):
        key = json.dumps({"loader": "VAELoader", "files": [str(self.file)], "options": options or {}})
        return Origin(key, (str(self.file),), (str(self.file), str(self.file.parent)))

    def load(self, seed=0, **kw):
        vae = FakeVAE(seed, **kw)
        identity.attach_origin(vae.first_stage_model, self.origin())
        return vae


@pytest.fixture
def world(tmp_path, monkeypatch):
    with contextlib.ExitStack() as runtimes:
        yield World(tmp_path, monkeypatch, runtimes)


def test_restart_reuses_the_identity_without_hashing_weights(world):
    world.start()
    first = identity.vae_identity(world.load())
    assert world.hashes == [1]
    world.start()
    again = identity.vae_identity(world.load())
    assert again == first and world.hashes == []


def test_replaced_file_is_hashed_again(world):
    world.start()
    first = identity.vae_identity(world.load(seed=0))
    replacement = world.file.with_name("new.tmp")
    replacement.write_bytes(b"weights v1")  # same size, even the same bytes: another inode, ctime
    os.replace(replacement, world.file)
    world.start()
    other = identity.vae_identity(world.load(seed=1))
    assert world.hashes == [1] and other != first


def test_file_changed_after_the_process_started_is_not_trusted(world):
    world.start(started_at=time.time() - 3600)  # the model file is newer than the process
    identity.vae_identity(world.load())
    assert world.hashes == [1] and len(world.memo) == 0


def test_no_process_start_time_means_hashing(world):
    world.start()
    world.install(started_at=None)
    identity.vae_identity(world.load())
    assert world.hashes == [1] and len(world.memo) == 0


def test_corrupted_memo_is_ignored_with_a_warning_and_rewritten(world, caplog):
    world.start()
    first = identity.vae_identity(world.load())
    world.memo_path.write_text('{"format": "recall-weights-memo", "version": 1, "entries": {"x": ')
    world.start()
    with caplog.at_level(logging.WARNING, logger="recall"):
        again = identity.vae_identity(world.load())
    assert again == first and world.hashes == [1]
    assert any("identity memo" in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records)
    world.start()
    identity.vae_identity(world.load())
    assert world.hashes == []


def test_memo_entry_for_other_weights_structure_is_not_used(world):
    world.start()
    identity.vae_identity(world.load())
    world.start()
    half = identity.vae_identity(world.load(dtype=torch.float16))  # same file, loaded as fp16
    assert world.hashes == [1]
    world.start()
    assert identity.vae_identity(world.load(dtype=torch.float16)) == half and world.hashes == []


def test_patch_change_gives_another_identity_and_hashes_no_base_weights(world):
    world.start()
    vae = world.load()
    base = identity.vae_identity(vae)
    world.start()
    patched = world.load()
    patched.patcher.patches = {"weight": [(0.5, ("diff", (torch.ones(4, 3, 3, 3),)), 1.0, None, None)]}
    patched.patcher.patches_uuid = "lora"
    assert identity.vae_identity(patched) != base
    assert world.hashes == []


def test_two_origins_for_one_model_trust_neither(world):
    world.start()
    vae = FakeVAE(0)
    assert identity.attach_origin(vae.first_stage_model, world.origin())
    assert not identity.attach_origin(vae.first_stage_model, world.origin(options={"type": "other"}))
    identity.vae_identity(vae)
    assert len(world.memo) == 0


def test_weights_patched_by_another_clone_are_not_hashed(world):
    world.start()
    vae = FakeVAE(0)
    vae.first_stage_model.current_weight_patches_uuid = "someone else's lora"
    with pytest.raises(ValueError, match="another clone"):
        identity.vae_identity(vae)
    assert world.hashes == []


def test_weights_memo_file_is_json_with_a_version(world):
    world.start()
    identity.vae_identity(world.load())
    doc = json.loads(world.memo_path.read_text())
    assert doc["format"] == "recall-weights-memo" and doc["version"] == 1 and len(doc["entries"]) == 1


def test_foreign_memo_version_is_ignored(world):
    world.memo_path.parent.mkdir(parents=True)
    world.start()
    identity.vae_identity(world.load())
    doc = json.loads(world.memo_path.read_text())
    doc["version"] = 99
    world.memo_path.write_text(json.dumps(doc))
    world.start()
    identity.vae_identity(world.load())
    assert world.hashes == [1]


def test_a_link_changed_after_the_start_voids_the_proof(tmp_path):
    target = os.path.realpath(sys.executable)  # installed long ago: an old ctime
    link = tmp_path / "python-link"
    link.symlink_to(target)
    before = time.time() - 1.0
    assert unchanged_since([target], before)
    assert not unchanged_since([str(link)], before)   # the link itself is new
    folder_link = tmp_path / "bin"
    folder_link.symlink_to(os.path.dirname(target))
    assert not unchanged_since([str(folder_link / os.path.basename(target))], before)


IMPORTED_AT = time.time()


def test_process_start_time_precedes_anything_this_process_did():
    from recall_pack.nodes.lib.file_digest import process_start_time
    started = process_start_time()
    assert started is not None
    assert started <= IMPORTED_AT + 0.05  # clock-tick granularity of /proc's start time


def test_memo_lives_in_the_configured_cache_folder(tmp_path, monkeypatch):
    with use_runtime(runtime.Runtime(CacheConfig(disk_dir=str(tmp_path / "disk")))) as rt:
        assert rt.weights_memo.path == tmp_path / "disk" / runtime.WEIGHTS_MEMO_FILE


def test_an_encoder_changed_in_place_gets_another_identity_and_its_first_one_back(world):
    world.start()
    vae = world.load()
    first = identity.vae_identity(vae)
    vae.latent_dim = 3
    assert identity.vae_identity(vae) != first
    vae.latent_dim = 2
    vae.patcher.patches = {"weight": [(0.5, ("diff", (torch.ones(4, 3, 3, 3),)), 1.0, None, None)]}
    vae.patcher.patches_uuid = "lora"
    patched = identity.vae_identity(vae)
    assert patched != first
    vae.patcher.patches, vae.patcher.patches_uuid = {}, "base"
    assert identity.vae_identity(vae) == first and world.hashes == [1]
