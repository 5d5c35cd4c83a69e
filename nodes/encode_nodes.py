"""Cached drop-ins for ComfyUI's image and text encode nodes.

Each node has the core node's inputs (names, types, defaults, ranges) and outputs and
returns what the core node returns, bit for bit; it only looks the encoding up first
(nodes/encode_cache.py). Keys are the content of the exact tensor the core node hands
to the encoder + the encoder's identity + the parameters that change the encoding.
"""
from __future__ import annotations

from ._api import io
from . import encode_cache

CATEGORY = encode_cache.CATEGORY
_node_id = encode_cache.node_id

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
            ],
            outputs=[io.Latent.Output(display_name="LATENT")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, pixels, vae) -> io.NodeOutput:
        part = encode_cache.vae_encode(vae, pixels[:, :, :, :3])
        encode_cache.report("RecallVAEEncode", _node_id(cls), [part])
        return io.NodeOutput({"samples": part.value})


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
            ],
            outputs=[io.Latent.Output(display_name="LATENT")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, pixels, vae, tile_size, overlap, temporal_size=64, temporal_overlap=8) -> io.NodeOutput:
        tiled = {"tile_x": tile_size, "tile_y": tile_size, "overlap": overlap,
                 "tile_t": temporal_size, "overlap_t": temporal_overlap}
        part = encode_cache.vae_encode(vae, pixels[:, :, :, :3], tiled=tiled)
        encode_cache.report("RecallVAEEncodeTiled", _node_id(cls), [part])
        return io.NodeOutput({"samples": part.value})


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
            ],
            outputs=[io.ClipVisionOutput.Output(display_name="CLIP_VISION_OUTPUT")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, clip_vision, image, crop) -> io.NodeOutput:
        part = encode_cache.clip_vision_encode(clip_vision, image, crop == "center")
        encode_cache.report("RecallCLIPVisionEncode", _node_id(cls), [part])
        return io.NodeOutput(part.value)


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
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, text, clip) -> io.NodeOutput:
        if clip is None:
            raise RuntimeError("ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint loader node "
                               "your checkpoint does not contain a valid clip or text encoder model.")
        part = encode_cache.text_encode(clip, text)
        encode_cache.report("RecallCLIPTextEncode", _node_id(cls), [part])
        return io.NodeOutput(part.value)


NODES = [RecallVAEEncode, RecallVAEEncodeTiled, RecallCLIPVisionEncode, RecallCLIPTextEncode]
