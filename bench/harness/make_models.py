"""Writes random-weight model files in the real ComfyUI key layouts.

Run with the ComfyUI venv's python (it imports ComfyUI's own classes):
    python make_models.py --comfyui COMFYUI_PATH --out MODELS_DIR [NAME ...]

The modules are built on the `meta` device, so we get ComfyUI's exact key
names and shapes without allocating, then every tensor is filled here:
ComfyUI's layers skip weight initialisation, so nothing else would.
Weights are normal / sqrt(fan_in) (keeps activations near unit scale through
deep stacks, so outputs stay finite), norm scales 1, biases 0. Each file has
its own seed, so a rebuild gives the same bytes. Files are written to a temp
name and renamed, so a crash never leaves a half file under the final name.
"""
import argparse
import fcntl
import os
import sys
import time
from pathlib import Path

# name -> (ComfyUI models sub-folder, file name, seed)
MODELS = {
    "sd15_vae": ("vae", "recall_test_sd15_vae.safetensors", 1501),
    "wan21_vae": ("vae", "recall_test_wan21_vae.safetensors", 2101),
    "clip_vision": ("clip_vision", "recall_test_clip_vision_vit_l14.safetensors", 1401),
    "sd15_checkpoint": ("checkpoints", "recall_test_sd15.safetensors", 1502),
}
# Built only when a test asks for them by name (the session-wide `models` fixture builds MODELS):
# larger files that one test file needs.
EXTRA_MODELS = {
    "wan22_vae": ("vae", "recall_test_wan22_vae.safetensors", 2201),
    # ViT-H/14 at its real size (632M parameters, 1.26 GB fp16): ComfyUI tells ViT-H by a 31st layer.
    "clip_vision_h": ("clip_vision", "recall_test_clip_vision_vit_h14.safetensors", 1402),
    # HunyuanVideo's causal 3D AutoencoderKL (16 latent channels, 4x time, 8x space compression).
    "hunyuan_video_vae": ("vae", "recall_test_hunyuan_video_vae.safetensors", 3101),
}

ALL_MODELS = {**MODELS, **EXTRA_MODELS}

# SD1.5 VAE (ComfyUI's default SD1.x ddconfig) and the SD1.5 UNet config that
# ComfyUI's model detection derives from a real SD1.5 checkpoint.
SD_VAE_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
                   "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
SD15_UNET = {"use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
             "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4], "use_spatial_transformer": True,
             "legacy": False, "adm_in_channels": None, "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
             "transformer_depth_middle": 1, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
             "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8, "num_head_channels": -1,
             "use_temporal_attention": False, "use_temporal_resblock": False}
WAN22_VAE = {"dim": 160, "z_dim": 48, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
             "temperal_downsample": [False, True, True], "dropout": 0.0}  # ComfyUI's Wan 2.2 ddconfig
# ComfyUI's HunyuanVideo VAE ddconfig (the branch that a "decoder.conv_in.conv.weight" key selects).
HUNYUAN_VIDEO_VAE = {**SD_VAE_DDCONFIG, "z_channels": 16, "conv3d": True, "time_compress": 4}
WAN21_VAE = {"dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
             "temperal_downsample": [False, True, True], "dropout": 0.0}


def use_comfyui(comfy_root: Path) -> None:
    """Make ComfyUI importable and CPU-only before anything imports comfy.model_management."""
    if str(comfy_root) not in sys.path:
        sys.path.insert(0, str(comfy_root))
    import comfy.cli_args
    comfy.cli_args.args.cpu = True


def _shapes(module) -> dict:
    """name -> (shape, dtype) of everything load_state_dict would expect."""
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


def sd_vae_layout() -> dict:
    import torch
    from comfy.ldm.models.autoencoder import AutoencoderKL
    with torch.device("meta"):
        return _shapes(AutoencoderKL(ddconfig=dict(SD_VAE_DDCONFIG), embed_dim=4))


def wan21_vae_layout() -> dict:
    import torch
    import comfy.ldm.wan.vae
    with torch.device("meta"):
        return _shapes(comfy.ldm.wan.vae.WanVAE(**WAN21_VAE))


def wan22_vae_layout() -> dict:
    import torch
    import comfy.ldm.wan.vae2_2
    with torch.device("meta"):
        return _shapes(comfy.ldm.wan.vae2_2.WanVAE(**WAN22_VAE))


def hunyuan_video_vae_layout() -> dict:
    import torch
    from comfy.ldm.models.autoencoder import AutoencoderKL
    with torch.device("meta"):
        return _shapes(AutoencoderKL(ddconfig=dict(HUNYUAN_VIDEO_VAE), embed_dim=16))


