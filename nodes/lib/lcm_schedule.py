"""LCM timestep selection (Luo et al. 2023, "Latent Consistency Models", sec. 4.3) and its sigmas.

A latent consistency model is distilled on a coarse grid of the training
timesteps: with T = num_train_timesteps and N = original_inference_steps it sees
only t_n = n * k - 1 for n = 1..N, where k = T // N is the skipping step of the
paper. At inference LCM takes `steps` timesteps from that grid, spaced evenly
by index and starting at the noisiest one. This module reproduces diffusers'
`LCMScheduler.set_timesteps(num_inference_steps, original_inference_steps,
strength)` exactly (the tests compare against it), then looks the timesteps up
in a model's per-timestep sigma table, so ComfyUI samplers get the same noise
levels the LCM was distilled on.

ComfyUI-free: the node passes in the sigma table.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

MIN_STEPS = 1
MAX_STEPS = 8  # LCM-LoRA's useful range; beyond 8 steps plain samplers do as well


def lcm_timesteps(steps: int, original_inference_steps: int = 50, *, num_train_timesteps: int = 1000,
                  strength: float = 1.0) -> list[int]:
    """Discrete timesteps, noisiest first, as diffusers' LCMScheduler selects them.

    Args:
        steps: inference steps (1..original_inference_steps * strength).
        original_inference_steps: N, the size of the distillation grid (50 for the released LCM-LoRAs).
        num_train_timesteps: T, the training schedule's length (1000 for SD1.5 / SDXL).
        strength: img2img strength in (0, 1]; keeps the first floor(N * strength) grid points
            (ComfyUI calls this `denoise`).
    """
    if not 1 <= original_inference_steps <= num_train_timesteps:
        raise ValueError(f"[Recall] LCM Scheduler: original_inference_steps is {original_inference_steps} "
                         f"(expected 1..{num_train_timesteps}). Use 50 for the released LCM-LoRAs.")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"[Recall] LCM Scheduler: denoise is {strength} (expected > 0 and <= 1). "
                         f"Use 1.0 for text-to-image.")
    # skipping step k of the paper, and the distillation grid t_n = n * k - 1, n = 1..N * strength
    k = num_train_timesteps // original_inference_steps
    grid_len = int(original_inference_steps * strength)
    if steps < 1 or steps > grid_len:
        raise ValueError(f"[Recall] LCM Scheduler: steps is {steps} (expected 1..{grid_len} for "
                         f"original_inference_steps {original_inference_steps} and denoise {strength}). "
                         f"Lower steps or raise denoise.")
    grid = [n * k - 1 for n in range(grid_len, 0, -1)]  # noisiest first
    # evenly spaced indices into the grid: diffusers floors np.linspace(0, len, steps, endpoint=False),
    # which numpy computes as i * (len / steps) in float64. The float error is part of the result
    # (original_inference_steps 30, 22 steps: index 11 is floor(14.999999999999998) = 14, where exact
    # arithmetic gives 15), so it is reproduced here rather than the exact floor(i * len / steps).
    spacing = grid_len / steps
    indices = [math.floor(i * spacing) for i in range(steps)]
    return [grid[i] for i in indices]


def sigmas_for_timesteps(sigma_table: torch.Tensor, timesteps: Sequence[int]) -> torch.Tensor:
    """sigma(t) for each timestep from a table indexed by discrete timestep, then a final 0.

    sigma_table[t] = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t]), the full training schedule
    (ComfyUI's ModelSamplingDiscrete.sigmas of an unpatched model). The trailing 0 is the
    convention of ComfyUI's SIGMAS: the last step denoises fully.
    """
    if sigma_table.ndim != 1 or len(sigma_table) == 0:
        raise ValueError(f"[Recall] LCM Scheduler: the model's sigma table has shape {tuple(sigma_table.shape)} "
                         f"(expected a 1-D table with one sigma per training timestep).")
    last = len(sigma_table) - 1
    bad = [t for t in timesteps if not 0 <= t <= last]
    if bad:
        raise ValueError(f"[Recall] LCM Scheduler: timesteps {bad} lie outside the model's schedule "
                         f"(expected 0..{last}). Lower original_inference_steps.")
    index = torch.tensor(list(timesteps), dtype=torch.long)
    values = sigma_table.detach().float().cpu()[index]
    return torch.cat([values, values.new_zeros(1)])


def sgm_uniform_timesteps(steps: int, *, t_max: float, t_min: float) -> list[float]:
    """The (continuous) timesteps ComfyUI's sgm_uniform scheduler spaces linearly, for comparison.

    sgm_uniform takes linspace(t_max, t_min, steps + 1)[:-1]: evenly spaced in timestep,
    generally between the points of the LCM grid.
    """
    if steps < 1:
        raise ValueError(f"[Recall] LCM Scheduler: steps is {steps} (expected >= 1).")
    return [t_max + (t_min - t_max) * i / steps for i in range(steps)]


def nearest_grid_timestep(t: float, num_train_timesteps: int = 1000, original_inference_steps: int = 50) -> int:
    """The point of the LCM distillation grid nearest a timestep (what an LCM-patched model snaps to)."""
    k = num_train_timesteps // original_inference_steps
    n = min(max(math.floor((t + 1) / k + 0.5), 1), original_inference_steps)
    return n * k - 1
