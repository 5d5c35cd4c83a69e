"""Test pictures for near matching: a smooth photo-like image, its JPEG round trip, a same-hash impostor."""
import io

import numpy as np
import torch
import torch.nn.functional as F


def photo(seed: int, size=(256, 256)) -> torch.Tensor:
    """[1, H, W, 3] float32 in [0.1, 0.8]: smooth colour blobs plus fine grain, like a photograph
    (room to shift it brighter without clipping)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand((1, 3, 6, 6), generator=g)
    smooth = F.interpolate(coarse, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    grain = torch.rand((1, 3, *size), generator=g) * 0.05
    img = 0.1 + 0.65 * smooth + grain
    return to_8bit(img.movedim(1, -1))


def to_8bit(img: torch.Tensor) -> torch.Tensor:
    """As ComfyUI's LoadImage gives a PNG: 8-bit values / 255."""
    return (img.clamp(0, 1) * 255).round() / 255


def jpeg_round_trip(img: torch.Tensor, quality: int = 95) -> torch.Tensor:
    """The image saved as a JPEG at `quality` and loaded back as LoadImage would."""
    from PIL import Image
    arr = (img[0].numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(back.copy())[None]


def brighter(img: torch.Tensor, by: float = 0.15) -> torch.Tensor:
    """A different picture with the same difference hash: a constant shift keeps every gradient's sign."""
    return to_8bit(img + by)


def one_pixel_edit(img: torch.Tensor) -> torch.Tensor:
    out = img.clone()
    out[0, 5, 7, 0] = 1.0 - out[0, 5, 7, 0]
    return out
