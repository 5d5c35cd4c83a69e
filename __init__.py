"""ComfyUI-Recall: ComfyUI loads this file; it only wires the pack in.

Version gate, WEB_DIRECTORY and comfy_entrypoint, nothing else: no model
loads, no hashing, no disk scans happen at import.
"""
import logging

WEB_DIRECTORY = "./js"

try:
    import comfy_api.latest  # noqa: F401  (the V3 node API, ComfyUI >= 0.3.48; tested from 0.3.64)
except ImportError as exc:
    logging.getLogger("recall").error(
        "[Recall] ComfyUI-Recall needs ComfyUI >= 0.3.64 (comfy_api.latest is missing: %s). "
        "Update ComfyUI to load the Recall nodes.", exc)
else:
    if __package__:  # pytest imports this file as a plain module (no package) when it sets up the repo folder
        from .nodes import comfy_entrypoint  # noqa: F401  (ComfyUI looks this name up)
