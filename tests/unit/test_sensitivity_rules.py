"""Sensitivity rules as data: built-in rules load, user rules are checked and bad ones reported."""

import pytest

from recall_pack.nodes.lib import sensitivity_rules as rules


class FakeVideoNode:
    RETURN_TYPES = ("CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "latent")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "frames": ("INT", {})}, "optional": {"strength": ("FLOAT", {})},
                "hidden": {"unique_id": "UNIQUE_ID"}}


CLASSES = {"FakeVideo": FakeVideoNode}


def test_core_rules_load_and_name_their_outputs_by_index():
    core, files = rules.load_core()
    assert core and all(isinstance(r.output, int) for r in core)
    assert files["LoadImage"] == {"image": "input"}


def test_valid_user_rule_has_no_problems():
    assert rules.validate_rules([{"class": "FakeVideo", "output": "latent", "ignore": ["image"]}], CLASSES) == []


def test_unknown_class_is_reported():
    problems = rules.validate_rules([{"class": "FakeVidoe", "ignore": ["image"]}], CLASSES)
    assert len(problems) == 1 and "unknown node class 'FakeVidoe'" in problems[0]


def test_unknown_input_is_reported_with_the_known_ones():
    problems = rules.validate_rules([{"class": "FakeVideo", "ignore": ["frame_count"]}], CLASSES)
    assert len(problems) == 1
    assert "unknown input 'frame_count'" in problems[0] and "frames, image, strength" in problems[0]


@pytest.mark.parametrize("output,expected", [(5, "output 5 does not exist (expected 0..1)"),
                                             ("samples", "unknown output 'samples'")])
def test_unknown_output_is_reported(output, expected):
    problems = rules.validate_rules([{"class": "FakeVideo", "output": output, "ignore": ["image"]}], CLASSES)
    assert len(problems) == 1 and expected in problems[0]


@pytest.mark.parametrize("raw,expected", [
    ({"ignore": ["image"]}, "has no 'class'"),
    ({"class": "FakeVideo", "ignroe": ["image"]}, "unknown key 'ignroe'"),
    ({"class": "FakeVideo", "ignore": [1]}, "must be a list of input names"),
    ({"class": "FakeVideo"}, "ignores nothing"),
    ("FakeVideo", "must be a mapping"),
])
def test_malformed_rule_is_reported(raw, expected):
    problems = rules.validate_rules([raw], CLASSES)
    assert len(problems) == 1 and expected in problems[0]


def test_build_ruleset_drops_bad_rules_and_resolves_output_names():
    ruleset, problems = rules.build_ruleset(
        [{"class": "FakeVideo", "output": "latent", "ignore": ["image", "strength"]},
         {"class": "FakeVideo", "ignore": ["nope"]}], CLASSES)
    assert len(problems) == 1 and "'nope'" in problems[0]
    assert ruleset.ignored("FakeVideo", 1) == {"image", "strength"}
    assert ruleset.ignored("FakeVideo", 0) == frozenset()


def test_rule_without_output_covers_every_output_and_rules_add_up():
    ruleset, problems = rules.build_ruleset(
        [{"class": "FakeVideo", "ignore": ["strength"]}, {"class": "FakeVideo", "output": 1, "ignore": ["image"]}],
        CLASSES)
    assert problems == []
    assert ruleset.ignored("FakeVideo", 0) == {"strength"}
    assert ruleset.ignored("FakeVideo", 1) == {"strength", "image"}


def test_builtin_svd_rules_keep_what_each_output_reads():
    ruleset, _ = rules.build_ruleset()
    positive, latent = ruleset.ignored("SVD_img2vid_Conditioning", 0), ruleset.ignored("SVD_img2vid_Conditioning", 2)
    assert positive == {"video_frames"}
    assert {"init_image", "clip_vision", "vae", "fps", "motion_bucket_id"} <= latent
    assert not latent & {"video_frames", "width", "height"}
    assert ruleset.random_inputs("SVD_img2vid_Conditioning", 0) == {"augmentation_level"}
