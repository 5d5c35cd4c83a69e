"""Cache settings: defaults that work with nothing set up, a YAML file, RECALL_* env overrides.

    cache:
      enabled: true
      backend: local          # or redis
      ram_bytes: 4GB
      ...

Sizes accept ints (bytes) or strings with a unit: "512MB", "4GB", "1.5GiB"
(K/M/G/T are powers of 1024, as memory is measured). Numbers are finite and
bounded (a size at most MAX_BYTES, a lifetime at most MAX_NUMBER), so a setting
always serializes as plain JSON. Every bad value raises CacheConfigError naming
the key, the value and what is allowed.
"""
import dataclasses
import math
import os
import reprlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import CacheConfigError
from .names import DISK, RAM, VRAM

GB = 2**30
MB = 2**20
ENV_PREFIX = "RECALL_"
BACKENDS = ("local", "redis")
MATCH_MODES = ("exact", "near")
NEAR_PSNR_PRESETS = (40.0, 45.0, 50.0)   # what Settings and the nodes offer; the config takes any in range
NEAR_PSNR_RANGE = (30.0, 80.0)

# settings the UI may change while ComfyUI runs (the rest need a restart)
RUNTIME_KEYS = ("enabled", "vram_entries", "vram_bytes", "ram_bytes", "disk_bytes", "ttl_minutes",
                "text_ttl_minutes", "disk_ttl_hours", "preferred_images", "match", "near_psnr_db")


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = True
    backend: str = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    vram_entries: int = 10
    vram_bytes: int = 2 * GB
    ram_bytes: int = 4 * GB
    disk_bytes: int = 20 * GB
    ttl_minutes: float = 30.0
    text_ttl_minutes: float = 10.0
    disk_ttl_hours: float = 168.0
    disk_dir: str | None = None
    preferred_images: tuple = ()
    redis_max_value_bytes: int = 64 * MB
    redis_timeout_ms: int = 50
    wrap_core_encoders: bool = False
    ddim_in_ksampler: bool = False
    node_rules: tuple = field(default=())
    match: str = "exact"            # "near": an image-pixel encode may reuse a verified near-identical image's
    near_psnr_db: float = 45.0      # the lowest thumbnail PSNR a near match accepts

    def replace(self, changes: Mapping[str, Any], source: str = "settings") -> "CacheConfig":
        """A new config with validated changes (same messages as load_config)."""
        return dataclasses.replace(self, **{k: _parse(k, v, source) for k, v in changes.items()})

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["preferred_images"] = list(self.preferred_images)
        d["node_rules"] = list(self.node_rules)
        return d


KEYS = tuple(f.name for f in dataclasses.fields(CacheConfig))
_SIZE_KEYS = {"vram_bytes", "ram_bytes", "disk_bytes", "redis_max_value_bytes"}
_INT_KEYS = {"vram_entries", "redis_timeout_ms"}
_FLOAT_KEYS = {"ttl_minutes", "text_ttl_minutes", "disk_ttl_hours"}
_BOOL_KEYS = {"enabled", "wrap_core_encoders", "ddim_in_ksampler"}
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": MB, "mb": MB, "mib": MB,
          "g": GB, "gb": GB, "gib": GB, "t": 2**40, "tb": 2**40, "tib": 2**40}
_SIZE_RE = re.compile(r"\s*(\d{1,30}(?:\.\d{1,30})?)\s*([a-zA-Z]*)\s*")
MAX_BYTES = 2**60            # 1 EiB: above any real memory or disk, far below float and int64 limits
MAX_NUMBER = 10**9           # lifetimes (minutes, hours) and counts: ~1900 years of minutes
_SIZE_EXPECTED = f"a size such as 512MB, 4GB or a number of bytes >= 0 and <= {MAX_BYTES} (1 EiB)"
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 80
_short.maxlist = _short.maxtuple = _short.maxdict = 6
_short.maxlevel = 3


