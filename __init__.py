"""ComfyUI-Recall: ComfyUI loads this file; it only wires the pack in.

Version gate, WEB_DIRECTORY and comfy_entrypoint, nothing else: no model
loads, no hashing, no disk scans happen at import.
"""
import logging

WEB_DIRECTORY = "./js"

_log = logging.getLogger("recall")

try:
    from .nodes import comfy_entrypoint  # noqa: F401  (ComfyUI looks this name up)
except ImportError as exc:  # comfy_api.latest appeared in ComfyUI 0.3.48; we test from 0.3.64
    if "comfy_api" not in str(exc):
        raise
    _log.error(
        "[Recall] ComfyUI-Recall needs ComfyUI >= 0.3.64 (comfy_api.latest is missing: %s). "
        "Update ComfyUI to load the Recall nodes.", exc)
