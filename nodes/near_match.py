"""Near matching for wrapped image encodes: which calls may use it, and the query each one makes.

`match: near` (the config, Settings → Recall, or a node's `match` input) lets an encode of
pixels that missed exactly reuse the encoding of a near-identical image (a JPEG re-save, a
re-grab of the same frame) — only after the two images' thumbnails agree to the tolerance
(cache/near.py). Only pixel inputs take part: VAE encode pixels and CLIP-vision images; the
group a candidate must share is the call's exact key without the pixel content: the pixels'
shape and dtype, the encoder's identity, every other argument, the namespace.

Who decides, first that says: the drop-in node's `match` input, then the encoder wrapper's
(RecallVAE / RecallCLIPVision), then the config.
"""
from __future__ import annotations

import inspect
import logging
import weakref
from pathlib import Path

import torch

from ..cache.keys import build_key, content_key
from ..cache.near import NearMatcher, NearQuery, describe_db
from ..cache.near_index import NearIndex
from ..cache.perceptual import dhash, thumbnail
from . import runtime

_log = logging.getLogger("recall.encode")

DEFAULT = "default"
EXACT = "exact"
NEAR_OPTIONS = {f"near: PSNR ≥ {db:g} dB": db for db in (40.0, 45.0, 50.0)}
OPTIONS = [DEFAULT, EXACT, *NEAR_OPTIONS]
TOOLTIP = ("How the pixels are looked up. exact: only the very same pixels hit (bit for bit; the default). "
           "near: an image that is not the same but nearly (a JPEG re-save, a pasted copy, a re-grabbed "
           "frame) reuses the stored encoding of the other image, when a 64-pixel thumbnail of the two agrees "
           "to the PSNR given (higher = stricter; a JPEG re-save of a 512-pixel image measures about 58 dB at "
           "quality 95, 50 dB at quality 75). It trades exactness for hits: the output is the other image's "
           "encoding, not this one's. Same size, crop, encoder and settings are always required. "
           "default: the Recall setting (Settings → Recall → match).")

PIXEL_ARGS = {"vae_encode": "pixel_samples", "vae_encode_tiled": "pixel_samples", "clip_vision": "image"}
MAX_FRAMES = 64    # a longer clip is looked up exactly: its thumbnails would cost more than they save

# wrapped encoder -> (mode, db): a choice carried by a live object (held weakly), whatever the runtime
_overrides: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def parse(option) -> tuple[str, float] | None:
    """(mode, tolerance dB) of a node's `match` choice; None for default (ask the next one)."""
    if option in (None, DEFAULT):
        return None
    if option == EXACT:
        return EXACT, 0.0
    if option in NEAR_OPTIONS:
        return "near", NEAR_OPTIONS[option]
    raise ValueError(f"[Recall] match: {option!r:.80} is not a choice (expected one of: {', '.join(OPTIONS)}). "
                     "Pick one in the node's match input.")


def with_match(wrapped, option):
    """The wrapped encoder with this wrapper's `match` choice; default leaves it as it is.

    A new wrapper object over the same state, so an upstream wrapper's output (which ComfyUI
    may hand to other nodes too) is never changed by a downstream choice."""
    choice = parse(option)
    if wrapped is None or choice is None:
        return wrapped
    other = object.__new__(type(wrapped))
    other.__dict__ = wrapped.__dict__
    _overrides[other] = choice
    return other


def resolve(node_choice, encoder, config=None) -> tuple[str, float]:
    """(mode, dB) of a call: the node's choice, else the wrapper's, else config's (the runtime's by default)."""
    choice = None if node_choice in (None, DEFAULT) else parse(node_choice)
    if choice is None:
        try:
            choice = _overrides.get(encoder)
        except TypeError:  # an encoder that cannot be weakly referenced has no wrapper choice
            choice = None
    if choice is None:
        if config is None:
            config = runtime.current().config
        choice = (config.match, config.near_psnr_db)
    return choice


