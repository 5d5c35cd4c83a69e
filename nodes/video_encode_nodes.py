"""Cached drop-ins for ComfyUI's image-to-video conditioning nodes (SVD, Wan 2.1).

Each runs the core node of the running release with its encoders wrapped
(nodes/encoder_wrap.py), so its outputs are core's by construction. The shortcuts follow
from the keys of the encoder calls: video_frames, fps, motion_bucket_id, the prompt
(positive/negative) and batch_size never reach an encoder, so changing them hits; the
resolution, the image and Wan's length change the pixels the encoder is given, so they miss.

SVD's augmentation: the core node adds unseeded noise (torch.randn_like). This node seeds
the generator it draws from (torch.manual_seed(seed), the caller's RNG state restored
afterwards), so the noisy pixels, and with them the cache entry, are reproducible.
"""
from __future__ import annotations

import contextlib

import torch

from ._api import io
from . import encode_cache
from . import near_match
from .encode_nodes import match_input, run_wrapped
from .encoder_wrap import wrap_input

CATEGORY = encode_cache.CATEGORY

MAX_RESOLUTION = 16384  # nodes.MAX_RESOLUTION in ComfyUI 0.3.64; a test compares it with core


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device):
    """Within: torch's generator for `device` starts from seed; outside, the caller's RNG state is untouched."""
    if seed is None:
        yield
        return
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


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
                match_input(),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive"),
                io.Conditioning.Output(display_name="negative"),
                io.Latent.Output(display_name="latent"),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, clip_vision, init_image, vae, width, height, video_frames, motion_bucket_id, fps,
                augmentation_level, seed=0, match=near_match.DEFAULT) -> io.NodeOutput:
        noisy = augmentation_level > 0
        with seeded(seed if noisy else None, init_image.device):
            out = run_wrapped("RecallSVDImg2VidConditioning", cls, "SVD_img2vid_Conditioning",
                              sources=(init_image,), match=match,
                              hints={"seed": seed, "augmentation_level": augmentation_level} if noisy else None,
                              clip_vision=wrap_input(cls, clip_vision, "clip_vision"),
                              init_image=init_image, vae=wrap_input(cls, vae, "vae"), width=width, height=height,
                              video_frames=video_frames, motion_bucket_id=motion_bucket_id, fps=fps,
                              augmentation_level=augmentation_level)
        return io.NodeOutput(*out)


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


def _clip_hints(width: int, height: int, length: int) -> dict:
    """The inputs that shape Wan's encoded clip besides the images: named when a miss is explained."""
    return {"width": width, "height": height, "length": length}


_OUTPUTS = [
    io.Conditioning.Output(display_name="positive"),
    io.Conditioning.Output(display_name="negative"),
    io.Latent.Output(display_name="latent"),
]


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
                match_input(),
            ],
            outputs=list(_OUTPUTS),
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, positive, negative, vae, width, height, length, batch_size, start_image=None,
                clip_vision_output=None, match=near_match.DEFAULT) -> io.NodeOutput:
        return io.NodeOutput(*run_wrapped(
            "RecallWanImageToVideo", cls, "WanImageToVideo", sources=(start_image,),
            match=match,
            hints=_clip_hints(width, height, length),
            positive=positive, negative=negative, vae=wrap_input(cls, vae, "vae"), width=width, height=height, length=length,
            batch_size=batch_size, start_image=start_image, clip_vision_output=clip_vision_output))


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
                match_input(),
            ],
            outputs=list(_OUTPUTS),
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, positive, negative, vae, width, height, length, batch_size, start_image=None, end_image=None,
                clip_vision_start_image=None, clip_vision_end_image=None, match=near_match.DEFAULT) -> io.NodeOutput:
        return io.NodeOutput(*run_wrapped(
            "RecallWanFirstLastFrameToVideo", cls, "WanFirstLastFrameToVideo", sources=(start_image, end_image),
            match=match,
            hints=_clip_hints(width, height, length),
            positive=positive, negative=negative, vae=wrap_input(cls, vae, "vae"), width=width, height=height, length=length,
            batch_size=batch_size, start_image=start_image, end_image=end_image,
            clip_vision_start_image=clip_vision_start_image, clip_vision_end_image=clip_vision_end_image))


NODES = [RecallSVDImg2VidConditioning, RecallWanImageToVideo, RecallWanFirstLastFrameToVideo]
