"""Opt-in mode (config `wrap_core_encoders`, off by default): cache every VAE and CLIP-vision encode.

enable() replaces comfy.sd.VAE.encode / encode_tiled and
comfy.clip_vision.ClipVisionModel.encode_image with wrappers that go through the same
cache as the Recall nodes, so core nodes and other packs' nodes reuse encodings too.
disable() puts back the exact original attributes: afterwards the classes' __dict__
entries are the very objects they were before enable().

Wrappers pass straight through while Recall itself is computing (encode_cache.computing),
so a Recall node's miss is not looked up twice. Each wrapped call reports like a node:
the UI event carries the id of the node that is executing (ComfyUI's executing context).
"""
from __future__ import annotations

import functools
import logging
import threading

from . import encode_cache

_log = logging.getLogger("recall.autowrap")
_lock = threading.Lock()
_saved: dict[tuple[type, str], object] = {}   # (class, attribute) -> original __dict__ entry
_MARK = "__recall_autowrap__"


def _targets():
    import comfy.clip_vision
    import comfy.sd
    return [
        (comfy.sd.VAE, "encode", _wrap_vae_encode),
        (comfy.sd.VAE, "encode_tiled", _wrap_vae_encode_tiled),
        (comfy.clip_vision.ClipVisionModel, "encode_image", _wrap_clip_vision),
    ]


def enabled() -> bool:
    return bool(_saved)


def enable() -> None:
    """Wrap the core encode methods; calling it twice wraps once."""
    with _lock:
        if _saved:
            return
        for cls, name, make in _targets():
            original = cls.__dict__[name]
            wrapper = make(original)
            setattr(wrapper, _MARK, True)
            _saved[(cls, name)] = original
            setattr(cls, name, wrapper)
    _log.info("[Recall] caching every VAE and CLIP-vision encode (wrap_core_encoders is on)")


def disable() -> None:
    """Restore the original methods; a wrapper someone else stacked on ours is left alone, with a warning."""
    with _lock:
        if not _saved:
            return
        for (cls, name), original in list(_saved.items()):
            current = cls.__dict__.get(name)
            if getattr(current, _MARK, False):
                setattr(cls, name, original)
            else:
                # Another pack wrapped our wrapper: removing ours would drop theirs too. Our
                # wrapper stays in their chain but is inert once _saved no longer lists it.
                _log.warning("[Recall] %s.%s was re-wrapped by another extension; Recall's cache "
                             "wrapper stays in its chain but no longer caches", cls.__name__, name)
            del _saved[(cls, name)]
    _log.info("[Recall] wrap_core_encoders is off: core encoders run uncached")


def sync(wrap: bool) -> None:
    """Make the wrapping match the setting (start-up, or a settings change)."""
    enable() if wrap else disable()


def _active() -> bool:
    return bool(_saved) and not encode_cache.inside_compute()


def _caller() -> str | None:
    """Id of the node whose code called the encoder, for the UI badge (None outside a prompt)."""
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        return None
    context = get_executing_context()
    return None if context is None else context.node_id


def _wrap_vae_encode(original):
    @functools.wraps(original)
    def encode(self, pixel_samples):
        if not _active():
            return original(self, pixel_samples)
        part = encode_cache.vae_encode(self, pixel_samples, encode=lambda px: original(self, px))
        encode_cache.report("VAE.encode (wrapped)", _caller(), [part])
        return part.value
    return encode


def _wrap_vae_encode_tiled(original):
    @functools.wraps(original)
    def encode_tiled(self, pixel_samples, tile_x=None, tile_y=None, overlap=None, tile_t=None, overlap_t=None):
        tiled = {"tile_x": tile_x, "tile_y": tile_y, "overlap": overlap, "tile_t": tile_t, "overlap_t": overlap_t}
        if not _active():
            return original(self, pixel_samples, **tiled)
        part = encode_cache.vae_encode(self, pixel_samples, tiled=tiled,
                                       encode=lambda px: original(self, px, **tiled))
        encode_cache.report("VAE.encode_tiled (wrapped)", _caller(), [part])
        return part.value
    return encode_tiled


def _wrap_clip_vision(original):
    @functools.wraps(original)
    def encode_image(self, image, crop=True):
        if not _active():
            return original(self, image, crop=crop)
        part = encode_cache.clip_vision_encode(self, image, crop,
                                               encode=lambda im, crop: original(self, im, crop=crop))
        encode_cache.report("ClipVisionModel.encode_image (wrapped)", _caller(), [part])
        return part.value
    return encode_image
