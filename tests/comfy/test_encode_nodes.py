"""Recall's cached encode nodes against ComfyUI's core nodes, in-process, random-weight models.

Every node: the output on a miss and on a hit equals the core node's output bit for bit
(same dtype and device), and a hit neither runs nor loads the encoder.
"""
import pytest
import torch

from test_encode_fixtures import (assert_trees_equal, clip, clip_vision, image, inference_mode,  # noqa: F401
                                  no_model_loads, recall, run, sd_vae, spy_encoder, wan_vae)


def core_vae_encode(vae, pixels):
    import nodes
    return nodes.VAEEncode().encode(vae, pixels)[0]


def recall_vae_encode(pixels, vae, node_id="7"):
    from recall_pack.nodes.encode_nodes import RecallVAEEncode
    return run(RecallVAEEncode, node_id, pixels=pixels, vae=vae)[0]


# --- VAE Encode ---------------------------------------------------------------------------

def test_vae_encode_miss_and_hit_equal_core(recall, sd_vae):
    pixels = image(1)
    expected = core_vae_encode(sd_vae, pixels)
    miss = recall_vae_encode(pixels, sd_vae)
    assert recall.last()["status"] == "miss"
    hit = recall_vae_encode(pixels, sd_vae)
    assert recall.last()["status"] == "hit" and recall.last()["tier"] == "ram"
    assert_trees_equal(miss, expected)
    assert_trees_equal(hit, expected)


def test_vae_encode_hit_neither_runs_nor_loads_the_vae(recall, sd_vae, spy_encoder, no_model_loads):
    pixels = image(2)
    calls = spy_encoder(sd_vae.first_stage_model, "encode")
    recall_vae_encode(pixels, sd_vae)
    no_model_loads()
    recall_vae_encode(pixels, sd_vae)
    assert calls == [1]


def test_vae_encode_same_pixels_under_another_tensor_hit(recall, sd_vae):
    pixels = image(3)
    recall_vae_encode(pixels, sd_vae)
    recall_vae_encode(pixels.clone(), sd_vae)
    assert recall.last()["status"] == "hit"


def test_vae_encode_one_pixel_changed_misses(recall, sd_vae):
    pixels = image(4)
    recall_vae_encode(pixels, sd_vae)
    edited = pixels.clone()
    edited[0, 10, 20, 1] += 1 / 255
    out = recall_vae_encode(edited, sd_vae)
    assert recall.last()["status"] == "miss" and recall.last()["reason"] == "image changed"
    assert_trees_equal(out, core_vae_encode(sd_vae, edited))


def test_vae_encode_resolution_changed_misses(recall, sd_vae):
    recall_vae_encode(image(5, size=64), sd_vae)
    recall_vae_encode(image(5, size=64, width=72), sd_vae)
    assert recall.last()["status"] == "miss"


def test_vae_encode_alpha_channel_is_ignored_like_core(recall, sd_vae):
    rgb = image(6)
    rgba = torch.cat([rgb, torch.rand(1, 64, 64, 1)], dim=-1)
    recall_vae_encode(rgb, sd_vae)
    out = recall_vae_encode(rgba, sd_vae)
    assert recall.last()["status"] == "hit"
    assert_trees_equal(out, core_vae_encode(sd_vae, rgba))


def test_vae_encode_other_vae_file_misses(recall, sd_vae):
    import comfy.sd
    state = {k: v.clone() for k, v in sd_vae.first_stage_model.state_dict().items()}
    state["encoder.conv_in.bias"] += 0.01  # "another file": same architecture, other weights
    other = comfy.sd.VAE(sd=state)
    pixels = image(7)
    recall_vae_encode(pixels, sd_vae)
    out = recall_vae_encode(pixels, other)
    assert recall.last()["status"] == "miss" and recall.last()["reason"].startswith("encoder changed")
    assert_trees_equal(out, core_vae_encode(other, pixels))


def test_vae_encode_rerun_batch_hits_as_a_whole(recall, sd_vae, spy_encoder):
    frames = image(8, frames=3)
    expected = core_vae_encode(sd_vae, frames)
    recall_vae_encode(frames, sd_vae)
    calls = spy_encoder(sd_vae.first_stage_model, "encode")
    assert_trees_equal(recall_vae_encode(frames.clone(), sd_vae), expected)
    assert calls == [] and recall.last()["status"] == "hit"


def test_vae_encode_batch_with_one_frame_changed_misses_and_equals_core(recall, sd_vae):
    # One entry per batch: reusing frames from another batch would differ from core by
    # ~1e-6 (batched convolutions are not batch-invariant), so the whole batch re-encodes.
    frames = image(8, frames=3)
    recall_vae_encode(frames, sd_vae)
    rerun = torch.cat([frames[0:1], image(9), frames[2:3]])
    out = recall_vae_encode(rerun, sd_vae)
    assert recall.last()["status"] == "miss"
    assert_trees_equal(out, core_vae_encode(sd_vae, rerun))


