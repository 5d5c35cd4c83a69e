"""The DDIM update with eta (Song, Meng, Ermon 2021, "Denoising Diffusion Implicit Models", arXiv:2010.02502).

No ComfyUI import.  Two views of one update:

* :func:`ddim_step` works on diffusers' x_t (``x_t = sqrt(alpha_t) x_0 + sqrt(1 - alpha_t) eps``) and
  takes a raw model output, like diffusers' ``DDIMScheduler.step``.
* :func:`sample_ddim` is a k-diffusion-style sampler for ComfyUI.  ComfyUI's samplers work on
  ``x = x_0 + sigma_t eps = x_t / sqrt(alpha_t) = x_t * sqrt(1 + sigma_t^2)`` and its model returns the
  denoised x_0 for any parameterisation (epsilon, v, x0).  Each step maps to x_t, applies formula (12)
  and maps back with the new alpha, so both views give the same samples for the same model and noise.

Options (defaults):

    eta            0.0    eta of formula (16): 0 = deterministic DDIM, 1 = the DDPM posterior variance,
                          values between interpolate.  Must be in [0, 1].
    prediction_type "epsilon"  what the raw model output is in :func:`ddim_step`: "epsilon" (DDIM eq. 12),
                          "v_prediction" (Salimans & Ho 2022, "Progressive Distillation", section 4) or "sample".
    clip_sample    None   clamp the predicted x_0 to [-c, c] before the update, as diffusers' clip_sample
                          with clip_sample_range c (the noise prediction stays unclamped, diffusers'
                          use_clipped_model_output=False).  For pixel-space models trained on [-1, 1];
                          latents are not bounded that way, so latent models (SD configs) leave it off.
    step_alphas    None   (sample_ddim) alpha each step lands on; None = the alpha of the next sigma.
                          diffusers' step target comes from ddim_schedule.diffusers_step_alphas.

Paper symbols used in comments: alpha_t = alpha-bar_t (cumulative product), alpha_prev = alpha_{t-1} (the
next timestep of the sub-sequence tau), sigma_t(eta) the noise scale of formula (16), eps_theta the
predicted noise, f_theta the predicted x_0 (formula 9).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .ddim_schedule import alpha_from_sigma

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def check_eta(eta: float) -> float:
    eta = float(eta)
    if not 0.0 <= eta <= 1.0 or math.isnan(eta):
        raise ValueError(f"[Recall] Recall DDIM Sampler: eta must be in [0, 1], got {eta} "
                         "(expected 0 = deterministic DDIM up to 1 = DDPM-like). Set eta between 0 and 1.")
    return eta


def ddim_sigma(alpha_t: float, alpha_prev: float, eta: float) -> float:
    """sigma_t(eta) of formula (16): eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev).

    A step that adds noise (a_prev < a_t, sigmas going up) has no DDIM posterior: its variance is taken as 0.
    """
    if eta == 0.0 or alpha_prev >= 1.0:
        return 0.0
    variance = (1.0 - alpha_prev) / (1.0 - alpha_t) * (1.0 - alpha_t / alpha_prev)
    return eta * math.sqrt(max(variance, 0.0))


def predict_x0_eps(sample: torch.Tensor, model_output: torch.Tensor, alpha_t: float,
                   prediction_type: str = "epsilon") -> tuple[torch.Tensor, torch.Tensor]:
    """(f_theta(x_t), eps_theta(x_t)) from a raw model output at alpha_t, in diffusers' x_t space."""
    sqrt_a, sqrt_1ma = math.sqrt(alpha_t), math.sqrt(1.0 - alpha_t)
    if prediction_type == "epsilon":
        if alpha_t <= 0.0:
            raise ValueError("[Recall] DDIM: an epsilon-prediction model cannot predict x_0 at alpha_t = 0 "
                             "(expected a v-prediction model with a zero-terminal-SNR schedule). "
                             "Use a v-prediction model or turn zero-SNR rescaling off.")
        # formula (9): f_theta = (x_t - sqrt(1 - a_t) eps_theta) / sqrt(a_t)
        return (sample - sqrt_1ma * model_output) / sqrt_a, model_output
    if prediction_type == "v_prediction":
        # v = sqrt(a_t) eps - sqrt(1 - a_t) x_0  =>  x_0 = sqrt(a_t) x_t - sqrt(1 - a_t) v,
        #                                            eps = sqrt(a_t) v + sqrt(1 - a_t) x_t
        return sqrt_a * sample - sqrt_1ma * model_output, sqrt_a * model_output + sqrt_1ma * sample
    if prediction_type == "sample":
        return model_output, (sample - sqrt_a * model_output) / sqrt_1ma
    raise ValueError(f"[Recall] DDIM: prediction_type {prediction_type!r} is not supported "
                     f"(expected one of {PREDICTION_TYPES}). Pick one of those.")


def ddim_update(x0: torch.Tensor, eps: torch.Tensor, alpha_prev: float, sigma_t: float,
                noise: torch.Tensor | None) -> torch.Tensor:
    """Formula (12): x_{t-1} = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma_t^2) eps + sigma_t * noise."""
    direction = math.sqrt(max(1.0 - alpha_prev - sigma_t * sigma_t, 0.0))  # "direction pointing to x_t"
    x_prev = math.sqrt(alpha_prev) * x0 + direction * eps
    if sigma_t > 0.0:
        x_prev = x_prev + sigma_t * noise  # "random noise"
    return x_prev


