"""Recall Cache signatures built from recorded API prompts (bench/data/prompts/, which the node-cache benchmark times too).

What users rely on: a changed upstream parameter misses, a parameter the rules call
irrelevant (or anything downstream) hits, files count by content and not by name,
node ids and titles do not matter, randomize seeds and non-idempotent nodes are never
reused unless allowed, and a miss names the node and parameter that changed.
"""
import copy
import json
import os
from pathlib import Path

import pytest

from recall_pack.nodes.lib import file_digest as file_digest_mod
from recall_pack.nodes.lib import sensitivity_rules as rules_mod
from recall_pack.nodes.lib import signature

DATA = Path(__file__).resolve().parents[2] / "bench" / "data" / "prompts"
NodeFacts = signature.NodeFacts
RULES, _ = rules_mod.build_ruleset()


def load(name):
    doc = json.loads((DATA / name).read_text())
    return doc["prompt"], doc["extra_data"]["extra_pnginfo"]["workflow"]


def sig(prompt, cache_node, *, rules=RULES, facts=None, files=None, workflow=None, allow=False):
    get_node = prompt.__getitem__
    facts = facts or {}
    return signature.compute_signature(
        get_node, prompt[cache_node]["inputs"]["value"], rules=rules,
        facts=lambda nid, node: facts.get(nid, NodeFacts()),
        file_digest=(lambda folder, name: files.get((folder, name))) if files is not None else None,
        randomized=signature.randomized_inputs(workflow, get_node), allow_nondeterministic=allow)


# -- structure --------------------------------------------------------------------------
def test_same_prompt_gives_same_signature():
    prompt, _ = load("unclip_recall.json")
    assert sig(prompt, "4").key == sig(copy.deepcopy(prompt), "4").key


def test_node_ids_and_titles_do_not_matter():
    prompt, _ = load("unclip_recall.json")
    renumber = {old: str(100 + i) for i, old in enumerate(prompt)}
    moved = {}
    for old, node in prompt.items():
        node = copy.deepcopy(node)
        node["_meta"]["title"] = "renamed " + old
        for name, value in node["inputs"].items():
            if signature.is_link(value):
                node["inputs"][name] = [renumber[value[0]], value[1]]
        moved[renumber[old]] = node
    assert sig(prompt, "4").key == sig(moved, renumber["4"]).key


def test_downstream_prompt_change_keeps_signature():
    prompt, _ = load("unclip_recall.json")
    changed = copy.deepcopy(prompt)
    changed["6"]["inputs"]["text"] = "a dog on a sofa"
    changed["10"]["inputs"]["cfg"] = 7.0
    assert sig(prompt, "4").key == sig(changed, "4").key


def test_changed_upstream_widget_misses_and_is_named():
    prompt, _ = load("unclip_recall.json")
    before = sig(prompt, "4")
    changed = copy.deepcopy(prompt)
    changed["3"]["inputs"]["crop"] = "none"
    after = sig(changed, "4")
    assert after.key != before.key
    reason = signature.explain_signature_miss(after, [before.label()])
    assert "CLIP Vision Encode #3" in reason and "crop" in reason and '"center" -> "none"' in reason


def test_consumed_output_index_is_part_of_the_signature():
    prompt, _ = load("svd_recall.json")
    assert sig(prompt, "4").key != sig(prompt, "5").key


def test_link_to_a_missing_node_is_an_error():
    prompt, _ = load("unclip_recall.json")
    del prompt["2"]
    with pytest.raises(signature.SignatureError, match="'2'"):
        sig(prompt, "4")


# -- built-in sensitivity rules ----------------------------------------------------------
@pytest.mark.parametrize("name,value", [("motion_bucket_id", 40), ("fps", 12), ("augmentation_level", 0.0)])
def test_svd_latent_ignores_conditioning_params(name, value):
    prompt, _ = load("svd_recall.json")
    changed = copy.deepcopy(prompt)
    changed["3"]["inputs"][name] = value
    changed["3"]["inputs"]["motion_bucket_id"] += 1
    assert sig(prompt, "5").key == sig(changed, "5").key


def test_svd_latent_ignores_the_image_branch():
    prompt, _ = load("svd_recall.json")
    files = {("input", "frame.png"): "a" * 32, ("checkpoints", "svd.safetensors"): "b" * 32}
    other = dict(files)
    other[("input", "frame.png")] = "c" * 32
    assert sig(prompt, "5", files=files).key == sig(prompt, "5", files=other).key
    assert sig(prompt, "4", files=files).key != sig(prompt, "4", files=other).key


def test_svd_latent_follows_video_frames_and_size():
    prompt, _ = load("svd_recall.json")
    for name, value in [("video_frames", 25), ("width", 576)]:
        changed = copy.deepcopy(prompt)
        changed["3"]["inputs"][name] = value
        assert sig(prompt, "5").key != sig(changed, "5").key, name


