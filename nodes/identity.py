"""Encoder identity: one fingerprint per loaded VAE, CLIP-vision model or CLIP text encoder.

An identity must change whenever the encoder would compute something else: another
weights file, another dtype, LoRA (or any weight) patches on its ModelPatcher, the CLIP
skip layer. It must stay the same across restarts for the same file, so it is built
from content, never from object ids or file names.

Cost: the base weights are hashed once per loaded torch module (FingerprintMemo holds a
weak reference, so a model that is unloaded and garbage-collected is forgotten); the
patches are hashed once per ModelPatcher.patches_uuid, which ComfyUI re-rolls whenever
patches change. Nothing here loads a model onto the accelerator: weights are read where
they are (cache.fingerprint copies what it needs), and never through ModelPatcher calls
that load, eject or patch.

Objects are duck-typed (the attributes ComfyUI 0.3.64 gives them) so that tests can
fingerprint small stand-ins and so that this module imports without ComfyUI.
"""
from __future__ import annotations

import hashlib
import json

import torch
from ..cache.fingerprint import FingerprintMemo, fingerprint_patches, fingerprint_tensors
from .lib.tensor_tree import tree_digest

_weights_memo = FingerprintMemo()   # per torch module: its unpatched weights
_patches_memo = FingerprintMemo()   # per ModelPatcher, token patches_uuid: its weight patches


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
    base = _weights_memo.get(module, "weights", lambda: fingerprint_tensors(unpatched_state_dict(module, patcher)))
    token = str(getattr(patcher, "patches_uuid", ""))
    patches = _patches_memo.get(patcher, token, lambda: patches_fingerprint(patcher))
    doc = json.dumps({"kind": kind, "class": f"{type(module).__module__}.{type(module).__qualname__}",
                      "weights": base, "patches": patches, "extra": extra},
                     sort_keys=True, default=str)
    return hashlib.blake2b(doc.encode(), digest_size=16).hexdigest()


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

