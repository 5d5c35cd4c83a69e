"""Shared fixtures for the cached-encode tests (imported by tests/comfy/test_encode_*.py).

- recall: a fresh TieredStore (RAM + disk in tmp_path, synchronous disk writes) installed
  as the nodes' runtime (support/recall_runtime.py), plus the reports the nodes made.
- sd_vae / wan_vae / clip_vision / clip: the harness's random-weight files loaded through
  ComfyUI's own loader nodes, once per session (models are large; tests must not edit them).
- spy_encoder(obj, attr): counts calls of a model's forward-ish method and the batch sizes.
- no_model_loads: fails a test body that makes ComfyUI load a model onto the device.
- inference_mode (autouse): tests run under torch.inference_mode(), as ComfyUI runs nodes.
"""
import functools
import types

import pytest
import torch

from support.recall_runtime import use_runtime


@pytest.fixture(autouse=True)
def inference_mode():
    """ComfyUI executes nodes under torch.inference_mode(); so do these tests."""
    with torch.inference_mode():
        yield


@pytest.fixture
def recall(tmp_path, monkeypatch):
    from recall_pack.cache.config import CacheConfig, build_store
    from recall_pack.nodes import events, runtime
    from recall_pack.nodes.lib.file_digest import FileDigests

    config = CacheConfig(disk_dir=str(tmp_path / "cache"))
    holder = types.SimpleNamespace(config=config, namespace="user-a", store=None, reports=[])
    holder.store = build_store(config, disk_dir=tmp_path / "cache", background_writes=False)
    monkeypatch.setattr(events, "_send", lambda name, payload: holder.reports.append((name, payload)))

    class HolderRuntime(runtime.Runtime):
        """Reads the holder's config, store and namespace at each use: a test changes them in place."""
        config = property(lambda self: holder.config)
        store = property(lambda self: holder.store)

    def rebuild(**changes):
        """A new store over the same disk folder: what a ComfyUI restart sees."""
        holder.config = holder.config.replace(changes) if changes else holder.config
        holder.store = build_store(holder.config, disk_dir=tmp_path / "cache", background_writes=False)
        return holder.store

    holder.rebuild = rebuild
    holder.last = lambda: holder.reports[-1][1]
    # file contents memoised in memory only: nothing written beside ComfyUI's user folder
    with use_runtime(HolderRuntime(namespace=lambda: holder.namespace, file_digests=FileDigests())) as rt:
        yield holder
    rt.close()  # what it built itself (the near index); the holder's store is closed below
    holder.store.close()


@functools.lru_cache(maxsize=None)
def _load(kind: str, name: str):
    import nodes
    if kind == "vae":
        return nodes.VAELoader().load_vae(name)[0]
    if kind == "clip_vision":
        return nodes.CLIPVisionLoader().load_clip(name)[0]
    if kind == "clip":
        import comfy.sd
        import folder_paths
        path = folder_paths.get_full_path_or_raise("checkpoints", name)
        out = comfy.sd.load_checkpoint_guess_config(path, output_vae=False, output_clip=True, output_model=False,
                                                    embedding_directory=folder_paths.get_folder_paths("embeddings"))
        return out[1]
    raise ValueError(kind)


@pytest.fixture(scope="session")
def sd_vae(models):
    return _load("vae", models["sd15_vae"].name)


@pytest.fixture(scope="session")
def wan_vae(models):
    return _load("vae", models["wan21_vae"].name)


@pytest.fixture(scope="session")
def clip_vision(models):
    return _load("clip_vision", models["clip_vision"].name)


@pytest.fixture(scope="session")
def clip(models):
    return _load("clip", models["sd15_checkpoint"].name)


@pytest.fixture
def spy_encoder(monkeypatch):
    """spy_encoder(module, "encode") -> list of the batch sizes it was called with."""
    def install(owner, attr):
        calls = []
        original = getattr(owner, attr)

        def spy(*args, **kwargs):
            first = args[0] if args else next(iter(kwargs.values()))
            calls.append(int(first.shape[0]) if hasattr(first, "shape") else 1)  # tokens: one call
            return original(*args, **kwargs)
        monkeypatch.setattr(owner, attr, spy)
        return calls
    return install


@pytest.fixture
def no_model_loads(monkeypatch):
    """Call it to make any ComfyUI model load (load_models_gpu) fail the test from then on."""
    import comfy.model_management

    def forbid():
        def refuse(*args, **kwargs):
            raise AssertionError("a cache hit loaded a model onto the device (load_models_gpu)")
        monkeypatch.setattr(comfy.model_management, "load_models_gpu", refuse)
        monkeypatch.setattr(comfy.model_management, "load_model_gpu", refuse)
    return forbid


def image(seed: int, size: int = 64, frames: int = 1, width: int | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((frames, size, width or size, 3), generator=gen)


def run(node_cls, node_id: str = "7", **inputs):
    """Execute a V3 node the way ComfyUI does (a class clone with its hidden inputs)."""
    from comfy_api.latest import io
    hidden = {io.Hidden.unique_id: node_id}
    if hasattr(io, "V3Data"):  # 0.8.0 passes V3Data (hidden inputs and dynamic paths); 0.3.64 the dict
        hidden = {"hidden_inputs": hidden, "dynamic_paths": {}, "create_dynamic_tuple": False}
    clone = node_cls.PREPARE_CLASS_CLONE(hidden)
    return clone.execute(**inputs).result


def assert_trees_equal(a, b, path="value"):
    """Bitwise equality of nested outputs (tensors with equal dtype and device), with a useful message."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{path}: tensor vs {type(b).__name__}"
        assert a.dtype == b.dtype and a.device == b.device and a.shape == b.shape, \
            f"{path}: {a.dtype}/{a.device}/{tuple(a.shape)} vs {b.dtype}/{b.device}/{tuple(b.shape)}"
        assert torch.equal(a, b), f"{path}: values differ (max abs diff {(a - b).abs().max().item()})"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_trees_equal(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{path}: {type(a).__name__}[{len(a)}] vs {b!r:.80}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_trees_equal(x, y, f"{path}[{i}]")
    elif hasattr(a, "__dict__") and not isinstance(a, type):
        assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
        assert_trees_equal(vars(a), vars(b), path)
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"
