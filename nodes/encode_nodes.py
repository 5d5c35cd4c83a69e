"""Cached drop-ins for ComfyUI's image and text encode nodes.

Each node has the core node's inputs (names, types, defaults, ranges) and outputs, and
runs the core node of the running release with its encoder wrapped (nodes/encoder_wrap.py):
the encoder call is looked up by the exact tensor core hands to the encoder, the encoder's
identity and the call's other arguments, and the output is core's by construction.
"""
from __future__ import annotations

from ._api import io
from . import encode_cache, near_match
from .core_nodes import run_core
from .encoder_calls import collecting
from .encoder_wrap import wrap_input

CATEGORY = encode_cache.CATEGORY
_node_id = encode_cache.node_id


def run_wrapped(node_type: str, node_cls, core_id: str, *, sources: tuple = (), hints: dict | None = None,
                match: str | None = None, **inputs) -> tuple:
    """Run core node core_id with these inputs (encoders already wrapped); one report for all its calls.

    sources: the node's input images (an encoding of a preferred one stays hot);
    match: the node's `match` choice for its pixel encodes (near_match.OPTIONS)."""
    with collecting(sources=sources, hints=hints, match=match) as parts:
        out = run_core(core_id, **inputs)
    encode_cache.report(node_type, _node_id(node_cls), parts)
    return out

def match_input():
    """The `match` input of the nodes that encode pixels: exact (default) or a verified near match."""
    return io.Combo.Input("match", options=list(near_match.OPTIONS), default=near_match.DEFAULT, optional=True,
                          tooltip=near_match.TOOLTIP)


_VAE_TIP = "The VAE that encodes the pixels. Another VAE file (or a patched VAE) is a different cache entry."
_PIXELS_TIP = ("The image (batch) to encode, looked up by its exact pixel content: the same pixels "
               "under any file name hit; a batch is one entry, so any changed frame re-encodes the batch.")


class RecallVAEEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallVAEEncode",
            display_name="VAE Encode (Recall)",
            category=CATEGORY,
            description="VAE Encode that never encodes the same pixels twice with the same VAE.",
            inputs=[
                io.Image.Input("pixels", tooltip=_PIXELS_TIP),
                io.Vae.Input("vae", tooltip=_VAE_TIP),
                match_input(),
            ],
            outputs=[io.Latent.Output(display_name="LATENT")],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, pixels, vae, match=near_match.DEFAULT) -> io.NodeOutput:
        return io.NodeOutput(*run_wrapped("RecallVAEEncode", cls, "VAEEncode", sources=(pixels,),
                                          match=match, pixels=pixels, vae=wrap_input(cls, vae, "vae")))


class RecallVAEEncodeTiled(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallVAEEncodeTiled",
            display_name="VAE Encode (Tiled) (Recall)",
            category=CATEGORY,
            description="VAE Encode (Tiled) with cached results; the tile settings are part of the key.",
            inputs=[
                io.Image.Input("pixels", tooltip=_PIXELS_TIP),
                io.Vae.Input("vae", tooltip=_VAE_TIP),
                io.Int.Input("tile_size", default=512, min=64, max=4096, step=64,
                             tooltip="Tile width and height in pixels. Changing it re-encodes."),
                io.Int.Input("overlap", default=64, min=0, max=4096, step=32,
                             tooltip="Pixels shared by neighbouring tiles. Changing it re-encodes."),
                io.Int.Input("temporal_size", default=64, min=8, max=4096, step=4,
                             tooltip="Only used for video VAEs: Amount of frames to encode at a time."),
                io.Int.Input("temporal_overlap", default=8, min=4, max=4096, step=4,
                             tooltip="Only used for video VAEs: Amount of frames to overlap."),
                match_input(),
            ],
            outputs=[io.Latent.Output(display_name="LATENT")],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, pixels, vae, tile_size, overlap, temporal_size=64, temporal_overlap=8,
                match=near_match.DEFAULT) -> io.NodeOutput:
        return io.NodeOutput(*run_wrapped("RecallVAEEncodeTiled", cls, "VAEEncodeTiled", match=match,
                                          sources=(pixels,), pixels=pixels, vae=wrap_input(cls, vae, "vae"),
                                          tile_size=tile_size, overlap=overlap, temporal_size=temporal_size,
                                          temporal_overlap=temporal_overlap))


class RecallCLIPVisionEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallCLIPVisionEncode",
            display_name="CLIP Vision Encode (Recall)",
            category=CATEGORY,
            description="CLIP Vision Encode with cached results, keyed on image content, model and crop.",
            inputs=[
                io.ClipVision.Input("clip_vision", tooltip="The CLIP vision model. Another file is another cache entry."),
                io.Image.Input("image", tooltip="The image to encode, looked up by its exact pixel content."),
                io.Combo.Input("crop", options=["center", "none"],
                               tooltip="center: crop to a centred square before resizing; none: squash. "
                                       "Changing it re-encodes."),
                match_input(),
            ],
            outputs=[io.ClipVisionOutput.Output(display_name="CLIP_VISION_OUTPUT")],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, clip_vision, image, crop, match=near_match.DEFAULT) -> io.NodeOutput:
        return io.NodeOutput(*run_wrapped("RecallCLIPVisionEncode", cls, "CLIPVisionEncode", match=match,
                                          sources=(image,), clip_vision=wrap_input(cls, clip_vision, "clip_vision"),
                                          image=image, crop=crop))


class RecallCLIPTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallCLIPTextEncode",
            display_name="CLIP Text Encode (Prompt) (Recall)",
            category=CATEGORY,
            description="CLIP Text Encode with a per-user conditioning cache, keyed on the prompt's tokens "
                        "and the text encoder (LoRA patches and CLIP skip included).",
            inputs=[
                io.String.Input("text", multiline=True, dynamic_prompts=True, tooltip="The text to be encoded."),
                io.Clip.Input("clip", tooltip="The CLIP model used for encoding the text. "
                                              "A LoRA applied to it is a different cache entry."),
            ],
            outputs=[io.Conditioning.Output(
                display_name="CONDITIONING",
                tooltip="A conditioning containing the embedded text used to guide the diffusion model.")],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, text, clip) -> io.NodeOutput:
        return io.NodeOutput(*run_wrapped("RecallCLIPTextEncode", cls, "CLIPTextEncode", clip=wrap_input(cls, clip, "clip"), text=text))


NODES = [RecallVAEEncode, RecallVAEEncodeTiled, RecallCLIPVisionEncode, RecallCLIPTextEncode]
