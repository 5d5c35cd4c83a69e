"""The example workflows in workflows/ as files: what the page and the template browser need.

Node schemas are not needed here (tests/integration/test_workflows_static.py checks them
against a live server); these checks are pure JSON and run in CI without ComfyUI.
"""
import json
import re
from pathlib import Path

import pytest

WORKFLOWS_DIR = Path(__file__).resolve().parent.parent.parent / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.json"))
EXPECTED = {"svd_img2vid_recall", "wan_i2v_recall", "sd15_lcm_lora_4step", "ddim_eta", "recall_cache_clip_vision"}
MODEL_FILE = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|gguf)$")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_example_workflow_is_there():
    assert EXPECTED <= {path.stem for path in WORKFLOWS}


@pytest.fixture(params=WORKFLOWS, ids=lambda p: p.stem)
def workflow(request):
    return request.param, load(request.param)


def test_is_a_ui_format_graph(workflow):
    _, graph = workflow
    assert isinstance(graph.get("nodes"), list) and graph["nodes"]
    assert isinstance(graph.get("links"), list)
    ids = [node["id"] for node in graph["nodes"]]
    assert len(ids) == len(set(ids)), "duplicate node ids"
    assert graph["last_node_id"] >= max(ids)


def test_links_join_existing_nodes_and_slots(workflow):
    _, graph = workflow
    nodes = {node["id"]: node for node in graph["nodes"]}
    for link_id, origin, origin_slot, target, target_slot, link_type in graph["links"]:
        assert origin in nodes and target in nodes, f"link {link_id} joins a missing node"
        out = nodes[origin]["outputs"][origin_slot]
        inp = nodes[target]["inputs"][target_slot]
        assert link_id in (out.get("links") or []), f"link {link_id} is not listed on its origin's output"
        assert inp.get("link") == link_id, f"link {link_id} is not the link of its target input"
        assert link_type in (out["type"], "*") or out["type"] == "*", f"link {link_id}: {link_type} vs {out['type']}"


def test_every_connected_input_has_a_link_entry(workflow):
    _, graph = workflow
    link_ids = {link[0] for link in graph["links"]}
    for node in graph["nodes"]:
        for slot in node.get("inputs") or []:
            assert slot.get("link") is None or slot["link"] in link_ids, f"{node['type']}.{slot['name']}"


def note_text(graph: dict) -> str:
    notes = [node for node in graph["nodes"] if node["type"] in ("Note", "MarkdownNote")]
    return "\n".join(str(v) for node in notes for v in node.get("widgets_values") or [])


def test_has_a_note_that_names_every_model_file(workflow):
    _, graph = workflow
    text = note_text(graph)
    assert text.strip(), "no Note node explaining what to change"
    files = {v for node in graph["nodes"] for v in node.get("widgets_values") or []
             if isinstance(v, str) and MODEL_FILE.search(v)}
    assert files, "a workflow without model files?"
    assert all(name in text for name in files), f"the Note does not name {sorted(f for f in files if f not in text)}"


def test_has_a_jpeg_preview_for_the_template_browser(workflow):
    # ComfyUI 0.3.64's frontend asks /api/workflow_templates/<pack>/<name>.jpg for custom-node templates.
    path, _ = workflow
    preview = path.with_suffix(".jpg")
    assert preview.exists(), f"{preview.name} missing"
    assert preview.read_bytes()[:3] == b"\xff\xd8\xff", f"{preview.name} is not a JPEG"
    assert preview.stat().st_size > 10_000, f"{preview.name} looks empty"


# bench/harness/workflow_convert.py, which the integration suite uses on these files
INFO = {
    "LoadImage": {"input": {"required": {"image": [["a.png", "b.png"], {"image_upload": True}]}},
                  "input_order": {"required": ["image"]}},
    "KSampler": {"input": {"required": {"model": ["MODEL"], "seed": ["INT", {"min": 0}], "steps": ["INT", {}],
                                        "sampler_name": [["euler", "lcm"]], "positive": ["CONDITIONING"]}},
                 "input_order": {"required": ["model", "seed", "steps", "sampler_name", "positive"]}},
    "Loader": {"input": {"required": {"name": ["COMBO", {"options": ["x"]}]}, "optional": {"dtype": ["STRING", {}]}},
               "input_order": {"required": ["name"], "optional": ["dtype"]}},
}


def ui(nodes, links):
    return {"nodes": nodes, "links": links}


def test_convert_skips_page_only_widgets_after_seed_and_image():
    graph = ui([{"id": 1, "type": "LoadImage", "widgets_values": ["b.png", "image"]},
                {"id": 2, "type": "KSampler", "widgets_values": [7, "randomize", 4, "lcm"],
                 "inputs": [{"name": "model", "link": None}, {"name": "positive", "link": None}]}], [])
    from recall_pack.bench.harness.workflow_convert import to_api
    api = to_api(graph, INFO)
    assert api["1"] == {"class_type": "LoadImage", "inputs": {"image": "b.png"}}
    assert api["2"]["inputs"] == {"seed": 7, "steps": 4, "sampler_name": "lcm"}


def test_convert_drops_notes_and_follows_links_through_reroutes():
    from recall_pack.bench.harness.workflow_convert import to_api
    graph = ui([{"id": 1, "type": "Loader", "widgets_values": ["x", "fp16"]},
                {"id": 2, "type": "Reroute", "inputs": [{"name": "", "link": 10}]},
                {"id": 3, "type": "KSampler", "widgets_values": [0, "fixed", 1, "euler"],
                 "inputs": [{"name": "model", "link": 11}, {"name": "positive", "link": None}]},
                {"id": 4, "type": "Note", "widgets_values": ["read me"]}],
               [[10, 1, 0, 2, 0, "*"], [11, 2, 0, 3, 0, "*"]])
    api = to_api(graph, INFO)
    assert set(api) == {"1", "3"}
    assert api["1"]["inputs"] == {"name": "x", "dtype": "fp16"}
    assert api["3"]["inputs"]["model"] == ["1", 0]


def test_convert_names_an_unknown_node_type():
    from recall_pack.bench.harness.workflow_convert import to_api
    with pytest.raises(KeyError, match="NotInstalled"):
        to_api(ui([{"id": 1, "type": "NotInstalled", "widgets_values": []}], []), INFO)
