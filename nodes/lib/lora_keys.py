"""LoRA files: read once, recognise the key format, map it to the kohya names ComfyUI knows, guess the base model.

Three key formats carry the same low-rank pairs (up @ down, scaled by alpha / rank):

    kohya      lora_unet_<module_with_underscores>.lora_down.weight / .lora_up.weight / .alpha
               lora_te_ (SD1.5 text encoder), lora_te1_ / lora_te2_ (SDXL's two)
    diffusers  unet.<module>.lora.down.weight / .lora.up.weight, or .lora_A.weight / .lora_B.weight,
               or (old attention processors) unet.<...>.processor.to_q_lora.down.weight;
               text_encoder. / text_encoder_2. for the text encoders
    PEFT       base_model.model.<module>.lora_A.weight / .lora_B.weight (+ .default. variants);
               alpha lives in adapter_config.json beside the file, not in the tensors

ComfyUI's key map (comfy.lora.model_lora_keys_unet / _clip) accepts kohya names built from both the
original SD module names and the diffusers ones, but for SD-family UNets not the PEFT prefix nor the
diffusers `.to_q` attention names, so everything is normalised to kohya here and ComfyUI's own
loader does the rest. `origin` keeps, for every normalised key, the file key it came from, so that
keys ComfyUI does not consume can be reported under the names the user's file has.

Base model guesses come from shapes and names: the cross-attention key/value input width is the text
context dim (768 SD1.5, 1024 SD2.x, 2048 SDXL family); the depth of the transformer stack in the
deepest down block separates SDXL (10) from SSD-1B (4).

ComfyUI-free (the node layer passes in what it knows about the MODEL).
"""
from __future__ import annotations

import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

KOHYA, DIFFUSERS, PEFT = "kohya", "diffusers", "peft"

SD15, SD2, SDXL, SSD1B, SDXL_FAMILY = "SD1.5", "SD2.x", "SDXL", "SSD-1B", "SDXL-family"
_FAMILY_BY_CONTEXT = {768: SD15, 1024: SD2, 2048: SDXL_FAMILY}
_SDXL_DEEP = 10   # transformer blocks per attention in SDXL's deepest level
_SSD1B_DEEP = 4   # SSD-1B keeps 4 of them

# file-key suffix -> kohya suffix; longest first so ".lora_A.default.weight" wins over ".weight" forms
_SUFFIXES = (
    (".lora_linear_layer.down.weight", ".lora_down.weight"),
    (".lora_linear_layer.up.weight", ".lora_up.weight"),
    (".lora_A.default.weight", ".lora_down.weight"),
    (".lora_B.default.weight", ".lora_up.weight"),
    ("_lora.down.weight", ".lora_down.weight"),
    ("_lora.up.weight", ".lora_up.weight"),
    (".lora.down.weight", ".lora_down.weight"),
    (".lora.up.weight", ".lora_up.weight"),
    (".lora_A.weight", ".lora_down.weight"),
    (".lora_B.weight", ".lora_up.weight"),
    (".alpha", ".alpha"),
)
_KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
_KOHYA_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha", ".lora_mid.weight", ".dora_scale")


class LoraFileError(ValueError):
    """The file is unreadable, truncated, or holds no LoRA weights; the message names the file."""


@dataclass
class ParsedLora:
    """A LoRA file normalised to kohya names; what the RAM cache keeps."""
    name: str
    fmt: str                                   # KOHYA | DIFFUSERS | PEFT
    tensors: dict[str, torch.Tensor]           # kohya-named
    origin: dict[str, str]                     # kohya name -> file key
    base: str | None                           # SD15 | SD2 | SDXL | SSD1B | SDXL_FAMILY | None (no evidence)
    base_reason: str = ""
    injected_alpha: set[str] = field(default_factory=set)  # alphas taken from adapter_config.json

    @property
    def file_keys(self) -> list[str]:
        return sorted(v for k, v in self.origin.items() if k not in self.injected_alpha)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


# ---------------------------------------------------------------- reading
# (the bytes come from lib/file_digest.py's FileDigests.read, which hashes them on the way)

# safetensors dtype names -> torch dtypes (the format's spec lists these)
_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


