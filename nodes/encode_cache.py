"""The one look-up / compute / report flow every cached encoding goes through.

Wrapped encoder calls (nodes/encoder_calls.py: the wrapper nodes, the drop-in nodes and
the opt-in autowrap all go through it) describe an encoding as kind + content keys +
encoder identity + the call's other arguments and a compute function; this module builds
the key, asks the store, computes on a miss, and hands back a Part (value + what the
cache did). `report` turns the Parts of one node run into one log line and one
"recall.node" UI event.

Values are stored exactly as the encoder produced them. The store hands a hit back as
a fresh copy on the device the encoder returned it on (cache/store.py), so downstream
nodes that edit tensors in place can never change the cache, and a hit comes back
where the core node's result would be.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence


from ..cache.keys import build_key
from ..cache.names import SHARED_NAMESPACE, TIER_ORDER
from . import events, near_match
from .lib.miss_reason import explain_miss, make_label

_log = logging.getLogger("recall.encode")

CATEGORY = "Recall/encode"

_local = threading.local()   # per thread: is Recall itself running an encoder now


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


def _timed(compute: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    with computing():
        value = compute()
    return value, time.perf_counter() - start


def uncached(compute: Callable[[], Any], reason: str) -> Part:
    value, seconds = _timed(compute)
    return Part(value, "off", compute_s=seconds, reason=reason)


def cached(store, kind: str, *, contents: Sequence[str], encoder: str, params: dict | None,
           compute: Callable[[], Any], namespace: str = SHARED_NAMESPACE,
           pinned: bool | Callable[[], bool] = False,
           ttl_seconds: float | None = None, hints: dict | None = None, near=None) -> Part:
    """Look one encoding up in store (the runtime's); on a miss compute it (single flight per key) and store it.

    On a miss the caller gets the encoder's own output (the store keeps a copy); on a hit
    a copy of the stored value: either way nothing handed out shares memory with the
    cache. hints: inputs of the node that shaped the content (SVD's
    seed shapes the noisy pixels) shown in the miss explanation, not part of the key.
    near: a near_match.Plan: an exact miss first tries a verified near-identical image.
    pinned may be a function: like the entry's label, it is worked out only when the entry is stored.
    """
    key = build_key(kind, contents=contents, encoder=encoder, params=params)
    timing = {}

    def label() -> str:  # for the stored entry and the miss explanation: never made on an exact hit
        return make_label(kind, contents, encoder, params, hints)

    def produce():
        if near is not None:
            found = near_match.find(store, near, namespace)
            if found is not None:
                raise _NearHit(found)  # out of the single flight: nothing is stored under this key
        value, timing["s"] = _timed(compute)
        return value

    try:
        outcome = store.get_or_compute(key, produce, namespace=namespace, label=label, pinned=pinned,
                                       ttl_seconds=ttl_seconds)
    except _NearHit as near_hit:
        found = near_hit.found
        return Part(found.value, "hit", tier=found.tier, saved_s=found.saved_seconds, key=found.key,
                    near_db=found.db)
    value = outcome.value
    if near is not None:
        near_match.remember(store, near, namespace=namespace, label=label(),
                            pinned=pinned() if callable(pinned) else pinned, ttl_seconds=ttl_seconds)
    if outcome.hit:
        return Part(value, "hit", tier=outcome.tier, saved_s=outcome.saved_seconds, key=key)
    return Part(value, "miss", compute_s=timing.get("s", outcome.compute_seconds),
                reason=_reason(store, namespace, key, label()), key=key)


class _NearHit(Exception):
    """Raised inside the single flight when a verified near entry answers: nothing is stored."""

    def __init__(self, found):
        super().__init__("near hit")
        self.found = found


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
    statuses, reasons = set(), {}   # reasons: a dict keeps each once, in order
    tier, key, near, saved, computed = None, None, None, 0.0, 0.0
    for p in parts:   # one pass: a node run is often a single part
        statuses.add(p.status)
        if p.status != "hit" and p.reason:
            reasons[p.reason] = None
        if p.tier and (tier is None or _below(p.tier, tier)):
            tier = p.tier   # the lowest tier that answered
        key = key or p.key
        if p.near_db is not None:
            near = p.near_db if near is None else min(near, p.near_db)
        saved += p.saved_s
        computed += p.compute_s
    status = "off" if statuses == {"off"} else "miss" if statuses & {"miss", "off"} else "hit"
    return events.report_node(node_id, node_type, status, tier=tier, saved_s=saved, compute_s=computed,
                              reason="; ".join(reasons) or None, key=key, near_db=near)


def _below(tier: str, other: str) -> bool:
    """tier is lower than other in TIER_ORDER (a name it does not know, "inflight", is above every known one)."""
    return tier in TIER_ORDER and (other not in TIER_ORDER or TIER_ORDER.index(tier) > TIER_ORDER.index(other))
