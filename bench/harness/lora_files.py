"""Synthetic LoRA files in the kohya, diffusers and PEFT key formats, for SD1.5 / SDXL / SSD-1B layouts.

A LoRA is described format-free as {diffusers module name: (down, up, alpha)} (a "pair set");
`encode(pairs, fmt)` writes it under one key format and `reference_delta` gives the merge every
format must produce: strength * alpha / rank * up @ down (alpha = rank where the format has none).

    sd15_targets(model_channels)   diffusers module names + weight shapes of SD1.5's attention layers
    sdxl_targets(depth)            a few SDXL-layout targets (context 2048, `depth` blocks in the deepest level)
    make_pairs(targets, rank, seed)
    encode(pairs, fmt)             fmt in FORMATS
    write(path, tensors)
No ComfyUI imports: the unit tests use it in the plain test venv.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

FORMATS = ("kohya", "diffusers", "diffusers_ab", "diffusers_old", "peft")
_TE_NAMES = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "out_proj": "to_out"}


def _attention(prefix: str, ch: int, context: int, conv_proj: bool) -> dict:
    out = {f"{prefix}.proj_in": (ch, ch, 1, 1) if conv_proj else (ch, ch)}
    block = f"{prefix}.transformer_blocks.0"
    for attn, kv_in in (("attn1", ch), ("attn2", context)):
        out[f"{block}.{attn}.to_q"] = (ch, ch)
        out[f"{block}.{attn}.to_k"] = (ch, kv_in)
        out[f"{block}.{attn}.to_v"] = (ch, kv_in)
        out[f"{block}.{attn}.to_out.0"] = (ch, ch)
    out[f"{block}.ff.net.2"] = (ch, ch * 4)
    return out


def sd15_targets(model_channels: int = 320, context_dim: int = 768) -> dict[str, tuple]:
    """Every attention-side layer of an SD1.5 UNet (diffusers names) with its weight shape."""
    mult = (1, 2, 4)
    targets = {}
    for i, m in enumerate(mult):
        for j in range(2):
            targets.update(_attention(f"down_blocks.{i}.attentions.{j}", model_channels * m, context_dim, True))
    targets.update(_attention("mid_block.attentions.0", model_channels * 4, context_dim, True))
    for i, m in zip((1, 2, 3), (4, 2, 1)):
        for j in range(3):
            targets.update(_attention(f"up_blocks.{i}.attentions.{j}", model_channels * m, context_dim, True))
    return targets


def sdxl_targets(depth: int = 10, model_channels: int = 64) -> dict[str, tuple]:
    """Cross-attention targets of SDXL's deepest down level (context 2048), `depth` transformer blocks."""
    ch = model_channels * 4
    targets = {}
    for b in range(depth):
        block = f"down_blocks.2.attentions.0.transformer_blocks.{b}"
        targets[f"{block}.attn2.to_k"] = (ch, 2048)
        targets[f"{block}.attn2.to_q"] = (ch, ch)
    return targets


def clip_targets(layers: int = 1, width: int = 768) -> dict[str, tuple]:
    return {f"text_model.encoder.layers.{i}.self_attn.{p}": (width, width)
            for i in range(layers) for p in ("q_proj", "k_proj", "v_proj", "out_proj")}


def make_pairs(targets: dict[str, tuple], rank: int = 4, alpha: float | None = 2.0, seed: int = 0,
               scale: float = 0.1) -> dict[str, tuple]:
    """{module: (down, up, alpha)} with random values (alpha None: the format's default, alpha = rank)."""
    gen = torch.Generator().manual_seed(seed)
    pairs = {}
    for name, shape in targets.items():
        out_dim, in_dim, *kernel = shape
        down = torch.randn((rank, in_dim, *kernel), generator=gen) * scale
        up = torch.randn((out_dim, rank, *[1 for _ in kernel]), generator=gen) * scale
        pairs[name] = (down, up, alpha)
    return pairs


def _stem(module: str, part: str) -> str:
    head = {"unet": "lora_unet_", "text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}[part]
    return head + module.replace(".", "_")


def encode(pairs: dict[str, tuple], fmt: str, part: str = "unet") -> dict[str, torch.Tensor]:
    """The pairs under one key format. part: "unet" | "text_encoder" | "text_encoder_2"."""
    out = {}
    for module, (down, up, alpha) in pairs.items():
        if fmt == "kohya":
            stem = _stem(module, part)
            out[f"{stem}.lora_down.weight"], out[f"{stem}.lora_up.weight"] = down, up
            if alpha is not None:
                out[f"{stem}.alpha"] = torch.tensor(float(alpha))
        elif fmt == "diffusers":
            out[f"{part}.{module}.lora.down.weight"], out[f"{part}.{module}.lora.up.weight"] = down, up
        elif fmt == "diffusers_ab":
            out[f"{part}.{module}.lora_A.weight"], out[f"{part}.{module}.lora_B.weight"] = down, up
        elif fmt == "diffusers_old":  # attention processors, as diffusers' own kohya converter writes them
            name = module.replace(".to_out.0", ".to_out")
            for clip_name, proc in _TE_NAMES.items():
                name = name.replace(f"self_attn.{clip_name}", f"self_attn.{proc}")
            head, _, last = name.rpartition(".")
            if last in ("to_q", "to_k", "to_v", "to_out"):
                processor = "processor." if part == "unet" else ""
                base = f"{part}.{head}.{processor}{last}_lora"
                out[f"{base}.down.weight"], out[f"{base}.up.weight"] = down, up
            else:
                out[f"{part}.{module}.lora.down.weight"], out[f"{part}.{module}.lora.up.weight"] = down, up
        elif fmt == "peft":
            prefix = "base_model.model."
            out[f"{prefix}{module}.lora_A.weight"], out[f"{prefix}{module}.lora_B.weight"] = down, up
        else:
            raise ValueError(f"unknown LoRA key format {fmt!r} (expected one of {FORMATS})")
    return out


def effective_alpha(pair: tuple, fmt: str, peft_alpha: float | None = None) -> float:
    down, _, alpha = pair
    rank = down.shape[0]
    if fmt == "kohya" and alpha is not None:
        return float(alpha)
    if fmt == "peft" and peft_alpha is not None:
        return float(peft_alpha)
    return float(rank)


def reference_delta(pair: tuple, strength: float, alpha: float) -> torch.Tensor:
    """strength * alpha / rank * up @ down, reshaped like the weight (conv kernels flattened for the product)."""
    down, up, _ = pair
    rank = down.shape[0]
    delta = up.flatten(1).double() @ down.flatten(1).double()
    return (strength * alpha / rank * delta).reshape(up.shape[0], *down.shape[1:])


def write(path: Path, tensors: dict[str, torch.Tensor], peft_alpha: float | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    if peft_alpha is not None:
        (path.parent / "adapter_config.json").write_text(json.dumps({"lora_alpha": peft_alpha, "peft_type": "LORA"}))
    return path
