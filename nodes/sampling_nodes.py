"""A true DDIM sampler with eta, its diffusers-style timestep schedule, and the opt-in KSampler entry.

RecallSamplerDDIM gives a SAMPLER for SamplerCustom / SamplerCustomAdvanced: a k-diffusion-style
function (lib/ddim.py) wrapped by comfy.samplers.KSAMPLER, which also handles denoise masks
(inpainting), the progress bar and latent previews through the per-step callback; interruption is
raised by the model calls. Its step_target picks where a step lands: the next listed timestep, or
t - N // n as diffusers' DDIMScheduler.step() computes it (lib/ddim_schedule.diffusers_step_alphas).
RecallDDIMScheduler gives SIGMAS for the timesteps diffusers' DDIMScheduler would use, taken from
the model's own training schedule.

set_ksampler_ddim(True) adds "ddim_eta" to the regular KSampler's sampler list (config key
ddim_in_ksampler, env RECALL_DDIM_IN_KSAMPLER=1; off by default because it edits ComfyUI's lists).
"""
from __future__ import annotations

import logging

from ._api import io
from .lib import ddim, ddim_schedule

_log = logging.getLogger("recall.sampling")

KSAMPLER_NAME = "ddim_eta"
# the default, and what a saved workflow without the step_target input gets
DEFAULT_STEP_TARGET = "next listed"
# eta of "ddim_eta" in KSampler, which has no eta widget: 0 is the classic deterministic DDIM.
KSAMPLER_ETA = 0.0

ETA_TOOLTIP = ("Noise added back each step, eta of the DDIM paper (formula 16): 0 = deterministic DDIM "
               "(same seed, same image), 1 = DDPM-like ancestral sampling, values between interpolate.")
STEP_TARGET_TOOLTIP = ("Where each step lands. next listed: the next timestep of the schedule, as the DDIM paper "
                       "defines it. diffusers: t - 1000//n, what diffusers' DDIMScheduler.step() does; the same for "
                       "leading spacing (and trailing when n divides 1000), different for linspace and other "
                       "trailing counts. Pick diffusers to reproduce a diffusers result exactly (needs the SIGMAS "
                       "of DDIM Scheduler (Recall)).")


def check_step_target(step_target: str) -> str:
    if step_target not in ddim_schedule.STEP_TARGETS:
        raise ValueError(f"[Recall] Recall DDIM Sampler: step_target is {step_target!r} (expected one of "
                         f"{', '.join(ddim_schedule.STEP_TARGETS)}). Pick one of those.")
    return step_target


def _model_sampling_of(model_k):
    """The model_sampling under KSAMPLER's wrappers (KSamplerX0Inpaint -> CFGGuider -> BaseModel), if reachable."""
    inner = getattr(getattr(model_k, "inner_model", None), "inner_model", None)
    return getattr(inner, "model_sampling", None)


def _check_eps_family(model_sampling, node: str) -> None:
    import comfy.model_sampling as cms
    if model_sampling is not None and not isinstance(model_sampling, cms.EPS):
        raise ValueError(
            f"[Recall] {node}: the model samples as {type(model_sampling).__name__}, not as a diffusion model "
            "with alphas (expected epsilon or v-prediction, e.g. SD1.5, SD2, SDXL). DDIM does not apply to "
            "flow-matching models (Flux, SD3, Wan): use euler or another core sampler for them.")


def _diffusers_step_alphas(model_sampling, sigmas):
    """alpha_{t-1} of each step as diffusers' DDIMScheduler.step takes it, from the model's own table."""
    table = getattr(model_sampling, "sigmas", None)
    if table is None or table.ndim != 1 or len(table) < 2:
        raise ValueError("[Recall] Recall DDIM Sampler: step_target 'diffusers' needs the model's discrete "
                         f"training schedule (expected model_sampling.sigmas, got {type(model_sampling).__name__}). "
                         "Use step_target 'next listed' here.")
    return ddim_schedule.diffusers_step_alphas(table, sigmas)


