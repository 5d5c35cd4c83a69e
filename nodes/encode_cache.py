"""The one look-up / compute / report flow every cached encoding goes through.

Wrapped encoder calls (nodes/encoder_calls.py: the wrapper nodes, the drop-in nodes and
the opt-in autowrap all go through it) describe an encoding as kind + content keys +
encoder identity + the call's other arguments and a compute function; this module builds
the key, asks the store, computes on a miss, and hands back a Part (value + what the
cache did). `report` turns the Parts of one node run into one log line and one
"recall.node" UI event.

Values are stored exactly as the encoder produced them, wrapped as {"v": value,
"d": [device of each tensor]}, and every value handed out is a fresh copy on the device
the encoder returned it on: downstream nodes that edit tensors in place can never
change the cache, and a hit from the VRAM tier comes back where the core node's
result would be.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence


from ..cache.keys import build_key
from . import events, near_match
from .lib.miss_reason import explain_miss, make_label
from .lib.tensor_tree import restore_devices, tensor_devices

_log = logging.getLogger("recall.encode")

SHARED = "shared"  # image encodings are shared by all users of the server (brief: L1 table)
CATEGORY = "Recall/encode"

_local = threading.local()


@contextlib.contextmanager
def computing():
    """Marks that Recall itself is running an encoder, so autowrap's wrappers pass through."""
    depth = getattr(_local, "depth", 0)
    _local.depth = depth + 1
    try:
        yield
    finally:
        _local.depth = depth


def inside_compute() -> bool:
    return getattr(_local, "depth", 0) > 0


@dataclass
class Part:
    """What the cache did for one encoding of a node run."""
    value: Any
    status: str                 # "hit" | "miss" | "off"
    tier: str | None = None
    saved_s: float = 0.0
    compute_s: float = 0.0
    reason: str | None = None
    key: str | None = None
    near_db: float | None = None  # a near hit: the PSNR by which another image's encoding was accepted


_warned: set = set()


def _store():
    """(store, None), or (None, reason) when caching is off or the cache cannot be set up."""
    from . import runtime
    try:
        config = runtime.get_config()
        if not config.enabled:
            return None, "caching is disabled in the Recall config"
        return runtime.get_store(), None
    except Exception as exc:  # a broken cache must never break a workflow
        if str(exc) not in _warned:  # once per distinct failure, not once per node run
            _warned.add(str(exc))
            _log.warning("[Recall] cache unavailable, encoding without it: %s", exc)
        return None, f"cache unavailable: {exc}"


