"""Recall Cache inside ComfyUI's real executor (in-process, random-weight CLIP-vision model).

LoadImage -> CLIPVisionLoader/CLIPVisionEncode -> Recall Cache -> a recording output node,
executed by execution.PromptExecutor in each cache mode. "Executed" is what ComfyUI
announces with its "executing" message, as a live server sends it to the browser.
A fresh PromptExecutor has empty ComfyUI caches: what a restarted server sees, with
Recall's store still holding the entry (RAM; or rebuilt over the same disk folder).
"""
import json
import shutil

import pytest
import torch
from PIL import Image

from test_encode_fixtures import recall  # noqa: F401  (fixture)

SINK = "RecallTestSink"
EXPAND = "RecallTestExpandEncode"


class _Server:
    """What PromptExecutor needs of PromptServer: send_sync, client_id, last_node_id."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.sockets_metadata = {}
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def executed(self):
        return [d["node"] for e, d in self.messages if e == "executing" and d.get("node") is not None]


class _Sink:
    received = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*",)}}

    RETURN_TYPES = ()
    FUNCTION = "main"
    OUTPUT_NODE = True

    def main(self, value):
        _Sink.received.append(value)
        return {}


class _ExpandEncode:
    """Expands into LoadImage -> CLIPVisionEncode -> Recall Cache (all ephemeral nodes)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("STRING",), "clip_name": ("STRING",)}}

    RETURN_TYPES = ("CLIP_VISION_OUTPUT",)
    FUNCTION = "expand"

    def expand(self, image, clip_name):
        from comfy_execution.graph_utils import GraphBuilder
        g = GraphBuilder()
        load = g.node("LoadImage", image=image)
        loader = g.node("CLIPVisionLoader", clip_name=clip_name)
        enc = g.node("CLIPVisionEncode", clip_vision=loader.out(0), image=load.out(0), crop="center")
        cache = g.node("RecallCache", value=enc.out(0), allow_nondeterministic=False)
        return {"result": (cache.out(0),), "expand": g.finalize()}


@pytest.fixture
def comfy(monkeypatch, tmp_path, models, recall):  # noqa: F811
    import folder_paths
    import nodes
    from recall_pack.nodes import cache_nodes
    monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, "RecallCache", cache_nodes.RecallCache)
    monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, SINK, _Sink)
    monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, EXPAND, _ExpandEncode)
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    old_input = folder_paths.get_input_directory()
    folder_paths.set_input_directory(str(input_dir))
    gen = torch.Generator().manual_seed(0)
    pixels = (torch.rand(48, 48, 3, generator=gen) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(input_dir / "a.png")
    _Sink.received.clear()
    yield input_dir
    folder_paths.set_input_directory(old_input)


def workflow(models, image="a.png", crop="center", extra=None):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": models["clip_vision"].name}},
        "3": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["2", 0], "image": ["1", 0], "crop": crop}},
        "4": {"class_type": "RecallCache", "inputs": {"value": ["3", 0], "allow_nondeterministic": False}},
        "9": {"class_type": SINK, "inputs": {"value": ["4", 0]}},
    }
    prompt.update(extra or {})
    return prompt


def make_executor(mode=()):
    """A PromptExecutor in the cache mode given by ComfyUI command-line args (() = the default),
    built as the release's main.py builds it: its own parser, CacheType and constructor."""
    import inspect

    import execution
    from comfy.cli_args import parser
    args = parser.parse_args(list(mode))
    kinds = execution.CacheType
    if args.cache_lru > 0:
        cache_type = kinds.LRU
    elif getattr(args, "cache_ram", 0) > 0:
        cache_type = kinds.RAM_PRESSURE
    elif args.cache_none:  # 0.3.64: a dependency-aware cache; 0.8.0: none at all
        cache_type = getattr(kinds, "NONE", None) or kinds.DEPENDENCY_AWARE
    else:
        cache_type = kinds.CLASSIC
    server = _Server()
    if "cache_args" in inspect.signature(execution.PromptExecutor.__init__).parameters:  # 0.8.0
        executor = execution.PromptExecutor(server, cache_type=cache_type,
                                            cache_args={"lru": args.cache_lru, "ram": args.cache_ram})
    else:
        executor = execution.PromptExecutor(server, cache_type=cache_type, cache_size=args.cache_lru)
    return executor, server