def _fail(key: str, value: Any, expected: str, source: str) -> CacheConfigError:
    # the value is shown shortened: a request may send megabytes or thousands of nested lists
    return CacheConfigError(f"[Recall] config: {key}={_short.repr(value)} from {source} is invalid "
                            f"(expected {expected}). Fix the value or remove it to use the default.")


def _finite_at_most(number, limit) -> bool:
    try:
        return math.isfinite(number) and 0 <= number <= limit
    except OverflowError:  # an int too large for a float
        return False


def parse_size(key: str, value: Any, source: str = "config") -> int:
    if isinstance(value, bool):
        raise _fail(key, value, _SIZE_EXPECTED, source)
    if isinstance(value, (int, float)):
        if not _finite_at_most(value, MAX_BYTES):
            raise _fail(key, value, _SIZE_EXPECTED, source)
        return int(value)
    m = _SIZE_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None or m.group(2).lower() not in _UNITS:
        raise _fail(key, value, _SIZE_EXPECTED, source)
    size = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not _finite_at_most(size, MAX_BYTES):
        raise _fail(key, value, _SIZE_EXPECTED, source)
    return int(size)


def _parse_bool(key, value, source):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _fail(key, value, "true or false", source)


def _parse_number(key, value, source, kind):
    expected = f"a {'whole ' if kind is int else ''}number >= 0 and <= {MAX_NUMBER}"
    try:
        if isinstance(value, bool) or (isinstance(value, str) and len(value) > 64):
            raise ValueError
        if isinstance(value, float) and not _finite_at_most(value, MAX_NUMBER):
            raise ValueError  # before int(): int(inf) raises OverflowError
        number = kind(value.strip() if isinstance(value, str) else value)
        if kind is int and isinstance(value, float) and value != int(value):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise _fail(key, value, expected, source) from None
    if not _finite_at_most(number, MAX_NUMBER):  # also NaN and Infinity (not JSON)
        raise _fail(key, value, expected, source)
    return number


def check_image_name(name: Any) -> str | None:
    """Why a preferred_images entry cannot name a file inside the input folder, or None.

    Only the form is checked here (ComfyUI-free); nodes/preferred_images.py resolves
    the name inside ComfyUI's input folder and checks that it is a regular file.
    """
    if not isinstance(name, str) or not name:
        return "not a file name"
    if len(name) > 255 * 4:
        return "too long"
    if any(ord(c) < 32 for c in name):
        return "holds a control character"
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "is an absolute path"
    if any(part == ".." for part in re.split(r"[\\/]", name)):
        return "climbs out of the input folder ('..')"
    return None


def _parse_list(key, value, source, env: bool):
    if env and isinstance(value, str):
        if key == "node_rules":
            import json
            try:
                value = json.loads(value)
            except ValueError:
                raise _fail(key, value, "a JSON list of rules", source) from None
        else:
            value = [v.strip() for v in value.split(",") if v.strip()]
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise _fail(key, value, "a list" + (" of file names" if key == "preferred_images" else ""), source)
    if key == "preferred_images":
        if len(value) > 256:
            raise _fail(key, value, "at most 256 file names", source)
        for name in value:
            why = check_image_name(name)
            if why is not None:
                raise _fail(key, value, f"names of files in ComfyUI's input folder; {_short.repr(name)} {why}",
                            source)
    return tuple(value)


