"""A wrapped encoder is the loaded encoder for every purpose but its encode calls: attributes, methods,
isinstance, clone(), LoRA patching; another pack's node that calls vae.encode itself is cached; the
badge and log name the node that made the call; autowrap and the wrappers look a call up once.
"""
import sys
import types

import pytest
import torch

from test_encode_fixtures import (assert_trees_equal, clip, clip_vision, image, inference_mode,  # noqa: F401
                                  no_model_loads, recall, sd_vae, spy_encoder, wan_vae)
from test_encode_nodes import _clip_lora


def wrap(encoder):
    from recall_pack.nodes.encoder_wrap import wrap as _wrap
    return _wrap(encoder)


@pytest.mark.parametrize("name", ["sd_vae", "wan_vae", "clip_vision", "clip"])
def test_wrapped_encoder_shares_every_attribute_and_passes_isinstance(request, name):
    plain = request.getfixturevalue(name)
    wrapped = wrap(plain)
    assert isinstance(wrapped, type(plain)) and wrapped is not plain
    assert vars(wrapped) is vars(plain)  # the same attribute dictionary, not a copy
    for attr, value in vars(plain).items():
        assert getattr(wrapped, attr) is value, attr
    assert wrap(wrapped) is wrapped


@pytest.mark.parametrize("name", ["sd_vae", "wan_vae"])
def test_wrapped_vae_methods_answer_like_the_plain_vae(request, name):
    vae = request.getfixturevalue(name)
    wrapped = wrap(vae)
    assert wrapped.latent_channels == vae.latent_channels
    assert wrapped.spacial_compression_encode() == vae.spacial_compression_encode()
    assert wrapped.spacial_compression_decode() == vae.spacial_compression_decode()
    assert wrapped.temporal_compression_decode() == vae.temporal_compression_decode()
    shape = (1, 3, 5, 64, 64) if vae.latent_dim == 3 else (1, 3, 64, 64)
    assert wrapped.memory_used_encode(shape, torch.float32) == vae.memory_used_encode(shape, torch.float32)
    assert wrapped.patcher is vae.patcher and wrapped.first_stage_model is vae.first_stage_model
    assert wrapped.get_sd().keys() == vae.get_sd().keys()


def test_wrapped_vae_decodes_like_the_plain_vae(recall, sd_vae):
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    assert_trees_equal(wrap(sd_vae).decode(latent), sd_vae.decode(latent))
    assert recall.reports == []  # decoding is not cached, and says nothing


def test_wrapped_vae_encode_tiled_is_cached_and_equals_plain(recall, sd_vae, spy_encoder):
    pixels = image(60)
    expected = sd_vae.encode_tiled(pixels, tile_x=64, tile_y=64, overlap=8)
    assert_trees_equal(wrap(sd_vae).encode_tiled(pixels, tile_x=64, tile_y=64, overlap=8), expected)
    calls = spy_encoder(sd_vae.first_stage_model, "encode")
    assert_trees_equal(wrap(sd_vae).encode_tiled(pixels, 64, 64, 8), expected)  # positional: the same call
    assert calls == [] and recall.last()["status"] == "hit"


def test_another_packs_node_calling_vae_encode_is_cached(recall, sd_vae, spy_encoder, no_model_loads):
    from comfy_api.latest import io

    class PackEncode(io.ComfyNode):  # written as another pack writes a node: it calls vae.encode itself
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="TestPackEncode", inputs=[io.Image.Input("pixels"), io.Vae.Input("vae")],
                             outputs=[io.Latent.Output()])

        @classmethod
        def execute(cls, pixels, vae):
            return io.NodeOutput({"samples": vae.encode(pixels[:, :, :, :3] * 0.5 + 0.25)})

    pixels = image(61)
    expected = PackEncode.execute(pixels, sd_vae).args
    assert_trees_equal(PackEncode.execute(pixels, wrap(sd_vae)).args, expected)
    assert recall.last()["status"] == "miss"
    calls = spy_encoder(sd_vae.first_stage_model, "encode")
    no_model_loads()
    assert_trees_equal(PackEncode.execute(pixels, wrap(sd_vae)).args, expected)
    assert calls == [] and recall.last()["status"] == "hit"


