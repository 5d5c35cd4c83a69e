"""Nested values of tensors (conditioning lists, latent dicts, encoder outputs): digest, clone, devices.

ComfyUI-free. A "tree" is dict / list / tuple nesting of tensors and plain values.

- tree_digest(obj): one stable hex digest of any such tree, also of objects found in
  ComfyUI patches (weight adapters, namedtuples, functions), for keys built from tokens
  and LoRA patches. The tree is turned into a plain form (containers tagged with their
  type, objects by class and attributes, functions by name and closure) and hashed by
  the pack's one digest function; tensors enter by content (digest.content_key), so equal
  tensors on different devices or with different strides give the same digest.
- clone_tree(value): a copy whose tensors share no memory with the original, so a
  caller that edits its result in place can never change what the cache holds.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ...digest import canonical, canonical_text, digest_of_canonical

_MAX_DEPTH = 32


def tree_digest(obj: Any) -> str:
    """Hex digest of a nested value; equal content gives an equal digest across processes."""
    return digest_of_canonical(_plain(obj, 0, set()))


def _plain(obj: Any, depth: int, seen: set) -> Any:
    """obj in the digest's canonical form: a leaf as canonical() has it, anything else as a list
    [tag, ...] (a container's type is kept, so [1, 2] != (1, 2)). Every container is tagged, so
    the form is unambiguous, and it is canonical as it stands (lists of canonical leaves)."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"value nested deeper than {_MAX_DEPTH} levels (expected a plain tree)")
    if obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, (float, bytes, torch.Tensor, torch.dtype, torch.device)):
        return canonical(obj)
    if isinstance(obj, (list, tuple)):
        return [type(obj).__name__, [_plain(v, depth + 1, seen) for v in obj]]
    if isinstance(obj, dict):
        items = [[_plain(k, depth + 1, seen), _plain(v, depth + 1, seen)] for k, v in obj.items()]
        return ["dict", sorted(items, key=lambda kv: canonical_text(kv[0]))]
    if isinstance(obj, (set, frozenset)):
        return ["set", sorted((_plain(v, depth + 1, seen) for v in obj), key=canonical_text)]
    if callable(obj) and hasattr(obj, "__qualname__"):
        # A function in a patch: its name plus whatever its closure captured (e.g. a strength).
        cells = getattr(obj, "__closure__", None) or ()
        return ["fn", f"{getattr(obj, '__module__', '')}.{obj.__qualname__}",
                _plain([c.cell_contents for c in cells if _cell_filled(c)], depth + 1, seen)]
    if hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
        # Weight adapters and similar patch objects: class name + their attributes.
        if id(obj) in seen:
            return ["cycle"]
        seen.add(id(obj))
        try:
            return ["obj", f"{type(obj).__module__}.{type(obj).__qualname__}",
                    _plain(_attributes(obj), depth + 1, seen)]
        finally:
            seen.discard(id(obj))
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
