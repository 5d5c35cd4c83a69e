"""match: near in real ComfyUI: a near-identical image reuses a verified entry, bit for bit; nothing else does.

A PNG-like image and its JPEG q95 round trip (the re-save users make) through Recall's VAE
Encode, CLIP Vision Encode and the Recall VAE wrapper with core's VAE Encode. Exact (the
default) behaves as before; near hits only within the same shape, encoder and parameters,
and only after the thumbnails agree to the tolerance.
"""
import pytest
import torch

from support.near_images import brighter, jpeg_round_trip, one_pixel_edit, photo
from test_encode_fixtures import (assert_trees_equal, clip_vision, inference_mode, no_model_loads,  # noqa: F401
                                  recall, run, sd_vae, spy_encoder)

SIZE = (128, 128)   # thumbnails are 64 px: a 2x reduction, where JPEG q95 keeps ~43 dB (40 dB preset)
NEAR_40 = "near: PSNR ≥ 40 dB"


@pytest.fixture
def near(recall):
    """The recall fixture (its own runtime, so a fresh near index) with match: near at 40 dB."""
    recall.config = recall.config.replace({"match": "near", "near_psnr_db": 40})
    return recall


@pytest.fixture
def exact(recall):
    return recall


def core_vae_encode(vae, pixels):
    import nodes
    return nodes.VAEEncode().encode(vae, pixels)[0]


def encode(pixels, vae, **extra):
    from recall_pack.nodes.encode_nodes import RecallVAEEncode
    return run(RecallVAEEncode, "7", pixels=pixels, vae=vae, **extra)[0]


def test_jpeg_copy_misses_under_exact(exact, sd_vae):
    png = photo(1, SIZE)
    encode(png, sd_vae)
    out = encode(jpeg_round_trip(png), sd_vae)
    assert exact.last()["status"] == "miss" and exact.last()["near_db"] is None
    assert_trees_equal(out, core_vae_encode(sd_vae, jpeg_round_trip(png)))


def test_jpeg_copy_hits_under_near_with_the_cached_latent_bit_for_bit(near, sd_vae, spy_encoder, no_model_loads):
    png = photo(2, SIZE)
    expected = core_vae_encode(sd_vae, png)
    first = encode(png, sd_vae)
    assert near.last()["status"] == "miss"
    calls = spy_encoder(sd_vae.first_stage_model, "encode")
    no_model_loads()
    out = encode(jpeg_round_trip(png), sd_vae)
    report = near.last()
    assert report["status"] == "hit" and report["near_db"] >= 40 and report["tier"] == "ram"
    assert calls == []
    assert_trees_equal(out, first)
    assert_trees_equal(out, expected)
    from recall_pack.nodes import runtime
    assert runtime.current().near_stats()["hits"] == 1


def test_same_hash_impostor_never_hits(near, sd_vae):
    from recall_pack.cache.perceptual import dhash
    img = photo(3, SIZE)
    impostor = brighter(img)
    assert dhash(img) == dhash(impostor)
    encode(img, sd_vae)
    out = encode(impostor, sd_vae)
    assert near.last()["status"] == "miss"
    assert_trees_equal(out, core_vae_encode(sd_vae, impostor))


def test_one_pixel_edit_misses_under_exact(near, sd_vae):
    img = photo(4, SIZE)
    encode(img, sd_vae)
    edited = one_pixel_edit(img)
    out = encode(edited, sd_vae, match="exact")
    assert near.last()["status"] == "miss"
    assert_trees_equal(out, core_vae_encode(sd_vae, edited))


def test_one_pixel_edit_hits_under_near(near, sd_vae):
    img = photo(4, SIZE)
    first = encode(img, sd_vae)
    out = encode(one_pixel_edit(img), sd_vae)
    assert near.last()["status"] == "hit" and near.last()["near_db"] >= 40
    assert_trees_equal(out, first)


def test_the_same_pixels_are_an_exact_hit_said_as_exact(near, sd_vae):
    img = photo(12, SIZE)
    encode(img, sd_vae)
    encode(img.clone(), sd_vae)
    assert near.last()["status"] == "hit" and near.last()["near_db"] is None


