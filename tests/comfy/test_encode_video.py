"""Recall's SVD and Wan conditioning nodes against ComfyUI's core nodes, one test per sensitivity row.

Rows of the brief's table: frame count / fps / motion / prompt / batch size / seed without
augmentation -> the encodings hit; resolution, length, one pixel, augmentation with
another seed -> they miss. Outputs always equal the core node's.
"""
import pytest
import torch

from test_encode_fixtures import (assert_trees_equal, clip_vision, image, inference_mode,  # noqa: F401
                                  no_model_loads, recall, run, sd_vae, spy_encoder, wan_vae)

SVD = dict(width=64, height=48, video_frames=14, motion_bucket_id=127, fps=6, augmentation_level=0.0)


def svd(clip_vision, vae, init_image, seed=0, **changes):
    from recall_pack.nodes.video_encode_nodes import RecallSVDImg2VidConditioning
    args = {**SVD, **changes}
    return run(RecallSVDImg2VidConditioning, clip_vision=clip_vision, init_image=init_image, vae=vae, seed=seed, **args)


_core_svd_results = {}


def core_svd(clip_vision, vae, init_image, **changes):
    """The core node's output; memoised per input (CLIP-vision ViT-L is the slow part on a CPU)."""
    from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning
    from recall_pack.cache.keys import content_key
    args = {**SVD, **changes}
    memo = (id(clip_vision), id(vae), content_key(init_image), tuple(sorted(args.items())))
    if memo not in _core_svd_results or args["augmentation_level"] > 0:
        _core_svd_results[memo] = SVD_img2vid_Conditioning().encode(clip_vision, init_image, vae, **args)
    return _core_svd_results[memo]


@pytest.fixture
def encoders(sd_vae, clip_vision, spy_encoder):
    """Call counts of both SVD encoders from now on."""
    def counts():
        return {"vae": spy_encoder(sd_vae.first_stage_model, "encode"),
                "clip_vision": spy_encoder(clip_vision.model, "forward")}
    return counts


def test_svd_miss_and_hit_equal_core(recall, clip_vision, sd_vae, encoders, no_model_loads):
    init = image(40, size=72, width=96)
    expected = core_svd(clip_vision, sd_vae, init)
    assert_trees_equal(svd(clip_vision, sd_vae, init), expected)
    assert recall.last()["status"] == "miss"
    calls = encoders()
    no_model_loads()
    assert_trees_equal(svd(clip_vision, sd_vae, init), expected)
    assert recall.last()["status"] == "hit" and calls == {"vae": [], "clip_vision": []}


@pytest.mark.parametrize("changes", [{"video_frames": 25}, {"fps": 12}, {"motion_bucket_id": 40}],
                         ids=["video_frames", "fps", "motion_bucket_id"])
def test_svd_frames_fps_motion_changed_encode_nothing(recall, clip_vision, sd_vae, encoders, changes):
    init = image(41, size=48, width=64)
    svd(clip_vision, sd_vae, init)
    calls = encoders()
    out = svd(clip_vision, sd_vae, init, **changes)
    assert recall.last()["status"] == "hit" and calls == {"vae": [], "clip_vision": []}
    assert_trees_equal(out, core_svd(clip_vision, sd_vae, init, **changes))


def test_svd_seed_without_augmentation_hits(recall, clip_vision, sd_vae):
    init = image(42, size=48, width=64)
    svd(clip_vision, sd_vae, init, seed=1)
    svd(clip_vision, sd_vae, init, seed=2)
    assert recall.last()["status"] == "hit"


def test_svd_resolution_changed_reencodes_the_vae_only(recall, clip_vision, sd_vae, encoders):
    init = image(43, size=48, width=64)
    svd(clip_vision, sd_vae, init)
    calls = encoders()
    out = svd(clip_vision, sd_vae, init, width=48)
    assert recall.last()["status"] == "miss"
    assert calls == {"vae": [1], "clip_vision": []}  # the CLIP-vision input (the raw image) is unchanged
    assert_trees_equal(out, core_svd(clip_vision, sd_vae, init, width=48))