def test_plain_encoder_is_never_cached(recall, sd_vae):
    sd_vae.encode(image(62))
    assert recall.reports == [] and all(tier.keys("shared") == [] for tier in recall.store.tiers)


def test_clone_of_a_wrapped_clip_is_wrapped_and_independent(clip):
    from recall_pack.nodes.encoder_wrap import is_wrapped
    wrapped = wrap(clip)
    clone = wrapped.clone()
    assert is_wrapped(clone) and clone is not wrapped and clone.patcher is not clip.patcher
    clone.clip_layer(-2)
    assert clip.layer_idx is None and wrapped.layer_idx is None


def text(clip, prompt):
    import nodes
    return nodes.CLIPTextEncode().encode(clip, prompt)[0]


def test_lora_loader_on_a_wrapped_clip_hands_on_a_wrapped_patched_clip(recall, clip, spy_encoder):
    import comfy.sd
    from recall_pack.nodes.encoder_wrap import is_wrapped
    prompt = "a castle at dusk"
    wrapped = wrap(clip)
    text(wrapped, prompt)
    _, patched = comfy.sd.load_lora_for_models(None, wrapped, _clip_lora(clip), 0.0, 1.0)  # what LoraLoader does
    assert is_wrapped(patched)
    out = text(patched, prompt)
    assert recall.last()["status"] == "miss" and recall.last()["reason"].startswith("encoder changed")
    plain_patched = comfy.sd.load_lora_for_models(None, clip, _clip_lora(clip), 0.0, 1.0)[1]
    assert_trees_equal(out, text(plain_patched, prompt))
    calls = spy_encoder(clip.cond_stage_model, "encode_token_weights")
    assert_trees_equal(text(patched, prompt), out)
    assert_trees_equal(text(wrapped, prompt), text(clip, prompt))  # the base CLIP still hits its own entry
    assert len(calls) == 1  # only the plain CLIP's reference encode ran


def test_clip_set_last_layer_on_a_wrapped_clip_misses_and_equals_core(recall, clip):
    import nodes
    wrapped = wrap(clip)
    text(wrapped, "a bridge")
    skipped = nodes.CLIPSetLastLayer().set_last_layer(wrapped, -2)[0]
    out = text(skipped, "a bridge")
    assert recall.last()["status"] == "miss"
    assert_trees_equal(out, text(nodes.CLIPSetLastLayer().set_last_layer(clip, -2)[0], "a bridge"))


def test_encode_from_tokens_variants_are_separate_entries_equal_to_plain(recall, clip):
    tokens = clip.tokenize("a lantern")
    wrapped = wrap(clip)
    for kwargs in ({}, {"return_pooled": True}, {"return_dict": True}):
        expected = clip.encode_from_tokens(tokens, **kwargs)
        assert_trees_equal(wrapped.encode_from_tokens(tokens, **kwargs), expected)
        assert recall.last()["status"] == "miss"
        assert_trees_equal(wrapped.encode_from_tokens(tokens, **kwargs), expected)
        assert recall.last()["status"] == "hit"


def test_badge_and_log_name_the_node_that_made_the_call(recall, sd_vae, monkeypatch, caplog):
    from comfy_execution.utils import CurrentNodeContext
    import nodes
    running = {i: (i, f"prompt-{i}", {"12": {"class_type": "InpaintModelConditioning", "inputs": {}}}, {}, ["12"])
               for i in (1, 2)}
    server = types.ModuleType("server")
    queue = types.SimpleNamespace(currently_running=running)
    server.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(prompt_queue=queue, client_id=None))
    monkeypatch.setitem(sys.modules, "server", server)
    inputs = dict(positive=[[torch.zeros(1, 2, 8), {}]], negative=[[torch.zeros(1, 2, 8), {}]],
                  pixels=image(63), vae=wrap(sd_vae), mask=torch.zeros(1, 64, 64))
    with caplog.at_level("INFO", logger="recall"):
        with CurrentNodeContext("prompt-1", "12"):
            nodes.InpaintModelConditioning().encode(**inputs)
        first = recall.last()
        with CurrentNodeContext("prompt-2", "12"):  # the next prompt: the same two encodes
            nodes.InpaintModelConditioning().encode(**inputs)
    assert (first["node_type"], first["node_id"], first["status"]) == ("InpaintModelConditioning", "12", "miss")
    last = recall.last()
    assert (last["node_type"], last["node_id"], last["status"], last["tier"]) == \
        ("InpaintModelConditioning", "12", "hit", "ram")
    assert last["saved_s"] > 0  # both calls of the node's run are summed up in its badge
    assert any(r.getMessage().startswith("[Recall] InpaintModelConditioning #12: hit in ram") for r in caplog.records)


