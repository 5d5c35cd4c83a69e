"""The bridge between ComfyUI and the cache engine: the only place that knows ComfyUI facts.

A Runtime holds what the nodes need of the cache: the config, the store and the
namespace resolver, and every other piece of state the running pack keeps (the file
and weights memos, and each node module's own tables through state()). One is built
when the pack loads (startup.py) and every node reaches it through current(); a test
or a benchmark installs its own with install() and puts the previous one back, and so
starts from fresh state. It resolves the user directory, the accelerator and
the user who queued the running prompt (recorded by prompt_owner.py), and hands them
to cache/ as plain arguments. ComfyUI modules are imported inside functions so this
module imports (and its tests run) without ComfyUI. Nothing here does heavy work at
start-up: the store and its tiers are built on first use, and tiers open folders and
connections on their first call.
"""
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Callable

from ..cache.config import RUNTIME_KEYS, CacheConfig, build_store, describe, load_config
from ..cache.entry_count import DistinctEntries
from ..cache.errors import CacheConfigError
from ..cache.names import DISK, RAM, VRAM
from ..cache.weights_memo import WeightsMemo
from . import events, near_match, preferred_images, prompt_owner
from .lib.file_digest import FileDigests, process_start_time

_log = logging.getLogger("recall")

DEFAULT_NAMESPACE = "default"  # conditioning when ComfyUI runs single-user
WEIGHTS_MEMO_FILE = "encoder_identities.json"
_DEFAULT = object()  # a Runtime argument left out: resolved on first use


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


# -- namespaces --------------------------------------------------------------------------
def user_namespace(user: str) -> str:
    """The namespace of one ComfyUI user's text-conditioning entries (routes filter stats and clears by it)."""
    return f"user:{user}"


def prompt_namespace() -> str:
    """The per-user namespace (text conditioning) of the running prompt.

    Single-user: "default". --multi-user: the namespace of the user who queued the prompt,
    as recorded at POST /prompt (prompt_owner.py), never derived from the prompt's client
    id, which any user can read and reuse. A prompt whose user is unknown is a namespace of
    its own ("anon:<prompt id>"): nobody else's entries, and nobody else reaches its.
    """
    if not _multi_user():
        return DEFAULT_NAMESPACE
    try:
        from server import PromptServer
        prompt_id = getattr(PromptServer.instance, "last_prompt_id", None)
    except Exception:
        prompt_id = None
    user = current().state(prompt_owner.PromptOwners).owner_of(prompt_id)
    if user is not None:
        return user_namespace(user)
    return f"anon:{prompt_id if prompt_id is not None else uuid.uuid4()}"


def track_prompt_owners() -> bool:
    """With --multi-user, record who queues each prompt (called once when the pack loads)."""
    if not _multi_user():
        return False
    from server import PromptServer
    server = PromptServer.instance
    # the handler records into the runtime installed when each prompt is queued
    return prompt_owner.install(server, server.user_manager.get_request_user_id,
                                lambda: current().state(prompt_owner.PromptOwners))


# -- the runtime ---------------------------------------------------------------------------
def load_default_config() -> CacheConfig:
    """The config file's settings; the defaults (with the error logged) when it is broken."""
    try:
        return load_config(config_path())
    except CacheConfigError as exc:
        # the pack must still load: say what is wrong once and use the defaults
        _log.error("%s Using the default cache settings.", exc)
        return CacheConfig()


def _shared_tier(config: CacheConfig):
    if config.backend != "redis":
        return None
    try:
        from ..cache import redis_tier  # imports redis-py's wrapper only when Redis is configured
        return redis_tier.build_redis_tier(config)
    except Exception as exc:  # redis-py missing, or the tier module failed: local tiers still work
        _log.warning("[Recall] config: backend=redis but the Redis tier is unavailable (%s). "
                     "Continuing with the local tiers; install redis-py (pip install redis) to share the cache.", exc)
        return None


def build_default_store(config: CacheConfig):
    store = build_store(config, hot_device=hot_device(), disk_dir=default_disk_dir(),
                        shared_tier=_shared_tier(config))
    store.add_listener(_on_backend_event)
    return store