def test_vae_encode_video_vae_keys_the_clip_as_a_whole(recall, wan_vae, spy_encoder):
    clip = image(10, size=32, frames=5)
    expected = core_vae_encode(wan_vae, clip)
    assert_trees_equal(recall_vae_encode(clip, wan_vae), expected)
    calls = spy_encoder(wan_vae.first_stage_model, "encode")
    assert_trees_equal(recall_vae_encode(clip, wan_vae), expected)
    assert calls == [] and recall.last()["status"] == "hit"


def test_vae_encode_downstream_in_place_edit_does_not_corrupt_the_cache(recall, sd_vae):
    pixels = image(11)
    expected = core_vae_encode(sd_vae, pixels)
    recall_vae_encode(pixels, sd_vae)["samples"].mul_(0)
    recall_vae_encode(pixels, sd_vae)["samples"].add_(7)
    assert_trees_equal(recall_vae_encode(pixels, sd_vae), expected)


# --- VAE Encode (Tiled) ----------------------------------------------------------------------

def tiled(pixels, vae, tile_size=64, overlap=0, temporal_size=64, temporal_overlap=8):
    from recall_pack.nodes.encode_nodes import RecallVAEEncodeTiled
    return run(RecallVAEEncodeTiled, pixels=pixels, vae=vae, tile_size=tile_size, overlap=overlap,
               temporal_size=temporal_size, temporal_overlap=temporal_overlap)[0]


def core_tiled(pixels, vae, tile_size=64, overlap=0, temporal_size=64, temporal_overlap=8):
    import nodes
    return nodes.VAEEncodeTiled().encode(vae, pixels, tile_size, overlap, temporal_size, temporal_overlap)[0]


def test_vae_encode_tiled_miss_and_hit_equal_core(recall, sd_vae, spy_encoder):
    pixels = image(12, size=96)
    expected = core_tiled(pixels, sd_vae)
    assert_trees_equal(tiled(pixels, sd_vae), expected)
    calls = spy_encoder(sd_vae.first_stage_model, "encode")
    assert_trees_equal(tiled(pixels, sd_vae), expected)
    assert calls == [] and recall.last()["status"] == "hit"


def test_vae_encode_tiled_tile_size_changed_misses(recall, sd_vae):
    pixels = image(13, size=96)
    tiled(pixels, sd_vae, tile_size=64)
    out = tiled(pixels, sd_vae, tile_size=128)
    assert recall.last()["status"] == "miss" and "tile_x" in recall.last()["reason"]
    assert_trees_equal(out, core_tiled(pixels, sd_vae, tile_size=128))


def test_vae_encode_tiled_temporal_settings_do_not_matter_for_an_image_vae(recall, sd_vae):
    pixels = image(14, size=96)
    tiled(pixels, sd_vae, temporal_size=64)
    tiled(pixels, sd_vae, temporal_size=32)
    assert recall.last()["status"] == "hit"


def test_vae_encode_and_tiled_are_different_entries(recall, sd_vae):
    pixels = image(15, size=96)
    recall_vae_encode(pixels, sd_vae)
    tiled(pixels, sd_vae)
    assert recall.last()["status"] == "miss"


# --- CLIP Vision Encode -----------------------------------------------------------------------

def vision(clip_vision, pixels, crop="center"):
    from recall_pack.nodes.encode_nodes import RecallCLIPVisionEncode
    return run(RecallCLIPVisionEncode, clip_vision=clip_vision, image=pixels, crop=crop)[0]


def core_vision(clip_vision, pixels, crop="center"):
    import nodes
    return nodes.CLIPVisionEncode().encode(clip_vision, pixels, crop)[0]


def test_clip_vision_miss_and_hit_equal_core(recall, clip_vision, spy_encoder, no_model_loads):
    pixels = image(20, size=48, width=64)
    expected = core_vision(clip_vision, pixels)
    assert_trees_equal(vision(clip_vision, pixels), expected)
    calls = spy_encoder(clip_vision.model, "forward")
    no_model_loads()
    hit = vision(clip_vision, pixels)
    assert calls == [] and recall.last()["status"] == "hit"
    assert_trees_equal(hit, expected)


def test_clip_vision_crop_changed_misses(recall, clip_vision):
    pixels = image(21, size=48, width=64)
    vision(clip_vision, pixels, "center")
    out = vision(clip_vision, pixels, "none")
    assert recall.last()["status"] == "miss" and recall.last()["reason"] == "crop changed"
    assert_trees_equal(out, core_vision(clip_vision, pixels, "none"))


# --- CLIP Text Encode ----------------------------------------------------------------------

