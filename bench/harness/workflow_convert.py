"""UI-format workflows (what the page saves, what users drag in) -> API format (what /prompt takes).

The UI format stores widget values as a positional list, in the order the page made the
widgets: the node's inputs in /object_info's input_order (required, then optional) that are
widgets, plus a few widgets the page adds on its own, which the server never sees:
"control_after_generate" after a seed, the "upload" button after an image/video combo.
Links are [id, origin node, origin slot, target node, target slot, type]. Frontend-only nodes
(Note, MarkdownNote, Reroute) are dropped; a link through a Reroute is followed to its source.
"""
from __future__ import annotations

FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload", "audio_upload")
MUTED_MODES = {2, 4}  # never / bypass


def input_specs(info: dict) -> list[tuple[str, list]]:
    """(name, spec) of every input, in the order the page makes widgets."""
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items() if k != "hidden"}
    out = []
    for section in ("required", "optional"):
        specs = info["input"].get(section) or {}
        out.extend((name, specs[name]) for name in order.get(section, []) if name in specs)
    return out


def input_type(spec: list) -> str:
    kind = spec[0]
    return "COMBO" if isinstance(kind, list) else kind


def is_widget(spec: list) -> bool:
    return input_type(spec) in WIDGET_TYPES


def spec_options(spec: list) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def combo_choices(spec: list) -> list:
    return spec[0] if isinstance(spec[0], list) else spec_options(spec).get("options", [])


def widget_values(node: dict, info: dict) -> dict:
    """Widget name -> value for one UI node, skipping the page-only widgets."""
    raw = node.get("widgets_values")
    if isinstance(raw, dict):
        return dict(raw)
    values = list(raw or [])
    out, i = {}, 0
    for name, spec in input_specs(info):
        if not is_widget(spec):
            continue
        if i >= len(values):
            break
        out[name] = values[i]
        i += 1
        options = spec_options(spec)
        seedlike = input_type(spec) == "INT" and (options.get("control_after_generate") or name in ("seed", "noise_seed"))
        if seedlike and i < len(values) and values[i] in CONTROL_VALUES:
            i += 1
        if input_type(spec) == "COMBO" and any(options.get(k) for k in UPLOAD_OPTIONS) and i < len(values):
            i += 1  # the upload button's placeholder value
    return out


def _links_by_id(workflow: dict) -> dict:
    return {link[0]: link for link in workflow.get("links", [])}


def _source(workflow: dict, nodes: dict, links: dict, link_id: int):
    """(origin node id, slot) of a link, followed back through Reroutes; None if it dangles."""
    seen = set()
    while link_id is not None and link_id not in seen:
        seen.add(link_id)
        link = links.get(link_id)
        if link is None:
            return None
        origin = nodes.get(link[1])
        if origin is None:
            return None
        if origin["type"] != "Reroute":
            return str(link[1]), link[2]
        link_id = (origin.get("inputs") or [{}])[0].get("link")
    return None


def to_api(workflow: dict, object_info: dict) -> dict:
    """API-format prompt {node id: {"class_type", "inputs"}} of a UI-format workflow."""
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = _links_by_id(workflow)
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY or node.get("mode") in MUTED_MODES:
            continue
        info = object_info.get(node["type"])
        if info is None:
            raise KeyError(f"node {node['id']}: type {node['type']!r} is not in /object_info (missing custom node?)")
        inputs = widget_values(node, info)
        for slot in node.get("inputs") or []:
            if slot.get("link") is None:
                continue
            source = _source(workflow, nodes, links, slot["link"])
            if source is not None:
                inputs[slot["name"]] = [source[0], source[1]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
