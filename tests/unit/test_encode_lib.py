"""The ComfyUI-free helpers behind the cached encode nodes: tree digests, copies, devices, miss reasons."""
import importlib
import sys
import types
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _lib(name: str):
    """recall_pack.nodes.lib.<name>; nodes/__init__.py imports comfy_api, so without ComfyUI the repo is
    mounted again under a name whose `nodes` package skips that __init__ (the lib is ComfyUI-free)."""
    try:
        return importlib.import_module(f"recall_pack.nodes.lib.{name}")
    except ImportError:
        root = "recall_pack_without_comfy"
        if root not in sys.modules:
            for package, path in ((root, REPO), (f"{root}.nodes", REPO / "nodes")):
                module = types.ModuleType(package)
                module.__path__ = [str(path)]
                sys.modules[package] = module
        return importlib.import_module(f"{root}.nodes.lib.{name}")


explain_miss, make_label = _lib("miss_reason").explain_miss, _lib("miss_reason").make_label
_tree = _lib("tensor_tree")
clone_tree, tree_digest = _tree.clone_tree, _tree.tree_digest


def tokens(ids, weight=1.0):
    return {"l": [[(i, weight) for i in ids]]}


def test_digest_equal_for_equal_token_trees():
    assert tree_digest(tokens([49406, 320, 49407])) == tree_digest(tokens([49406, 320, 49407]))


def test_digest_changes_with_one_token():
    assert tree_digest(tokens([49406, 320, 49407])) != tree_digest(tokens([49406, 321, 49407]))


def test_digest_changes_with_token_weight():
    assert tree_digest(tokens([1, 2], 1.0)) != tree_digest(tokens([1, 2], 1.1))


def test_digest_tells_int_from_float_and_list_from_tuple():
    assert tree_digest([1]) != tree_digest([1.0])
    assert tree_digest([1, 2]) != tree_digest((1, 2))


def test_digest_of_embedding_tensor_is_by_content_not_identity():
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert tree_digest({"l": [[(a, 1.0)]]}) == tree_digest({"l": [[(a.clone(), 1.0)]]})
    b = a.clone()
    b[1, 2] += 1
    assert tree_digest({"l": [[(a, 1.0)]]}) != tree_digest({"l": [[(b, 1.0)]]})


def test_digest_of_transposed_equal_values_matches_contiguous():
    a = torch.randn(4, 5)
    assert tree_digest([a.t()]) == tree_digest([a.t().contiguous()])


class Adapter:  # stands in for ComfyUI's LoRA weight adapters: an object holding tensors
    def __init__(self, up, down):
        self.name = "lora"
        self.weights = (up, down, None)


def test_digest_of_patch_objects_follows_their_tensors():
    up, down = torch.randn(8, 2), torch.randn(2, 8)
    same = tree_digest([Adapter(up, down), 1.0]) == tree_digest([Adapter(up.clone(), down.clone()), 1.0])
    other = tree_digest([Adapter(up, down * 2), 1.0])
    assert same and other != tree_digest([Adapter(up, down), 1.0])


def test_digest_of_functions_includes_captured_values():
    def make(k):
        return lambda x: x * k
    assert tree_digest(make(2)) == tree_digest(make(2))
    assert tree_digest(make(2)) != tree_digest(make(3))


def test_digest_refuses_unknown_leaf():
    with pytest.raises(ValueError, match="cannot digest"):
        tree_digest([iter([1, 2])])  # state we cannot see must not be silently ignored


def test_clone_tree_shares_no_memory():
    value = [[torch.ones(2), {"pooled_output": torch.zeros(3), "n": 1}]]
    copy = clone_tree(value)
    copy[0][0].add_(5)
    copy[0][1]["pooled_output"].add_(5)
    assert torch.equal(value[0][0], torch.ones(2)) and torch.equal(value[0][1]["pooled_output"], torch.zeros(3))
    assert copy[0][1]["n"] == 1


def label(content="c1", encoder="e1", **params):
    return make_label("vae_encode", [content], encoder, params)


def test_miss_reason_first_run():
    assert explain_miss(label(), []) == "first run"


def test_miss_reason_names_the_changed_part():
    assert explain_miss(label(content="c2"), [label()]) == "image changed"
    assert explain_miss(label(encoder="e2"), [label()]).startswith("encoder changed")
    assert explain_miss(label(width=512), [label(width=256)]) == "width changed"


def test_miss_reason_for_text_says_prompt():
    first = make_label("text", ["t1"], "e1", {})
    assert explain_miss(make_label("text", ["t2"], "e1", {}), [first]) == "prompt changed"


def test_miss_reason_uses_the_newest_entry_of_the_same_kind():
    other_kind = make_label("clip_vision", ["c9"], "e9", {})
    assert explain_miss(label(content="c3"), [other_kind, label(content="c2"), label()]) == "image changed"


def test_miss_reason_for_an_identical_label_is_expiry():
    assert explain_miss(label(), [label()]) == "entry expired or was evicted"


def test_miss_reason_ignores_foreign_labels():
    assert explain_miss(label(), ["not json", '{"k": 1}']) == "first run"
