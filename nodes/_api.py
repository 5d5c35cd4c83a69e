"""The pack's only import of ComfyUI's node API: one line to change when it moves."""
from comfy_api.latest import ComfyExtension, io, ui  # noqa: F401
