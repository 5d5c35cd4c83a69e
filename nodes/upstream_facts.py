"""ComfyUI facts the Recall Cache signature needs: IS_CHANGED results, idempotence, file digests.

The pure signature (lib/signature.py) asks for them through callables; this module
answers with ComfyUI's own machinery, imported inside functions:
- IS_CHANGED / fingerprint_inputs: ComfyUI computes them for every node of a prompt
  before it runs (execution.IsChangedCache, for its own cache keys) and leaves the result
  on the prompt node as node["is_changed"]; we reuse it, and for a node it has not seen
  (an expansion added later) we ask an IsChangedCache ourselves, which calls the method
  with the node's constant inputs exactly as ComfyUI does (LoadImage answers with the
  SHA-256 of the file, so a file replaced behind the same name changes the signature).
- Loader files: hashed by content through folder_paths (the runtime's file_digests,
  lib/file_digest.py, memoises by path, size, mtime and inode, on disk next to the
  cache), so a renamed identical model still hits.
"""
from __future__ import annotations

import logging
import os

from . import runtime
from .lib.signature import NodeFacts, SignatureError

_log = logging.getLogger("recall")

# Outputs that are live model objects: cached by reference in RAM, never serialized.
MODEL_TYPES = frozenset({
    "MODEL", "CLIP", "VAE", "CLIP_VISION", "CONTROL_NET", "STYLE_MODEL", "UPSCALE_MODEL", "GLIGEN",
    "PHOTOMAKER", "MODEL_PATCH", "AUDIO_ENCODER", "LORA_MODEL", "HOOKS", "GUIDER", "SAMPLER", "NOISE",
    "LATENT_UPSCALE_MODEL", "UPSCALE_MODEL_V2",
})

def resolve_file(folder: str, name: str) -> str | None:
    """The full path ComfyUI's loader would open for this file name, or None."""
    import folder_paths
    try:
        if folder == "input":
            path = folder_paths.get_annotated_filepath(name)
        else:
            path = folder_paths.get_full_path(folder, name)
    except Exception:  # unknown folder name in a user's ComfyUI, odd file name
        return None
    return path if path and os.path.isfile(path) else None


def file_digest(folder: str, name: str) -> str | None:
    """Content digest of the named file; None keeps the name in the signature (file not found)."""
    path = resolve_file(folder, name)
    if path is None:
        return None
    try:
        return runtime.current().file_digests.digest(path)
    except OSError as exc:
        _log.warning("[Recall] Recall Cache: cannot read %s (%s); keying it by name", path, exc)
        return None


def node_class(class_type: str):
    import nodes
    cls = nodes.NODE_CLASS_MAPPINGS.get(class_type)
    if cls is None:
        raise SignatureError(f"node class {class_type!r} is not loaded")
    return cls


async def gather_facts(dynprompt, node_ids, prompt_id: str = "recall") -> dict[str, NodeFacts]:
    """NodeFacts for each node id (IS_CHANGED result and NOT_IDEMPOTENT)."""
    import execution
    changed_cache = None
    facts = {}
    for node_id in node_ids:
        node = dynprompt.get_node(node_id)
        cls = node_class(node["class_type"])
        not_idempotent = bool(getattr(cls, "NOT_IDEMPOTENT", False))
        if "is_changed" in node:
            changed = node["is_changed"]
        else:
            if changed_cache is None:
                changed_cache = execution.IsChangedCache(prompt_id, dynprompt, None)
            try:
                changed = await changed_cache.get(node_id)
            except Exception as exc:  # as ComfyUI does: an IS_CHANGED that fails means "changed"
                _log.warning("[Recall] Recall Cache: IS_CHANGED of %s failed (%s)", node["class_type"], exc)
                changed = float("nan")
        facts[node_id] = NodeFacts(None if changed is False else changed, not_idempotent)
    return facts


def output_info(class_type: str, index: int) -> tuple[str, bool]:
    """(io type, is a list output) of output `index` of class_type."""
    cls = node_class(class_type)
    types = list(getattr(cls, "RETURN_TYPES", ()) or ())
    is_list = list(getattr(cls, "OUTPUT_IS_LIST", None) or [False] * len(types))
    io_type = str(types[index]) if 0 <= index < len(types) else "*"
    return io_type, bool(is_list[index]) if 0 <= index < len(is_list) else False


def dynamic_prompt(dynprompt, prompt):
    """DYNPROMPT when ComfyUI gives it (it holds expanded nodes), else a wrapper over PROMPT."""
    if dynprompt is not None:
        return dynprompt
    from comfy_execution.graph import DynamicPrompt
    return DynamicPrompt(prompt or {})
