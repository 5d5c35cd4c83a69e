"""Encoders handed on wrapped: the same object for every purpose, except that encode calls are looked up.

wrap(encoder) returns an object of a subclass of the encoder's own class (so isinstance
checks pass) that shares the encoder's attribute dictionary: every attribute read or
written through either one is the same (latent_channels, downscale_ratio, patcher,
first_stage_model, tokenizer, ...), and every method other than the encode calls is the
class's own. Only these are answered from the cache (encoder_calls.call):

    comfy.sd.VAE                       encode, encode_tiled
    comfy.clip_vision.ClipVisionModel  encode_image
    comfy.sd.CLIP                      encode_from_tokens_scheduled, encode_from_tokens
                                       (encode(text) goes through encode_from_tokens)

CLIP.clone() returns a wrapped clone, so a LoRA loader, CLIP Set Last Layer or a hook
node downstream hands on a wrapped CLIP whose identity carries its patches. Nothing is
monkeypatched: an encoder that is not passed through wrap() is never cached.
"""
from __future__ import annotations

import threading

from . import encoder_calls
from .identity import clip_identity, clip_vision_identity, note_origin, vae_identity


def _clip_vision_output(fields: dict):
    import comfy.clip_vision
    out = comfy.clip_vision.Output()
    for name, value in fields.items():
        out[name] = value
    return out


# CLIP vision's result is an Output object: stored as its fields, handed out rebuilt
CLIP_VISION_VALUE = {"pack": lambda out: dict(vars(out)), "unpack": _clip_vision_output}

_classes: dict[type, type] = {}   # encoder class -> its wrapper class: a fact of the loaded classes
_lock = threading.Lock()


class RecallWrapped:
    """Marker base of every wrapper class; `recall_wrapped` tells a wrapped encoder apart.
    recall_base (set on each wrapper class) is the wrapped class, whose methods the mixins call."""
    recall_wrapped = True


def _vae_pixels(vae, pixels):
    """What VAE.encode / encode_tiled consume of their pixels: both begin with vae_encode_crop_pixels
    (crop to whole latent cells; 0.8.0 also trims or pads the channels), and use nothing else of them."""
    crop = getattr(vae, "vae_encode_crop_pixels", None)
    return pixels if crop is None or not hasattr(pixels, "shape") else crop(pixels)


VAE_CALL = {"identity": vae_identity, "views": {"pixel_samples": _vae_pixels}}


class _VAECalls(RecallWrapped):
    def encode(self, *args, **kwargs):
        base = type(self).recall_base.encode
        return encoder_calls.call("vae_encode", self, base, args, kwargs, **VAE_CALL)

    def encode_tiled(self, *args, **kwargs):
        base = type(self).recall_base.encode_tiled
        return encoder_calls.call("vae_encode_tiled", self, base, args, kwargs, **VAE_CALL)


class _ClipVisionCalls(RecallWrapped):
    def encode_image(self, *args, **kwargs):
        base = type(self).recall_base.encode_image
        return encoder_calls.call("clip_vision", self, base, args, kwargs, identity=clip_vision_identity,
                                  **CLIP_VISION_VALUE)


class _CLIPCalls(RecallWrapped):
    def encode_from_tokens_scheduled(self, *args, **kwargs):
        base = type(self).recall_base.encode_from_tokens_scheduled
        return encoder_calls.call("text", self, base, args, kwargs, identity=clip_identity,
                                  ignore=("show_pbar",), uncacheable=_hooked(self))

    def encode_from_tokens(self, *args, **kwargs):
        base = type(self).recall_base.encode_from_tokens
        return encoder_calls.call("text_tokens", self, base, args, kwargs, identity=clip_identity,
                                  uncacheable=_hooked(self))

    def clone(self, *args, **kwargs):
        return wrap(type(self).recall_base.clone(self, *args, **kwargs))


def _hooked(clip) -> str | None:
    patcher = getattr(clip, "patcher", None)
    if getattr(patcher, "forced_hooks", None) is not None or getattr(clip, "apply_hooks_to_conds", None):
        # Hooked conditioning carries live hook objects and is scheduled per step: not storable.
        return "CLIP has hooks applied; hooked conditioning is not cached"
    return None


def _mixin_for(cls: type):
    import comfy.clip_vision
    import comfy.sd
    if issubclass(cls, comfy.sd.VAE):
        return _VAECalls
    if issubclass(cls, comfy.clip_vision.ClipVisionModel):
        return _ClipVisionCalls
    if issubclass(cls, comfy.sd.CLIP):
        return _CLIPCalls
    return None


def _wrapper_class(cls: type) -> type:
    with _lock:
        wrapper = _classes.get(cls)
        if wrapper is None:
            mixin = _mixin_for(cls)
            if mixin is None:
                raise ValueError(f"[Recall] wrap: cannot wrap a {cls.__module__}.{cls.__qualname__} "
                                "(expected a comfy.sd.VAE, comfy.sd.CLIP or comfy.clip_vision.ClipVisionModel). "
                                "Connect the loader's output directly.")
            # Same name and module as the wrapped class: logs and type names read as ComfyUI's own.
            wrapper = type(cls.__name__, (mixin, cls), {"__module__": cls.__module__,
                                                        "__qualname__": cls.__qualname__, "recall_base": cls})
            _classes[cls] = wrapper
        return wrapper


def is_wrapped(obj) -> bool:
    return isinstance(obj, RecallWrapped)


def wrap_input(node_cls, encoder, input_name: str):
    """wrap(encoder) for a node's input, first telling identity which loader's file it came from.

    With the node's hidden PROMPT and UNIQUE_ID, a model loaded by a core loader from an unchanged
    file keeps its identity across restarts without its weights being hashed again.
    """
    hidden = getattr(node_cls, "hidden", None)
    prompt = getattr(hidden, "prompt", None)
    if encoder is not None and prompt is not None:
        note_origin(encoder, prompt, hidden.unique_id, input_name)
    return wrap(encoder)


def wrap(encoder):
    """The encoder, wrapped (None stays None; a wrapped encoder is returned as it is)."""
    if encoder is None or isinstance(encoder, RecallWrapped):
        return encoder
    cls = type(encoder)
    wrapped = object.__new__(_classes.get(cls) or _wrapper_class(cls))   # no lock once the class is known
    wrapped.__dict__ = encoder.__dict__   # shared, not copied: one object's state seen through two types
    return wrapped
