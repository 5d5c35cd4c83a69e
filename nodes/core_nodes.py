"""Running a core node of the running ComfyUI release, as the drop-in nodes do with wrapped encoders.

The class comes from ComfyUI's own node registry when it is loaded (a running server),
else from the core module that defines it (scripts, tests). Both V1 classes (FUNCTION on
an instance) and V3 classes (classmethod execute) are run; the result is the output tuple.
"""
from __future__ import annotations

import importlib

# node id -> the core module that defines it, when it is not in nodes.py
_MODULES = {
    "SVD_img2vid_Conditioning": "comfy_extras.nodes_video_model",
    "WanImageToVideo": "comfy_extras.nodes_wan",
    "WanFirstLastFrameToVideo": "comfy_extras.nodes_wan",
}


def core_class(node_id: str):
    import nodes as comfy_nodes  # ComfyUI's nodes.py (our package is imported relatively)
    cls = comfy_nodes.NODE_CLASS_MAPPINGS.get(node_id)
    if cls is None and node_id in _MODULES:
        cls = getattr(importlib.import_module(_MODULES[node_id]), node_id, None)
    if cls is None:
        raise RuntimeError(f"[Recall] {node_id}: this ComfyUI has no core node {node_id!r} "
                           "(expected it in nodes.py or comfy_extras). Update ComfyUI.")
    return cls


def run_core(node_id: str, **inputs) -> tuple:
    """The core node's outputs for these inputs, computed by the core node's own code."""
    cls = core_class(node_id)
    if hasattr(cls, "EXECUTE_NORMALIZED"):  # V3
        return tuple(cls.EXECUTE_NORMALIZED(**inputs).args)
    return tuple(getattr(cls(), cls.FUNCTION)(**inputs))