def _safetensors_views(data: bytearray, name: str) -> dict[str, torch.Tensor]:
    """Tensors viewing `data` (8-byte little-endian header size, JSON header, then the tensor bytes).

    Zero-copy: safetensors.torch.load(bytes) copies every tensor twice, which made a first load
    several times slower than ComfyUI's memory-mapped read. Every offset is checked against the
    buffer, so a truncated file is an error naming it, never a short or garbage tensor.
    """
    def bad(why: str) -> LoraFileError:
        return LoraFileError(
            f"[Recall] LCM-LoRA Loader: '{name}' is not a readable safetensors file ({why}) "
            f"(expected a complete LoRA .safetensors file). Download it again; a partial download "
            f"is the usual cause.")
    if len(data) < 8:
        raise bad(f"only {len(data)} bytes")
    size = int.from_bytes(data[:8], "little")
    if 8 + size > len(data):
        raise bad(f"the header needs {size} bytes, the file has {len(data) - 8} after the size field")
    try:
        header = json.loads(bytes(memoryview(data)[8:8 + size]))
    except ValueError as exc:
        raise bad(f"the header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    body, body_len, out = 8 + size, len(data) - 8 - size, {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype = _ST_DTYPES[info["dtype"]]
            shape = [int(n) for n in info["shape"]]
            begin, end = (int(n) for n in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"entry {key!r} is malformed: {exc!r}") from exc
        count = math.prod(shape)
        if not 0 <= begin <= end <= body_len or end - begin != count * torch.empty((), dtype=dtype).element_size():
            raise bad(f"tensor {key!r} needs bytes {begin}..{end}, the data section has {body_len}")
        out[key] = (torch.frombuffer(data, dtype=dtype, count=count, offset=body + begin).reshape(shape)
                    if count else torch.empty(shape, dtype=dtype))
    return out


def load_tensors(data: bytes | bytearray, name: str) -> dict[str, torch.Tensor]:
    """Parse safetensors (or, for other suffixes, a weights-only torch file) from the file's bytes."""
    if name.lower().endswith(".safetensors"):
        return _safetensors_views(data if isinstance(data, bytearray) else bytearray(data), name)
    try:
        sd = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LoraFileError(
            f"[Recall] LCM-LoRA Loader: '{name}' could not be read as a torch weights file ({exc}) "
            f"(expected a LoRA .safetensors or .pt file). Download it again or convert it to safetensors.") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise LoraFileError(f"[Recall] LCM-LoRA Loader: '{name}' holds no tensor dictionary "
                            f"(expected a LoRA state dict). Pick a LoRA file.")
    return sd


def peft_alpha(path: str | os.PathLike) -> float | None:
    """lora_alpha from a PEFT adapter_config.json beside the file, if there is one."""
    config = Path(path).with_name("adapter_config.json")
    try:
        value = json.loads(config.read_text()).get("lora_alpha")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


# ---------------------------------------------------------------- formats


def detect_format(keys) -> str | None:
    """KOHYA, DIFFUSERS or PEFT from the key names; None when no key looks like a LoRA weight."""
    keys = list(keys)
    if any(k.startswith(_KOHYA_PREFIXES) and k.endswith(_KOHYA_SUFFIXES) for k in keys):
        return KOHYA
    lora_like = [k for k in keys if any(k.endswith(s) for s, _ in _SUFFIXES[:-1])]
    if any(k.startswith("base_model.model.") for k in lora_like):
        return PEFT
    if lora_like:
        return DIFFUSERS
    return None


def _split_suffix(key: str) -> tuple[str, str] | None:
    for suffix, kohya in _SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)], kohya
    return None


def _kohya_module(module: str) -> str | None:
    """A diffusers/PEFT module path -> kohya stem (lora_unet_... / lora_te_... / lora_te2_...)."""
    for prefix in ("base_model.model.", "unet.base_model.model."):
        if module.startswith(prefix):
            module = module[len(prefix):]
            if module.startswith("text_model."):
                module = "text_encoder." + module
            elif not module.startswith(("unet.", "text_encoder.", "text_encoder_2.")):
                module = "unet." + module
    # old attention processors: attn1.processor.to_q_lora -> attn1.to_q; to_out_lora -> to_out.0
    module = module.replace(".processor.", ".")
    if module.startswith("text_encoder"):
        # diffusers' old text-encoder processors name CLIP's q_proj/k_proj/v_proj/out_proj to_q/.../to_out
        for old, new in (("to_q", "q_proj"), ("to_k", "k_proj"), ("to_v", "v_proj"), ("to_out", "out_proj")):
            if module.endswith(".self_attn." + old):
                module = module[: -len(old)] + new
    elif module.endswith(".to_out"):
        module += ".0"
    for prefix, stem in (("unet.", "lora_unet_"), ("text_encoder_2.", "lora_te2_"), ("text_encoder.", "lora_te_")):
        if module.startswith(prefix):
            return stem + module[len(prefix):].replace(".", "_")
    return None


