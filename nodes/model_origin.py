"""Where a live encoder's weights came from: the core loader node upstream in the prompt.

Neither ComfyUI 0.3.64 nor 0.8.0 records the file a model was loaded from: VAELoader,
CLIPVisionLoader, CLIPLoader, DualCLIPLoader and the checkpoint loaders read the file
with comfy.utils.load_torch_file and build the model from the state dict, and nothing
on the VAE, CLIP_VISION or CLIP object keeps the path. What does tell it is the prompt
being run: the node that received the encoder links to the loader node that produced
it, and that node's widgets name the files. origin_of() reads that link, following
the core nodes that hand the same weights on (LoraLoader and CLIPSetLastLayer clone the
CLIP and share its text-encoder module), and returns the files and the loader options.

This proves which files a model came from only together with the file checks in
identity.py (the files and folders unchanged since the process started). Anything
else — a loader from another pack, a node class replaced by a pack, a file name that
is a link in the prompt, a name found in two model folders — gives None: the weights
are then hashed, as always.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

# class_type -> (core module that defines the class: "nodes" or a file under ComfyUI, {output index: kind}, [(file input, model folder)])
LOADERS = {
    "VAELoader": ("nodes", {0: "vae"}, [("vae_name", "vae")]),
    "CLIPVisionLoader": ("nodes", {0: "clip_vision"}, [("clip_name", "clip_vision")]),
    "CLIPLoader": ("nodes", {0: "clip"}, [("clip_name", "text_encoders")]),
    "DualCLIPLoader": ("nodes", {0: "clip"}, [("clip_name1", "text_encoders"), ("clip_name2", "text_encoders")]),
    "CheckpointLoaderSimple": ("nodes", {1: "clip", 2: "vae"}, [("ckpt_name", "checkpoints")]),
    "unCLIPCheckpointLoader": ("nodes", {1: "clip", 2: "vae", 3: "clip_vision"}, [("ckpt_name", "checkpoints")]),
    "ImageOnlyCheckpointLoader": ("comfy_extras/nodes_video_model.py", {1: "clip_vision", 2: "vae"},
                                  [("ckpt_name", "checkpoints")]),
}
# class_type -> (module, {output index: the input whose model it hands on, sharing its weights module})
PASS_THROUGH = {
    "LoraLoader": ("nodes", {1: "clip"}),
    "CLIPSetLastLayer": ("nodes", {0: "clip"}),
}
_MAX_DEPTH = 16


@dataclass(frozen=True)
class Origin:
    key: str                  # loader, options, files and versions, as one JSON document
    files: tuple[str, ...]    # the files the loader read
    watch: tuple[str, ...]    # files and folders that must not have changed since the process started


def _node(prompt, node_id):
    if hasattr(prompt, "get_node"):  # a DynamicPrompt
        try:
            return prompt.get_node(node_id)
        except Exception:  # NodeNotFoundError: an id it does not hold
            return None
    return prompt.get(str(node_id)) if isinstance(prompt, dict) else None


def _is_core(class_type: str, module: str) -> bool:
    """True when the class registered under class_type is core's, not one a pack put in its place."""
    try:
        import nodes
    except ImportError:
        return False
    cls = nodes.NODE_CLASS_MAPPINGS.get(class_type)
    if cls is None:
        return False
    if module == "nodes":
        return getattr(nodes, class_type, None) is cls
    # comfy_extras load under a module name made from their path: compare the files
    defined_in = getattr(sys.modules.get(getattr(cls, "__module__", "")), "__file__", None)
    expected = os.path.join(os.path.dirname(nodes.__file__), module)
    return bool(defined_in) and os.path.realpath(defined_in) == os.path.realpath(expected)


def _link(value):
    if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[1], int):
        return str(value[0]), value[1]
    return None


def _folders_to_watch(folder: str, name: str) -> list[str] | None:
    """Every folder where ComfyUI looks for `name`, and the sub-folders leading to it.

    A file added to or removed from any of them changes the folder's ctime, so a name
    that resolved to another file when the model was loaded is caught.
    """
    import folder_paths
    try:
        bases = folder_paths.get_folder_paths(folder)
    except KeyError:
        return None
    rel = os.path.relpath(os.path.join("/", name), "/")
    found = [b for b in bases if os.path.isfile(os.path.join(b, rel))]
    if len(found) != 1:  # missing, or in two folders: which one was read cannot be told
        return None
    watch = []
    for base in bases:
        watch.append(base)
        parts = os.path.dirname(rel).split(os.sep) if os.path.dirname(rel) else []
        for i in range(1, len(parts) + 1):
            watch.append(os.path.join(base, *parts[:i]))
    return watch


def _comfyui_version() -> str:
    try:
        import comfyui_version
        return str(comfyui_version.__version__)
    except Exception:  # a ComfyUI without the module: the version is then unknown, never guessed
        return "unknown"


def _loader_origin(node: dict, class_type: str, output: int, kind: str) -> Origin | None:
    module, outputs, file_inputs = LOADERS[class_type]
    if outputs.get(output) != kind or not _is_core(class_type, module):
        return None
    import folder_paths
    import torch
    inputs = node.get("inputs", {})
    files, watch, options = [], [], {}
    for input_name, folder in file_inputs:
        name = inputs.get(input_name)
        if not isinstance(name, str):
            return None
        if class_type == "VAELoader" and os.path.splitext(name)[0] in _video_taes():
            folder = "vae_approx"  # 0.8.0's VAELoader reads the video TAEs from vae_approx
        path = folder_paths.get_full_path(folder, name)
        folders = _folders_to_watch(folder, name)
        if path is None or folders is None:
            return None  # pixel_space, taesd (two files built into one) or not a single file
        files.append(os.path.realpath(path))
        watch += [path] + folders
    for key, value in sorted(inputs.items()):
        if key in {n for n, _ in file_inputs}:
            continue
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            return None  # an option that comes through a link: its value is not known here
        options[key] = value
    doc = {"loader": class_type, "output": output, "kind": kind, "options": options, "files": files,
           "comfyui": _comfyui_version(), "torch": torch.__version__}
    return Origin(json.dumps(doc, sort_keys=True), tuple(files), tuple(watch))


def _video_taes() -> tuple:
    import nodes
    return tuple(getattr(nodes.VAELoader, "video_taes", ()))


def origin_of(prompt, node_id, input_name: str, kind: str) -> Origin | None:
    """The loader files of the model that node `node_id` receives on `input_name`, or None."""
    node = _node(prompt, node_id)
    link = _link(node.get("inputs", {}).get(input_name)) if isinstance(node, dict) else None
    for _ in range(_MAX_DEPTH):
        if link is None:
            return None
        source = _node(prompt, link[0])
        if not isinstance(source, dict):
            return None
        class_type = source.get("class_type")
        if class_type in LOADERS:
            return _loader_origin(source, class_type, link[1], kind)
        if class_type not in PASS_THROUGH:
            return None
        module, outputs = PASS_THROUGH[class_type]
        upstream = outputs.get(link[1])
        if upstream is None or not _is_core(class_type, module):
            return None
        link = _link(source.get("inputs", {}).get(upstream))
    return None