def query(kind: str, encoder, method, args: tuple, kwargs: dict, views: dict, contents: list, encoder_id: str,
          params: dict, namespace: str, node_choice=None, *, config=None) -> "Plan | None":
    """The near query of one call, or None when it is looked up exactly (the mode, or not pixels).

    config: the runtime's config (read from the installed runtime when not given).
    A failure here is an exact look-up with a warning, never a failed encode."""
    if kind not in PIXEL_ARGS:
        return None
    try:
        mode, min_db = resolve(node_choice, encoder, config)
        if mode != "near":
            return None
        return _plan(kind, encoder, method, args, kwargs, views, contents, encoder_id, params, namespace, min_db)
    except Exception as exc:
        _log.warning("[Recall] near match: cannot describe this %s call, looking it up exactly: %s", kind, exc)
        return None


def _plan(kind, encoder, method, args, kwargs, views, contents, encoder_id, params, namespace, min_db):
    name = PIXEL_ARGS[kind]
    bound = inspect.signature(method).bind(encoder, *args, **kwargs)
    bound.apply_defaults()
    pixels = bound.arguments.get(name)
    if name in views:
        pixels = views[name](encoder, pixels)
    if (not isinstance(pixels, torch.Tensor) or pixels.dim() != 4 or not pixels.is_floating_point()
            or not 1 <= pixels.shape[0] <= MAX_FRAMES or pixels.shape[-1] > 4):
        return None
    others = list(contents)
    try:
        others.remove(content_key(pixels))
    except ValueError:  # the pixels were not keyed as content: nothing to leave out
        return None
    group = build_key(f"{kind}:near-group", contents=others, encoder=encoder_id,
                      params={**params, "pixels": [list(pixels.shape), str(pixels.dtype)], "namespace": namespace})
    key = build_key(kind, contents=contents, encoder=encoder_id, params=params)
    return Plan(group, key, pixels, float(min_db))


class Plan:
    """A near query whose hash and thumbnail are made only when needed: an exact hit of an image
    already indexed costs neither (about 6 ms for a 512x512 image on one CPU thread)."""

    def __init__(self, group: str, key: str, pixels: torch.Tensor, min_db: float):
        self.group, self.key, self.min_db = group, key, min_db
        self._pixels = pixels
        self._query: NearQuery | None = None

    def built(self) -> NearQuery:
        if self._query is None:
            self._query = NearQuery(self.group, self.key, dhash(self._pixels), thumbnail(self._pixels), self.min_db)
            self._pixels = None
        return self._query


def build_matcher(config, disk_dir) -> NearMatcher:
    """A matcher whose index sits beside the disk tier (in memory without one); the Runtime owns it."""
    path = None
    if config.disk_bytes > 0:
        path = Path(config.disk_dir or disk_dir) / "near-index-v1.sqlite"
    try:
        index = NearIndex(path)
    except Exception as exc:  # an unwritable folder: near matching still works for this session
        _log.warning("[Recall] near match: cannot open the index at %s (%s); keeping it in memory.", path, exc)
        index = NearIndex(None)
    return NearMatcher(index)


def matcher() -> NearMatcher:
    return runtime.current().near_matcher


def find(store, near: Plan, namespace: str, readable=lambda value: value is not None):
    """The verified near entry for an exact miss, or None; a failing index is a miss, never an error."""
    try:
        return matcher().find(store, near.built(), namespace=namespace, readable=readable)
    except Exception as exc:
        _log.warning("[Recall] near match: look-up failed, encoding instead: %s", exc)
        return None


def remember(store, near: Plan, **flight) -> None:
    """Keep the thumbnail of an encoding made (or hit) under near matching; a failure only costs later hits."""
    try:
        m = matcher()
        if not m.index.contains(near.group, near.key):
            m.remember(store, near.built(), **flight)
    except Exception as exc:
        _log.warning("[Recall] near match: could not keep a thumbnail for later near hits: %s", exc)


def said(db: float) -> str:
    """How a near hit is said in the log and the badge: 'near, 52 dB'."""
    return f"near, {describe_db(db)}"
