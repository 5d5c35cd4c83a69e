"""Encoder identity: one fingerprint per loaded VAE, CLIP-vision model or CLIP text encoder.

An identity must change whenever the encoder would compute something else: another
weights file, another dtype, LoRA (or any weight) patches on its ModelPatcher, the CLIP
skip layer. It must stay the same across restarts for the same file, so it is built
from content, never from object ids or file names.

Cost: the base weights are hashed once per loaded torch module (FingerprintMemo holds a
weak reference, so a model that is unloaded and garbage-collected is forgotten); the
patches are hashed once per ModelPatcher.patches_uuid, which ComfyUI re-rolls whenever
patches change. Across restarts, the base weights of a model proven to come from a
file are not hashed at all: a node that receives an encoder calls note_origin() with
the prompt, which finds the core loader node and its files (model_origin.py); when the
files and their folders have not changed since this process started, the model holds
exactly what the files held, and the weights' fingerprint is remembered in a
persistent memo (cache/weights_memo.py, the runtime's weights_memo) keyed by the loader, its options and the
files' stamps. Any doubt (a file changed while the server ran, a loader from another
pack, no process start time) falls back to hashing.

Nothing here loads a model onto the accelerator: weights are read where they are
(cache.fingerprint copies what it needs), and never through ModelPatcher calls that
load, eject or patch.

Objects are duck-typed (the attributes ComfyUI 0.3.64 gives them) so that tests can
fingerprint small stand-ins and so that this module imports without ComfyUI.
"""
from __future__ import annotations

import logging
import threading
import weakref

import torch
from ..cache.fingerprint import FingerprintMemo, fingerprint_patches, fingerprint_structure, fingerprint_tensors
from .lib.file_digest import file_stamp, unchanged_since
from . import runtime
from .lib.tensor_tree import tree_digest

_log = logging.getLogger("recall")
# Per-object memos (weakly held): facts about live objects, true whatever runtime is installed.
_weights_memo = FingerprintMemo()   # per torch module: its unpatched weights
_patches_memo = FingerprintMemo()   # per ModelPatcher, token patches_uuid: its weight patches
# A file changed this little before the process started is not trusted: clocks of network
# file systems drift, and ctime has the file system's granularity.
SETTLE_SECONDS = 30.0
_CONFLICT = object()   # two origins claimed for one module: never trusted

_lock = threading.Lock()
# (kind, class, weights, patches, repr(extra)) -> identity: results of a pure function, true for any runtime
_identities: dict[tuple, str] = {}
_MAX_IDENTITIES = 256
_origins: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # weights module -> Origin (a live fact)


def vae_identity(vae) -> str:
    """Fingerprint of a comfy.sd.VAE (the first-stage model's weights, dtype and patches)."""
    vae.throw_exception_if_invalid()
    return _combine("vae", vae.first_stage_model, vae.patcher, {
        "dtype": str(vae.vae_dtype),
        "latent_dim": getattr(vae, "latent_dim", None),
    })


def clip_vision_identity(clip_vision) -> str:
    """Fingerprint of a comfy.clip_vision.ClipVisionModel (weights + its preprocessing settings)."""
    return _combine("clip_vision", clip_vision.model, clip_vision.patcher, {
        "image_size": clip_vision.image_size,
        "mean": list(clip_vision.image_mean),
        "std": list(clip_vision.image_std),
        "all_hidden_states": bool(getattr(clip_vision, "return_all_hidden_states", False)),
    })


def clip_identity(clip) -> str:
    """Fingerprint of a comfy.sd.CLIP: text-encoder weights, LoRA patches, skip layer.

    Tokenizer settings are not part of it: the text cache keys on the tokens the
    tokenizer produced (embeddings included), which already reflect them.
    """
    patcher = clip.patcher
    return _combine("clip", clip.cond_stage_model, patcher, {
        "layer_idx": clip.layer_idx,
        "force_cast_weights": bool(getattr(patcher, "force_cast_weights", False)),
        "object_patches": {k: _plain(v) for k, v in getattr(patcher, "object_patches", {}).items()},
        "weight_wrappers": sorted(getattr(patcher, "weight_wrapper_patches", {}).keys()),
    })


def _plain(value) -> str:
    """Object patches: simple values (a compute dtype) by value, anything else by its type."""
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype)):
        return repr(value)
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _combine(kind: str, module, patcher, extra: dict) -> str:
    base = _weights_memo.get(module, "weights", lambda: _base_weights(module, patcher))
    token = str(getattr(patcher, "patches_uuid", ""))
    patches = _patches_memo.get(patcher, token, lambda: patches_fingerprint(patcher))
    cls = f"{type(module).__module__}.{type(module).__qualname__}"
    # extra holds plain values only (str, int, float, bool, None, lists, dicts of them): its repr is exact
    known = (kind, cls, base, patches, repr(extra))
    with _lock:
        identity = _identities.get(known)
    if identity is None:
        identity = tree_digest({"kind": kind, "class": cls, "weights": base, "patches": patches, "extra": extra})
        with _lock:
            _identities[known] = identity
            while len(_identities) > _MAX_IDENTITIES:
                _identities.pop(next(iter(_identities)))
    return identity


