"""The one look-up / compute / report flow every cached encoding goes through.

Nodes (encode_nodes.py, video_encode_nodes.py) and the opt-in wrappers (autowrap.py)
describe an encoding as kind + content keys + encoder identity + sensitive params and
a compute function; this module builds the key, asks the store, computes on a miss,
and hands back a Part (value + what the cache did). `report` turns the Parts of one
node run into one log line and one "recall.node" UI event.

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

import torch

from ..cache.keys import build_key, content_key
from . import events
from .lib.miss_reason import explain_miss, make_label
from .lib.tensor_tree import restore_devices, tensor_devices, tree_digest
from .preferred_images import is_preferred

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
           ttl_seconds: float | None = None) -> Part:
    """Look one encoding up; on a miss compute it (single flight per key) and store it.

    On a miss the stored value is the encoder's own output and the caller gets a copy;
    on a hit the caller gets a copy of the stored value: either way nothing handed out
    shares memory with the cache.
    """
    store, off_reason = _store()
    if store is None:
        return uncached(compute, off_reason)
    key = build_key(kind, contents=contents, encoder=encoder, params=params)
    label = make_label(kind, contents, encoder, params)
    timing = {}

    def produce():
        value, timing["s"] = _timed(compute)
        return {"v": value, "d": tensor_devices(value)}

    flight = dict(namespace=namespace, label=label, pinned=pinned, ttl_seconds=ttl_seconds)
    outcome = store.get_or_compute(key, produce, **flight)
    value = _unwrap(outcome.value)
    if value is None:  # a foreign entry under our key: drop it and compute afresh
        store.delete(key, namespace=namespace)
        outcome = store.get_or_compute(key, produce, **flight)
        value = _unwrap(outcome.value)
        if value is None:
            return uncached(compute, "cache entry unreadable")
    if outcome.hit:
        return Part(value, "hit", tier=outcome.tier, saved_s=outcome.saved_seconds, key=key)
    return Part(value, "miss", compute_s=timing.get("s", outcome.compute_seconds),
                reason=_reason(store, namespace, key, label), key=key)


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
    return events.report_node(
        node_id, node_type, status,
        tier=_lowest([p.tier for p in parts if p.tier]),
        saved_s=sum(p.saved_s for p in parts),
        compute_s=sum(p.compute_s for p in parts),
        reason="; ".join(dict.fromkeys(reasons)) or None,
        key=next((p.key for p in parts if p.key), None))


# --- the encodings themselves: shared by the Recall nodes and autowrap's wrappers ---------

def encoder_identity(fn: Callable[[Any], str], encoder) -> tuple[str | None, str | None]:
    """(identity, None), or (None, reason) when this encoder cannot be fingerprinted."""
    try:
        return fn(encoder), None
    except (TypeError, ValueError) as exc:
        _log.warning("[Recall] cannot fingerprint %s, encoding it uncached: %s", type(encoder).__name__, exc)
        return None, f"encoder has no stable identity: {exc}"


def vae_encode(vae, pixels: torch.Tensor, *, tiled: dict | None = None, encode=None) -> Part:
    """vae.encode(pixels) (or encode_tiled(pixels, **tiled)), cached; pixels exactly as the core node passes them.

    One entry per batch, keyed on the whole batch: encoders are not batch-invariant (the SD
    VAE's latents for a frame differ by ~1e-6 between a batch of 3 and a batch of 1 on a
    2-thread CPU), so a frame reused from another batch would not equal the core node's
    output. See the README's "Batches" paragraph. `encode` replaces the encoder call
    (autowrap passes the unwrapped method).
    """
    from .identity import vae_identity
    if encode is None:
        encode = vae.encode if tiled is None else (lambda px: vae.encode_tiled(px, **tiled))
    encoder, off = encoder_identity(vae_identity, vae)
    if encoder is None:
        return uncached(lambda: encode(pixels), off)
    params = {} if tiled is None else dict(tiled)
    if tiled is not None and getattr(vae, "latent_dim", 2) != 3:  # temporal tiling never touches image VAEs
        params = {k: v for k, v in params.items() if k not in ("tile_t", "overlap_t")}
    kind = "vae_encode" if tiled is None else "vae_encode_tiled"
    return cached(kind, contents=[content_key(pixels)], encoder=encoder, params=params,
                  compute=lambda: encode(pixels), pinned=is_preferred(pixels))


def clip_encode(vae, kind: str, images: Sequence[torch.Tensor | None], params: dict,
                build: Callable[[], torch.Tensor], *, pinned: bool = False) -> Part:
    """vae.encode(build()) for a clip the node assembles from a few images (Wan: start frames
    padded with grey to `length`), keyed on those images + params instead of the whole clip,
    so a hit neither builds nor hashes the clip."""
    from .identity import vae_identity
    encoder, off = encoder_identity(vae_identity, vae)
    if encoder is None:
        return uncached(lambda: vae.encode(build()), off)
    contents = ["none" if im is None else content_key(im) for im in images]
    return cached(kind, contents=contents, encoder=encoder, params=params,
                  compute=lambda: vae.encode(build()), pinned=pinned)


def noisy_vae_encode(vae, pixels: torch.Tensor, noise: Callable[[], torch.Tensor], level: float, seed: int,
                     *, pinned: bool = False) -> Part:
    """vae.encode(pixels + noise() * level): SVD's augmentation, reusable because the noise is seeded."""
    from .identity import vae_identity
    encoder, off = encoder_identity(vae_identity, vae)
    compute = lambda: vae.encode(pixels + noise() * level)
    if encoder is None:
        return uncached(compute, off)
    return cached("vae_encode_augmented", contents=[content_key(pixels)], encoder=encoder,
                  params={"augmentation_level": float(level), "seed": int(seed)}, compute=compute, pinned=pinned)


