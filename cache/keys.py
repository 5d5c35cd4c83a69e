"""Cache keys: a content key per tensor and one stable key per cached computation.

Both come from the pack's digest module (content_key: xxh3_128 of a tensor's dtype, shape
and bytes; digest: blake2b-160 of a canonical parameter tree), so a key built here and
a signature or encoder identity built in the node layer are hashed the same way.
"""
from typing import Any, Mapping, Sequence

from ..digest import content_key, digest, update_with_tensor

__all__ = ["KEY_VERSION", "build_key", "content_key", "update_with_tensor"]

KEY_VERSION = 2


def build_key(kind: str, *, contents: Sequence[str] = (), encoder: str = "",
              params: Mapping[str, Any] | None = None) -> str:
    """One stable hex key from what decides a result: kind, content keys, encoder, parameters."""
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"[Recall] cache: key kind must be a non-empty str, got {kind!r}")
    return digest({
        "v": KEY_VERSION,
        "kind": kind,
        "contents": [str(c) for c in contents],
        "encoder": str(encoder),
        "params": dict(params or {}),
    })
