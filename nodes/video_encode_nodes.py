"""Cached drop-ins for ComfyUI's image-to-video conditioning nodes (SVD, Wan 2.1).

Only the encodings are cached. Each node first does the core node's pixel preparation
(resize/crop to width x height, the Wan clip of `length` frames), looks the encodings up
keyed on those pixels + the encoders + the parameters that shape them, and then builds its
outputs the way the core node does from the (cached or fresh) encodings. So changing
video_frames, fps, motion_bucket_id, the prompt (positive/negative) or batch_size encodes
nothing.
"""
from __future__ import annotations

import torch

import comfy.clip_vision
import comfy.model_management
import comfy.utils
import node_helpers

from ._api import io
from . import encode_cache

CATEGORY = encode_cache.CATEGORY
_node_id = encode_cache.node_id

MAX_RESOLUTION = 16384  # nodes.MAX_RESOLUTION in ComfyUI 0.3.64; a test compares it with core


def _upscale(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The core nodes' resize: bilinear to width x height after a centre crop to that aspect."""
    return comfy.utils.common_upscale(image.movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)


def _svd_noise(shape, seed: int, like: torch.Tensor) -> torch.Tensor:
    # Core uses torch.randn_like (unseeded); a seeded CPU generator draws the same normal
    # stream as torch.manual_seed(seed) + randn_like on the CPU, now reproducibly.
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=like.dtype).to(like.device)