def _on_backend_event(event: str, info: dict) -> None:
    state = "down" if event == "backend_down" else "up"
    events.report_backend(info.get("tier", "cache"), state, info.get("message", ""))


class Runtime:
    """Config, store, namespace resolver and the other state of the running pack.

    config and store given here are used as they are; left out, the config is read from
    the config file and the store built from it on first use (build_store(config)).
    file_digests, weights_memo (None: no memo) and started_at (the process start time;
    None: unknown) likewise, each made on first use when left out."""

    user_namespace = staticmethod(user_namespace)

    def __init__(self, config: CacheConfig | None = None, store=None, *,
                 namespace: Callable[[], str] = prompt_namespace,
                 build_store: Callable[[CacheConfig], object] = build_default_store,
                 file_digests: FileDigests | None = None, weights_memo=_DEFAULT, started_at=_DEFAULT):
        self._lock = threading.RLock()
        self._config, self._store = config, store
        self._namespace, self._build_store = namespace, build_store
        self._warned: set[str] = set()
        self._distinct = DistinctEntries()
        self._near = None
        self._file_digests, self._weights_memo, self._started_at = file_digests, weights_memo, started_at
        self._states: dict[type, object] = {}

    def state(self, kind: type):
        """This runtime's one kind(runtime) object, made on first use: a node module's own tables
        (pending Recall Cache runs, prompt owners, ...), so a fresh runtime starts them empty."""
        with self._lock:
            obj = self._states.get(kind)
            if obj is None:
                obj = self._states[kind] = kind(self)
            return obj

    @property
    def config(self) -> CacheConfig:
        with self._lock:
            if self._config is None:
                self._config = load_default_config()
            return self._config

    @property
    def store(self):
        with self._lock:
            if self._store is None:
                self._store = self._build_store(self.config)
            return self._store

    def namespace(self) -> str:
        """The per-user namespace of the running prompt."""
        return self._namespace()

    def store_or_reason(self, without: str = "encoding without it"):
        """(store, None), or (None, reason) when caching is off or the cache cannot be set up.

        without: what the caller does instead, for the warning (logged once per distinct failure)."""
        try:
            if not self.config.enabled:
                return None, "caching is disabled in the Recall config"
            return self.store, None
        except Exception as exc:  # a broken cache must never break a workflow
            with self._lock:
                first = str(exc) not in self._warned
                self._warned.add(str(exc))
            if first:
                _log.warning("[Recall] cache unavailable, %s: %s", without, exc)
            return None, f"cache unavailable: {exc}"

    def describe_tiers(self) -> str:
        return describe(self.config, hot_device=hot_device(), disk_dir=default_disk_dir())

    # -- settings, stats, clearing (for the routes) ------------------------------------------
    def settings_snapshot(self) -> dict:
        d = self.config.as_dict()
        return {k: d[k] for k in RUNTIME_KEYS}

    def update_settings(self, changes: dict) -> CacheConfig:
        """Validate and apply runtime settings; caps and TTLs change the live tiers at once."""
        unknown = [k for k in changes if k not in RUNTIME_KEYS]
        if unknown:
            raise CacheConfigError(f"[Recall] settings: {unknown[0]!r:.100} cannot be changed while ComfyUI runs "
                                   f"(expected one of: {', '.join(RUNTIME_KEYS)}). Set it in the config file and restart.")
        new = self.config.replace(changes, source="settings")
        if "preferred_images" in changes:
            preferred_images.validate(new.preferred_images)  # each a regular file inside the input folder, or a 400
        with self._lock:
            new = self.config.replace(changes, source="settings")
            self._config = new
            store = self._store
        if store is not None:
            store.enabled = new.enabled
            ttl = new.ttl_minutes * 60
            store.configure_tier(VRAM, max_bytes=new.vram_bytes, max_entries=new.vram_entries, ttl_seconds=ttl)
            store.configure_tier(RAM, max_bytes=new.ram_bytes, ttl_seconds=ttl)
            store.configure_tier(DISK, max_bytes=new.disk_bytes, ttl_seconds=new.disk_ttl_hours * 3600)
        return new

    def stats(self) -> dict:
        return self.store.stats()

    @property
    def near_matcher(self):
        """The near-match index and counts (nodes/near_match.py), built on the first near lookup."""
        with self._lock:
            if self._near is None:
                self._near = near_match.build_matcher(self.config, default_disk_dir())
            return self._near

    def near_stats(self) -> dict:
        """match: near counts: near hits (apart from exact ones), candidates rejected by verification;
        zeros before the first near lookup."""
        with self._lock:
            matcher = self._near
        if matcher is None:
            return {"hits": 0, "rejected": 0, "stale": 0, "saved_seconds": 0.0, "indexed": 0}
        return matcher.stats()

    @property
    def file_digests(self) -> FileDigests:
        """The memo of file contents (loader files, LoRA files, input images), kept beside the cache folder."""
        with self._lock:
            if self._file_digests is None:
                self._file_digests = FileDigests(default_disk_dir().parent / "file_digests.json")
            return self._file_digests

    @property
    def weights_memo(self) -> WeightsMemo | None:
        """Encoder weights remembered across restarts (nodes/identity.py), in the disk tier's folder;
        None when there is no usable folder (identities are then hashed from the weights)."""
        with self._lock:
            if self._weights_memo is _DEFAULT:
                self._weights_memo = self._default_weights_memo()
            return self._weights_memo

    def _default_weights_memo(self) -> WeightsMemo | None:
        try:
            configured = self.config.disk_dir
            folder = Path(configured).expanduser() if configured else default_disk_dir()
            return WeightsMemo(folder / WEIGHTS_MEMO_FILE)
        except Exception as exc:  # no config or folder: every identity is then hashed from the weights
            _log.warning("[Recall] encoder identity memo unavailable (%s); models are fingerprinted by their "
                         "weights.", exc)
            return None

    @property
    def started_at(self) -> float | None:
        """When this process started (None: unknown): files changed after it are not trusted."""
        with self._lock:
            if self._started_at is _DEFAULT:
                self._started_at = process_start_time()
            return self._started_at

    def distinct_entries(self, namespaces=None) -> int:
        """Entries counted once: an encoding kept in RAM and on disk is one entry with two copies."""
        return self._distinct.count(self.store.tiers, namespaces)

    def tier_health(self) -> dict:
        """{tier: "down" | "up"}: a tier that failed stays "down" until it works again."""
        def down(tier) -> bool:
            flag = getattr(tier, "is_down", False)
            return bool(flag() if callable(flag) else flag)
        return {t.name: ("down" if down(t) else "up") for t in self.store.tiers}

    def capacity_limits(self) -> dict:
        """The most a size cap can mean on this machine: total RAM, the disk the cache lives on, VRAM."""
        limits = {}
        try:
            import psutil
            limits["ram_bytes"] = int(psutil.virtual_memory().total)
        except Exception:
            pass
        folder = Path(self.config.disk_dir) if self.config.disk_dir else default_disk_dir()
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

    def clear(self, namespace: str | None = None, tier: str | None = None) -> int:
        return self.store.clear(namespace=namespace, tier=tier)

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
            matcher, self._near = self._near, None
            states, self._states = list(self._states.values()), {}
        if store is not None:
            store.close()
        if matcher is not None:
            matcher.index.close()
        for obj in states:
            close = getattr(obj, "close", None)
            if close is not None:
                close()


_install_lock = threading.Lock()
_current: Runtime | None = None  # the one piece of state: which runtime the nodes use


def current() -> Runtime:
    """The installed runtime (the default one, built on first call, when none was installed)."""
    global _current
    with _install_lock:
        if _current is None:
            _current = Runtime()
        return _current


def install(runtime: Runtime | None) -> Runtime | None:
    """Make runtime the one the nodes use; returns the one it replaces (to put back)."""
    global _current
    with _install_lock:
        previous, _current = _current, runtime
        return previous