def normalize(sd: dict[str, torch.Tensor], fmt: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename to kohya names. Keys that cannot be mapped keep their name (they surface as unapplied)."""
    if fmt == KOHYA:
        return dict(sd), {k: k for k in sd}
    tensors, origin = {}, {}
    for key, value in sd.items():
        split = _split_suffix(key)
        stem = _kohya_module(split[0]) if split else None
        new = stem + split[1] if stem else key
        # old processors name the module "to_q_lora": the suffix split leaves "..._to_q" already
        if new in tensors:  # two file keys for one target: keep both visible, the second unmapped
            new = key
        tensors[new] = value
        origin[new] = key
    return tensors, origin


def inject_alpha(tensors: dict, origin: dict, alpha: float) -> set[str]:
    """Add `<stem>.alpha` for every pair lacking one (PEFT keeps alpha outside the tensors)."""
    added = set()
    for key in list(tensors):
        if key.endswith(".lora_down.weight"):
            stem = key[: -len(".lora_down.weight")]
            if stem + ".alpha" not in tensors:
                tensors[stem + ".alpha"] = torch.tensor(alpha)
                origin[stem + ".alpha"] = stem + ".alpha"
                added.add(stem + ".alpha")
    return added


# ---------------------------------------------------------------- base models

_CROSS_KV = re.compile(r"attn2_to_[kv]\.lora_down\.weight$")
_DEEP_BLOCK = re.compile(r"^lora_unet_(?:down_blocks_2_attentions_\d+|input_blocks_[78]_1)_transformer_blocks_(\d+)_")


def detect_lora_base(tensors: dict[str, torch.Tensor]) -> tuple[str | None, str]:
    """(base, reason) from kohya-named tensors; base None when the file gives no evidence."""
    context = sorted({int(v.shape[1]) for k, v in tensors.items() if _CROSS_KV.search(k) and v.ndim >= 2})
    if not context:
        if any(k.startswith(("lora_te1_", "lora_te2_")) for k in tensors):
            return SDXL_FAMILY, "it has keys for two text encoders"
        return None, "no cross-attention keys"
    if len(context) > 1:
        return None, f"mixed cross-attention widths {context}"
    family = _FAMILY_BY_CONTEXT.get(context[0])
    reason = f"cross-attention input width {context[0]}"
    if family is None:
        return None, reason
    if family != SDXL_FAMILY:
        return family, reason
    depths = [int(m.group(1)) + 1 for k in tensors if (m := _DEEP_BLOCK.match(k))]
    if not depths:
        return SDXL_FAMILY, reason
    depth = max(depths)
    if depth > _SSD1B_DEEP:
        return SDXL, f"{reason}, {depth} transformer blocks in the deepest level"
    if depth == _SSD1B_DEEP:
        return SSD1B, f"{reason}, {depth} transformer blocks in the deepest level"
    return SDXL_FAMILY, f"{reason}, {depth} transformer blocks in the deepest level"


def model_base(context_dim: int | None, transformer_depth, class_name: str = "") -> str:
    """The MODEL's base from its UNet config (context_dim, transformer_depth list)."""
    family = _FAMILY_BY_CONTEXT.get(context_dim) if context_dim else None
    if family is None:
        return class_name or "an unknown model"
    if family != SDXL_FAMILY:
        return family
    depth = max(transformer_depth or [0])
    if depth >= _SDXL_DEEP:
        return SDXL
    if depth == _SSD1B_DEEP:
        return SSD1B
    return f"{SDXL_FAMILY} ({class_name or f'depth {depth}'})"


def _family(base: str) -> str:
    return SDXL_FAMILY if base in (SDXL, SSD1B) or base.startswith(SDXL_FAMILY) else base


def check_base(lora_name: str, lora_base: str | None, reason: str, model: str) -> None:
    """ValueError naming both when the LoRA was made for another base model than the MODEL."""
    if lora_base is None:
        return
    same_family = _family(lora_base) == _family(model)
    if same_family and (lora_base == SDXL_FAMILY or model.startswith(SDXL_FAMILY) or lora_base == model):
        return
    raise ValueError(
        f"[Recall] LCM-LoRA Loader: LoRA '{lora_name}' is for {lora_base} ({reason}), the MODEL is {model} "
        f"(expected a LoRA for {model}). Pick the LCM-LoRA made for {model}, e.g. lcm-lora-"
        f"{'sdv1-5' if model == SD15 else 'sdxl' if model == SDXL else 'ssd-1b' if model == SSD1B else '<base>'}.")


def parse(data: bytes, name: str, *, alpha: float | None = None) -> ParsedLora:
    """Bytes of a LoRA file -> ParsedLora; LoraFileError naming the file if it holds no LoRA."""
    sd = load_tensors(data, name)
    fmt = detect_format(sd.keys())
    if fmt is None:
        sample = ", ".join(sorted(sd)[:3]) or "none"
        raise LoraFileError(
            f"[Recall] LCM-LoRA Loader: '{name}' holds no LoRA weights (found {len(sd)} keys like {sample}; "
            f"expected kohya lora_unet_*, diffusers unet.*.lora_A/lora.down or PEFT base_model.model.* keys). "
            f"Pick a LoRA file; checkpoints belong in a checkpoint loader.")
    tensors, origin = normalize(sd, fmt)
    injected = inject_alpha(tensors, origin, alpha) if alpha is not None else set()
    base, reason = detect_lora_base(tensors)
    return ParsedLora(name=name, fmt=fmt, tensors=tensors, origin=origin, base=base,
                      base_reason=reason, injected_alpha=injected)
