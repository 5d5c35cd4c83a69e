"""Values in and out of the persistent tiers, without pickle.

flatten() turns a value (tensors, nested dict/list/tuple, plain scalars, and
objects of registered types) into a flat {name: tensor} dict plus a JSON
structure; unflatten() rebuilds it. dumps()/loads() are the one byte format of
the disk and Redis tiers: safetensors bytes whose __metadata__ holds a JSON
document with the format version, the structure, each tensor's dtype/shape,
the caller's meta and an xxh3_128 checksum of the tensor bytes. loads() raises
CorruptEntry rather than ever returning a wrong tensor.
"""
import json
import math
import threading
from typing import Any

import torch
import xxhash
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import CorruptEntry, UnstorableValue
from ..digest import update_with_tensor

FORMAT = "comfyui-recall"
FORMAT_VERSION = 1
_META_KEY = "recall"

# dtypes safetensors stores exactly; anything else is kept out of persistent tiers
STORABLE_DTYPES = {
    torch.float64, torch.float32, torch.float16, torch.bfloat16,
    torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
}
for _name in ("float8_e4m3fn", "float8_e5m2"):
    if hasattr(torch, _name):
        STORABLE_DTYPES.add(getattr(torch, _name))
_DTYPES_BY_NAME = {str(d): d for d in STORABLE_DTYPES}

_registry_lock = threading.Lock()
_types_by_name: dict[str, type] = {}
_names_by_type: dict[type, str] = {}


def register_object_type(name: str, cls: type) -> None:
    """Allow objects of cls (their __dict__) in cached values, stored under a stable name."""
    with _registry_lock:
        known = _types_by_name.get(name)
        if known is not None and known is not cls:
            # ComfyUI can reload a module; the newest class wins for rebuilding
            _names_by_type.pop(known, None)
        _types_by_name[name] = cls
        _names_by_type[cls] = name


def registered_name(cls: type) -> str | None:
    with _registry_lock:
        return _names_by_type.get(cls)


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    return value


def flatten(value: Any) -> tuple[dict[str, torch.Tensor], dict]:
    """value -> ({name: tensor}, structure); raises UnstorableValue for anything else."""
    tensors: dict[str, torch.Tensor] = {}
    seen_ids: set[int] = set()

    def walk(v, path: str):
        if isinstance(v, torch.Tensor):
            if v.layout != torch.strided or v.dtype not in STORABLE_DTYPES or v.device.type == "meta":
                raise UnstorableValue(f"tensor at {path} ({v.dtype}, {v.layout}, {v.device}) cannot be stored exactly")
            name = str(len(tensors))
            tensors[name] = v
            return {"t": name}
        if v is None or isinstance(v, (bool, int, str)):
            return {"v": v}
        if isinstance(v, float):
            return {"v": _plain(v)} if math.isfinite(v) else {"f": repr(v)}
        if id(v) in seen_ids:
            raise UnstorableValue(f"value at {path} refers to itself")
        if isinstance(v, dict):
            seen_ids.add(id(v))
            items = []
            for k, item in v.items():
                if not (k is None or isinstance(k, (str, int, bool))):
                    raise UnstorableValue(f"dict key {k!r} at {path} is a {type(k).__name__} (expected str or int)")
                items.append([{"v": k}, walk(item, f"{path}[{k!r}]")])
            seen_ids.discard(id(v))
            return {"d": items}
        if isinstance(v, (list, tuple)) and type(v) in (list, tuple):
            seen_ids.add(id(v))
            out = [walk(item, f"{path}[{i}]") for i, item in enumerate(v)]
            seen_ids.discard(id(v))
            return {"l" if isinstance(v, list) else "u": out}
        name = registered_name(type(v))
        if name is not None and hasattr(v, "__dict__"):
            seen_ids.add(id(v))
            attrs = walk(dict(vars(v)), f"{path}.__dict__")
            seen_ids.discard(id(v))
            return {"o": name, "a": attrs}
        raise UnstorableValue(f"value at {path} is a {type(v).__module__}.{type(v).__qualname__}, "
                              f"which the cache cannot store without pickle")

    structure = walk(value, "value")
    return tensors, structure


