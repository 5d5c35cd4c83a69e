"""Nodes that hand an encoder on wrapped, so that every node downstream that encodes with it is cached.

Put one right after the loader: VAE Encode, InpaintModelConditioning, WanImageToVideo, a
text encode, another pack's node — any node that calls the wrapped encoder's encode
methods gets the cached result when the same call was made before. The object handed on
is the loaded encoder itself for every other purpose (nodes/encoder_wrap.py).
"""
from __future__ import annotations

from ._api import io
from . import encode_cache, near_match
from .encode_nodes import match_input
from .encoder_wrap import wrap_input

CATEGORY = encode_cache.CATEGORY

_AFTER = ("Put me right after the loader: every node downstream that encodes with this {what} is "
          "cached (core nodes and other packs' nodes alike), and gets exactly what the plain {what} "
          "would give. ")


class RecallVAE(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallVAE",
            display_name="Recall VAE",
            category=CATEGORY,
            description=_AFTER.format(what="VAE") + "Its encode and encode_tiled calls are looked up by the "
                        "exact pixels, the VAE's identity and the tile settings; decoding is unchanged.",
            inputs=[io.Vae.Input("vae", tooltip="The VAE from a loader (Load VAE, Load Checkpoint). " + _AFTER.format(what="VAE")),
                    match_input()],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
            outputs=[io.Vae.Output(display_name="VAE", tooltip="The same VAE, with its encodes cached.")],
        )

    @classmethod
    def execute(cls, vae, match=near_match.DEFAULT) -> io.NodeOutput:
        return io.NodeOutput(near_match.with_match(wrap_input(cls, vae, "vae"), match))


class RecallCLIPVision(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallCLIPVision",
            display_name="Recall CLIP Vision",
            category=CATEGORY,
            description=_AFTER.format(what="CLIP vision model") + "Its encode_image calls are looked up by "
                        "the exact pixels, the model's identity and the crop setting.",
            inputs=[io.ClipVision.Input("clip_vision", tooltip="The CLIP vision model from Load CLIP Vision. "
                                                              + _AFTER.format(what="CLIP vision model")),
                    match_input()],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
            outputs=[io.ClipVision.Output(display_name="CLIP_VISION",
                                          tooltip="The same CLIP vision model, with its encodes cached.")],
        )

    @classmethod
    def execute(cls, clip_vision, match=near_match.DEFAULT) -> io.NodeOutput:
        return io.NodeOutput(near_match.with_match(wrap_input(cls, clip_vision, "clip_vision"), match))


class RecallCLIP(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallCLIP",
            display_name="Recall CLIP (text encoder)",
            category=CATEGORY,
            description=_AFTER.format(what="text encoder") + "Its encode_from_tokens calls are looked up by "
                        "the exact tokens (images inside them included, as Qwen-Image-Edit's carry), the "
                        "encoder's identity and the call's options, per user. LoRA loaders and CLIP Set Last "
                        "Layer downstream keep it wrapped; a patched CLIP is another cache entry.",
            inputs=[io.Clip.Input("clip", tooltip="The CLIP / text encoder from a loader. "
                                                  + _AFTER.format(what="text encoder"))],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
            outputs=[io.Clip.Output(display_name="CLIP", tooltip="The same text encoder, with its encodes cached.")],
        )

    @classmethod
    def execute(cls, clip) -> io.NodeOutput:
        return io.NodeOutput(wrap_input(cls, clip, "clip"))


NODES = [RecallVAE, RecallCLIPVision, RecallCLIP]