class RecallSVDImg2VidConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallSVDImg2VidConditioning",
            display_name="SVD_img2vid_Conditioning (Recall)",
            category=CATEGORY,
            description="SVD img2vid conditioning whose CLIP-vision and VAE encodings are cached: changing "
                        "video_frames, motion_bucket_id or fps encodes nothing.",
            inputs=[
                io.ClipVision.Input("clip_vision", tooltip="CLIP vision model that embeds the init image."),
                io.Image.Input("init_image", tooltip="The first frame; looked up by its exact pixel content."),
                io.Vae.Input("vae", tooltip="The VAE that encodes the init image."),
                io.Int.Input("width", default=1024, min=16, max=MAX_RESOLUTION, step=8,
                             tooltip="Video width. The image is resized to it before VAE encoding: changing it re-encodes."),
                io.Int.Input("height", default=576, min=16, max=MAX_RESOLUTION, step=8,
                             tooltip="Video height. The image is resized to it before VAE encoding: changing it re-encodes."),
                io.Int.Input("video_frames", default=14, min=1, max=4096,
                             tooltip="Number of frames. Not part of the cache key: changing it encodes nothing."),
                io.Int.Input("motion_bucket_id", default=127, min=1, max=1023,
                             tooltip="Amount of motion. Not part of the cache key: changing it encodes nothing."),
                io.Int.Input("fps", default=6, min=1, max=1024,
                             tooltip="Frame rate conditioning. Not part of the cache key: changing it encodes nothing."),
                io.Float.Input("augmentation_level", default=0.0, min=0.0, max=10.0, step=0.01,
                               tooltip="Noise added to the init image before VAE encoding. Changing it re-encodes."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff,
                             tooltip="Used only when augmentation_level > 0: seeds the augmentation noise, which "
                                     "makes it reproducible and cacheable (the core node's noise is unseeded). "
                                     "Ignored, and not part of the cache key, when augmentation_level is 0."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive"),
                io.Conditioning.Output(display_name="negative"),
                io.Latent.Output(display_name="latent"),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, clip_vision, init_image, vae, width, height, video_frames, motion_bucket_id, fps,
                augmentation_level, seed=0) -> io.NodeOutput:
        vision = encode_cache.clip_vision_encode(clip_vision, init_image, True)
        pixels = _upscale(init_image, width, height)
        encode_pixels = pixels[:, :, :, :3]
        if augmentation_level > 0:
            noise = lambda: _svd_noise(encode_pixels.shape, seed, encode_pixels)
            latent_part = encode_cache.noisy_vae_encode(vae, encode_pixels, noise, augmentation_level, seed,
                                                        pinned=encode_cache.is_preferred(init_image))
        else:
            latent_part = encode_cache.vae_encode(vae, encode_pixels)
        encode_cache.report("RecallSVDImg2VidConditioning", _node_id(cls), [vision, latent_part])
        pooled = vision.value.image_embeds.unsqueeze(0)
        t = latent_part.value
        extras = {"motion_bucket_id": motion_bucket_id, "fps": fps, "augmentation_level": augmentation_level}
        positive = [[pooled, {**extras, "concat_latent_image": t}]]
        negative = [[torch.zeros_like(pooled), {**extras, "concat_latent_image": torch.zeros_like(t)}]]
        latent = torch.zeros([video_frames, 4, height // 8, width // 8])
        return io.NodeOutput(positive, negative, {"samples": latent})


def _wan_inputs():
    return [
        io.Conditioning.Input("positive", tooltip="Positive conditioning. Not part of the cache key: "
                                                  "a new prompt encodes no image."),
        io.Conditioning.Input("negative", tooltip="Negative conditioning. Not part of the cache key."),
        io.Vae.Input("vae", tooltip="The Wan VAE that encodes the start-image clip."),
        io.Int.Input("width", default=832, min=16, max=MAX_RESOLUTION, step=16,
                     tooltip="Video width; the image is resized to it before encoding: changing it re-encodes."),
        io.Int.Input("height", default=480, min=16, max=MAX_RESOLUTION, step=16,
                     tooltip="Video height; the image is resized to it before encoding: changing it re-encodes."),
        io.Int.Input("length", default=81, min=1, max=MAX_RESOLUTION, step=4,
                     tooltip="Number of frames. The encoded clip has this many frames: changing it re-encodes."),
        io.Int.Input("batch_size", default=1, min=1, max=4096,
                     tooltip="Latent batch size. Not part of the cache key: changing it encodes nothing."),
    ]


_OUTPUTS = [
    io.Conditioning.Output(display_name="positive"),
    io.Conditioning.Output(display_name="negative"),
    io.Latent.Output(display_name="latent"),
]


def _with_values(positive, negative, values: dict):
    return (node_helpers.conditioning_set_values(positive, values),
            node_helpers.conditioning_set_values(negative, values))


class RecallWanImageToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallWanImageToVideo",
            display_name="WanImageToVideo (Recall)",
            category=CATEGORY,
            description="Wan image-to-video conditioning whose start-image clip encoding is cached: a prompt "
                        "or batch_size change encodes nothing.",
            inputs=_wan_inputs() + [
                io.ClipVisionOutput.Input("clip_vision_output", optional=True,
                                          tooltip="Optional CLIP vision output of the start image, passed through."),
                io.Image.Input("start_image", optional=True,
                               tooltip="The first frame(s); looked up by exact pixel content after resizing."),
            ],
            outputs=list(_OUTPUTS),
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, positive, negative, vae, width, height, length, batch_size, start_image=None,
                clip_vision_output=None) -> io.NodeOutput:
        latent = torch.zeros([batch_size, 16, ((length - 1) // 4) + 1, height // 8, width // 8],
                             device=comfy.model_management.intermediate_device())
        parts = []
        if start_image is not None:
            start = _upscale(start_image[:length], width, height)

            def clip() -> torch.Tensor:  # the core node's padded clip: start frames, then grey
                image = torch.ones((length, height, width, start.shape[-1]), device=start.device, dtype=start.dtype) * 0.5
                image[:start.shape[0]] = start
                return image[:, :, :, :3]

            part = encode_cache.clip_encode(vae, "wan_i2v_clip", [start], {"length": length, "width": width,
                                                                          "height": height}, clip,
                                            pinned=encode_cache.is_preferred(start_image))
            parts.append(part)
            concat = part.value
            mask = torch.ones((1, 1, latent.shape[2], concat.shape[-2], concat.shape[-1]),
                              device=start.device, dtype=start.dtype)
            mask[:, :, :((start.shape[0] - 1) // 4) + 1] = 0.0
            positive, negative = _with_values(positive, negative, {"concat_latent_image": concat, "concat_mask": mask})
        if clip_vision_output is not None:
            positive, negative = _with_values(positive, negative, {"clip_vision_output": clip_vision_output})
        encode_cache.report("RecallWanImageToVideo", _node_id(cls), parts)
        return io.NodeOutput(positive, negative, {"samples": latent})


class RecallWanFirstLastFrameToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallWanFirstLastFrameToVideo",
            display_name="WanFirstLastFrameToVideo (Recall)",
            category=CATEGORY,
            description="Wan first/last-frame conditioning whose clip encoding is cached: a prompt or "
                        "batch_size change encodes nothing.",
            inputs=_wan_inputs() + [
                io.ClipVisionOutput.Input("clip_vision_start_image", optional=True,
                                          tooltip="Optional CLIP vision output of the first frame."),
                io.ClipVisionOutput.Input("clip_vision_end_image", optional=True,
                                          tooltip="Optional CLIP vision output of the last frame."),
                io.Image.Input("start_image", optional=True, tooltip="First frame(s); keyed by pixel content."),
                io.Image.Input("end_image", optional=True, tooltip="Last frame(s); keyed by pixel content."),
            ],
            outputs=list(_OUTPUTS),
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, positive, negative, vae, width, height, length, batch_size, start_image=None, end_image=None,
                clip_vision_start_image=None, clip_vision_end_image=None) -> io.NodeOutput:
        scale = vae.spacial_compression_encode()
        latent = torch.zeros([batch_size, vae.latent_channels, ((length - 1) // 4) + 1, height // scale, width // scale],
                             device=comfy.model_management.intermediate_device())
        start = None if start_image is None else _upscale(start_image[:length], width, height)
        end = None if end_image is None else _upscale(end_image[-length:], width, height)
        mask = torch.ones((1, 1, latent.shape[2] * 4, latent.shape[-2], latent.shape[-1]))
        if start is not None:
            mask[:, :, :start.shape[0] + 3] = 0.0
        if end is not None:
            mask[:, :, -end.shape[0]:] = 0.0

        def clip() -> torch.Tensor:  # the core node's clip: grey, start frames first, end frames last
            image = torch.ones((length, height, width, 3)) * 0.5
            if start is not None:
                image[:start.shape[0]] = start
            if end is not None:
                image[-end.shape[0]:] = end
            return image[:, :, :, :3]

        part = encode_cache.clip_encode(vae, "wan_flf_clip", [start, end], {"length": length, "width": width,
                                                                          "height": height}, clip,
                                        pinned=encode_cache.is_preferred(start_image) or encode_cache.is_preferred(end_image))
        mask = mask.view(1, mask.shape[2] // 4, 4, mask.shape[3], mask.shape[4]).transpose(1, 2)
        positive, negative = _with_values(positive, negative, {"concat_latent_image": part.value, "concat_mask": mask})
        vision = clip_vision_start_image
        if clip_vision_end_image is not None:
            if vision is not None:
                states = torch.cat([vision.penultimate_hidden_states, clip_vision_end_image.penultimate_hidden_states], dim=-2)
                vision = comfy.clip_vision.Output()
                vision.penultimate_hidden_states = states
            else:
                vision = clip_vision_end_image
        if vision is not None:
            positive, negative = _with_values(positive, negative, {"clip_vision_output": vision})
        encode_cache.report("RecallWanFirstLastFrameToVideo", _node_id(cls), [part])
        return io.NodeOutput(positive, negative, {"samples": latent})


NODES = [RecallSVDImg2VidConditioning, RecallWanImageToVideo, RecallWanFirstLastFrameToVideo]