def clip_vision_layout(comfy_root: Path, config_name: str = "clip_vision_config_vitl.json") -> dict:
    import json
    import torch
    import comfy.clip_model
    import comfy.ops
    config = json.loads((comfy_root / "comfy" / config_name).read_text())
    with torch.device("meta"):
        model = comfy.clip_model.CLIPVisionModelProjection(config, torch.float32, "meta", comfy.ops.manual_cast)
    return _shapes(model)


def clip_l_layout(comfy_root: Path) -> dict:
    import json
    import torch
    import comfy.clip_model
    import comfy.ops
    config = json.loads((comfy_root / "comfy" / "sd1_clip_config.json").read_text())
    with torch.device("meta"):
        model = comfy.clip_model.CLIPTextModel(config, torch.float32, "meta", comfy.ops.manual_cast)
    # Real SD1.5 checkpoints carry no text projection (ComfyUI drops it on save too).
    return {k: v for k, v in _shapes(model).items() if not k.startswith("text_projection")}


def sd15_unet_layout() -> dict:
    import torch
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    with torch.device("meta"):
        model = UNetModel(**SD15_UNET, dtype=torch.float16, device="meta", operations=comfy.ops.disable_weight_init)
    return _shapes(model)


def layout(name: str, comfy_root: Path) -> dict:
    """Full key -> (shape, dtype) for one file, with the prefixes a real file has."""
    if name == "sd15_vae":
        return sd_vae_layout()
    if name == "wan21_vae":
        return wan21_vae_layout()
    if name == "wan22_vae":
        return wan22_vae_layout()
    if name == "hunyuan_video_vae":
        return hunyuan_video_vae_layout()
    if name == "clip_vision":
        return clip_vision_layout(comfy_root)
    if name == "clip_vision_h":
        return clip_vision_layout(comfy_root, "clip_vision_config_h.json")
    if name == "sd15_checkpoint":
        out = {}
        for prefix, part in (("model.diffusion_model.", sd15_unet_layout()),
                             ("first_stage_model.", sd_vae_layout()),
                             ("cond_stage_model.transformer.", clip_l_layout(comfy_root))):
            out.update({prefix + k: v for k, v in part.items()})
        return out
    raise ValueError(f"unknown model {name!r} (expected one of {sorted(ALL_MODELS)})")


def fill(key: str, shape: tuple, dtype, gen):
    """One tensor: integer buffers get positions, biases 0, norm scales 1, weights N(0, 1/fan_in)."""
    import torch
    leaf = key.rsplit(".", 1)[-1]
    if not dtype.is_floating_point:
        return torch.arange(shape[-1], dtype=dtype).expand(shape).contiguous()
    if leaf == "bias" or leaf == "beta":
        return torch.zeros(shape, dtype=torch.float16)
    if leaf.endswith("embedding") and len(shape) == 1:  # CLIP's class token
        return (torch.randn(shape, generator=gen) * 0.02).to(torch.float16)
    # 1-D weights in these models are all norm scales (GroupNorm, LayerNorm, RMS gamma).
    if leaf in ("gamma", "logit_scale") or len(shape) <= 1 or _is_norm(key):
        return torch.ones(shape, dtype=torch.float16)
    fan_in = 1
    for d in shape[1:]:
        fan_in *= d
    return (torch.randn(shape, generator=gen) / fan_in ** 0.5).to(torch.float16)


def _is_norm(key: str) -> bool:
    parts = key.lower().split(".")[:-1]
    return any("norm" in p or p.startswith("ln") or p.endswith("layernorm") for p in parts)


def build(name: str, comfy_root: Path, out_dir: Path) -> Path:
    import torch
    from safetensors.torch import save_file
    folder, filename, seed = ALL_MODELS[name]
    target = out_dir / folder / filename
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    tensors = {k: fill(k, shape, dtype, gen) for k, (shape, dtype) in sorted(layout(name, comfy_root).items())}
    tmp = target.with_name(f".{filename}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata={"recall_test": f"random weights, seed {seed}"})
    os.chmod(tmp, 0o644)  # shared cache: other users' test runs read it
    os.replace(tmp, target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("names", nargs="*", default=list(MODELS))
    args = parser.parse_args(argv)
    use_comfyui(args.comfyui.resolve())
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / ".lock", "w") as lock:
        # Several test sessions may start at once: one builds, the others wait and reuse.
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in args.names:
            folder, filename, _ = ALL_MODELS[name]
            if (args.out / folder / filename).exists():
                continue
            start = time.perf_counter()
            path = build(name, args.comfyui.resolve(), args.out)
            print(f"[make_models] {name}: {path} ({path.stat().st_size / 1e6:.0f} MB) "
                  f"in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
