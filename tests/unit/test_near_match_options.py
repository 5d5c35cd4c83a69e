"""The `match` choice of a node or wrapper, and who decides (node > wrapper > config), without ComfyUI."""
import types

import pytest
import torch

from recall_pack.cache.config import CacheConfig
from recall_pack.nodes import near_match
from support.recall_runtime import use_runtime


@pytest.fixture
def config():
    holder = types.SimpleNamespace(config=CacheConfig())
    from recall_pack.nodes import runtime

    class HolderRuntime(runtime.Runtime):
        config = property(lambda self: holder.config)

    with use_runtime(HolderRuntime()):
        yield holder


class Encoder:
    def encode(self, pixel_samples):
        return pixel_samples


def test_options_parse_to_mode_and_tolerance():
    assert near_match.parse("default") is None and near_match.parse(None) is None
    assert near_match.parse("exact") == ("exact", 0.0)
    assert near_match.parse("near: PSNR ≥ 45 dB") == ("near", 45.0)


def test_an_unknown_option_names_the_choices():
    with pytest.raises(ValueError, match=r"\[Recall\] match: 'fuzzy' is not a choice .*exact"):
        near_match.parse("fuzzy")


def test_the_config_decides_when_nobody_else_does(config):
    assert near_match.resolve(None, Encoder()) == ("exact", 45.0)
    config.config = config.config.replace({"match": "near", "near_psnr_db": 50})
    assert near_match.resolve("default", Encoder()) == ("near", 50.0)


def test_a_wrapper_choice_beats_the_config_and_a_node_choice_beats_both(config):
    wrapped = near_match.with_match(Encoder(), "near: PSNR ≥ 40 dB")
    assert near_match.resolve(None, wrapped) == ("near", 40.0)
    assert near_match.resolve("exact", wrapped) == ("exact", 0.0)


def test_a_wrapper_choice_is_a_new_object_over_the_same_state(config):
    base = Encoder()
    base.weights = 1
    tolerant = near_match.with_match(base, "near: PSNR ≥ 40 dB")
    assert tolerant is not base and tolerant.__dict__ is base.__dict__
    assert near_match.resolve(None, base) == ("exact", 45.0)  # the upstream object is unchanged
    assert near_match.with_match(base, "default") is base


def test_exact_mode_makes_no_near_query(config):
    pixels = torch.rand(1, 32, 32, 3)
    from recall_pack.cache.keys import content_key
    q = near_match.query("vae_encode", Encoder(), Encoder.encode, (pixels,), {}, {}, [content_key(pixels)], "vae", {},
                         "shared")
    assert q is None


def test_near_mode_groups_by_everything_but_the_pixels(config):
    from recall_pack.cache.keys import content_key
    config.config = config.config.replace({"match": "near"})
    a, b = torch.rand(1, 32, 32, 3), torch.rand(1, 32, 32, 3)
    qa = near_match.query("vae_encode", Encoder(), Encoder.encode, (a,), {}, {}, [content_key(a)], "vae", {}, "shared")
    qb = near_match.query("vae_encode", Encoder(), Encoder.encode, (b,), {}, {}, [content_key(b)], "vae", {}, "shared")
    other = near_match.query("vae_encode", Encoder(), Encoder.encode, (b,), {}, {}, [content_key(b)], "vae2", {},
                             "shared")
    wider = torch.rand(1, 32, 40, 3)
    qw = near_match.query("vae_encode", Encoder(), Encoder.encode, (wider,), {}, {}, [content_key(wider)], "vae", {},
                          "shared")
    assert qa.group == qb.group and qa.key != qb.key
    assert other.group != qa.group and qw.group != qa.group


def test_text_is_never_near_matched(config):
    config.config = config.config.replace({"match": "near"})
    assert near_match.query("text", Encoder(), Encoder.encode, (torch.rand(1, 3, 3, 3),), {}, {}, [], "clip", {},
                            "shared") is None