def _parse(key: str, value: Any, source: str, env: bool = False) -> Any:
    if key not in KEYS:
        raise CacheConfigError(f"[Recall] config: unknown key {key!r} in {source} (expected one of: "
                               f"{', '.join(KEYS)}). Check the spelling or remove it.")
    if key in _SIZE_KEYS:
        return parse_size(key, value, source)
    if key in _BOOL_KEYS:
        return _parse_bool(key, value, source)
    if key in _INT_KEYS:
        return _parse_number(key, value, source, int)
    if key in _FLOAT_KEYS:
        return float(_parse_number(key, value, source, float))
    if key == "backend":
        if value not in BACKENDS:
            raise _fail(key, value, " or ".join(BACKENDS), source)
        return value
    if key == "match":
        if value not in MATCH_MODES:
            raise _fail(key, value, " or ".join(MATCH_MODES), source)
        return value
    if key == "near_psnr_db":
        low, high = NEAR_PSNR_RANGE
        number = _parse_number(key, value, source, float)
        if not low <= number <= high:
            raise _fail(key, value, f"a PSNR in dB from {low:g} to {high:g} (presets: 40, 45, 50)", source)
        return float(number)
    if key == "redis_url":
        if not isinstance(value, str) or not re.match(r"(redis|rediss|unix)://", value):
            raise _fail(key, value, "a URL starting with redis://, rediss:// or unix://", source)
        return value
    if key == "disk_dir":
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise _fail(key, value, "a folder path", source)
        return os.path.expanduser(value)
    return _parse_list(key, value, source, env)


def load_config(path: Path | None, env: Mapping[str, str] = os.environ) -> CacheConfig:
    """Defaults, then the YAML file's `cache:` mapping (if path is given and exists), then RECALL_* env."""
    values: dict[str, Any] = {}
    if path is not None and Path(path).exists():
        values.update(_read_yaml(Path(path)))
    for name, raw in env.items():
        if name.startswith(ENV_PREFIX) and name != "RECALL_CONFIG":
            key = name[len(ENV_PREFIX):].lower()
            if key not in KEYS:
                continue  # other RECALL_* variables (test switches, paths) are not cache settings
            values[key] = _parse(key, raw, f"environment variable {name}", env=True)
    return CacheConfig(**values)


def _read_yaml(path: Path) -> dict:
    import yaml
    source = str(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CacheConfigError(f"[Recall] config: cannot read {source}: {exc} (expected a YAML file with a "
                               f"top-level 'cache:' mapping). Fix or remove the file.") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not isinstance(doc.get("cache", {}), (dict, type(None))):
        raise CacheConfigError(f"[Recall] config: {source} must hold a top-level 'cache:' mapping "
                               f"(expected 'cache:' followed by key: value lines). Fix the file.")
    section = doc.get("cache") or {}
    return {k: _parse(str(k), v, source) for k, v in section.items()}


def build_store(config: CacheConfig, *, hot_device=None, disk_dir: Path, clock=time.monotonic,
                shared_tier=None, background_writes: bool = True):
    """The tiers a config asks for: hot (only with an accelerator), warm RAM, cold disk, shared."""
    from .disk import DiskTier
    from .memory import MemoryTier
    from .store import TieredStore

    ttl = config.ttl_minutes * 60
    tiers = []
    if hot_device is not None:
        tiers.append(MemoryTier(VRAM, config.vram_bytes, config.vram_entries, ttl, device=hot_device, clock=clock))
    tiers.append(MemoryTier(RAM, config.ram_bytes, None, ttl, device="cpu", clock=clock))
    if config.disk_bytes > 0:
        tiers.append(DiskTier(DISK, Path(config.disk_dir or disk_dir), config.disk_bytes,
                              config.disk_ttl_hours * 3600))
    if shared_tier is not None:
        tiers.append(shared_tier)
    return TieredStore(tiers, clock=clock, background_writes=background_writes, enabled=config.enabled)


def describe(config: CacheConfig, *, hot_device=None, disk_dir=None) -> str:
    """One short line for the start-up log, from the config only (no disk scan, no connection)."""
    if not config.enabled:
        return "off (enabled: false)"
    parts = []
    if hot_device is not None:
        parts.append(f"vram {config.vram_entries} entries/{config.vram_bytes / GB:.3g}GB on {hot_device}")
    parts.append(f"ram {config.ram_bytes / GB:.3g}GB")
    if config.disk_bytes > 0:
        parts.append(f"disk {config.disk_bytes / GB:.3g}GB at {config.disk_dir or disk_dir}")
    if config.backend == "redis":
        parts.append(f"redis {config.redis_url}")
    return ", ".join(parts)