def text(clip, prompt):
    from recall_pack.nodes.encode_nodes import RecallCLIPTextEncode
    return run(RecallCLIPTextEncode, text=prompt, clip=clip)[0]


def core_text(clip, prompt):
    import nodes
    return nodes.CLIPTextEncode().encode(clip, prompt)[0]


def test_clip_text_miss_and_hit_equal_core(recall, clip, spy_encoder, no_model_loads):
    expected = core_text(clip, "a red fox in the snow")
    assert_trees_equal(text(clip, "a red fox in the snow"), expected)
    calls = spy_encoder(clip.cond_stage_model, "encode_token_weights")
    no_model_loads()
    hit = text(clip, "a red fox in the snow")
    assert calls == [] and recall.last()["status"] == "hit"
    assert_trees_equal(hit, expected)


def test_clip_text_is_cached_per_user_namespace(recall, clip):
    text(clip, "a lighthouse")
    recall.namespace = "user-b"
    text(clip, "a lighthouse")
    assert recall.last()["status"] == "miss"
    recall.namespace = "user-a"
    text(clip, "a lighthouse")
    assert recall.last()["status"] == "hit"
    assert all(tier.keys("shared") == [] for tier in recall.store.tiers)


def test_clip_text_entries_expire_after_text_ttl(recall, clip):
    text(clip, "a windmill")
    entry = None
    for tier in recall.store.tiers:
        for key in tier.keys("user-a"):
            entry = tier.get("user-a", key)
            break
    assert entry is not None and entry.meta.ttl_seconds == recall.config.text_ttl_minutes * 60


def test_clip_text_lora_on_the_text_encoder_misses(recall, clip):
    import comfy.sd
    prompt = "a castle at dusk"
    text(clip, prompt)
    lora = _clip_lora(clip)
    _, patched = comfy.sd.load_lora_for_models(None, clip, lora, 0.0, 1.0)
    out = text(patched, prompt)
    assert recall.last()["status"] == "miss" and recall.last()["reason"].startswith("encoder changed")
    assert_trees_equal(out, core_text(patched, prompt))
    assert_trees_equal(text(clip, prompt), core_text(clip, prompt))  # the base CLIP still hits its own entry
    assert recall.last()["status"] == "hit"


def test_clip_text_lora_strength_changed_misses(recall, clip):
    import comfy.sd
    lora = _clip_lora(clip)
    text(comfy.sd.load_lora_for_models(None, clip, lora, 0.0, 1.0)[1], "a harbour")
    text(comfy.sd.load_lora_for_models(None, clip, lora, 0.0, 0.5)[1], "a harbour")
    assert recall.last()["status"] == "miss"


def test_clip_text_clip_skip_changed_misses(recall, clip):
    text(clip, "a bridge")
    skipped = clip.clone()
    skipped.clip_layer(-2)
    out = text(skipped, "a bridge")
    assert recall.last()["status"] == "miss"
    assert_trees_equal(out, core_text(skipped, "a bridge"))


def _clip_lora(clip):
    """A small kohya-format LoRA on the first attention q projection of the SD1.5 text encoder."""
    gen = torch.Generator().manual_seed(5)
    base = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    return {f"{base}.lora_up.weight": torch.randn(768, 4, generator=gen) * 0.1,
            f"{base}.lora_down.weight": torch.randn(4, 768, generator=gen) * 0.1,
            f"{base}.alpha": torch.tensor(4.0)}


# --- reporting and schema ---------------------------------------------------------------------

def test_every_run_reports_a_log_line_and_a_ui_event(recall, sd_vae, caplog):
    caplog.set_level("INFO", logger="recall")
    pixels = image(30)
    recall_vae_encode(pixels, sd_vae, node_id="12")
    recall_vae_encode(pixels, sd_vae, node_id="12")
    names = [name for name, _ in recall.reports]
    assert names == ["recall.node", "recall.node"]
    miss, hit = (payload for _, payload in recall.reports)
    assert miss["node_id"] == "12" and miss["node_type"] == "RecallVAEEncode" and miss["compute_s"] > 0
    assert hit["status"] == "hit" and hit["saved_s"] == pytest.approx(miss["compute_s"], abs=0.01)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[Recall] RecallVAEEncode #12")]
    assert len(lines) == 2 and "hit in ram" in lines[1]


def test_caching_disabled_encodes_and_reports_off(recall, sd_vae, spy_encoder):
    recall.config = recall.config.replace({"enabled": False})
    pixels = image(31)
    calls = spy_encoder(sd_vae.first_stage_model, "encode")
    recall_vae_encode(pixels, sd_vae)
    out = recall_vae_encode(pixels, sd_vae)
    assert calls == [1, 1] and recall.last()["status"] == "off"
    assert_trees_equal(out, core_vae_encode(sd_vae, pixels))