def unflatten(tensors: dict[str, torch.Tensor], structure: dict) -> Any:
    """Inverse of flatten; raises CorruptEntry on a malformed structure."""
    def build(node):
        if not isinstance(node, dict) or len(node) == 0:
            raise CorruptEntry(f"malformed structure node {node!r:.80}")
        if "t" in node:
            return tensors[node["t"]]
        if "v" in node:
            return node["v"]
        if "f" in node:
            return float(node["f"])
        if "d" in node:
            return {build(k): build(v) for k, v in node["d"]}
        if "l" in node:
            return [build(v) for v in node["l"]]
        if "u" in node:
            return tuple(build(v) for v in node["u"])
        if "o" in node:
            with _registry_lock:
                cls = _types_by_name.get(node["o"])
            if cls is None:
                raise CorruptEntry(f"object type {node['o']!r} is not registered in this process")
            obj = cls.__new__(cls)
            obj.__dict__.update(build(node["a"]))
            return obj
        raise CorruptEntry(f"unknown structure node {sorted(node)!r}")

    try:
        return build(structure)
    except CorruptEntry:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptEntry(f"malformed structure: {exc}") from exc


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = xxhash.xxh3_128()
    for name in sorted(tensors, key=int):
        update_with_tensor(h, tensors[name])
    return h.hexdigest()


def _independent_cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors that share no storage (safetensors refuses shared storage)."""
    out, storages = {}, set()
    for name, t in tensors.items():
        t = t.detach().to("cpu").resolve_conj().resolve_neg().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in storages or t.untyped_storage().nbytes() != t.nbytes:
            t = t.clone()
        if t.numel():
            storages.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def dumps(value: Any, meta: dict | None = None) -> bytes:
    """value + caller meta -> safetensors bytes; raises UnstorableValue."""
    tensors, structure = flatten(value)
    tensors = _independent_cpu(tensors)
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "structure": structure,
        "tensors": {n: [str(t.dtype), list(t.shape)] for n, t in tensors.items()},
        "meta": dict(meta or {}),
        "checksum": _checksum(tensors),
    }
    try:
        text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UnstorableValue(f"meta is not plain JSON: {exc}") from exc
    return st_save(tensors, metadata={_META_KEY: text})


def read_header(data: bytes) -> dict:
    """The JSON document of a blob from its safetensors header (no tensor bytes read)."""
    if len(data) < 8:
        raise CorruptEntry(f"blob of {len(data)} bytes is too short")
    size = int.from_bytes(data[:8], "little")
    if size <= 0 or 8 + size > len(data):
        raise CorruptEntry("safetensors header length exceeds the blob (truncated)")
    return parse_header(data[8:8 + size])


def parse_header(header: bytes) -> dict:
    try:
        top = json.loads(header)
        doc = json.loads(top["__metadata__"][_META_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptEntry(f"not a Recall cache entry ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CorruptEntry("not a Recall cache entry (foreign safetensors file)")
    if doc.get("version") != FORMAT_VERSION:
        raise CorruptEntry(f"cache format version {doc.get('version')!r} (this Recall reads {FORMAT_VERSION})")
    return doc


def loads(data: bytes) -> tuple[Any, dict]:
    """Bytes from dumps -> (value, caller meta); CorruptEntry for anything not exactly right."""
    data = bytes(data)
    doc = read_header(data)
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise CorruptEntry(f"unreadable safetensors blob: {exc}") from exc
    declared = doc.get("tensors")
    if not isinstance(declared, dict) or set(declared) != set(tensors):
        raise CorruptEntry("tensor names differ from the entry's metadata")
    for name, t in tensors.items():
        dtype, shape = declared[name]
        if dtype != str(t.dtype) or list(shape) != list(t.shape):
            raise CorruptEntry(f"tensor {name} is {t.dtype}{list(t.shape)}, metadata says {dtype}{shape}")
    if _checksum(tensors) != doc.get("checksum"):
        raise CorruptEntry("checksum mismatch (the tensor bytes were changed)")
    value = unflatten(tensors, doc.get("structure"))
    meta = doc.get("meta")
    return value, meta if isinstance(meta, dict) else {}
