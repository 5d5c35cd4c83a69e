"""Cache keys: a content key per tensor and one stable key per cached computation.

content_key hashes dtype, shape and the raw bytes with xxh3_128 through a
zero-copy uint8 view, so the cost is the hash itself (several GB/s) plus a copy
only when the tensor is not a contiguous CPU tensor. Equal tensors get equal
keys whatever their device, strides or memory layout.
"""
import hashlib
import json
import math
from typing import Any, Mapping, Sequence

import torch
import xxhash

KEY_VERSION = 1


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


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The tensor's bytes in row-major order (one copy when it is not contiguous on the CPU)."""
    return _as_bytes(_dense_cpu(t).contiguous())


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


def _canonical(value: Any) -> Any:
    """Turn parameters into JSON whose text is the same in every process."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # repr is the shortest exact round-trip; NaN/inf have no JSON form
        return {"float": repr(value)} if not math.isfinite(value) else value
    if isinstance(value, torch.Tensor):
        return {"tensor": content_key(value)}
    if isinstance(value, Mapping):
        return {"map": sorted([[str(k), _canonical(v)] for k, v in value.items()])}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {"set": sorted(json.dumps(_canonical(v), sort_keys=True) for v in value)}
    if isinstance(value, (torch.dtype, torch.device)):
        return {"torch": str(value)}
    if hasattr(value, "__fspath__"):
        return {"path": str(value)}
    raise TypeError(
        f"[Recall] cache: a key parameter of type {type(value).__name__} has no stable form "
        f"(expected None, bool, int, float, str, tensor, or dict/list/tuple of those)")


def build_key(kind: str, *, contents: Sequence[str] = (), encoder: str = "",
              params: Mapping[str, Any] | None = None) -> str:
    """One stable hex key from what decides a result: kind, content keys, encoder, parameters."""
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"[Recall] cache: key kind must be a non-empty str, got {kind!r}")
    doc = {
        "v": KEY_VERSION,
        "kind": kind,
        "contents": [str(c) for c in contents],
        "encoder": str(encoder),
        "params": _canonical(dict(params or {})),
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    # blake2b-160 for keys: a key collision would return a wrong result, so use a crypto hash
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()
