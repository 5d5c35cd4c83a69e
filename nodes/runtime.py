"""The bridge between ComfyUI and the cache engine: the only place that knows ComfyUI facts.

It resolves the user directory, the accelerator and the user who queued the
running prompt (recorded by prompt_owner.py), and hands them to cache/ as plain arguments. ComfyUI modules are
imported inside functions so this module imports (and its tests run) without
ComfyUI. Nothing here does heavy work at start-up: the store and its tiers are
built on first use, and tiers open folders and connections on their first call.
"""
import logging
import os
import threading
import uuid
from pathlib import Path

from ..cache.config import RUNTIME_KEYS, CacheConfig, build_store, describe, load_config
from ..cache.errors import CacheConfigError

_log = logging.getLogger("recall")

SHARED_NAMESPACE = "shared"    # image encodings: the same for every user of the server
DEFAULT_NAMESPACE = "default"  # conditioning when ComfyUI runs single-user

_lock = threading.RLock()
_config: CacheConfig | None = None
_store = None


# -- ComfyUI facts ---------------------------------------------------------------------
def user_directory() -> Path:
    import folder_paths
    return Path(folder_paths.get_user_directory())


def config_path() -> Path | None:
    explicit = os.environ.get("RECALL_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    try:
        return user_directory() / "recall" / "config.yaml"
    except ImportError:  # outside ComfyUI
        return None


def default_disk_dir() -> Path:
    try:
        return user_directory() / "recall" / "cache"
    except ImportError:
        return Path.home() / ".cache" / "comfyui-recall" / "cache"


def hot_device():
    """The accelerator ComfyUI computes on, or None when it runs on the CPU (--cpu)."""
    try:
        import comfy.model_management as mm
        device = mm.get_torch_device()
    except Exception:  # no ComfyUI, or no device it can use
        return None
    return None if getattr(device, "type", "cpu") == "cpu" else device


def _multi_user() -> bool:
    try:
        from comfy.cli_args import args
        return bool(getattr(args, "multi_user", False))
    except Exception:
        return False


# -- config and store ------------------------------------------------------------------
def get_config() -> CacheConfig:
    global _config
    with _lock:
        if _config is None:
            path = config_path()
            try:
                _config = load_config(path)
            except CacheConfigError as exc:
                # the pack must still load: say what is wrong once and use the defaults
                _log.error("%s Using the default cache settings.", exc)
                _config = CacheConfig()
        return _config


def _shared_tier(config: CacheConfig):
    if config.backend != "redis":
        return None
    try:
        from ..cache import redis_tier
        return redis_tier.build_redis_tier(config)
    except Exception as exc:  # redis-py missing, or the tier module failed: local tiers still work
        _log.warning("[Recall] config: backend=redis but the Redis tier is unavailable (%s). "
                     "Continuing with the local tiers; install redis-py (pip install redis) to share the cache.", exc)
        return None


def get_store():
    global _store
    with _lock:
        if _store is None:
            config = get_config()
            _store = build_store(config, hot_device=hot_device(), disk_dir=default_disk_dir(),
                                 shared_tier=_shared_tier(config))
            _store.add_listener(_on_backend_event)
        return _store


def _on_backend_event(event: str, info: dict) -> None:
    from .events import report_backend
    state = "down" if event == "backend_down" else "up"
    report_backend(info.get("tier", "cache"), state, info.get("message", ""))


def describe_tiers() -> str:
    return describe(get_config(), hot_device=hot_device(), disk_dir=default_disk_dir())


def on_startup() -> None:
    """Cheap: the config is read; tiers are built on the first node that uses them."""
    get_config()


def reset_for_tests() -> None:
    """Forget the config and store (tests; a settings reload)."""
    global _config, _store
    with _lock:
        if _store is not None:
            _store.close()
        _config, _store = None, None


# -- namespaces --------------------------------------------------------------------------
def user_namespace(user: str) -> str:
    """The namespace of one ComfyUI user's L2 entries (routes filter stats and clears by it)."""
    return f"user:{user}"


def current_namespace() -> str:
    """The L2 (per-user) namespace of the running prompt.

    Single-user: "default". --multi-user: the namespace of the user who queued the prompt,
    as recorded at POST /prompt (prompt_owner.py), never derived from the prompt's client
    id, which any user can read and reuse. A prompt whose user is unknown is a namespace of
    its own ("anon:<prompt id>"): nobody else's entries, and nobody else reaches its.
    """
    if not _multi_user():
        return DEFAULT_NAMESPACE
    from . import prompt_owner
    try:
        from server import PromptServer
        prompt_id = getattr(PromptServer.instance, "last_prompt_id", None)
    except Exception:
        prompt_id = None
    user = prompt_owner.owner_of(prompt_id)
    if user is not None:
        return user_namespace(user)
    return f"anon:{prompt_id if prompt_id is not None else uuid.uuid4()}"


def track_prompt_owners() -> bool:
    """With --multi-user, record who queues each prompt (called once when the pack loads)."""
    if not _multi_user():
        return False
    from server import PromptServer
    from . import prompt_owner
    server = PromptServer.instance
    return prompt_owner.install(server, server.user_manager.get_request_user_id)


# -- settings, stats, clearing (for the routes) ------------------------------------------
def settings_snapshot() -> dict:
    d = get_config().as_dict()
    return {k: d[k] for k in RUNTIME_KEYS}


def update_settings(changes: dict) -> CacheConfig:
    """Validate and apply runtime settings; caps and TTLs change the live tiers at once."""
    global _config
    unknown = [k for k in changes if k not in RUNTIME_KEYS]
    if unknown:
        raise CacheConfigError(f"[Recall] settings: {unknown[0]!r:.100} cannot be changed while ComfyUI runs "
                               f"(expected one of: {', '.join(RUNTIME_KEYS)}). Set it in the config file and restart.")
    new = get_config().replace(changes, source="settings")
    if "preferred_images" in changes:
        from .preferred_images import validate
        validate(new.preferred_images)  # each a regular file inside the input folder, or a 400
    with _lock:
        new = get_config().replace(changes, source="settings")
        _config = new
        store = _store
    if store is not None:
        store.enabled = new.enabled
        ttl = new.ttl_minutes * 60
        store.configure_tier("vram", max_bytes=new.vram_bytes, max_entries=new.vram_entries, ttl_seconds=ttl)
        store.configure_tier("ram", max_bytes=new.ram_bytes, ttl_seconds=ttl)
        store.configure_tier("disk", max_bytes=new.disk_bytes, ttl_seconds=new.disk_ttl_hours * 3600)
    return new


def stats() -> dict:
    return get_store().stats()


def near_stats() -> dict:
    """match: near counts: near hits (apart from exact ones), candidates rejected by verification."""
    from . import near_match
    return near_match.stats()


def distinct_entries(namespaces=None) -> int:
    """Entries counted once: an encoding kept in RAM and on disk is one entry with two copies.

    The union of the local tiers' keys (Redis is shared with other workers and reports its
    own count). O(entries), like the per-tier usage the stats already walk.
    """
    keep = None if namespaces is None else set(namespaces)
    seen: set = set()
    for tier in get_store().tiers:
        if tier.name == "redis":
            continue
        try:
            for ns in tier.usage():
                if keep is None or ns in keep:
                    seen.update((ns, k) for k in tier.keys(ns))
        except Exception:  # a failing tier is reported by its own health flag
            continue
    return len(seen)


def tier_health() -> dict:
    """{tier: "down" | "up"}: a tier that failed stays "down" until it works again."""
    def down(tier) -> bool:
        flag = getattr(tier, "is_down", False)
        return bool(flag() if callable(flag) else flag)
    return {t.name: ("down" if down(t) else "up") for t in get_store().tiers}


def capacity_limits() -> dict:
    """The most a size cap can mean on this machine: total RAM, the disk the cache lives on, VRAM."""
    import shutil
    limits = {}
    try:
        import psutil
        limits["ram_bytes"] = int(psutil.virtual_memory().total)
    except Exception:
        pass
    folder = Path(get_config().disk_dir) if get_config().disk_dir else default_disk_dir()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        limits["disk_bytes"] = int(shutil.disk_usage(folder).total)
    except OSError:
        pass
    device = hot_device()
    if device is not None:
        try:
            import comfy.model_management as mm
            limits["vram_bytes"] = int(mm.get_total_memory(device))
        except Exception:
            pass
    return limits


def clear(namespace: str | None = None, tier: str | None = None) -> int:
    return get_store().clear(namespace=namespace, tier=tier)
