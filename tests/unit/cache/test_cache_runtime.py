"""nodes/runtime.py with ComfyUI's modules stubbed per test (never installed globally).

nodes/__init__.py imports comfy_api, so the test loads runtime.py through a bare
`recall_pack.nodes` package object (scoped to the test) instead.
"""
import importlib
import logging
import sys
import types
from pathlib import Path

import pytest
import torch

from recall_pack.cache.errors import CacheConfigError
from support.recall_runtime import use_runtime

NODES_DIR = Path(__file__).resolve().parents[3] / "nodes"
runtime = None


@pytest.fixture
def comfy(monkeypatch, tmp_path):
    """Stub folder_paths, comfy.model_management, comfy.cli_args and server for one test."""
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.get_user_directory = lambda: str(tmp_path / "user")
    mm = types.ModuleType("comfy.model_management")
    mm.get_torch_device = lambda: torch.device("cpu")
    cli_args = types.ModuleType("comfy.cli_args")
    cli_args.args = types.SimpleNamespace(multi_user=False)
    comfy_pkg = types.ModuleType("comfy")
    comfy_pkg.model_management, comfy_pkg.cli_args = mm, cli_args
    server = types.ModuleType("server")
    server.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(client_id=None))
    for name, mod in {"folder_paths": folder_paths, "comfy": comfy_pkg, "comfy.model_management": mm,
                      "comfy.cli_args": cli_args, "server": server}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    for var in [v for v in __import__("os").environ if v.startswith("RECALL_")]:
        monkeypatch.delenv(var)
    package = types.ModuleType("recall_pack.nodes")
    package.__path__ = [str(NODES_DIR)]
    monkeypatch.setitem(sys.modules, "recall_pack.nodes", package)
    for name in ("recall_pack.nodes.runtime", "recall_pack.nodes.events"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    global runtime
    runtime = importlib.import_module("recall_pack.nodes.runtime")
    with use_runtime(runtime.Runtime()) as rt:  # a fresh runtime: config read and store built on first use
        yield types.SimpleNamespace(user_dir=tmp_path / "user", args=cli_args.args, server=server)
        rt.close()
    for name in ("recall_pack.nodes.runtime", "recall_pack.nodes.events"):
        sys.modules.pop(name, None)


@pytest.fixture
def owners(comfy):
    """The fresh runtime's prompt owners: no prompt recorded yet."""
    return runtime.current().state(runtime.prompt_owner.PromptOwners)


def test_defaults_without_a_config_file(comfy):
    config = runtime.current().config
    assert config.enabled and config.backend == "local"


def test_config_file_in_the_user_directory_is_read(comfy):
    (comfy.user_dir / "recall").mkdir(parents=True)
    (comfy.user_dir / "recall" / "config.yaml").write_text("cache:\n  ram_bytes: 1GB\n")
    assert runtime.current().config.ram_bytes == 2**30


def test_bad_config_logs_the_message_once_and_uses_defaults(comfy, caplog):
    (comfy.user_dir / "recall").mkdir(parents=True)
    (comfy.user_dir / "recall" / "config.yaml").write_text("cache:\n  ram_bytes: lots\n")
    with caplog.at_level(logging.ERROR, logger="recall"):
        assert runtime.current().config.ram_bytes == 4 * 2**30
        runtime.current().config
    errors = [r for r in caplog.records if "ram_bytes" in r.getMessage()]
    assert len(errors) == 1


def test_store_on_cpu_has_ram_and_disk_under_the_user_directory(comfy):
    store = runtime.current().store
    assert [t.name for t in store.tiers] == ["ram", "disk"]
    assert store.tier("disk").root == comfy.user_dir / "recall" / "cache"
    assert runtime.current().store is store


def test_describe_tiers_does_not_create_the_cache_folder(comfy):
    line = runtime.current().describe_tiers()
    assert "ram 4GB" in line and "disk 20GB" in line
    assert not (comfy.user_dir / "recall" / "cache").exists()


def test_redis_backend_without_a_usable_tier_warns_and_keeps_local_tiers(comfy, monkeypatch, caplog):
    monkeypatch.setenv("RECALL_BACKEND", "redis")
    broken = types.ModuleType("recall_pack.cache.redis_tier")  # a tier module without the factory
    monkeypatch.setitem(sys.modules, "recall_pack.cache.redis_tier", broken)
    # Once the real module was imported, `from ..cache import redis_tier` reads the package attribute.
    monkeypatch.setattr(sys.modules["recall_pack.cache"], "redis_tier", broken, raising=False)
    with caplog.at_level(logging.WARNING, logger="recall"):
        store = runtime.current().store
    assert [t.name for t in store.tiers] == ["ram", "disk"]
    assert any("Redis tier is unavailable" in r.getMessage() for r in caplog.records)


def test_namespace_is_default_in_single_user_mode(comfy):
    comfy.server.PromptServer.instance.last_prompt_id = "p1"
    assert runtime.current().namespace() == "default"


def _queue(owners, headers, body, users=("alice", "bob")):
    """What POST /prompt does before it queues: the request is current (the middleware's
    context variable), then the on-prompt handler runs (the live-server tests run the real ones)."""
    def user_of(request):
        name = request.headers.get("comfy-user", "default")
        if name not in users:
            raise KeyError(name)
        return name
    request = runtime.prompt_owner._request
    token = request.set(types.SimpleNamespace(headers=headers))
    try:
        return owners.on_prompt(dict(body), user_of)["prompt_id"]
    finally:
        request.reset(token)


def test_namespace_is_the_user_who_queued_the_prompt_never_the_client_id(comfy, owners):
    comfy.args.multi_user = True
    alice = _queue(owners, {"comfy-user": "alice"}, {"prompt": {}, "client_id": "bob-tab"})
    bob = _queue(owners, {"comfy-user": "bob"}, {"prompt": {}, "client_id": "bob-tab"})
    comfy.server.PromptServer.instance.last_prompt_id = alice
    assert runtime.current().namespace() == "user:alice"
    comfy.server.PromptServer.instance.last_prompt_id = bob
    assert runtime.current().namespace() == "user:bob"


def test_a_prompt_id_of_another_user_is_replaced(comfy, owners):
    comfy.args.multi_user = True
    bob = _queue(owners, {"comfy-user": "bob"}, {"prompt": {}, "prompt_id": "p-bob"})
    stolen = _queue(owners, {"comfy-user": "alice"}, {"prompt": {}, "prompt_id": "p-bob"})
    assert bob == "p-bob" and stolen != "p-bob"
    assert owners.owner_of("p-bob") == "bob" and owners.owner_of(stolen) == "alice"


def test_unknown_users_and_unrecorded_prompts_are_each_their_own_namespace(comfy, owners):
    comfy.args.multi_user = True
    first = _queue(owners, {"comfy-user": "mallory"}, {"prompt": {}, "prompt_id": "x"})
    second = _queue(owners, {}, {"prompt": {}, "prompt_id": "x"})
    names = set()
    for prompt_id in (first, second, "never-posted"):
        comfy.server.PromptServer.instance.last_prompt_id = prompt_id
        names.add(runtime.current().namespace())
    assert len(names) == 3 and all(n.startswith("anon:") for n in names)


def test_update_settings_lowers_the_live_cap_at_once(comfy):
    store = runtime.current().store
    for i in range(4):
        store.put(f"k{i}", {"samples": torch.zeros(1024)}, compute_seconds=1.0)
    runtime.current().update_settings({"ram_bytes": 6000})
    assert store.stats()["tiers"]["ram"]["shared"]["bytes"] <= 6000
    assert runtime.current().settings_snapshot()["ram_bytes"] == 6000


def test_update_settings_rejects_a_bad_value_with_the_key_named(comfy):
    with pytest.raises(CacheConfigError, match="ttl_minutes"):
        runtime.current().update_settings({"ttl_minutes": -1})
    with pytest.raises(CacheConfigError, match="backend"):
        runtime.current().update_settings({"backend": "redis"})


def test_disabling_turns_lookups_off(comfy):
    store = runtime.current().store
    store.put("k", {"samples": torch.zeros(4)})
    runtime.current().update_settings({"enabled": False})
    assert store.get("k") is None
    runtime.current().update_settings({"enabled": True})
    assert store.get("k") is not None


def test_clear_passthrough_counts_removed_entries(comfy):
    store = runtime.current().store
    store.put("k", {"samples": torch.zeros(4)})
    store.flush()
    assert runtime.current().clear(tier="ram") == 1
    assert runtime.current().stats()["tiers"]["disk"]["shared"]["entries"] == 1


def test_a_fresh_runtime_starts_with_no_prompt_owners(comfy, owners):
    comfy.args.multi_user = True
    alice = _queue(owners, {"comfy-user": "alice"}, {"prompt": {}})
    comfy.server.PromptServer.instance.last_prompt_id = alice
    with use_runtime(runtime.Runtime()) as fresh:
        assert fresh.state(runtime.prompt_owner.PromptOwners).owner_of(alice) is None
        assert fresh.namespace().startswith("anon:")
    assert runtime.current().namespace() == "user:alice"


def test_the_prompt_hook_records_in_the_runtime_installed_when_a_prompt_is_queued(comfy, monkeypatch):
    comfy.args.multi_user = True
    handlers = []
    server = types.SimpleNamespace(app=types.SimpleNamespace(middlewares=[]), add_on_prompt_handler=handlers.append,
                                   user_manager=types.SimpleNamespace(
                                       get_request_user_id=lambda request: request.headers["comfy-user"]))
    monkeypatch.setattr(comfy.server.PromptServer, "instance", server)
    monkeypatch.setattr(runtime.prompt_owner, "_installed_on", set())
    monkeypatch.setattr(runtime.prompt_owner, "_middleware", lambda: "middleware")  # aiohttp's: live tests
    assert runtime.track_prompt_owners() and len(handlers) == 1 and len(server.app.middlewares) == 1

    def post(user):
        token = runtime.prompt_owner._request.set(types.SimpleNamespace(headers={"comfy-user": user}))
        try:
            return handlers[0]({"prompt": {}})["prompt_id"]
        finally:
            runtime.prompt_owner._request.reset(token)
    first = post("alice")
    with use_runtime(runtime.Runtime()) as fresh:
        second = post("bob")
        assert fresh.state(runtime.prompt_owner.PromptOwners).owner_of(second) == "bob"
        assert fresh.state(runtime.prompt_owner.PromptOwners).owner_of(first) is None
    assert runtime.current().state(runtime.prompt_owner.PromptOwners).owner_of(first) == "alice"


def test_state_is_made_once_per_runtime_and_closed_with_it(comfy):
    made = []

    class Table:
        def __init__(self, rt):
            self.rt, self.closed = rt, False
            made.append(self)

        def close(self):
            self.closed = True
    rt = runtime.Runtime()
    assert rt.state(Table) is rt.state(Table) and made[0].rt is rt
    other = runtime.Runtime()
    assert other.state(Table) is not rt.state(Table)
    rt.close()
    assert made[0].closed and not made[1].closed
    assert rt.state(Table) is not made[0]   # a closed runtime that is used again starts afresh