def clip_vision_encode(clip_vision, image: torch.Tensor, crop: bool, *, encode=None) -> Part:
    """clip_vision.encode_image(image, crop=crop), cached; the value is a comfy.clip_vision.Output."""
    from .identity import clip_vision_identity
    if encode is None:
        encode = clip_vision.encode_image
    encoder, off = encoder_identity(clip_vision_identity, clip_vision)
    if encoder is None:
        return uncached(lambda: encode(image, crop=crop), off)
    part = cached("clip_vision", contents=[content_key(image)], encoder=encoder, params={"crop": bool(crop)},
                  compute=lambda: dict(vars(encode(image, crop=crop))), pinned=is_preferred(image))
    part.value = _clip_vision_output(part.value)
    return part


def text_encode(clip, text: str) -> Part:
    """clip.encode_from_tokens_scheduled(clip.tokenize(text)), cached per user (L2, text_ttl_minutes).

    Keyed on the tokens rather than the text: tokenizing is cheap and its output already
    holds everything that shapes the encoding besides the model (textual-inversion
    embeddings as tensors, weights from "(word:1.2)", tokenizer options).
    """
    from . import runtime
    from .identity import clip_identity
    tokens = clip.tokenize(text)
    compute = lambda: clip.encode_from_tokens_scheduled(tokens)
    if clip.patcher.forced_hooks is not None or clip.apply_hooks_to_conds:
        # Hooked conditioning carries live hook objects and is scheduled per step: not storable.
        return uncached(compute, "CLIP has hooks applied; hooked conditioning is not cached")
    encoder, off = encoder_identity(clip_identity, clip)
    if encoder is None:
        return uncached(compute, off)
    try:
        contents = [tree_digest(tokens)]
        namespace, ttl = runtime.current_namespace(), runtime.get_config().text_ttl_minutes * 60
    except (TypeError, ValueError) as exc:
        return uncached(compute, f"prompt tokens have no stable form: {exc}")
    except Exception as exc:  # runtime broken: behave like the cache being off
        return uncached(compute, f"cache unavailable: {exc}")
    return cached("text", contents=contents, encoder=encoder, params=None, compute=compute,
                  namespace=namespace, ttl_seconds=ttl)


def _clip_vision_output(fields: dict):
    import comfy.clip_vision
    out = comfy.clip_vision.Output()
    for name, value in fields.items():
        out[name] = value
    return out