def test_autowrap_and_a_wrapped_vae_look_a_call_up_once(recall, sd_vae, spy_encoder):
    from recall_pack.nodes import autowrap
    autowrap.enable()
    try:
        pixels = image(64)
        wrap(sd_vae).encode(pixels)
        assert len(recall.reports) == 1 and recall.last()["status"] == "miss"
        calls = spy_encoder(sd_vae.first_stage_model, "encode")
        sd_vae.encode(pixels)  # plain VAE under autowrap: the same key as the wrapped call
        assert calls == [] and recall.last()["status"] == "hit"
    finally:
        autowrap.disable()


@pytest.mark.parametrize("node_id,fixture,inputs", [("RecallVAE", "sd_vae", ["vae", "match"]),
                                                    ("RecallCLIPVision", "clip_vision", ["clip_vision", "match"]),
                                                    ("RecallCLIP", "clip", ["clip"])])  # text is always exact
def test_wrapper_nodes_hand_on_the_encoder_wrapped(request, node_id, fixture, inputs):
    from recall_pack.nodes import wrap_nodes
    from recall_pack.nodes.encoder_wrap import is_wrapped
    node = {n.GET_SCHEMA().node_id: n for n in wrap_nodes.NODES}[node_id]
    schema = node.GET_SCHEMA()
    assert schema.category == "Recall/encode" and schema.display_name.startswith("Recall ")
    assert [i.id for i in schema.inputs] == inputs and "right after the loader" in schema.inputs[0].tooltip
    assert schema.outputs[0].get_io_type() == schema.inputs[0].get_io_type()
    plain = request.getfixturevalue(fixture)
    (out,) = node.execute(plain).args
    assert is_wrapped(out) and vars(out) is vars(plain)


def test_wrapping_something_that_is_not_an_encoder_says_what_to_connect():
    with pytest.raises(ValueError, match=r"\[Recall\] wrap: cannot wrap .*expected a comfy.sd.VAE"):
        wrap(torch.nn.Linear(2, 2))


def test_svd_drop_in_leaves_the_callers_rng_state_alone(recall, clip_vision, sd_vae):
    from recall_pack.nodes.video_encode_nodes import RecallSVDImg2VidConditioning
    from test_encode_fixtures import run
    torch.manual_seed(123)
    before = torch.get_rng_state()
    run(RecallSVDImg2VidConditioning, clip_vision=clip_vision, init_image=image(65, size=48), vae=sd_vae, width=48,
        height=48, video_frames=4, motion_bucket_id=127, fps=6, augmentation_level=0.2, seed=5)
    assert torch.equal(torch.get_rng_state(), before)


def test_call_key_takes_tokens_by_digest_and_options_by_value(clip):
    from recall_pack.nodes.encoder_calls import describe
    wrapped = wrap(clip)
    method = type(wrapped).recall_base.encode_from_tokens   # the CLIP class's own method
    tokens = clip.tokenize("a lantern")
    contents, params, tensors = describe(method, wrapped, (tokens,), {"return_pooled": True})
    assert len(contents) == 1 and len(contents[0]) == 40 and tensors == []  # a digest.digest hex
    assert params == {"return_pooled": True, "return_dict": False}
    other, _, _ = describe(method, wrapped, (clip.tokenize("a lamp"),), {"return_pooled": True})
    assert other != contents