def unpatched_state_dict(module, patcher) -> dict:
    """The module's weights as loaded from the file, also while ComfyUI has patches applied.

    While a LoRA is applied in place, the module holds patched weights and ModelPatcher
    keeps the originals in `backup` (and `hook_backup` for hook patches); hashing the
    live weights then would give the base model the identity of base+LoRA.
    """
    state = module.state_dict()
    for key, saved in getattr(patcher, "backup", {}).items():
        if key in state:
            state[key] = saved.weight
    for key, saved in getattr(patcher, "hook_backup", {}).items():
        if key in state:
            state[key] = saved[0]
    return state


def patches_fingerprint(patcher) -> str:
    """Weight patches (key -> [(strength_patch, patch, strength_model, offset, function)]) as one digest."""
    triples = []
    for target, entries in getattr(patcher, "patches", {}).items():
        for entry in entries:
            strength_patch = float(entry[0])
            source = tree_digest(list(entry[1:]))  # patch data, strength_model, offset, function
            triples.append((source, strength_patch, str(target)))
    return fingerprint_patches(triples)



# -- identities that survive a restart -------------------------------------------------------

def _parts(encoder):
    """(kind, weights module, patcher) of a VAE, CLIP or CLIP-vision model."""
    if hasattr(encoder, "first_stage_model"):
        return "vae", encoder.first_stage_model, encoder.patcher
    if hasattr(encoder, "cond_stage_model"):
        return "clip", encoder.cond_stage_model, encoder.patcher
    if hasattr(encoder, "image_size") and hasattr(encoder, "model"):
        return "clip_vision", encoder.model, encoder.patcher
    raise TypeError(f"not a VAE, CLIP or CLIP vision model: {type(encoder).__name__}")


def note_origin(encoder, prompt, node_id, input_name: str) -> bool:
    """Tell identity where `encoder` came from: the input `input_name` of node `node_id` in `prompt`.

    Call it from a node that receives an encoder, with its hidden PROMPT (or DYNPROMPT) and
    UNIQUE_ID. True when a core loader upstream names the files; the proof that the
    weights still equal those files is made when the identity is computed.
    """
    from .model_origin import origin_of
    try:
        kind, module, _ = _parts(encoder)
        origin = origin_of(prompt, node_id, input_name, kind)
    except Exception as exc:  # an odd prompt or object: hash the weights, as without an origin
        _log.debug("no origin for %s input %s: %s", node_id, input_name, exc)
        return False
    return origin is not None and attach_origin(module, origin)


def attach_origin(module, origin) -> bool:
    """Record that `module` was built by origin's loader (model_origin.Origin); False on a conflict."""
    with _lock:
        known = _origins.get(module)
        if known is _CONFLICT or (known is not None and known.key != origin.key):
            _origins[module] = _CONFLICT
            return False
        _origins[module] = origin
    fingerprint = _weights_memo.peek(module, "weights")
    if fingerprint is not None:  # hashed before the origin was known: remember it for the next start
        proof = _proof(origin)
        memo = runtime.current().weights_memo if proof is not None else None
        if memo is not None:
            memo.record(origin.key, proof, _structure(module), fingerprint)
    return True


def _structure(module) -> str:
    """Names, dtypes and shapes of the live tensors (state_dict() would detach each one: slower)."""
    tensors = dict(module.named_parameters())
    tensors.update(module.named_buffers())
    return fingerprint_structure(tensors)


def _proof(origin) -> list | None:
    """The files' stamps when the files and folders are unchanged since the process started."""
    started = runtime.current().started_at
    if started is None:
        return None
    limit = started - SETTLE_SECONDS
    try:
        stamps = [file_stamp(path) for path in origin.files]
    except OSError:
        return None
    if any(stamp[4] >= limit * 1e9 for stamp in stamps) or not unchanged_since(origin.watch, limit):
        return None
    return stamps


def _base_weights(module, patcher) -> str:
    with _lock:
        origin = _origins.get(module)
    proof = _proof(origin) if origin is not None and origin is not _CONFLICT else None
    memo = runtime.current().weights_memo if proof is not None else None
    structure = None
    if memo is not None:
        structure = _structure(module)
        known = memo.lookup(origin.key, proof, structure)
        if known is not None:
            return known
    applied = getattr(module, "current_weight_patches_uuid", None)
    if applied is not None and applied != getattr(patcher, "patches_uuid", None):
        # another clone's patches are applied in place and its backup is not ours to read
        raise ValueError("the weights hold another clone's patches right now")
    fingerprint = fingerprint_tensors(unpatched_state_dict(module, patcher))
    if memo is not None:
        memo.record(origin.key, proof, structure, fingerprint)
    return fingerprint
