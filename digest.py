"""Stable digests of values: the one hashing layer that cache/ and nodes/lib/ both build on.

Imports nothing of the pack and nothing of ComfyUI, so that cache/ (which imports nothing
outside itself but this module) and nodes/lib/ (which imports neither cache/ nor ComfyUI)
can share it.

- content_key(tensor): hex xxh3_128 of dtype, shape and the raw bytes, read through a
  zero-copy uint8 view, so the cost is the hash itself (several GB/s) plus a copy only
  when the tensor is not a contiguous CPU tensor. Equal tensors get equal keys whatever
  their device, strides or memory layout.
- canonical(value): a JSON-able form of a parameter tree whose text is the same in
  every process (tensors by content_key, maps as sorted pairs, non-finite floats tagged).
- digest(value): hex blake2b-160 of canonical(value)'s text. A collision would return
  a wrong result, so it is a cryptographic hash; every cache key, signature and encoder
  identity is made by it.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping

import torch
import xxhash

_PIECE_BYTES = 8 * 2**20


def _dense_cpu(t: torch.Tensor) -> torch.Tensor:
    if t.layout != torch.strided:
        raise TypeError(f"[Recall] cache: cannot hash a {t.layout} tensor (expected a dense tensor)")
    t = t.detach()
    if t.device.type == "meta":
        raise TypeError("[Recall] cache: cannot hash a tensor on the meta device (it has no data)")
    if t.device.type != "cpu":
        t = t.to("cpu")
    # conj/neg bits are lazy views: resolve them so the bytes are the values
    return t.resolve_conj().resolve_neg()


def _as_bytes(t: torch.Tensor) -> memoryview:
    """Zero-copy bytes of a contiguous CPU tensor; the uint8 view works for every dtype,
    bf16 and fp8 included (numpy has no bf16)."""
    flat = t.reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")


def _pieces(t: torch.Tensor, buffers: dict):
    """Row-major contiguous pieces of t. A non-contiguous tensor (e.g. VAE Decode's movedim'd
    IMAGE) is copied piece by piece into one reused buffer: copying it whole would touch
    hundreds of MB of fresh pages and run at a fraction of the hash's speed."""
    if t.is_contiguous():
        yield t
    elif t.dim() <= 1 or t.nbytes <= _PIECE_BYTES:
        buf = buffers.get((t.shape, t.dtype))
        if buf is None:
            buf = buffers[(t.shape, t.dtype)] = torch.empty(t.shape, dtype=t.dtype)
        buf.copy_(t)
        yield buf
    else:
        for i in range(t.shape[0]):
            yield from _pieces(t[i], buffers)


def update_with_tensor(h, t: torch.Tensor) -> None:
    """Feed dtype, shape and row-major bytes of t into a hash object (the same for any layout)."""
    t = _dense_cpu(t)
    h.update(f"{str(t.dtype)}|{tuple(t.shape)}|".encode())
    buffers: dict = {}
    for piece in _pieces(t, buffers):
        h.update(_as_bytes(piece))


def content_key(t: torch.Tensor) -> str:
    """Hex xxh3_128 of dtype, shape and bytes; same for any device or layout of equal tensors."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"[Recall] cache: content_key needs a torch.Tensor, got {type(t).__name__}")
    h = xxhash.xxh3_128()
    update_with_tensor(h, t)
    return h.hexdigest()


def canonical(value: Any) -> Any:
    """Parameters as JSON whose text is the same in every process; TypeError for a value with no stable form."""
    # the common types first: isinstance against an abstract class (Mapping) is slow
    if value is None or isinstance(value, (str, int)):   # bool is an int
        return value
    if isinstance(value, float):
        # repr is the shortest exact round-trip (-0.0 stays apart from 0.0); NaN/inf have no JSON form
        return {"float": repr(value)} if not math.isfinite(value) else value
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict) and {type(k) for k in value} <= {str}:
        # parameters are str-keyed dicts: sorted by key, which is the order _key_order gives them
        return {"map": [[k, canonical(value[k])] for k in sorted(value)]}
    if isinstance(value, (dict, Mapping)):
        return {"map": sorted(([_key(k), canonical(v)] for k, v in value.items()), key=_key_order)}
    if isinstance(value, torch.Tensor):
        return {"tensor": content_key(value)}
    if isinstance(value, (set, frozenset)):
        return {"set": sorted(canonical_text(v) for v in value)}
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, (torch.dtype, torch.device)):
        return {"torch": str(value)}
    if hasattr(value, "__fspath__"):
        return {"path": str(value)}
    raise TypeError(
        f"[Recall] cache: a key parameter of type {type(value).__name__} has no stable form "
        f"(expected None, bool, int, float, str, bytes, tensor, or dict/list/tuple/set of those)")


def _key(k: Any) -> Any:
    # str keys as themselves; any other key tagged, so that {1: x} and {"1": x} differ
    return k if isinstance(k, str) else {"key": canonical(k)}


def _key_order(pair: list) -> tuple:
    """A total order of canonical map keys: str keys by themselves, then tagged keys by their text."""
    k = pair[0]
    return (0, k) if isinstance(k, str) else (1, canonical_text(k))


def canonical_text(value: Any) -> str:
    """The canonical form's JSON text (ASCII, sorted keys, no spaces)."""
    return _text(canonical(value))


def _text(form: Any) -> str:
    return json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(value: Any) -> str:
    """Hex blake2b-160 of the canonical text: the one digest of keys, signatures and identities."""
    return digest_of_canonical(canonical(value))


def digest_of_canonical(form: Any) -> str:
    """digest() of a value whose canonical form the caller built itself: form must be what
    canonical() returns for that value (a builder that canonicalises its leaves with canonical()
    and its containers as lists skips a second walk)."""
    return hashlib.blake2b(_text(form).encode("ascii"), digest_size=20).hexdigest()
