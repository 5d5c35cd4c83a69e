"""Core nodes run unchanged with wrapped encoders (Recall VAE / CLIP Vision / CLIP) against the same
nodes with the plain encoders: the whole output equal bit for bit on a miss and on a hit, the hit
running no encoder; an input that changes the pixels the encoder is given misses, one that does not hits.

Each case is one core node of the running release (skipped where the release lacks it), its inputs
with the encoders it needs, and its pixel-changing / pixel-keeping input changes.
"""
import importlib
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch

from test_encode_fixtures import (assert_trees_equal, clip, clip_vision, image, inference_mode,  # noqa: F401
                                  recall, sd_vae, spy_encoder, wan_vae)

# core node id -> module that defines it when it is not in nodes.py
_MODULES = {
    "InstructPixToPixConditioning": "comfy_extras.nodes_ip2p",
    "StableZero123_Conditioning": "comfy_extras.nodes_stable3d",
    "SV3D_Conditioning": "comfy_extras.nodes_stable3d",
    "SVD_img2vid_Conditioning": "comfy_extras.nodes_video_model",
    "CosmosPredict2ImageToVideoLatent": "comfy_extras.nodes_cosmos",
    "HunyuanImageToVideo": "comfy_extras.nodes_hunyuan",
    "TextEncodeQwenImageEdit": "comfy_extras.nodes_qwen",
    "TextEncodeQwenImageEditPlus": "comfy_extras.nodes_qwen",
}


def core(node_id: str, **inputs) -> tuple:
    """The core node's outputs, by its own code (V1 FUNCTION or V3 execute)."""
    import nodes
    cls = nodes.NODE_CLASS_MAPPINGS.get(node_id)
    if cls is None:
        module = importlib.import_module(_MODULES.get(node_id, "comfy_extras.nodes_wan"))
        cls = getattr(module, node_id, None)
    if cls is None:
        pytest.skip(f"this ComfyUI has no core node {node_id}")
    if hasattr(cls, "EXECUTE_NORMALIZED"):
        return tuple(cls.EXECUTE_NORMALIZED(**inputs).args)
    return tuple(getattr(cls(), cls.FUNCTION)(**inputs))


def cond(seed: int) -> list:
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 4, 8, generator=gen), {"pooled_output": torch.randn(1, 8, generator=gen)}]]


def mask(seed: int, size: int = 64) -> torch.Tensor:
    """A square hole at a seed-chosen place (inpainting masks are blobs; growing one changes it)."""
    top, left = 8 + 4 * (seed % 4), 8 + 4 * (seed % 3)
    out = torch.zeros((1, size, size))
    out[:, top:top + 16, left:left + 16] = 1.0
    return out


@dataclass
class Case:
    node: str
    encoders: tuple                    # fixture names: "sd_vae" / "wan_vae" (as vae), "clip_vision", "clip"
    inputs: Callable[[], dict]         # the non-encoder inputs
    hit: dict = field(default_factory=dict)    # name -> changes that leave the encoded pixels as they are
    miss: dict = field(default_factory=dict)   # name -> changes that change them


def _wan(**extra):
    return lambda: dict(positive=cond(1), negative=cond(2), width=32, height=32, length=5, batch_size=1, **extra)