def test_svd_positive_ignores_video_frames_but_not_motion_bucket():
    prompt, _ = load("svd_recall.json")
    frames = copy.deepcopy(prompt)
    frames["3"]["inputs"]["video_frames"] = 25
    assert sig(prompt, "4").key == sig(frames, "4").key
    motion = copy.deepcopy(prompt)
    motion["3"]["inputs"]["motion_bucket_id"] = 40
    assert sig(prompt, "4").key != sig(motion, "4").key


def test_svd_positive_with_noise_augmentation_is_nondeterministic():
    prompt, _ = load("svd_recall.json")
    prompt["3"]["inputs"]["augmentation_level"] = 0.05
    assert any("augmentation_level" in r for r in sig(prompt, "4").nondeterministic)
    assert sig(prompt, "5").nondeterministic == []  # the empty latent has no noise


def test_user_rule_makes_an_input_irrelevant():
    prompt, _ = load("unclip_recall.json")
    changed = copy.deepcopy(prompt)
    changed["3"]["inputs"]["crop"] = "none"
    user, problems = rules_mod.build_ruleset([{"class": "CLIPVisionEncode", "ignore": ["crop"]}])
    assert problems == []
    assert sig(prompt, "4", rules=user).key == sig(changed, "4", rules=user).key


# -- files: content, not names -----------------------------------------------------------
@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "clip_vision"
    folder.mkdir()
    (folder / "vit_l.safetensors").write_bytes(b"weights-A" * 1000)
    return folder


def real_files(folder, digests):
    def lookup(kind, name):
        path = folder / name
        return digests.digest(path) if kind == "clip_vision" and path.is_file() else None
    return lookup


def sig_with_files(prompt, folder, digests):
    return signature.compute_signature(prompt.__getitem__, prompt["4"]["inputs"]["value"], rules=RULES,
                                       file_digest=real_files(folder, digests))


def test_renamed_identical_model_file_hits(model_dir):
    prompt, _ = load("unclip_recall.json")
    prompt["2"]["inputs"]["clip_name"] = "vit_l.safetensors"
    digests = file_digest_mod.FileDigests()
    before = sig_with_files(prompt, model_dir, digests)
    (model_dir / "vit_l.safetensors").rename(model_dir / "renamed.safetensors")
    prompt["2"]["inputs"]["clip_name"] = "renamed.safetensors"
    assert sig_with_files(prompt, model_dir, digests).key == before.key


def test_model_file_changed_behind_the_same_name_misses(model_dir):
    prompt, _ = load("unclip_recall.json")
    prompt["2"]["inputs"]["clip_name"] = "vit_l.safetensors"
    digests = file_digest_mod.FileDigests()
    before = sig_with_files(prompt, model_dir, digests)
    replacement = model_dir / "new.tmp"
    replacement.write_bytes(b"weights-B" * 1000)  # same size, other bytes, swapped in atomically
    os.replace(replacement, model_dir / "vit_l.safetensors")
    after = sig_with_files(prompt, model_dir, digests)
    assert after.key != before.key
    assert "clip_name is another file" in signature.explain_signature_miss(after, [before.label()])


def test_image_changed_behind_the_same_name_misses_through_is_changed():
    # LoadImage.IS_CHANGED returns the file's SHA-256; ComfyUI leaves it on the node
    prompt, _ = load("unclip_recall.json")
    before = sig(prompt, "4", facts={"1": NodeFacts(is_changed=["sha-one"])})
    after = sig(prompt, "4", facts={"1": NodeFacts(is_changed=["sha-two"])})
    assert after.key != before.key
    assert "Load Image #1: its file or external state changed" in signature.explain_signature_miss(after, [before.label()])


def test_renamed_identical_image_hits():
    prompt, _ = load("unclip_recall.json")
    renamed = copy.deepcopy(prompt)
    renamed["1"]["inputs"]["image"] = "copy of example.png"
    files = {("input", "example.png"): "d" * 32, ("input", "copy of example.png"): "d" * 32}
    same = {"1": NodeFacts(is_changed=["sha-one"])}
    assert sig(prompt, "4", files=files, facts=same).key == sig(renamed, "4", files=files, facts=same).key


def test_missing_file_keeps_its_name_in_the_signature():
    prompt, _ = load("unclip_recall.json")
    renamed = copy.deepcopy(prompt)
    renamed["2"]["inputs"]["clip_name"] = "other.safetensors"
    assert sig(prompt, "4", files={}).key != sig(renamed, "4", files={}).key