def clip_x0(x0: torch.Tensor, clip_sample: float | None) -> torch.Tensor:
    return x0 if clip_sample is None else x0.clamp(-clip_sample, clip_sample)


def ddim_step(sample: torch.Tensor, model_output: torch.Tensor, alpha_t: float, alpha_prev: float,
              eta: float = 0.0, noise: torch.Tensor | None = None, prediction_type: str = "epsilon",
              clip_sample: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step in diffusers' x_t space: returns (x_{t-1}, predicted x_0). noise is needed when eta > 0."""
    eta = check_eta(eta)
    x0, eps = predict_x0_eps(sample, model_output, alpha_t, prediction_type)
    x0 = clip_x0(x0, clip_sample)
    sigma_t = ddim_sigma(alpha_t, alpha_prev, eta)
    if sigma_t > 0.0 and noise is None:
        raise ValueError("[Recall] DDIM: eta > 0 needs a noise tensor (expected noise with the sample's shape). "
                         "Pass noise.")
    return ddim_update(x0, eps, alpha_prev, sigma_t, noise), x0


def ddim_step_k(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float, eta: float,
                noise_fn: Callable[[], torch.Tensor] | None, alpha_target: float | None = None,
                clip_sample: float | None = None) -> torch.Tensor:
    """One DDIM step in ComfyUI's x = x_t / sqrt(alpha_t) space, from the model's denoised x_0.

    The update lands on alpha_target (default: the alpha of sigma_next) and the result is read at sigma_next,
    where the next model call evaluates it: with diffusers' step target the two differ, and diffusers too feeds
    the sample it landed on to the model at the next listed timestep.  noise_fn is called only when the step
    adds noise (eta > 0 and a target below alpha 1), once, so a seeded noise sampler draws exactly as
    ComfyUI's ancestral samplers do.
    """
    alpha_t, alpha_next = alpha_from_sigma(sigma), alpha_from_sigma(sigma_next)
    alpha_prev = alpha_next if alpha_target is None else float(alpha_target)
    # eps_theta = (x_t - sqrt(a_t) x_0) / sqrt(1 - a_t) = (x - x_0) / sigma_t in this space
    eps = (x - denoised) / sigma
    sigma_t = ddim_sigma(alpha_t, alpha_prev, eta)
    noise = noise_fn() if sigma_t > 0.0 else None
    # formula (12) in x_t space, divided by sqrt(a_next) to come back to ComfyUI's space at sigma_next
    return ddim_update(clip_x0(denoised, clip_sample), eps, alpha_prev, sigma_t, noise) / math.sqrt(alpha_next)


@torch.no_grad()
def sample_ddim(model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                callback: Callable[[dict], None] | None = None, disable: bool | None = None, eta: float = 0.0,
                noise_sampler: Callable | None = None, progress: Callable[[int], object] = range,
                step_alphas: list[float] | None = None, clip_sample: float | None = None) -> torch.Tensor:
    """DDIM over ComfyUI sigmas: ``model(x, sigma * s_in, **extra_args)`` returns the denoised x_0.

    x starts as ComfyUI's noised latent (x_0 + sigma_0 * noise; for txt2img at the model's sigma_max,
    noise * sqrt(1 + sigma_max^2), i.e. unit-variance x_T in diffusers' space).  Each step i goes from
    sigmas[i] to sigmas[i + 1]; a last sigma of 0 is alpha 1 (set_alpha_to_one).  callback gets
    {"x", "i", "sigma", "sigma_hat", "denoised"} once per step, before the update, like ComfyUI's samplers.
    noise_sampler(sigma, sigma_next) gives unit noise; it is required when eta > 0.  progress(n) is the
    step iterator (the node layer passes a progress bar; ``disable`` is for it).  step_alphas (one per step)
    and clip_sample: see the module docstring.
    """
    eta = check_eta(eta)
    extra_args = {} if extra_args is None else extra_args
    if eta > 0.0 and noise_sampler is None:
        raise ValueError("[Recall] Recall DDIM Sampler: eta > 0 needs a noise_sampler (expected a callable "
                         "(sigma, sigma_next) -> noise). Pass ComfyUI's default noise sampler.")
    s_in = x.new_ones([x.shape[0]])
    sigma_values = [float(s) for s in sigmas]
    if step_alphas is not None and len(step_alphas) != len(sigma_values) - 1:
        raise ValueError(f"[Recall] Recall DDIM Sampler: {len(step_alphas)} step targets for "
                         f"{len(sigma_values) - 1} steps (expected one per step). Compute them from these sigmas.")
    for i in progress(len(sigma_values) - 1):
        sigma, sigma_next = sigma_values[i], sigma_values[i + 1]
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = ddim_step_k(x, denoised, sigma, sigma_next, eta, lambda: noise_sampler(sigmas[i], sigmas[i + 1]),
                        None if step_alphas is None else step_alphas[i], clip_sample)
    return x