CASES = [
    Case("VAEEncode", ("sd_vae",), lambda: dict(pixels=image(1)),
         miss={"image": lambda: dict(pixels=image(2)), "resolution": lambda: dict(pixels=image(1, size=72))}),
    Case("VAEEncodeTiled", ("sd_vae",),
         lambda: dict(pixels=image(3), tile_size=64, overlap=8, temporal_size=64, temporal_overlap=8),
         hit={"temporal_size": lambda: dict(temporal_size=32)}, miss={"tile_size": lambda: dict(tile_size=128)}),
    Case("VAEEncodeForInpaint", ("sd_vae",), lambda: dict(pixels=image(4), mask=mask(1), grow_mask_by=6),
         hit={"grow_mask_by": lambda: dict(grow_mask_by=2)},  # grows the noise mask only, not the encoded pixels
         miss={"mask": lambda: dict(mask=mask(2))}),
    Case("InpaintModelConditioning", ("sd_vae",),
         lambda: dict(positive=cond(1), negative=cond(2), pixels=image(5), mask=mask(3), noise_mask=True),
         hit={"prompt": lambda: dict(positive=cond(7)), "noise_mask": lambda: dict(noise_mask=False)},
         miss={"mask": lambda: dict(mask=mask(4))}),
    Case("InstructPixToPixConditioning", ("sd_vae",), lambda: dict(positive=cond(1), negative=cond(2), pixels=image(6)),
         hit={"prompt": lambda: dict(negative=cond(8))}, miss={"image": lambda: dict(pixels=image(7))}),
    Case("CLIPVisionEncode", ("clip_vision",), lambda: dict(image=image(8), crop="center"),
         miss={"crop": lambda: dict(crop="none")}),
    Case("StableZero123_Conditioning", ("clip_vision", "sd_vae"),
         lambda: dict(init_image=image(9), width=64, height=64, batch_size=1, elevation=0.0, azimuth=0.0),
         hit={"elevation": lambda: dict(elevation=20.0)},
         miss={"resolution": lambda: dict(width=48)}),
    Case("SV3D_Conditioning", ("clip_vision", "sd_vae"),
         lambda: dict(init_image=image(10), width=64, height=64, video_frames=3, elevation=0.0),
         hit={"video_frames": lambda: dict(video_frames=5)}, miss={"image": lambda: dict(init_image=image(11))}),
    Case("SVD_img2vid_Conditioning", ("clip_vision", "sd_vae"),
         lambda: dict(init_image=image(12), width=64, height=48, video_frames=4, motion_bucket_id=127, fps=6,
                      augmentation_level=0.0),
         hit={"fps": lambda: dict(fps=12)},
         miss={"resolution": lambda: dict(height=64)}),
    Case("WanImageToVideo", ("wan_vae",), _wan(start_image=image(20, size=32)),
         hit={"prompt": lambda: dict(positive=cond(9))}, miss={"length": lambda: dict(length=9)}),
    Case("WanFirstLastFrameToVideo", ("wan_vae",),
         _wan(start_image=image(22, size=32), end_image=image(23, size=32)),
         hit={"prompt": lambda: dict(negative=cond(9))}, miss={"end_image": lambda: dict(end_image=image(24, size=32))}),
    Case("WanVaceToVideo", ("wan_vae",),
         _wan(strength=1.0, control_video=image(25, size=32, frames=5), reference_image=image(26, size=32)),
         hit={"strength": lambda: dict(strength=0.5), "prompt": lambda: dict(positive=cond(9))},
         miss={"reference_image": lambda: dict(reference_image=image(27, size=32))}),
    Case("WanPhantomSubjectToVideo", ("wan_vae",), _wan(images=image(28, size=32, frames=2)),
         hit={"prompt": lambda: dict(positive=cond(9))}, miss={"images": lambda: dict(images=image(29, size=32))}),
    Case("WanCameraImageToVideo", ("wan_vae",), _wan(start_image=image(30, size=32)),  # encodes the start image alone
         hit={"length": lambda: dict(length=9)}, miss={"start_image": lambda: dict(start_image=image(38, size=32))}),
    Case("WanFunInpaintToVideo", ("wan_vae",), _wan(start_image=image(31, size=32), end_image=image(32, size=32)),
         hit={"prompt": lambda: dict(positive=cond(9))}, miss={"start_image": lambda: dict(start_image=image(33, size=32))}),
    Case("WanFunControlToVideo", ("wan_vae",),
         _wan(start_image=image(34, size=32), control_video=image(35, size=32, frames=5)),
         hit={"prompt": lambda: dict(positive=cond(9))},
         miss={"control_video": lambda: dict(control_video=image(36, size=32, frames=5))}),
    Case("CosmosPredict2ImageToVideoLatent", ("wan_vae",),
         lambda: dict(width=32, height=32, length=5, batch_size=1, start_image=image(37, size=32)),
         hit={"batch_size": lambda: dict(batch_size=2)}, miss={"length": lambda: dict(length=9)}),
    Case("CLIPTextEncode", ("clip",), lambda: dict(text="a photo of a cat"),
         miss={"prompt": lambda: dict(text="a photo of a dog")}),
]
_BY_NODE = {case.node: case for case in CASES}
_ENCODER_INPUT = {"sd_vae": "vae", "wan_vae": "vae", "clip_vision": "clip_vision", "clip": "clip"}


