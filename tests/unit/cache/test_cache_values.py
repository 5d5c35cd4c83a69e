"""What the store hands back: each tensor on its producer's device, a copy that shares no memory
with the cache, the VRAM tier kept for values born on the accelerator, and entries of the older
envelope format read as a miss, never as a wrong value."""
import collections

import pytest
import torch

from cache_helpers import FakeClock, latent
from recall_pack.cache import serialize, values
from recall_pack.cache.config import CacheConfig, build_store
from recall_pack.cache.disk import DiskTier
from recall_pack.cache.memory import MemoryTier
from recall_pack.cache.store import TieredStore
from recall_pack.cache.tier import EntryMeta


@pytest.fixture
def store(tmp_path):
    clock = FakeClock()
    tiers = [MemoryTier("ram", 10**7, None, 60, device="cpu", clock=clock),
             DiskTier("disk", tmp_path / "c", 10**8, clock=clock)]
    s = TieredStore(tiers, clock=clock, background_writes=True)
    yield s
    s.close()


def test_restore_returns_copies_in_the_same_structure():
    Pair = collections.namedtuple("Pair", "a b")
    value = {"b": torch.arange(3), "a": [torch.ones(1), Pair(torch.zeros(2), "x")]}
    back = values.restore(value, values.devices(value), copy=True)
    assert list(back) == ["b", "a"] and isinstance(back["a"][1], Pair) and back["a"][1].b == "x"
    assert torch.equal(back["b"], value["b"]) and back["b"].data_ptr() != value["b"].data_ptr()
    assert back["a"][1].a.data_ptr() != value["a"][1].a.data_ptr()


def test_restore_puts_each_tensor_on_its_recorded_device():
    back = values.restore({"x": torch.ones(2), "y": torch.zeros(1)}, ("meta", "cpu"), copy=True)
    assert back["x"].device.type == "meta" and back["y"].device.type == "cpu"


def test_restore_refuses_a_count_mismatch():
    with pytest.raises(ValueError, match="recorded devices"):
        values.restore([torch.ones(1), torch.ones(1)], ("cpu",), copy=True)


def test_device_order_survives_the_byte_format():
    value = {"y": torch.zeros(1), "x": [torch.ones(1), {"b": torch.ones(2), "a": 3}]}
    back, _ = serialize.loads(serialize.dumps(value))
    assert [t.shape for t in _tensors(back)] == [t.shape for t in _tensors(value)]
    assert values.devices(back) == values.devices(value) == ("cpu", "cpu", "cpu")


def _tensors(value):
    """Tensors in insertion order (the order values.devices records)."""
    found = []
    _walk(value, found)
    return found


def _walk(value, found):
    if isinstance(value, torch.Tensor):
        found.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _walk(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _walk(v, found)


def test_a_device_this_process_cannot_reach_comes_back_on_the_cpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the recorded device is reachable")
    back = values.restore([torch.ones(2)], ("cuda:0",), copy=True)
    assert back[0].device.type == "cpu" and torch.equal(back[0], torch.ones(2))


@pytest.mark.parametrize("where", ["ram", "disk"])
def test_a_hit_is_a_copy_that_never_changes_the_cache(store, where):
    store.put("k", latent(1))
    store.flush()
    if where == "disk":
        store.clear(tier="ram")
    hit = store.get("k")
    assert hit.tier == where
    hit.value["samples"].add_(100)
    assert torch.equal(store.get("k").value["samples"], latent(1)["samples"])


def test_a_miss_hands_back_the_producers_value_and_keeps_a_copy(store):
    produced = latent(2)
    out = store.get_or_compute("k", lambda: produced)
    assert out.hit is False and out.value is produced
    produced["samples"].add_(100)  # downstream edits in place, before the background write ran
    store.flush()
    assert torch.equal(store.get("k").value["samples"], latent(2)["samples"])
    store.clear(tier="ram")
    assert torch.equal(store.get("k").value["samples"], latent(2)["samples"])


def test_the_disk_entry_records_the_producers_devices(store, tmp_path):
    store.put("k", latent(3))
    store.flush()
    (path,) = (tmp_path / "c").rglob("*.safetensors")
    _, doc = serialize.loads(path.read_bytes())
    assert doc["devices"] == ["cpu"]


def test_values_born_on_the_cpu_stay_out_of_the_vram_tier(tmp_path):
    # a CUDA device object only: nothing here allocates on it, so this runs on CPU-only machines
    s = build_store(CacheConfig(), hot_device=torch.device("cuda", 0), disk_dir=tmp_path, background_writes=False)
    vram, ram = s.tier("vram"), s.tier("ram")
    s.put("k", latent(4))
    assert vram.keys("shared") == [] and ram.keys("shared") == ["k"]
    hit = s.get("k")
    assert hit.tier == "ram" and hit.value["samples"].device.type == "cpu"
    assert vram.keys("shared") == []  # a RAM hit of a CPU-born value is not promoted to the GPU
    s.close()


def _write_envelope_entry(tier, monkeypatch, value):
    """An entry as a Recall that wrapped encodings wrote it: {"v": value, "d": devices}, no "devices" in its doc."""
    original = EntryMeta.to_doc

    def old_doc(self, namespace, key, **extra):
        doc = original(self, namespace, key, **extra)
        doc.pop("devices")
        return doc

    with monkeypatch.context() as m:
        m.setattr(EntryMeta, "to_doc", old_doc)
        assert tier.put("shared", "k", {"v": value, "d": ["cpu"]}, meta=EntryMeta(1.0, 0.0, "old"))


def test_an_envelope_entry_on_disk_is_a_miss(tmp_path, monkeypatch):
    disk = DiskTier("disk", tmp_path / "c", 10**8, clock=FakeClock())
    _write_envelope_entry(disk, monkeypatch, latent(5))
    s = TieredStore([MemoryTier("ram", 10**7, device="cpu"), disk], background_writes=False)
    assert s.get("k") is None
    out = s.get_or_compute("k", lambda: latent(5))
    assert out.hit is False and set(out.value) == {"samples"}
    assert set(s.get("k").value) == {"samples"}
    s.close()


def test_an_envelope_entry_in_redis_is_a_miss(monkeypatch):
    pytest.importorskip("redis")
    pytest.importorskip("fakeredis")
    from cache_helpers import FakeRedisServer
    from recall_pack.cache.redis_tier import RedisTier
    fake = FakeRedisServer()
    redis = RedisTier("redis://fake/0", client_factory=fake.factory, clock=FakeClock())
    _write_envelope_entry(redis, monkeypatch, latent(6))
    s = TieredStore([redis], background_writes=False)
    assert s.get("k") is None
    assert s.get_or_compute("k", lambda: latent(6)).hit is False
    assert set(s.get("k").value) == {"samples"}
    s.close()


def test_copyable_accepts_what_a_copy_rebuilds_whole():
    Pair = collections.namedtuple("Pair", "a b")
    assert values.copyable({"x": [torch.ones(1), (2, "s", None, 1.5)], "p": Pair(torch.zeros(1), True)})
    assert values.copyable(torch.ones(2, dtype=torch.complex64))  # copied; only the byte format refuses it


@pytest.mark.parametrize("value", [object(), {"model": object()}, [b"bytes"], {1, 2}],
                         ids=["object", "nested object", "bytes", "set"])
def test_copyable_refuses_what_a_copy_would_share(value):
    assert not values.copyable(value)


def test_copyable_refuses_a_value_that_contains_itself():
    loop = [torch.ones(1)]
    loop.append(loop)
    assert not values.copyable(loop)
