"""Registers the Recall nodes with ComfyUI through the V3 extension API.

Each topic module exports NODES, a list of node classes. A topic that fails to
import (say an optional dependency is broken) is logged and skipped, so the
rest of the pack still loads. Nothing here imports ComfyUI at module level, so
`nodes.lib` stays importable (and testable) without it.
"""
import importlib
import logging

_log = logging.getLogger("recall")

NODE_MODULES = (
    "encode_nodes",
    "video_encode_nodes",
    "wrap_nodes",
    "cache_nodes",
    "lcm_nodes",
    "sampling_nodes",
)


def get_node_list() -> list:
    nodes: list = []
    for name in NODE_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
            nodes.extend(module.NODES)
        except Exception:
            _log.exception("[Recall] the %s nodes failed to import; the other Recall nodes still load", name)
    return nodes


async def comfy_entrypoint():
    from .extension import RecallExtension
    return RecallExtension()
