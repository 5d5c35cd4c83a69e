"""Walking cached values in memory: their size in bytes, their devices, copies on a device."""
from typing import Any

import torch

from .serialize import registered_name

_OBJECT_OVERHEAD = 1024  # bytes charged for a value with no tensors, so entry caps still bite


def nbytes(value: Any) -> int:
    """Bytes of the distinct tensor storages reachable through containers and object attributes."""
    seen_storage: set[tuple[str, int]] = set()
    seen_obj: set[int] = set()
    total = 0

    def walk(v, depth):
        nonlocal total
        if isinstance(v, torch.Tensor):
            if v.device.type == "meta" or v.layout != torch.strided:
                return
            try:
                storage = v.untyped_storage()
                ident = (str(v.device), storage.data_ptr())
                size = storage.nbytes()
            except (RuntimeError, NotImplementedError):
                ident, size = (str(v.device), id(v)), v.numel() * v.element_size()
            if ident not in seen_storage:
                seen_storage.add(ident)
                total += size
            return
        if depth > 6 or id(v) in seen_obj or v is None or isinstance(v, (bool, int, float, str, bytes)):
            return
        seen_obj.add(id(v))
        if isinstance(v, dict):
            for item in v.values():
                walk(item, depth + 1)
        elif isinstance(v, (list, tuple, set, frozenset)):
            for item in v:
                walk(item, depth + 1)
        elif hasattr(v, "__dict__") and not isinstance(v, type):
            for item in vars(v).values():
                walk(item, depth + 1)

    walk(value, 0)
    return total + _OBJECT_OVERHEAD


def _rebuild(value: Any, tensor_fn) -> Any:
    """The value's structure rebuilt with tensor_fn applied to each tensor, in serialize.flatten's
    order (dict insertion order, sequences, registered objects' attributes). Plain dicts, lists,
    tuples, namedtuples and registered object types are rebuilt; other objects are kept as they are."""
    def walk(v):
        if isinstance(v, torch.Tensor):
            return tensor_fn(v)
        if type(v) is dict:
            return {k: walk(item) for k, item in v.items()}
        if type(v) in (list, tuple):
            return type(v)(walk(item) for item in v)
        if isinstance(v, tuple) and hasattr(v, "_fields"):
            return type(v)(*(walk(item) for item in v))
        if registered_name(type(v)) is not None and hasattr(v, "__dict__"):
            obj = type(v).__new__(type(v))
            obj.__dict__.update({k: walk(item) for k, item in vars(v).items()})
            return obj
        return v

    return walk(value)


def copyable(value: Any) -> bool:
    """Whether move(copy=True) copies the whole value: tensors, plain scalars, plain dicts, lists and
    tuples, namedtuples and registered object types, without cycles. Anything else (a model, a
    file handle, a set) would be shared with the copy, so such a value is kept by reference. A
    walk of the structure only: no tensor is read."""
    on_path: set[int] = set()

    def walk(v) -> bool:
        if isinstance(v, torch.Tensor) or v is None or isinstance(v, (bool, int, float, str)):
            return True
        plain = type(v) in (dict, list, tuple) or (isinstance(v, tuple) and hasattr(v, "_fields"))
        registered = not plain and registered_name(type(v)) is not None and hasattr(v, "__dict__")
        if not (plain or registered) or id(v) in on_path:
            return False
        on_path.add(id(v))
        items = v.values() if type(v) is dict else vars(v).values() if registered else v
        ok = all(walk(item) for item in items)
        on_path.discard(id(v))
        return ok

    return walk(value)


def move(value: Any, device, *, copy: bool = False) -> Any:
    """A copy of the value's structure with tensors on device. Tensors already there are shared,
    unless copy: then every tensor is a fresh one, so nothing shares memory with value."""
    if device is None and not copy:
        return value
    target = None if device is None else torch.device(device)

    def one(t: torch.Tensor) -> torch.Tensor:
        if target is None or t.device == target:
            return t.clone() if copy else t
        return t.to(target)

    return _rebuild(value, one)


def devices(value: Any) -> tuple[str, ...]:
    """The device of each tensor of the value, in the order restore() puts them back."""
    found: list[str] = []

    def note(t: torch.Tensor) -> torch.Tensor:
        found.append(str(t.device))
        return t

    _rebuild(value, note)
    return tuple(found)


def _usable(device: str) -> torch.device:
    """device, or the CPU when this process cannot reach it (an entry a GPU worker shared
    through Redis, read on a CPU-only worker: there the core node returns CPU tensors)."""
    d = torch.device(device)
    if d.type == "cuda" and not (torch.cuda.is_available() and (d.index or 0) < torch.cuda.device_count()):
        return torch.device("cpu")
    if d.type == "mps" and not torch.backends.mps.is_available():
        return torch.device("cpu")
    return d


def restore(value: Any, recorded: tuple[str, ...], *, copy: bool) -> Any:
    """The value with its i-th tensor on recorded[i] (the device its producer returned it on).

    copy: every tensor is a fresh one (a value held by a memory tier); otherwise tensors already
    on their device are handed on (a value just read from a persistent tier is nobody else's).
    ValueError when the tensor count differs from the record."""
    targets = iter(recorded)
    usable: dict[str, torch.device] = {}

    def one(t: torch.Tensor) -> torch.Tensor:
        recorded_device = next(targets, None)
        if recorded_device is None:
            raise ValueError(f"cached value has more tensors than its {len(recorded)} recorded devices "
                             "(expected equal counts)")
        target = usable.get(recorded_device)
        if target is None:
            target = usable[recorded_device] = _usable(recorded_device)
        if t.device == target:
            return t.clone() if copy else t
        return t.to(target, copy=True)

    out = _rebuild(value, one)
    if next(targets, None) is not None:
        raise ValueError(f"cached value has fewer tensors than its {len(recorded)} recorded devices "
                         "(expected equal counts)")
    return out
