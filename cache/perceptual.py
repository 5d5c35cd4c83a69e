"""What a tolerant ("near") match looks at: a perceptual hash to find candidates, a thumbnail to verify them.

The hash only narrows the search: two different pictures can share it (a brightness shift
keeps every gradient sign), so no entry is ever used on the hash alone. The thumbnail is
what decides: the query's and the candidate's thumbnails must agree to a PSNR at least the
user's tolerance, frame by frame.

Images are [B, H, W, C] float tensors in [0, 1], as ComfyUI passes IMAGE; any device.
"""
import math

import torch
import torch.nn.functional as F
import xxhash

HASH_BITS = 64
THUMB_SIDE = 64          # longest side of a thumbnail; shorter images are kept at full size
THUMB_DTYPE = torch.float16  # ~0.0005 steps at 1.0: far below the 40-50 dB tolerances (0.3-1% of full scale)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights, as most difference hashes use


def _frames(pixels: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] float32 view of an IMAGE batch (a single [H, W, C] image is a batch of one)."""
    if not isinstance(pixels, torch.Tensor) or pixels.dim() not in (3, 4):
        shape = tuple(getattr(pixels, "shape", ()))
        raise ValueError(f"[Recall] near match: pixels must be [B,H,W,C] or [H,W,C], got {shape}")
    if pixels.dim() == 3:
        pixels = pixels.unsqueeze(0)
    return pixels.detach().to(torch.float32).movedim(-1, 1)


def _luma(frames: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W]: BT.601 luma of the first three channels (alpha is ignored), or the one channel."""
    if frames.shape[1] >= 3:
        w = torch.tensor(_LUMA, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
        return (frames[:, :3] * w).sum(1, keepdim=True)
    return frames[:, :1]


def dhash(pixels: torch.Tensor) -> int:
    """64-bit difference hash of the batch's mean luma: bit = (left cell < right cell) on an 8x9 grid.

    Area-averaged cells make it insensitive to re-encoding noise (JPEG, a colour-profile strip);
    a changed crop, a flip or a new subject changes many bits.
    """
    luma = _luma(_frames(pixels)).mean(0, keepdim=True)
    cells = F.adaptive_avg_pool2d(luma, (8, 9))[0, 0]
    bits = (cells[:, :-1] < cells[:, 1:]).flatten().tolist()
    return sum(1 << i for i, b in enumerate(bits) if b)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def thumbnail(pixels: torch.Tensor, side: int = THUMB_SIDE) -> torch.Tensor:
    """[B, h, w, C] float16 CPU tensor: area-downsampled so the longest side is at most `side`."""
    frames = _frames(pixels)
    h, w = frames.shape[-2:]
    scale = min(1.0, side / max(h, w, 1))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = frames if size == (h, w) else F.adaptive_avg_pool2d(frames, size)
    return small.movedim(1, -1).to(THUMB_DTYPE).cpu().contiguous()


def thumb_check(thumb: torch.Tensor) -> str:
    """Checksum stored beside a thumbnail: a thumbnail changed in memory or on disk no longer matches it."""
    t = thumb.detach().cpu().contiguous()
    h = xxhash.xxh3_64()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """The lowest per-frame PSNR in dB (peak 1.0) between two thumbnails; inf when equal.

    Different shapes are not comparable: -inf (never a match). The worst frame counts, so a
    batch in which one frame differs does not pass on the strength of the others.
    """
    if a.shape != b.shape or a.dim() != 4:
        return -math.inf
    diff = a.to(torch.float32) - b.to(torch.float32)
    mse = diff.pow(2).flatten(1).mean(1)
    if not bool(torch.isfinite(mse).all()):
        return -math.inf
    worst = float(mse.max())
    return math.inf if worst == 0.0 else 10.0 * math.log10(1.0 / worst)
