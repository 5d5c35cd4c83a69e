"""What happens once when ComfyUI asks the pack for its nodes: routes, opt-in settings, one log line.

Only cheap work on ComfyUI's start-up path: read the config and say which cache
tiers are in use. With Redis configured, one background thread builds the store,
imports redis-py and connects (warm_up), so that the first workflow does not pay
for it (measured: 0.42 s on a server's first lookup); ComfyUI's start never waits
for it, and a Redis that is down only warns, as on any lookup. Each step is guarded
on its own so that one failing feature never stops the nodes from loading.
"""
import logging
import re
import threading
from pathlib import Path

from . import runtime

_log = logging.getLogger("recall")

PACK_ROOT = Path(__file__).resolve().parent.parent


def pack_version() -> str:
    text = (PACK_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else "unknown"


def _register_routes() -> None:
    from server import PromptServer
    from . import routes
    routes.register(PromptServer.instance.routes)


def _track_prompt_owners() -> None:
    runtime.track_prompt_owners()


def _apply_opt_in_settings(config) -> None:
    # Both change ComfyUI's globals, so they stay off unless the user turns them on.
    if config.wrap_core_encoders:
        from . import autowrap
        autowrap.enable()
    if config.ddim_in_ksampler:
        from . import sampling_nodes
        sampling_nodes.set_ksampler_ddim(True)


def _check_node_rules(config) -> None:
    # Other packs' classes load after ours, so rules are checked once ComfyUI has started.
    from . import cache_nodes
    cache_nodes.schedule_rule_check()


def warm_up_cache(get_store) -> threading.Thread:
    """Build the store and warm each tier that can be warmed (Tier.warm_up), on a daemon thread."""
    def work():
        try:
            store = get_store()
            for tier in list(getattr(store, "tiers", ())):
                warm = getattr(tier, "warm_up", None)
                if callable(warm):
                    warm()
        except Exception as exc:  # the first lookup builds or connects it again, and says why
            _log.warning("[Recall] cache warm-up failed (%s); the first lookup will set the cache up.", exc)

    thread = threading.Thread(target=work, name="recall-cache-warm-up", daemon=True)
    thread.start()
    return thread


def _start_warm_up(config) -> None:
    if config.backend == "redis" and config.enabled:
        rt = runtime.current()
        warm_up_cache(lambda: rt.store)


def _step(what: str, fn, *args) -> None:
    try:
        fn(*args)
    except Exception:
        _log.exception("[Recall] start-up step '%s' failed; the nodes still load", what)


def on_pack_loaded(nodes: list) -> None:
    tiers = "unavailable"
    try:
        rt = runtime.current()  # the pack's runtime: its config is read now, its store on first use
        config = rt.config
        tiers = rt.describe_tiers()
    except Exception:
        _log.exception("[Recall] cache set-up failed; the nodes still run, without caching")
        config = None
    _step("routes", _register_routes)
    _step("prompt owners", _track_prompt_owners)
    if config is not None:
        _step("cache warm-up", _start_warm_up, config)
        _step("opt-in settings", _apply_opt_in_settings, config)
    _log.info("[Recall] ComfyUI-Recall %s: %d nodes, cache tiers: %s", pack_version(), len(nodes), tiers)
    if config is not None:
        _step("node rules", _check_node_rules, config)