def run(executor, server, prompt, outputs=("9",)):
    server.messages.clear()
    # the server hands the executor a fresh copy of the prompt on every queue
    executor.execute(json.loads(json.dumps(prompt)), "p", {"client_id": "c"}, list(outputs))
    assert executor.success, [d for e, d in server.messages if e == "execution_error"]
    return server.executed()


def statuses(recall):  # noqa: F811
    return [p["status"] for name, p in recall.reports if name == "recall.node" and p["node_type"] == "RecallCache"]


def equal_outputs(a, b):
    assert a.keys() == b.keys() if hasattr(a, "keys") else True
    for name in ("image_embeds", "last_hidden_state", "penultimate_hidden_states"):
        assert torch.equal(a[name], b[name]), name


def test_second_executor_skips_loader_and_encoder(comfy, models, recall, cache_mode):  # noqa: F811
    executor, server = make_executor(cache_mode)
    first = run(executor, server, workflow(models))
    assert {"1", "2", "3", "4"} <= set(first)
    executor, server = make_executor(cache_mode)  # ComfyUI's caches empty: only Recall remembers
    second = run(executor, server, workflow(models))
    assert "4" in second and not {"1", "2", "3"} & set(second)
    assert statuses(recall) == ["miss", "hit"]
    equal_outputs(_Sink.received[0], _Sink.received[1])


def test_ram_pressure_eviction_leaves_the_hit_to_recall(comfy, models, recall):  # noqa: F811
    import execution
    if not hasattr(execution.CacheType, "RAM_PRESSURE"):
        pytest.skip("this ComfyUI has no --cache-ram (RAM-pressure cache; 0.8.0 has it)")
    # a headroom above any machine's RAM: ComfyUI evicts what it can after every node
    executor, server = make_executor(["--cache-ram", "1000000"])
    run(executor, server, workflow(models))
    second = run(executor, server, workflow(models))  # the same executor: only its evictions differ
    assert "4" in second and not {"1", "2", "3"} & set(second)
    assert statuses(recall) == ["miss", "hit"]
    equal_outputs(_Sink.received[0], _Sink.received[1])


def test_renamed_identical_image_hits_in_the_same_session(comfy, models, recall):  # noqa: F811
    executor, server = make_executor()
    run(executor, server, workflow(models))
    shutil.copy(comfy / "a.png", comfy / "b.png")
    second = run(executor, server, workflow(models, image="b.png"))
    assert "4" in second and not {"1", "2", "3"} & set(second)
    assert statuses(recall) == ["miss", "hit"]