def _timed(compute: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    with computing():
        value = compute()
    return value, time.perf_counter() - start


def uncached(compute: Callable[[], Any], reason: str) -> Part:
    value, seconds = _timed(compute)
    return Part(value, "off", compute_s=seconds, reason=reason)


def cached(kind: str, *, contents: Sequence[str], encoder: str, params: dict | None,
           compute: Callable[[], Any], namespace: str = SHARED, pinned: bool = False,
           ttl_seconds: float | None = None, hints: dict | None = None, near=None) -> Part:
    """Look one encoding up; on a miss compute it (single flight per key) and store it.

    On a miss the stored value is the encoder's own output and the caller gets a copy;
    on a hit the caller gets a copy of the stored value: either way nothing handed out
    shares memory with the cache. hints: inputs of the node that shaped the content (SVD's
    seed shapes the noisy pixels) shown in the miss explanation, not part of the key.
    near: a near_match.Plan: an exact miss first tries a verified near-identical image.
    """
    store, off_reason = _store()
    if store is None:
        return uncached(compute, off_reason)
    key = build_key(kind, contents=contents, encoder=encoder, params=params)
    label = make_label(kind, contents, encoder, params, hints)
    timing = {}

    def produce():
        if near is not None:
            found = near_match.find(store, near, namespace, readable=lambda v: _unwrap(v) is not None)
            if found is not None:
                raise _NearHit(found)  # out of the single flight: nothing is stored under this key
        value, timing["s"] = _timed(compute)
        return {"v": value, "d": tensor_devices(value)}

    flight = dict(namespace=namespace, label=label, pinned=pinned, ttl_seconds=ttl_seconds)

    def lookup():
        """(outcome, None) as the store answered, or (None, a verified near entry)."""
        try:
            return store.get_or_compute(key, produce, **flight), None
        except _NearHit as near_hit:
            return None, near_hit.found

    outcome, found = lookup()
    value = None if found is not None else _unwrap(outcome.value)
    if found is None and value is None:  # a foreign entry under our key: drop it and compute afresh
        store.delete(key, namespace=namespace)
        outcome, found = lookup()
        value = None if found is not None else _unwrap(outcome.value)
        if found is None and value is None:
            return uncached(compute, "cache entry unreadable")
    if found is not None:
        return Part(_unwrap(found.value), "hit", tier=found.tier, saved_s=found.saved_seconds, key=found.key,
                    near_db=found.db)
    if near is not None:
        near_match.remember(store, near, **flight)
    if outcome.hit:
        return Part(value, "hit", tier=outcome.tier, saved_s=outcome.saved_seconds, key=key)
    return Part(value, "miss", compute_s=timing.get("s", outcome.compute_seconds),
                reason=_reason(store, namespace, key, label), key=key)


class _NearHit(Exception):
    def __init__(self, found):
        super().__init__("near hit")
        self.found = found


def _unwrap(stored: Any):
    """The value of an entry this module wrote, as a fresh copy on its original devices; else None."""
    if not isinstance(stored, dict) or set(stored) != {"v", "d"}:
        return None
    try:
        return restore_devices(stored["v"], list(stored["d"]))
    except (TypeError, ValueError, RuntimeError) as exc:
        _log.warning("[Recall] ignoring a malformed cache entry: %s", exc)
        return None


_TIER_ORDER = ("vram", "ram", "disk", "redis")


def _lowest(tiers: list) -> str | None:
    known = [t for t in tiers if t in _TIER_ORDER]
    return max(known, key=_TIER_ORDER.index) if known else (tiers[0] if tiers else None)


def _reason(store, namespace: str, key: str, label: str) -> str:
    try:
        recent = [lbl for k, lbl in store.recent_keys(namespace, 64) if k != key]
    except Exception:  # reasons are a courtesy; never fail a run over one
        return "not cached yet"
    return explain_miss(label, recent)


def node_id(node_cls) -> str | None:
    """The running node's UNIQUE_ID (None when a test or script calls execute directly)."""
    hidden = getattr(node_cls, "hidden", None)
    return None if hidden is None else hidden.unique_id


def report(node_type: str, node_id, parts: Sequence[Part]) -> dict:
    """One log line + one UI event for a node run made of one or more cached encodings."""
    if not parts:
        return events.report_node(node_id, node_type, "off", reason="nothing to encode")
    statuses = {p.status for p in parts}
    status = "off" if statuses == {"off"} else "miss" if statuses & {"miss", "off"} else "hit"
    reasons = [p.reason for p in parts if p.status != "hit" and p.reason]
    near = [p.near_db for p in parts if p.near_db is not None]
    return events.report_node(
        node_id, node_type, status,
        tier=_lowest([p.tier for p in parts if p.tier]),
        saved_s=sum(p.saved_s for p in parts),
        compute_s=sum(p.compute_s for p in parts),
        reason="; ".join(dict.fromkeys(reasons)) or None,
        key=next((p.key for p in parts if p.key), None),
        near_db=min(near) if near else None)


# --- encoders: what the wrapped calls (nodes/encoder_calls.py) need from this module ------

def encoder_identity(fn: Callable[[Any], str], encoder) -> tuple[str | None, str | None]:
    """(identity, None), or (None, reason) when this encoder cannot be fingerprinted."""
    try:
        return fn(encoder), None
    except (TypeError, ValueError) as exc:
        _log.warning("[Recall] cannot fingerprint %s, encoding it uncached: %s", type(encoder).__name__, exc)
        return None, f"encoder has no stable identity: {exc}"


def _clip_vision_output(fields: dict):
    import comfy.clip_vision
    out = comfy.clip_vision.Output()
    for name, value in fields.items():
        out[name] = value
    return out
