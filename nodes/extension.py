"""The ComfyExtension ComfyUI calls for the pack's node list (V3 registration path)."""
from . import get_node_list, startup
from ._api import ComfyExtension, io


class RecallExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        nodes = get_node_list()
        startup.on_pack_loaded(nodes)
        return nodes
