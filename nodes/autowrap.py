"""Opt-in mode (config `wrap_core_encoders`, off by default): cache every VAE and CLIP-vision encode.

enable() replaces comfy.sd.VAE.encode / encode_tiled and
comfy.clip_vision.ClipVisionModel.encode_image with wrappers that go through the same
cache as the Recall nodes, so core nodes and other packs' nodes reuse encodings too.
disable() puts back the exact original attributes: afterwards the classes' __dict__
entries are the very objects they were before enable().

The patched methods go through the same cached-call path as the Recall VAE / CLIP Vision
nodes' wrapped encoders (nodes/encoder_calls.py): the same keys, so an entry made either
way is found either way, and the same reports, under the class type and id of the node
that is executing. They pass straight through while Recall itself is computing
(encode_cache.computing), so a call through a wrapped encoder is not looked up twice.
The Recall nodes make this switch unnecessary; it stays for users who want every encode
cached without adding a node (README: "`wrap_core_encoders`").
"""
from __future__ import annotations

import functools
import logging
import threading

from . import encode_cache, encoder_calls
from .encoder_wrap import CLIP_VISION_VALUE, VAE_CALL
from .identity import clip_vision_identity

_log = logging.getLogger("recall.autowrap")
_lock = threading.Lock()
# (class, attribute) -> original __dict__ entry: undoes a patch of ComfyUI classes, whatever runtime runs
_saved: dict[tuple[type, str], object] = {}
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


def _wrap(original, kind: str, **options):
    @functools.wraps(original)
    def wrapper(self, *args, **kwargs):
        if not _active():
            return original(self, *args, **kwargs)
        return encoder_calls.call(kind, self, original, args, kwargs, **options)
    return wrapper


def _wrap_vae_encode(original):
    return _wrap(original, "vae_encode", **VAE_CALL)


def _wrap_vae_encode_tiled(original):
    return _wrap(original, "vae_encode_tiled", **VAE_CALL)


def _wrap_clip_vision(original):
    return _wrap(original, "clip_vision", identity=clip_vision_identity, **CLIP_VISION_VALUE)