def test_image_replaced_behind_the_same_name_misses(comfy, models, recall):  # noqa: F811
    executor, server = make_executor(["--cache-none"])
    run(executor, server, workflow(models))
    gen = torch.Generator().manual_seed(1)
    pixels = (torch.rand(48, 48, 3, generator=gen) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(comfy / "a.png")
    second = run(executor, server, workflow(models))
    assert {"1", "3", "4"} <= set(second)
    assert statuses(recall) == ["miss", "miss"]
    assert "Load Image" in recall.last()["reason"] or "LoadImage #1" in recall.last()["reason"]


def test_changed_crop_misses_and_names_it(comfy, models, recall):  # noqa: F811
    executor, server = make_executor(["--cache-none"])
    run(executor, server, workflow(models))
    second = run(executor, server, workflow(models, crop="none"))
    assert "3" in second
    assert statuses(recall) == ["miss", "miss"]
    assert recall.last()["reason"] == 'CLIPVisionEncode #3: crop "center" -> "none"'


def test_restart_hits_from_disk(comfy, models, recall):  # noqa: F811
    executor, server = make_executor()
    run(executor, server, workflow(models))
    recall.store.flush()
    recall.rebuild()  # a new store over the same folder: the RAM tier is empty
    executor, server = make_executor()
    second = run(executor, server, workflow(models))
    assert not {"1", "2", "3"} & set(second)
    assert recall.last()["status"] == "hit" and recall.last()["tier"] == "disk"
    equal_outputs(_Sink.received[0], _Sink.received[1])


def test_cache_inside_a_node_expansion_hits(comfy, models, recall, cache_mode):  # noqa: F811
    import execution
    if cache_mode == ["--cache-none"] and hasattr(execution.CacheType, "DEPENDENCY_AWARE"):
        pytest.skip("ComfyUI 0.3.64 itself fails any node expansion under --cache-none (DependencyAwareCache"
                    ".ensure_subcache_for: KeyError on the ephemeral node ids), with or without Recall")
    prompt = {"5": {"class_type": EXPAND, "inputs": {"image": "a.png", "clip_name": models["clip_vision"].name}},
              "9": {"class_type": SINK, "inputs": {"value": ["5", 0]}}}
    executor, server = make_executor(cache_mode)
    first = run(executor, server, prompt)
    assert [n for n in first if n.endswith(".3")]  # the ephemeral encoder ran once
    executor, server = make_executor(cache_mode)
    second = run(executor, server, prompt)
    encoders = [n for n in second if n.endswith(".3")]  # the expansion's CLIPVisionEncode
    assert statuses(recall) == ["miss", "hit"] and encoders == []


def test_model_output_is_kept_by_reference(comfy, models, recall):  # noqa: F811
    prompt = {
        "2": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": models["clip_vision"].name}},
        "4": {"class_type": "RecallCache", "inputs": {"value": ["2", 0], "allow_nondeterministic": False}},
        "9": {"class_type": SINK, "inputs": {"value": ["4", 0]}},
    }
    executor, server = make_executor(["--cache-none"])
    run(executor, server, prompt)
    second = run(executor, server, prompt)
    assert "2" not in second and _Sink.received[1] is _Sink.received[0]
    assert recall.store.tier("disk").keys("default") == [] and recall.store.tier("disk").keys("shared") == []


def test_builtin_rules_and_file_inputs_match_the_real_node_classes():
    import asyncio

    import nodes
    from recall_pack.nodes.lib import sensitivity_rules
    if "SVD_img2vid_Conditioning" not in nodes.NODE_CLASS_MAPPINGS:
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    doc = json.loads(sensitivity_rules.CORE_RULES_PATH.read_text())
    rules = [r for r in doc["rules"] if r["class"] != "RecallCache"]
    assert sensitivity_rules.validate_rules(rules, nodes.NODE_CLASS_MAPPINGS, source="built-in") == []
    for cls_name, inputs in doc["files"].items():
        spec = nodes.NODE_CLASS_MAPPINGS[cls_name].INPUT_TYPES()
        names = {**spec.get("required", {}), **spec.get("optional", {})}
        assert set(inputs) <= set(names), cls_name


def test_recall_cache_schema_is_any_type_and_lazy():
    from recall_pack.nodes.cache_nodes import RecallCache
    spec = RecallCache.INPUT_TYPES()
    assert spec["required"]["value"][0] == "*" and spec["required"]["value"][1]["lazy"] is True
    assert list(RecallCache.RETURN_TYPES) == ["*"] and RecallCache.CATEGORY == "Recall"
    # the "*" type must pass ComfyUI's link validation both ways
    from comfy_execution.validation import validate_node_input
    assert validate_node_input(RecallCache.RETURN_TYPES[0], "CLIP_VISION_OUTPUT")
    assert validate_node_input("CLIP_VISION_OUTPUT", spec["required"]["value"][0])