def test_svd_one_pixel_changed_misses(recall, clip_vision, sd_vae):
    init = image(44, size=48, width=64)
    svd(clip_vision, sd_vae, init)
    edited = init.clone()
    edited[0, 0, 0, 0] = 1.0 - edited[0, 0, 0, 0]
    out = svd(clip_vision, sd_vae, edited)
    assert recall.last()["status"] == "miss" and "image changed" in recall.last()["reason"]
    assert_trees_equal(out, core_svd(clip_vision, sd_vae, edited))


def test_svd_augmentation_is_seeded_and_equals_core_with_that_seed(recall, clip_vision, sd_vae):
    init = image(45, size=48, width=64)
    out = svd(clip_vision, sd_vae, init, seed=77, augmentation_level=0.3)
    torch.manual_seed(77)  # core's noise is torch.randn_like on the global CPU generator
    expected = core_svd(clip_vision, sd_vae, init, augmentation_level=0.3)
    assert_trees_equal(out, expected)
    assert_trees_equal(svd(clip_vision, sd_vae, init, seed=77, augmentation_level=0.3), expected)
    assert recall.last()["status"] == "hit"


def test_svd_augmentation_with_another_seed_misses(recall, clip_vision, sd_vae, encoders):
    init = image(46, size=48, width=64)
    svd(clip_vision, sd_vae, init, seed=1, augmentation_level=0.2)
    calls = encoders()
    svd(clip_vision, sd_vae, init, seed=2, augmentation_level=0.2)
    assert recall.last()["status"] == "miss" and calls["vae"] == [1]
    assert "seed changed" in recall.last()["reason"]


def test_svd_augmentation_level_changed_misses(recall, clip_vision, sd_vae):
    init = image(47, size=48, width=64)
    svd(clip_vision, sd_vae, init, seed=1, augmentation_level=0.2)
    svd(clip_vision, sd_vae, init, seed=1, augmentation_level=0.25)
    assert recall.last()["status"] == "miss"


def test_svd_shares_the_clip_vision_entry_with_the_clip_vision_node(recall, clip_vision, sd_vae, encoders):
    from recall_pack.nodes.encode_nodes import RecallCLIPVisionEncode
    init = image(48, size=48, width=64)
    run(RecallCLIPVisionEncode, clip_vision=clip_vision, image=init, crop="center")
    calls = encoders()
    svd(clip_vision, sd_vae, init)
    assert calls["clip_vision"] == []


# --- Wan image to video ---------------------------------------------------------------------

WAN = dict(width=32, height=32, length=5, batch_size=1)


def cond(text_seed: int):
    gen = torch.Generator().manual_seed(text_seed)
    return [[torch.randn(1, 4, 8, generator=gen), {"pooled_output": None}]]


def wan(vae, start_image, positive=None, negative=None, **changes):
    from recall_pack.nodes.video_encode_nodes import RecallWanImageToVideo
    return run(RecallWanImageToVideo, positive=positive or cond(1), negative=negative or cond(2), vae=vae,
               start_image=start_image, **{**WAN, **changes})


def core_wan(vae, start_image, positive=None, negative=None, **changes):
    from comfy_extras.nodes_wan import WanImageToVideo
    return WanImageToVideo.execute(positive=positive or cond(1), negative=negative or cond(2), vae=vae,
                                   start_image=start_image, **{**WAN, **changes}).result


def test_wan_miss_and_hit_equal_core(recall, wan_vae, spy_encoder, no_model_loads):
    start = image(50, size=40, width=48)
    expected = core_wan(wan_vae, start)
    assert_trees_equal(wan(wan_vae, start), expected)
    calls = spy_encoder(wan_vae.first_stage_model, "encode")
    no_model_loads()
    assert_trees_equal(wan(wan_vae, start), expected)
    assert calls == [] and recall.last()["status"] == "hit"


