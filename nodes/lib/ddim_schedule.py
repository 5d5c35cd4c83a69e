"""DDIM noise schedules: training betas, zero-terminal-SNR rescaling, inference timesteps, sigmas.

No ComfyUI import: the node layer reads the model's own table and passes it in.

Conventions
-----------
``alphas_cumprod[t]`` is the paper's alpha_t (DDIM, Song et al. 2021, arXiv:2010.02502, section 2;
DDPM's alpha-bar_t), for training timesteps t = 0 .. N-1.  ComfyUI describes the same schedule by
``sigma_t = sqrt((1 - alpha_t) / alpha_t)`` (its ``model_sampling.sigmas``), so

    alpha_t = 1 / (1 + sigma_t**2)

and the sampler moves between the two with :func:`alpha_from_sigma` / :func:`sigma_from_alpha`.

Options, with the defaults of diffusers' ``DDIMScheduler`` (the reference implementation):

    num_train_timesteps   1000           N, length of the training schedule
    beta_start            0.00085        first beta (Stable Diffusion's value)
    beta_end              0.012          last beta
    beta_schedule         "scaled_linear"  betas = linspace(sqrt(beta_start), sqrt(beta_end), N)**2
                                         (Latent Diffusion, Rombach et al. 2022; ComfyUI calls it "linear");
                                         "linear" = linspace(beta_start, beta_end, N) (DDPM, Ho et al. 2020)
    rescale_zero_terminal_snr  False     Lin et al. 2024, "Common Diffusion Noise Schedules and Sample
                                         Steps are Flawed", arXiv:2305.08891, Algorithm 1
    timestep_spacing      "leading"      Lin et al. 2024, Table 2: "leading", "trailing" or "linspace"
    steps_offset          0              added to every "leading" timestep (SD1.x/SDXL configs use 1)
    set_alpha_to_one      True           alpha of the step after t_min: 1.0 (ends on a clean sample) or
                                         alphas_cumprod[0] (ends one training step short of clean)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SPACINGS = ("leading", "trailing", "linspace")
# Where a step lands. "next listed": the next timestep of the sub-sequence tau (DDIM section 4.2).
# "diffusers": t - N // n, what DDIMScheduler.step() computes whatever the spacing.
STEP_TARGETS = ("next listed", "diffusers")
BETA_SCHEDULES = ("scaled_linear", "linear")

# ComfyUI's ModelSamplingDiscrete (zsnr) stores this alpha instead of the exact 0 that
# zero-terminal-SNR rescaling gives: sigma_T = sqrt((1-0)/0) would be infinite.  Sampling in
# sigma space must do the same, so sigmas built here from a zero alpha use it too.
TERMINAL_ALPHA_CUMPROD = 4.8973451890853435e-08


def make_betas(num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
               beta_schedule: str = "scaled_linear") -> torch.Tensor:
    """Training betas (float64), as DDPM's beta_1..beta_T."""
    if beta_schedule == "scaled_linear":
        return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float64) ** 2
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    raise ValueError(f"[Recall] DDIM: beta_schedule {beta_schedule!r} is not supported "
                     f"(expected one of {BETA_SCHEDULES}). Pick one of those.")


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024, Algorithm 1: shift and scale sqrt(alpha-bar) so that alpha-bar_T = 0, keep alpha-bar_1."""
    sqrt_ab = torch.cumprod(1.0 - betas.double(), dim=0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    # shift so the last timestep has zero signal, then scale so the first keeps its old value
    sqrt_ab = (sqrt_ab - last) * (first / (first - last))
    ab = sqrt_ab ** 2
    # back from alpha-bar to per-step alphas, then betas
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return 1.0 - alphas


def alphas_cumprod_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """alpha-bar_t = prod_{s<=t} (1 - beta_s) (DDPM eq. 4; DDIM's alpha_t)."""
    return torch.cumprod(1.0 - betas.double(), dim=0)


def alpha_from_sigma(sigma: float) -> float:
    """alpha_t = 1 / (1 + sigma_t^2); sigma 0 is a clean sample (alpha 1)."""
    sigma = float(sigma)
    return 1.0 / (1.0 + sigma * sigma)


def sigma_from_alpha(alpha: float) -> float:
    """sigma_t = sqrt((1 - alpha_t) / alpha_t); a zero alpha maps to ComfyUI's finite terminal sigma."""
    alpha = max(float(alpha), TERMINAL_ALPHA_CUMPROD)
    return math.sqrt((1.0 - alpha) / alpha)


def ddim_timesteps(num_inference_steps: int, num_train_timesteps: int = 1000, timestep_spacing: str = "leading",
                   steps_offset: int = 0) -> list[int]:
    """The sub-sequence tau of DDIM section 4.2, descending, as diffusers' ``DDIMScheduler.set_timesteps``.

    leading:  ratio = N // n;  t_i = i * ratio + steps_offset          (i = n-1 .. 0)
    trailing: ratio = N / n;   t = round(arange(N, 0, -ratio)) - 1     (starts at N-1)
    linspace: t = round(linspace(0, N-1, n)), reversed                 (starts at N-1, ends at 0)
    """
    n, N = int(num_inference_steps), int(num_train_timesteps)
    if n < 1 or n > N:
        raise ValueError(f"[Recall] DDIM: steps must be in 1..{N}, got {n} (expected at most the "
                         f"{N} training timesteps). Lower steps.")
    if timestep_spacing == "leading":
        ratio = N // n
        timesteps = [i * ratio + int(steps_offset) for i in range(n - 1, -1, -1)]
    elif timestep_spacing == "trailing":
        # np.arange(N, 0, -N/n) computed as numpy does (start + k * delta), then np.round (half to even,
        # like Python's round).  Float rounding makes numpy return n + 1 values for some n (61, 103, ...),
        # the extra one being timestep -1; diffusers keeps it, we stop at n.
        ratio = N / n
        delta = (N - ratio) - N
        timesteps = [round(N + k * delta) - 1 for k in range(n)]
    elif timestep_spacing == "linspace":
        if n == 1:
            timesteps = [0]
        else:
            step = (N - 1) / (n - 1)
            timesteps = [round(i * step) for i in range(n - 1, -1, -1)]
    else:
        raise ValueError(f"[Recall] DDIM: timestep_spacing {timestep_spacing!r} is not supported "
                         f"(expected one of {SPACINGS}). Pick one of those.")
    if timesteps[0] >= N or timesteps[-1] < 0:
        raise ValueError(f"[Recall] DDIM: steps_offset {steps_offset} puts timestep {timesteps[0]} outside "
                         f"0..{N - 1} at {n} steps (expected steps_offset < {N // n} here). Lower steps_offset.")
    return timesteps


@dataclass(frozen=True)
class DDIMSchedule:
    """One DDIM run: model timesteps, alpha_t at each, and alpha_{t-1} after each (the last is the final alpha)."""
    timesteps: list[int]
    alphas: list[float]
    alphas_prev: list[float]

    @property
    def sigmas(self) -> torch.Tensor:
        """ComfyUI SIGMAS: sigma of every alpha_t, then of the final alpha (0 when it is 1)."""
        values = [sigma_from_alpha(a) for a in self.alphas] + [sigma_from_alpha(self.alphas_prev[-1])]
        return torch.tensor(values, dtype=torch.float32)


def build_schedule(alphas_cumprod: torch.Tensor, num_inference_steps: int, timestep_spacing: str = "leading",
                   steps_offset: int = 0, set_alpha_to_one: bool = True,
                   step_target: str = "next listed") -> DDIMSchedule:
    """A DDIM run over a training table alphas_cumprod (length N).

    step_target "next listed": each step goes from tau_i to the next timestep of the list (DDIM section
    4.2: the generative process is defined on the sub-sequence), and after the last one to the final
    alpha.  "diffusers": each step goes to t - N // n, as ``DDIMScheduler.step`` computes it; that is the
    next listed timestep only for "leading" and for "trailing" when n divides N (diffusers issues
    #12633, #11347), so for those the two agree.
    """
    table = alphas_cumprod.double()
    timesteps = ddim_timesteps(num_inference_steps, len(table), timestep_spacing, steps_offset)
    final = 1.0 if set_alpha_to_one else float(table[0])
    alphas = [float(table[t]) for t in timesteps]
    if step_target == "next listed":
        return DDIMSchedule(timesteps, alphas, alphas[1:] + [final])
    if step_target == "diffusers":
        targets = diffusers_targets(timesteps, len(table), num_inference_steps)
        return DDIMSchedule(timesteps, alphas, [float(table[t]) if t >= 0 else final for t in targets])
    raise ValueError(f"[Recall] DDIM: step_target {step_target!r} is not supported "
                     f"(expected one of {STEP_TARGETS}). Pick one of those.")


def diffusers_targets(timesteps: list[int], num_train_timesteps: int, num_inference_steps: int) -> list[int]:
    """The timestep each step of diffusers' ``DDIMScheduler.step`` lands on: t - N // n (-1: the final alpha).

    The same as the next listed timestep for "leading", and for "trailing" when n divides N; otherwise
    it lies between (linspace at n = 10: 999 -> 899 where the list goes on at 888).
    """
    stride = int(num_train_timesteps) // int(num_inference_steps)
    return [t - stride if t - stride >= 0 else -1 for t in timesteps]


def schedule_sigmas_from_table(model_sigmas: torch.Tensor, num_inference_steps: int,
                               timestep_spacing: str = "leading", steps_offset: int = 0,
                               set_alpha_to_one: bool = True, denoise: float = 1.0) -> torch.Tensor:
    """SIGMAS for a model whose training schedule is ``model_sigmas`` (ComfyUI's model_sampling.sigmas).

    The values are taken from the table itself, so the model maps each one back to exactly its timestep.
    denoise < 1 behaves like ComfyUI's BasicScheduler: plan int(steps / denoise) steps and keep the last
    steps + 1 sigmas (img2img starts part-way down the same schedule); denoise <= 0 gives no sigmas.
    """
    steps = int(num_inference_steps)
    total = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.zeros(0, dtype=torch.float32)
        total = int(steps / denoise)
    table = model_sigmas.detach().double().cpu()
    timesteps = ddim_timesteps(total, len(table), timestep_spacing, steps_offset)
    final = [0.0] if set_alpha_to_one else [float(table[0])]
    sigmas = torch.tensor([float(table[t]) for t in timesteps] + final, dtype=torch.float32)
    return sigmas[-(steps + 1):]


def timesteps_of_sigmas(model_sigmas: torch.Tensor, sigmas: torch.Tensor, node: str) -> list[int]:
    """The training timestep of each sigma (as ComfyUI's ModelSamplingDiscrete maps them: nearest log sigma),
    refusing a sigma that is not one of the table's own values."""
    log_table = model_sigmas.detach().double().cpu().log()
    timesteps = []
    for i, sigma in enumerate(float(s) for s in sigmas):
        t = int((math.log(sigma) - log_table).abs().argmin()) if sigma > 0.0 else -1
        if t < 0 or abs(math.exp(float(log_table[t])) - sigma) > 1e-5 * sigma:
            raise ValueError(f"[Recall] {node}: sigma {sigma:.6g} at step {i} is not one of the model's training "
                             "sigmas (expected SIGMAS from DDIM Scheduler (Recall)). Use DDIM Scheduler (Recall), "
                             "or step_target 'next listed' for other schedules.")
        timesteps.append(t)
    return timesteps


def find_plan_size(timesteps: list[int], num_train_timesteps: int) -> int:
    """n of the DDIM plan these timesteps end: the smallest n for which a spacing's list for n steps
    ends with them (n = len(timesteps) for a full run; more for denoise < 1, which keeps the tail)."""
    m, N = len(timesteps), int(num_train_timesteps)
    for n in range(max(m, 1), N + 1):
        for spacing in SPACINGS:
            offset = timesteps[-1] if spacing == "leading" else 0
            if spacing == "leading" and not 0 <= offset < N // n:
                continue
            if ddim_timesteps(n, N, spacing, offset)[-m:] == timesteps:
                return n
    raise ValueError(f"[Recall] Recall DDIM Sampler: the timesteps {timesteps[:6]}{' ...' if m > 6 else ''} are "
                     "not the end of any DDIM schedule (expected SIGMAS from DDIM Scheduler (Recall), a full run or "
                     "denoise < 1). Use step_target 'next listed' for these sigmas.")


def diffusers_step_alphas(model_sigmas: torch.Tensor, sigmas: torch.Tensor) -> list[float]:
    """alpha_{t-1} of each step as diffusers' DDIMScheduler.step takes it, for SIGMAS of model_sigmas' table.

    The plan size n comes from the timesteps (:func:`find_plan_size`); a step whose t - N // n is below 0
    lands on the final alpha, which the last sigma gives (0: alpha 1, set_alpha_to_one; sigma_0: alpha_0).
    """
    node = "Recall DDIM Sampler"
    if len(sigmas) < 2:
        return []
    table = model_sigmas.detach().double().cpu()
    last = float(sigmas[-1])
    if last != 0.0 and abs(last - float(table[0])) > 1e-5 * float(table[0]):
        raise ValueError(f"[Recall] {node}: step_target 'diffusers' needs SIGMAS that end a DDIM schedule "
                         f"(expected a last sigma of 0 or {float(table[0]):.6g}, got {last:.6g}). Sample the "
                         "whole schedule in one sampler, or use step_target 'next listed'.")
    timesteps = timesteps_of_sigmas(table, sigmas[:-1], node)
    n = find_plan_size(timesteps, len(table))
    final = alpha_from_sigma(last)
    return [alpha_from_sigma(float(table[t])) if t >= 0 else final
            for t in diffusers_targets(timesteps, len(table), n)]