def sample_ddim_eta(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=KSAMPLER_ETA,
                    noise_sampler=None, step_target=DEFAULT_STEP_TARGET):
    """The sampler function KSAMPLER calls; seeded noise comes from ComfyUI's default noise sampler."""
    from comfy.k_diffusion import sampling as k_sampling
    model_sampling = _model_sampling_of(model)
    _check_eps_family(model_sampling, "Recall DDIM Sampler")
    step_alphas = None
    if check_step_target(step_target) == "diffusers":
        step_alphas = _diffusers_step_alphas(model_sampling, sigmas)
    extra_args = {} if extra_args is None else extra_args
    if noise_sampler is None:
        noise_sampler = k_sampling.default_noise_sampler(x, seed=extra_args.get("seed"))
    return ddim.sample_ddim(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                            eta=eta, noise_sampler=noise_sampler,
                            progress=lambda n: k_sampling.trange(n, disable=disable), step_alphas=step_alphas)


def _ksampler_function(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
    options.setdefault("eta", KSAMPLER_ETA)
    return sample_ddim_eta(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable, **options)


def set_ksampler_ddim(enabled: bool, eta: float | None = None) -> None:
    """Add (or remove, leaving nothing behind) the "ddim_eta" sampler of the regular KSampler nodes.

    comfy.samplers.sampler_object(name) resolves a plain name through
    comfy.k_diffusion.sampling.sample_<name>, and KSampler / KSamplerAdvanced / KSamplerSelect list
    comfy.samplers.SAMPLER_NAMES (KSampler.SAMPLERS is the same list) when /object_info is asked, so
    appending the name and setting that attribute is all it takes.  eta (default KSAMPLER_ETA) is fixed
    for KSampler, which has no eta widget.
    """
    import comfy.samplers
    from comfy.k_diffusion import sampling as k_sampling
    global KSAMPLER_ETA
    name_lists = [comfy.samplers.KSAMPLER_NAMES, comfy.samplers.SAMPLER_NAMES]
    if comfy.samplers.KSampler.SAMPLERS is not comfy.samplers.SAMPLER_NAMES:
        name_lists.append(comfy.samplers.KSampler.SAMPLERS)
    if enabled:
        if eta is not None:
            KSAMPLER_ETA = ddim.check_eta(eta)
        setattr(k_sampling, f"sample_{KSAMPLER_NAME}", _ksampler_function)
        for names in name_lists:
            if KSAMPLER_NAME not in names:
                names.append(KSAMPLER_NAME)
        _log.info("[Recall] KSampler gained the sampler %r (DDIM, eta %.2f)", KSAMPLER_NAME, KSAMPLER_ETA)
        return
    for names in name_lists:
        while KSAMPLER_NAME in names:
            names.remove(KSAMPLER_NAME)
    if getattr(k_sampling, f"sample_{KSAMPLER_NAME}", None) is _ksampler_function:
        delattr(k_sampling, f"sample_{KSAMPLER_NAME}")


def model_sigma_table(model, rescale_zero_terminal_snr: bool):
    """The model's training sigmas (ComfyUI's model_sampling.sigmas), checked to fit DDIM."""
    node = "Recall DDIM Scheduler"
    model_sampling = model.get_model_object("model_sampling")
    _check_eps_family(model_sampling, node)
    table = getattr(model_sampling, "sigmas", None)
    if table is None or table.ndim != 1 or len(table) < 2:
        raise ValueError(f"[Recall] {node}: the model's {type(model_sampling).__name__} has no discrete "
                         "training schedule (expected model_sampling.sigmas with one sigma per timestep). "
                         "Use a discrete-time model (SD1.5, SD2, SDXL) or BasicScheduler.")
    if rescale_zero_terminal_snr and not getattr(model_sampling, "zsnr", False):
        # The model finds its timestep from sigma in its own table, so the rescaled sigmas would reach it
        # as wrong timesteps; ComfyUI rescales both together in ModelSamplingDiscrete.
        raise ValueError(f"[Recall] {node}: rescale_zero_terminal_snr is on but the model's sampling is not "
                         "zero-terminal-SNR (zsnr=False; expected a model patched with zsnr). Put a "
                         "ModelSamplingDiscrete node with zsnr enabled (and v_prediction for a v model) before "
                         "the scheduler and the sampler, or turn rescale_zero_terminal_snr off.")
    return table


class RecallSamplerDDIM(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallSamplerDDIM",
            display_name="DDIM Sampler (Recall)",
            category="Recall/sampling",
            description=("DDIM (Song et al. 2021) with eta. Use with SamplerCustom and the DDIM Scheduler "
                         "(Recall); step_target diffusers reproduces diffusers' DDIMScheduler.step() for the same "
                         "model and noise."),
            inputs=[
                io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.01, tooltip=ETA_TOOLTIP),
                # optional, and last: a workflow saved before it existed loads with the default
                # (the page fills widgets by position; the server skips missing optional inputs)
                io.Combo.Input("step_target", options=list(ddim_schedule.STEP_TARGETS),
                               default=DEFAULT_STEP_TARGET, optional=True, tooltip=STEP_TARGET_TOOLTIP),
            ],
            outputs=[io.Sampler.Output(display_name="SAMPLER")],
        )

    @classmethod
    def validate_inputs(cls, eta, step_target=DEFAULT_STEP_TARGET):
        try:
            ddim.check_eta(eta)
            check_step_target(step_target)
        except ValueError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, eta, step_target=DEFAULT_STEP_TARGET) -> io.NodeOutput:
        import comfy.samplers
        options = {"eta": ddim.check_eta(eta), "step_target": check_step_target(step_target)}
        return io.NodeOutput(comfy.samplers.KSAMPLER(sample_ddim_eta, extra_options=options))


class RecallDDIMScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallDDIMScheduler",
            display_name="DDIM Scheduler (Recall)",
            category="Recall/sampling",
            description=("The timesteps diffusers' DDIMScheduler picks, as SIGMAS of the model's own training "
                         "schedule, for SamplerCustom with the DDIM Sampler (Recall)."),
            inputs=[
                io.Model.Input("model", tooltip="The model to sample; its own noise schedule is used."),
                io.Int.Input("steps", default=20, min=1, max=1000,
                             tooltip="Number of DDIM steps (model calls per CFG branch)."),
                io.Combo.Input("timestep_spacing", options=list(ddim_schedule.SPACINGS), default="leading",
                               tooltip=("How the steps are spread over the 1000 training timesteps "
                                        "(Lin et al. 2024, Table 2). leading: every N//steps from "
                                        "steps_offset (SD1.5/SDXL default); trailing: from the last "
                                        "timestep down (use with zero-SNR models); linspace: evenly "
                                        "from the last timestep to 0. To reproduce diffusers with "
                                        "linspace or trailing, set the sampler's step_target to "
                                        "diffusers.")),
                io.Int.Input("steps_offset", default=1, min=0, max=999,
                             tooltip=("Added to every timestep with leading spacing (1 in the SD1.5 and "
                                      "SDXL configs, 0 in diffusers' default). Ignored by trailing and "
                                      "linspace.")),
                io.Boolean.Input("set_alpha_to_one", default=True,
                                 tooltip=("On: the last step goes to a clean sample (sigma 0). Off: it stops "
                                          "at the first training timestep, as diffusers does with "
                                          "set_alpha_to_one=False.")),
                io.Boolean.Input("rescale_zero_terminal_snr", default=False,
                                 tooltip=("For zero-terminal-SNR models (Lin et al. 2024): requires the model "
                                          "to be patched by ModelSamplingDiscrete with zsnr on, which "
                                          "rescales its schedule; the scheduler then uses that schedule and "
                                          "reports an error if the model is not patched.")),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip=("Less than 1 for img2img: plans steps/denoise steps and runs the "
                                        "last `steps` of them, like BasicScheduler.")),
            ],
            outputs=[io.Sigmas.Output(display_name="SIGMAS")],
        )

    @classmethod
    def execute(cls, model, steps, timestep_spacing, steps_offset, set_alpha_to_one,
                rescale_zero_terminal_snr, denoise) -> io.NodeOutput:
        table = model_sigma_table(model, rescale_zero_terminal_snr)
        sigmas = ddim_schedule.schedule_sigmas_from_table(table, steps, timestep_spacing, steps_offset,
                                                          set_alpha_to_one, denoise)
        return io.NodeOutput(sigmas)


NODES = [RecallSamplerDDIM, RecallDDIMScheduler]