def test_wan_prompt_changed_encodes_nothing(recall, wan_vae, spy_encoder):
    start = image(51, size=32)
    wan(wan_vae, start, positive=cond(1))
    calls = spy_encoder(wan_vae.first_stage_model, "encode")
    out = wan(wan_vae, start, positive=cond(9), negative=cond(8))
    assert calls == [] and recall.last()["status"] == "hit"
    assert_trees_equal(out, core_wan(wan_vae, start, positive=cond(9), negative=cond(8)))


def test_wan_batch_size_changed_encodes_nothing(recall, wan_vae):
    start = image(52, size=32)
    wan(wan_vae, start)
    out = wan(wan_vae, start, batch_size=2)
    assert recall.last()["status"] == "hit"
    assert_trees_equal(out, core_wan(wan_vae, start, batch_size=2))


def test_wan_length_changed_misses(recall, wan_vae):
    start = image(53, size=32)
    wan(wan_vae, start)
    out = wan(wan_vae, start, length=9)
    assert recall.last()["status"] == "miss" and recall.last()["reason"] == "length changed"
    assert_trees_equal(out, core_wan(wan_vae, start, length=9))


def test_wan_resolution_changed_misses(recall, wan_vae):
    start = image(54, size=32)
    wan(wan_vae, start)
    out = wan(wan_vae, start, width=48)
    assert recall.last()["status"] == "miss"
    assert_trees_equal(out, core_wan(wan_vae, start, width=48))


def test_wan_without_start_image_passes_through_like_core(recall, wan_vae):
    clip_out = object()
    out = wan(wan_vae, None, clip_vision_output=clip_out)
    expected = core_wan(wan_vae, None, clip_vision_output=clip_out)
    assert out[0][0][1]["clip_vision_output"] is clip_out
    assert_trees_equal(out[2], expected[2])
    assert recall.last()["status"] == "off"


# --- Wan first-last frame -----------------------------------------------------------------------

def flf(vae, start_image=None, end_image=None, positive=None, **changes):
    from recall_pack.nodes.video_encode_nodes import RecallWanFirstLastFrameToVideo
    return run(RecallWanFirstLastFrameToVideo, positive=positive or cond(1), negative=cond(2), vae=vae,
               start_image=start_image, end_image=end_image, **{**WAN, **changes})


def core_flf(vae, start_image=None, end_image=None, positive=None, **changes):
    from comfy_extras.nodes_wan import WanFirstLastFrameToVideo
    return WanFirstLastFrameToVideo.execute(positive=positive or cond(1), negative=cond(2), vae=vae,
                                            start_image=start_image, end_image=end_image,
                                            **{**WAN, **changes}).result


def test_wan_flf_miss_and_hit_equal_core(recall, wan_vae, spy_encoder):
    first, last = image(60, size=32), image(61, size=32)
    expected = core_flf(wan_vae, first, last, positive=cond(5))
    assert_trees_equal(flf(wan_vae, first, last, positive=cond(5)), expected)
    calls = spy_encoder(wan_vae.first_stage_model, "encode")
    assert_trees_equal(flf(wan_vae, first, last, positive=cond(5)), expected)
    assert calls == [] and recall.last()["status"] == "hit"
    flf(wan_vae, first, last, positive=cond(6))  # a new prompt: still no encode
    assert calls == [] and recall.last()["status"] == "hit"


def test_wan_flf_end_image_changed_misses(recall, wan_vae):
    first = image(62, size=32)
    flf(wan_vae, first, image(63, size=32))
    out = flf(wan_vae, first, image(64, size=32))
    assert recall.last()["status"] == "miss"
    assert_trees_equal(out, core_flf(wan_vae, first, image(64, size=32)))


def test_wan_flf_start_only_and_end_only_are_different_entries(recall, wan_vae):
    frame = image(65, size=32)
    flf(wan_vae, start_image=frame)
    out = flf(wan_vae, end_image=frame)
    assert recall.last()["status"] == "miss"
    assert_trees_equal(out, core_flf(wan_vae, end_image=frame))