# -- non-determinism ---------------------------------------------------------------------
def test_randomize_seed_is_never_reusable_by_default():
    prompt, workflow = load("svd_recall.json")
    result = sig(prompt, "8", workflow=workflow)
    assert result.nondeterministic == ["KSampler #7: seed is on randomize"]


def test_randomize_seed_is_left_out_when_allowed():
    prompt, workflow = load("svd_recall.json")
    other = copy.deepcopy(prompt)
    other["7"]["inputs"]["seed"] = 98765
    workflow_other = copy.deepcopy(workflow)
    workflow_other["nodes"][6]["widgets_values"][0] = 98765
    a = sig(prompt, "8", workflow=workflow, allow=True)
    b = sig(other, "8", workflow=workflow_other, allow=True)
    assert a.nondeterministic == [] and a.key == b.key
    assert a.notes == ["KSampler #7: seed is on randomize, left out"]


def test_fixed_seed_is_deterministic_and_keyed():
    prompt, workflow = load("svd_recall.json")
    workflow["nodes"][6]["widgets_values"][1] = "fixed"
    other = copy.deepcopy(prompt)
    other["7"]["inputs"]["seed"] = 1235
    assert sig(prompt, "8", workflow=workflow).nondeterministic == []
    assert sig(prompt, "8", workflow=workflow).key != sig(other, "8", workflow=workflow).key


def test_randomize_downstream_of_the_cache_does_not_matter():
    prompt, workflow = load("svd_recall.json")
    assert sig(prompt, "4", workflow=workflow).nondeterministic == []


def test_randomize_inside_a_subgraph_is_found():
    prompt, workflow = load("subgraph_recall.json")
    assert signature.randomized_inputs(workflow, prompt.__getitem__) == {"20:2": {"seed"}}
    assert sig(prompt, "21", workflow=workflow).nondeterministic == ["KSampler #20:2: seed is on randomize"]


def test_not_idempotent_upstream_is_nondeterministic():
    prompt, _ = load("unclip_recall.json")
    result = sig(prompt, "4", facts={"3": NodeFacts(not_idempotent=True)})
    assert result.nondeterministic == ["CLIP Vision Encode #3: the node is marked not idempotent"]


def test_is_changed_nan_is_nondeterministic():
    prompt, _ = load("unclip_recall.json")
    result = sig(prompt, "4", facts={"1": NodeFacts(is_changed=[float("nan")])})
    assert result.nondeterministic == ["Load Image #1: the node reports a change on every run"]


# -- explanations ------------------------------------------------------------------------
def test_first_run_says_so():
    prompt, _ = load("unclip_recall.json")
    assert signature.explain_signature_miss(sig(prompt, "4"), []).startswith("first run")


def test_same_signature_means_evicted():
    prompt, _ = load("unclip_recall.json")
    s = sig(prompt, "4")
    assert "expired or was evicted" in signature.explain_signature_miss(s, [s.label()])


def test_nearest_label_is_chosen():
    prompt, _ = load("unclip_recall.json")
    near = copy.deepcopy(prompt)
    near["3"]["inputs"]["crop"] = "none"
    far = copy.deepcopy(near)
    far["1"]["inputs"]["image"] = "other.png"
    current = sig(prompt, "4")
    reason = signature.explain_signature_miss(current, ["not json", sig(far, "4").label(), sig(near, "4").label()])
    assert reason == 'CLIP Vision Encode #3: crop "none" -> "center"'


def test_replaced_upstream_node_is_named():
    prompt, _ = load("unclip_recall.json")
    before = sig(prompt, "4")
    prompt["1"]["class_type"] = "LoadImageFromUrl"
    assert "replaced a LoadImage" in signature.explain_signature_miss(sig(prompt, "4"), [before.label()])


# -- file digest memo ---------------------------------------------------------------------
def test_file_digest_is_hashed_once_per_file_version(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"x" * 100)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    digests = file_digest_mod.FileDigests(clock=lambda: 10_000.0)
    first = digests.digest(path)
    assert digests.digest(path) == first and digests.hashed == 1
    path.write_bytes(b"y" * 101)
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    assert digests.digest(path) != first and digests.hashed == 2


def test_file_digest_memo_survives_a_restart(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"x" * 100)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    memo = tmp_path / "memo" / "file_digests.json"
    first = file_digest_mod.FileDigests(memo, clock=lambda: 10_000.0)
    digest = first.digest(path)
    again = file_digest_mod.FileDigests(memo, clock=lambda: 10_000.0)
    assert again.digest(path) == digest and again.hashed == 0


def test_file_written_moments_ago_is_not_memoised(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"x" * 100)
    now = os.stat(path).st_mtime_ns / 1e9
    digests = file_digest_mod.FileDigests(clock=lambda: now + 0.5)
    digests.digest(path)
    digests.digest(path)
    assert digests.hashed == 2