@pytest.fixture
def encoders(request, spy_encoder):
    """encoders(case) -> (plain inputs, wrapped inputs, calls()): calls() counts encoder runs from then on."""
    from recall_pack.nodes.encoder_wrap import wrap

    def build(case):
        loaded = {name: request.getfixturevalue(name) for name in case.encoders}
        plain = {_ENCODER_INPUT[name]: obj for name, obj in loaded.items()}
        wrapped = {key: wrap(obj) for key, obj in plain.items()}

        def calls():
            spies = []
            for name, obj in loaded.items():
                if name in ("sd_vae", "wan_vae"):
                    spies.append(spy_encoder(obj.first_stage_model, "encode"))
                elif name == "clip_vision":
                    spies.append(spy_encoder(obj.model, "forward"))
                else:
                    spies.append(spy_encoder(obj.cond_stage_model, "encode_token_weights"))
            return lambda: sum(len(s) for s in spies)
        return plain, wrapped, calls
    return build


def statuses(recall, since: int) -> set:
    return {payload["status"] for _name, payload in recall.reports[since:]}


@pytest.mark.parametrize("node", [c.node for c in CASES])
def test_core_node_with_wrapped_encoders_equals_plain_on_miss_and_hit(recall, encoders, node):
    case = _BY_NODE[node]
    plain, wrapped, calls = encoders(case)
    inputs = case.inputs()
    expected = core(node, **inputs, **plain)
    assert_trees_equal(core(node, **inputs, **wrapped), expected)
    assert "miss" in statuses(recall, 0)
    seen, count = len(recall.reports), calls()
    assert_trees_equal(core(node, **inputs, **wrapped), expected)
    assert statuses(recall, seen) == {"hit"} and count() == 0


_HITS = [(c.node, name) for c in CASES for name in c.hit]
_MISSES = [(c.node, name) for c in CASES for name in c.miss]


@pytest.mark.parametrize("node,change", _HITS, ids=[f"{n}-{c}" for n, c in _HITS])
def test_input_that_keeps_the_pixels_hits(recall, encoders, node, change):
    case = _BY_NODE[node]
    plain, wrapped, calls = encoders(case)
    inputs = case.inputs()
    core(node, **inputs, **wrapped)
    changed = {**inputs, **case.hit[change]()}
    seen, count = len(recall.reports), calls()
    out = core(node, **changed, **wrapped)
    assert statuses(recall, seen) == {"hit"} and count() == 0
    assert_trees_equal(out, core(node, **changed, **plain))


@pytest.mark.parametrize("node,change", _MISSES, ids=[f"{n}-{c}" for n, c in _MISSES])
def test_input_that_changes_the_pixels_misses(recall, encoders, node, change):
    case = _BY_NODE[node]
    plain, wrapped, _calls = encoders(case)
    inputs = case.inputs()
    core(node, **inputs, **wrapped)
    changed = {**inputs, **case.miss[change]()}
    seen = len(recall.reports)
    out = core(node, **changed, **wrapped)
    assert "miss" in statuses(recall, seen)
    assert_trees_equal(out, core(node, **changed, **plain))
