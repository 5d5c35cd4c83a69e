"""Nested values of tensors (conditioning lists, latent dicts, encoder outputs): digest, clone, devices.

ComfyUI-free. A "tree" is dict / list / tuple nesting of tensors and plain values.

- tree_digest(obj): one stable hex digest of any such tree, also of objects found in
  ComfyUI patches (weight adapters, namedtuples, functions), for keys built from tokens
  and LoRA patches. Tensors are digested by content (cache.keys.content_key), so equal
  tensors on different devices or with different strides give the same digest.
- clone_tree(value): a copy whose tensors share no memory with the original, so a
  caller that edits its result in place can never change what the cache holds.
"""
from __future__ import annotations

import hashlib
import math
import struct
from typing import Any, Callable

import torch

from ...cache.keys import content_key

_MAX_DEPTH = 32


def tree_digest(obj: Any) -> str:
    """Hex digest of a nested value; equal content gives an equal digest across processes."""
    h = hashlib.blake2b(digest_size=16)
    _feed(h, obj, 0, set())
    return h.hexdigest()


def _feed(h, obj: Any, depth: int, seen: set) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError(f"value nested deeper than {_MAX_DEPTH} levels (expected a plain tree)")
    if obj is None or isinstance(obj, (bool, int, str, bytes)):
        h.update(f"{type(obj).__name__}:{len(repr(obj))}:{obj!r};".encode())
    elif isinstance(obj, float):
        # Exact bits: repr would merge -0.0 / 0.0 only if they print alike; struct keeps them apart.
        h.update(b"float:" + struct.pack("<d", obj) + (b"nan" if math.isnan(obj) else b""))
    elif isinstance(obj, torch.Tensor):
        h.update(f"tensor:{content_key(obj)};".encode())
    elif isinstance(obj, (torch.dtype, torch.device)):
        h.update(f"{type(obj).__name__}:{obj};".encode())
    elif isinstance(obj, dict):
        items = sorted(obj.items(), key=lambda kv: repr(kv[0]))
        h.update(f"dict:{len(items)}(".encode())
        for k, v in items:
            _feed(h, k, depth + 1, seen)
            _feed(h, v, depth + 1, seen)
        h.update(b")")
    elif isinstance(obj, (list, tuple, set, frozenset)):
        seq = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        h.update(f"{type(obj).__name__}:{len(seq)}(".encode())
        for v in seq:
            _feed(h, v, depth + 1, seen)
        h.update(b")")
    elif callable(obj) and hasattr(obj, "__qualname__"):
        # A function in a patch: its name plus whatever its closure captured (e.g. a strength).
        h.update(f"fn:{getattr(obj, '__module__', '')}.{obj.__qualname__};".encode())
        cells = getattr(obj, "__closure__", None) or ()
        _feed(h, [c.cell_contents for c in cells if _cell_filled(c)], depth + 1, seen)
    elif hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
        # Weight adapters and similar patch objects: class name + their attributes.
        if id(obj) in seen:
            h.update(b"cycle;")
            return
        seen.add(id(obj))
        h.update(f"obj:{type(obj).__module__}.{type(obj).__qualname__}".encode())
        _feed(h, _attributes(obj), depth + 1, seen)
        seen.discard(id(obj))
    else:
        raise ValueError(f"cannot digest a {type(obj).__name__} (expected tensors, plain values or containers)")


def _cell_filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _attributes(obj: Any) -> dict:
    attrs = dict(getattr(obj, "__dict__", {}))
    for name in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, name):
            attrs[name] = getattr(obj, name)
    return attrs


def map_tensors(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """The same tree with fn applied to every tensor (containers rebuilt, other leaves kept)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        # Visit in sorted key order (the order iter_tensors uses, stable through serialization),
        # rebuild in the original order.
        done = {k: map_tensors(value[k], fn) for k in sorted(value, key=repr)}
        return {k: done[k] for k in value}
    if isinstance(value, list):
        return [map_tensors(v, fn) for v in value]
    if isinstance(value, tuple):
        items = [map_tensors(v, fn) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    return value


def iter_tensors(value: Any):
    """Tensors of a tree in a fixed order: dicts by sorted key, the order map_tensors visits."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for k in sorted(value, key=repr):
            yield from iter_tensors(value[k])
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from iter_tensors(v)


def clone_tree(value: Any) -> Any:
    return map_tensors(value, lambda t: t.clone())


def tree_nbytes(value: Any) -> int:
    return sum(t.numel() * t.element_size() for t in iter_tensors(value))
