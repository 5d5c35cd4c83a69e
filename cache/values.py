"""Walking cached values in memory: their size in bytes and moving them between devices."""
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


def move(value: Any, device) -> Any:
    """A copy of the value's structure with tensors on device (tensors already there are shared).

    Only containers and registered object types are rebuilt; other objects are returned as they are.
    """
    if device is None:
        return value
    device = torch.device(device)

    def walk(v):
        if isinstance(v, torch.Tensor):
            return v if v.device == device else v.to(device)
        if isinstance(v, dict) and type(v) is dict:
            return {k: walk(item) for k, item in v.items()}
        if type(v) in (list, tuple):
            return type(v)(walk(item) for item in v)
        if registered_name(type(v)) is not None and hasattr(v, "__dict__"):
            obj = type(v).__new__(type(v))
            obj.__dict__.update({k: walk(item) for k, item in vars(v).items()})
            return obj
        return v

    return walk(value)