@pytest.mark.parametrize("change", ["resolution", "crop"])
def test_resolution_or_crop_change_misses(near, sd_vae, change):
    img = photo(5, (128, 160))
    encode(img, sd_vae)
    other = (torch.nn.functional.interpolate(img.movedim(-1, 1), size=(120, 152), mode="area").movedim(1, -1)
             if change == "resolution" else img[:, 8:, 8:, :].contiguous())
    out = encode(other, sd_vae)
    assert near.last()["status"] == "miss"
    assert_trees_equal(out, core_vae_encode(sd_vae, other))


def test_other_vae_misses(near, sd_vae):
    import comfy.sd
    state = {k: v.clone() for k, v in sd_vae.first_stage_model.state_dict().items()}
    state["encoder.conv_in.bias"] += 0.01
    other = comfy.sd.VAE(sd=state)
    png = photo(6, SIZE)
    encode(png, sd_vae)
    out = encode(jpeg_round_trip(png), other)
    assert near.last()["status"] == "miss"
    assert_trees_equal(out, core_vae_encode(other, jpeg_round_trip(png)))


def test_tiled_tile_size_change_misses(near, sd_vae):
    from recall_pack.nodes.encode_nodes import RecallVAEEncodeTiled
    png = photo(7, SIZE)
    run(RecallVAEEncodeTiled, "8", pixels=png, vae=sd_vae, tile_size=64, overlap=0)
    run(RecallVAEEncodeTiled, "8", pixels=jpeg_round_trip(png), vae=sd_vae, tile_size=128, overlap=0)
    assert near.last()["status"] == "miss"
    run(RecallVAEEncodeTiled, "8", pixels=jpeg_round_trip(png), vae=sd_vae, tile_size=64, overlap=0)
    assert near.last()["status"] == "hit" and near.last()["near_db"] is not None


def test_clip_vision_crop_change_misses_and_same_crop_hits(near, clip_vision):
    from recall_pack.nodes.encode_nodes import RecallCLIPVisionEncode
    png = photo(8, SIZE)
    first = run(RecallCLIPVisionEncode, "9", clip_vision=clip_vision, image=png, crop="center")[0]
    run(RecallCLIPVisionEncode, "9", clip_vision=clip_vision, image=jpeg_round_trip(png), crop="none")
    assert near.last()["status"] == "miss"
    out = run(RecallCLIPVisionEncode, "9", clip_vision=clip_vision, image=jpeg_round_trip(png), crop="center")[0]
    assert near.last()["status"] == "hit" and near.last()["near_db"] is not None
    assert_trees_equal(out, first)


def test_wrapper_override_makes_core_vae_encode_near(exact, sd_vae):
    from recall_pack.nodes.wrap_nodes import RecallVAE
    png = photo(9, SIZE)
    plain = run(RecallVAE, "3", vae=sd_vae)[0]
    tolerant = run(RecallVAE, "4", vae=sd_vae, match=NEAR_40)[0]
    first = core_vae_encode(tolerant, png)
    core_vae_encode(plain, jpeg_round_trip(png))
    assert exact.last()["status"] == "miss"   # the plain wrapper still follows the config: exact
    out = core_vae_encode(tolerant, one_pixel_edit(png))  # not the JPEG: the plain run stored it exactly
    assert exact.last()["status"] == "hit" and exact.last()["near_db"] >= 40
    assert_trees_equal(out, first)


def test_node_exact_overrides_a_near_config(near, sd_vae):
    png = photo(10, SIZE)
    encode(png, sd_vae)
    encode(jpeg_round_trip(png), sd_vae, match="exact")
    assert near.last()["status"] == "miss"


def test_corrupted_thumbnail_is_a_miss(near, sd_vae):
    from recall_pack.cache.near import thumb_key
    png = photo(11, SIZE)
    encode(png, sd_vae)
    key = near.reports[-1][1]["key"]
    full = next(k for k in near.store.tier("ram").keys("shared") if k.startswith(key))
    for tier in near.store.tiers:
        entry = tier.get("shared", thumb_key(full))
        damaged = dict(entry.value, thumb=entry.value["thumb"].clone() * 0.5)
        tier.put("shared", thumb_key(full), damaged, meta=entry.meta)
    out = encode(jpeg_round_trip(png), sd_vae)
    assert near.last()["status"] == "miss"
    assert_trees_equal(out, core_vae_encode(sd_vae, jpeg_round_trip(png)))
