"""The example workflows against the live server's /object_info: what a user dragging one in meets.

Every node type exists (the pack's own, as its source declares them, or core's); every link
joins an output to an input of a matching type; every widget value is one the node accepts
(in range, a listed choice). Model-file combos are the exception: the workflows name the
distributed files, which a test server does not have.
"""
import json
from pathlib import Path

import pytest
from support import pack_nodes
from recall_pack.bench.harness.workflow_convert import (
    FRONTEND_ONLY,
    combo_choices,
    input_specs,
    input_type,
    spec_options,
    widget_values,
)

WORKFLOWS = sorted((Path(__file__).resolve().parent.parent.parent / "workflows").glob("*.json"))
FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".png", ".jpg", ".webp")


@pytest.fixture(scope="module")
def object_info(comfy_client) -> dict:
    return comfy_client.object_info()


@pytest.fixture(params=WORKFLOWS, ids=lambda p: p.stem)
def graph(request) -> dict:
    return json.loads(request.param.read_text(encoding="utf-8"))


def test_every_node_type_is_recalls_own_or_core(graph, object_info):
    declared = pack_nodes.declared_node_ids()
    for node in graph["nodes"]:
        kind = node["type"]
        if kind in FRONTEND_ONLY:
            continue
        assert kind in object_info, f"node {node['id']}: {kind} is not a node of this ComfyUI or the pack"
        if kind.startswith("Recall"):
            assert kind in declared, f"{kind} is not declared in the pack's nodes/"


def types_match(output_type: str, input_type_: str) -> bool:
    if "*" in (output_type, input_type_):
        return True
    return bool(set(output_type.split(",")) & set(input_type_.split(",")))


def test_every_link_joins_matching_types(graph, object_info):
    nodes = {node["id"]: node for node in graph["nodes"]}
    for link_id, origin, origin_slot, target, target_slot, _ in graph["links"]:
        source, dest = nodes[origin], nodes[target]
        out_type = object_info[source["type"]]["output"][origin_slot]
        name = dest["inputs"][target_slot]["name"]
        specs = dict(input_specs(object_info[dest["type"]]))
        assert name in specs, f"link {link_id}: {dest['type']} has no input {name}"
        in_type = input_type(specs[name])
        assert types_match(out_type, in_type), (
            f"link {link_id}: {source['type']} output {origin_slot} ({out_type}) -> {dest['type']}.{name} ({in_type})")


def check_value(name: str, spec: list, value) -> str | None:
    kind, options = input_type(spec), spec_options(spec)
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name}={value!r} is not a number"
        if kind == "INT" and value != int(value):
            return f"{name}={value!r} is not an integer"
        low, high = options.get("min", float("-inf")), options.get("max", float("inf"))
        if not low <= value <= high:
            return f"{name}={value} outside [{low}, {high}]"
    elif kind == "BOOLEAN" and not isinstance(value, bool):
        return f"{name}={value!r} is not a boolean"
    elif kind == "STRING" and not isinstance(value, str):
        return f"{name}={value!r} is not a string"
    elif kind == "COMBO":
        choices = combo_choices(spec)
        is_file = isinstance(value, str) and value.lower().endswith(FILE_SUFFIXES)
        if value not in choices and not is_file:
            return f"{name}={value!r} not one of {choices[:12]}"
    return None


def test_every_widget_value_is_accepted(graph, object_info):
    problems = []
    for node in graph["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        info = object_info[node["type"]]
        specs = dict(input_specs(info))
        values = widget_values(node, info)
        expected = [name for name, spec in input_specs(info) if input_type(spec) in ("INT", "FLOAT", "STRING",
                                                                                  "BOOLEAN", "COMBO")]
        missing = [name for name in expected if name not in values]
        if missing:
            problems.append(f"{node['type']} #{node['id']}: no value for {missing}")
        for name, value in values.items():
            why = check_value(name, specs[name], value)
            if why:
                problems.append(f"{node['type']} #{node['id']}: {why}")
    assert not problems, "\n".join(problems)


def test_the_template_browser_lists_every_workflow(comfy_client, comfy_server):
    # ComfyUI serves a pack's workflows/ folder as templates (/workflow_templates, keyed by folder name).
    listed = comfy_client.get("/workflow_templates").get(comfy_server.pack_dir.name, [])
    assert sorted(listed) == sorted(path.stem for path in WORKFLOWS)
