"""The larger encoders through wrapped encoders: CLIP ViT-H/14 vision (632M parameters, as
Wan 2.1 image-to-video and IP-Adapter use it) and the HunyuanVideo causal 3D VAE (16 channels,
4x time and 8x space compression), each loaded by the core loader from a random-weight file in
the real layout (built on first use by this file only: see bench/harness/make_models.py).

Core nodes run with the wrapped encoder against the same node with the plain one: the whole
output equal bit for bit on a miss and on a hit, the hit running no encoder; an input that
changes the pixels the encoder is given misses, one that does not hits.
"""
import pytest

from recall_pack.bench.harness import comfy_env
from test_encode_fixtures import assert_trees_equal, image, inference_mode, recall, spy_encoder  # noqa: F401
from test_wrapped_encoders import cond, core, statuses


def _load(comfyui, name: str, kind: str):
    import folder_paths
    import nodes
    path = comfy_env.ensure_models(comfyui, [name])[name]
    folder_paths.add_model_folder_path(path.parent.name, str(path.parent))
    if kind == "vae":
        return nodes.VAELoader().load_vae(path.name)[0]
    return nodes.CLIPVisionLoader().load_clip(path.name)[0]


@pytest.fixture(scope="module")
def vit_h(comfyui):
    model = _load(comfyui, "clip_vision_h", "clip_vision")
    # What ComfyUI read from the file: ViT-H/14's 32 layers of width 1280, 1024-d projection.
    assert len(model.model.vision_model.encoder.layers) == 32
    assert model.model.visual_projection.weight.shape == (1024, 1280)
    return model


@pytest.fixture(scope="module")
def hunyuan_vae(comfyui):
    import comfy.ldm.models.autoencoder
    vae = _load(comfyui, "hunyuan_video_vae", "vae")
    assert isinstance(vae.first_stage_model, comfy.ldm.models.autoencoder.AutoencoderKL)
    assert (vae.latent_channels, vae.latent_dim, vae.downscale_index_formula) == (16, 3, (4, 8, 8))
    return vae


@pytest.fixture(scope="module")
def plain_vit_h(vit_h):
    """CLIPVisionEncode on the plain ViT-H, memoised per image: each encode takes ~30 s on this CPU."""
    done = {}

    def encode(seed: int, crop: str = "center"):
        if (seed, crop) not in done:
            done[seed, crop] = core("CLIPVisionEncode", clip_vision=vit_h, image=image(seed), crop=crop)
        return done[seed, crop]
    return encode


def test_clip_vision_encode_vit_h_equals_plain_on_miss_and_hit(recall, vit_h, plain_vit_h, spy_encoder):
    from recall_pack.nodes.encoder_wrap import wrap
    expected = plain_vit_h(50)
    assert expected[0]["penultimate_hidden_states"].shape == (1, 257, 1280)
    assert_trees_equal(core("CLIPVisionEncode", clip_vision=wrap(vit_h), image=image(50), crop="center"), expected)
    assert statuses(recall, 0) == {"miss"}
    seen, calls = len(recall.reports), spy_encoder(vit_h.model, "forward")
    assert_trees_equal(core("CLIPVisionEncode", clip_vision=wrap(vit_h), image=image(50), crop="center"), expected)
    assert statuses(recall, seen) == {"hit"} and calls == []


def test_clip_vision_encode_vit_h_changed_image_misses(recall, vit_h, plain_vit_h):
    from recall_pack.nodes.encoder_wrap import wrap
    core("CLIPVisionEncode", clip_vision=wrap(vit_h), image=image(50), crop="center")
    seen = len(recall.reports)
    changed = image(50).clone()
    changed[0, 10, 20, 1] += 0.25  # one pixel of one channel
    out = core("CLIPVisionEncode", clip_vision=wrap(vit_h), image=changed, crop="center")
    assert statuses(recall, seen) == {"miss"}
    assert_trees_equal(out, core("CLIPVisionEncode", clip_vision=vit_h, image=changed, crop="center"))


# 32x32 frames (a 4x4 latent): the 3D VAE's cost on this CPU grows with frames x pixels.
# node -> (its inputs besides the VAE, {name: changes that keep the encoded pixels},
#          {name: changes that change them})
_VIDEO = {
    "VAEEncode": (lambda: dict(pixels=image(60, size=32, frames=5)), {},
                  {"frame": lambda: dict(pixels=_one_frame_changed(image(60, size=32, frames=5), 3)),
                   "length": lambda: dict(pixels=image(60, size=32, frames=9))}),
    "VAEEncodeTiled": (lambda: dict(pixels=image(61, size=32, frames=9), tile_size=64, overlap=8, temporal_size=64,
                                    temporal_overlap=8),
                       {}, {"temporal_size": lambda: dict(temporal_size=8, temporal_overlap=4)}),
    "HunyuanImageToVideo": (lambda: dict(positive=cond(1), width=32, height=32, length=5, batch_size=1,
                                         guidance_type="v1 (concat)", start_image=image(62, size=32, frames=5)),
                            {"guidance_type": lambda: dict(guidance_type="custom"),
                             "prompt": lambda: dict(positive=cond(2))},
                            {"length": lambda: dict(length=1),  # encodes start_image[:length]
                             "start_image": lambda: dict(start_image=image(63, size=32, frames=5))}),
}


def _one_frame_changed(frames, index: int):
    out = frames.clone()
    out[index] = 1.0 - out[index]
    return out


@pytest.mark.parametrize("node", sorted(_VIDEO))
def test_video_vae_node_equals_plain_on_miss_and_hit(recall, hunyuan_vae, spy_encoder, node):
    from recall_pack.nodes.encoder_wrap import wrap
    inputs = _VIDEO[node][0]()
    expected = core(node, vae=hunyuan_vae, **inputs)
    assert_trees_equal(core(node, vae=wrap(hunyuan_vae), **inputs), expected)
    assert "miss" in statuses(recall, 0)
    seen, calls = len(recall.reports), spy_encoder(hunyuan_vae.first_stage_model, "encode")
    assert_trees_equal(core(node, vae=wrap(hunyuan_vae), **inputs), expected)
    assert statuses(recall, seen) == {"hit"} and calls == []


_CHANGES = [(node, name, kind) for node, (_inputs, hits, misses) in sorted(_VIDEO.items())
            for kind, changes in (("hit", hits), ("miss", misses)) for name in changes]


@pytest.mark.parametrize("node,change,expect", _CHANGES, ids=[f"{n}-{c}-{k}" for n, c, k in _CHANGES])
def test_video_vae_node_change_hits_or_misses(recall, hunyuan_vae, spy_encoder, node, change, expect):
    from recall_pack.nodes.encoder_wrap import wrap
    make_inputs, hits, misses = _VIDEO[node]
    inputs = make_inputs()
    core(node, vae=wrap(hunyuan_vae), **inputs)
    changed = {**inputs, **(hits if expect == "hit" else misses)[change]()}
    seen, calls = len(recall.reports), spy_encoder(hunyuan_vae.first_stage_model, "encode")
    out = core(node, vae=wrap(hunyuan_vae), **changed)
    if expect == "hit":
        assert statuses(recall, seen) == {"hit"} and calls == []
    else:
        assert "miss" in statuses(recall, seen) and calls
    assert_trees_equal(out, core(node, vae=hunyuan_vae, **changed))
