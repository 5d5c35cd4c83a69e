"""Registers the Recall nodes with ComfyUI through the V3 extension API.

Each topic module exports NODES, a list of node classes. A topic that fails to
import (say an optional dependency is broken) is logged and skipped, so the
rest of the pack still loads.
"""
import importlib
import logging

from ._api import ComfyExtension, io

_log = logging.getLogger("recall")

NODE_MODULES = (
    "encode_nodes",
    "video_encode_nodes",
    "cache_nodes",
    "lcm_nodes",
    "sampling_nodes",
)


def get_node_list() -> list[type[io.ComfyNode]]:
    nodes: list[type[io.ComfyNode]] = []
    for name in NODE_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except Exception:
            _log.exception("[Recall] the %s nodes failed to import; the other Recall nodes still load", name)
            continue
        nodes.extend(module.NODES)
    return nodes


class RecallExtension(ComfyExtension):
    async def on_load(self) -> None:
        return None

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from . import startup
        nodes = get_node_list()
        startup.on_pack_loaded(nodes)
        return nodes


async def comfy_entrypoint() -> RecallExtension:
    return RecallExtension()
