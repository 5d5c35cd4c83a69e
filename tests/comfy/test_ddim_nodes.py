"""RecallSamplerDDIM / RecallDDIMScheduler in real ComfyUI, through comfy.samplers, on a toy SD1.5 model.

The model is ComfyUI's SD15 config -> BaseModel -> ModelPatcher, with the UNet swapped for a deterministic
toy function of (model input, timestep), so ComfyUI's own input scaling, sigma -> timestep mapping,
x0 parameterisation, noise scaling, mask blending and CFG wrapper are all in the path.
"""
import math

import pytest
import torch

from recall_pack.bench.harness.make_models import SD15_UNET

SHAPE = (1, 4, 8, 8)
# the SD1.5 UNet config, shrunk to a few channels: the sampler tests need its schedule, not its size
UNET = {**SD15_UNET, "model_channels": 32, "num_res_blocks": [1, 1, 1, 1], "channel_mult": [1, 1, 1, 1]}


def toy_output(sample, t):
    pattern = torch.linspace(-1.0, 1.0, sample[0].numel()).reshape(sample.shape[1:])
    return 0.8 * torch.tanh(sample) * math.cos(t / 250.0) + 0.3 * pattern * math.sin(t / 170.0 + 0.3)


class ToyUNet(torch.nn.Module):
    """Stands in for the UNet: a fixed function of the model input and the (integer) timestep."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.seen_timesteps = []

    @property
    def dtype(self):
        return torch.float32

    def forward(self, x, timesteps, context=None, **kwargs):
        t = float(timesteps[0])
        self.seen_timesteps.append(t)
        return torch.stack([toy_output(x[i:i + 1], t)[0] for i in range(x.shape[0])])


def _patcher(model):
    import comfy.model_patcher
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


@pytest.fixture(scope="module")
def toy_model():
    import comfy.supported_models
    model = comfy.supported_models.SD15(dict(UNET)).get_model({}, device=torch.device("cpu"))
    model.diffusion_model = ToyUNet()
    return _patcher(model)


@pytest.fixture(scope="module")
def v_zsnr_model(toy_model):
    from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete
    return ModelSamplingDiscrete().patch(toy_model, "v_prediction", True)[0]


@pytest.fixture(scope="module")
def sampling():
    from recall_pack.nodes import sampling_nodes
    return sampling_nodes


def _run(model, sampler, sigmas, noise, latent=None, mask=None, seed=7, callback=None):
    import comfy.samplers
    cond = [[torch.zeros(1, 77, 768), {}]]
    latent = torch.zeros(SHAPE) if latent is None else latent
    out = comfy.samplers.sample(model, noise, cond, cond, 1.0, torch.device("cpu"), sampler, sigmas,
                                latent_image=latent, denoise_mask=mask, callback=callback, disable_pbar=True,
                                seed=seed)
    # CFGGuider returns process_latent_out(x) (SD1.5: x / 0.18215); compare in the sampler's space
    return model.model.latent_format.process_in(out)


def _noise(seed=3):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def _recall_sigmas(sampling, model, steps, spacing="leading", offset=1, to_one=True, zsnr=False, denoise=1.0):
    return sampling.RecallDDIMScheduler.execute(model, steps, spacing, offset, to_one, zsnr, denoise).result[0]


def _recall_sampler(sampling, eta, step_target=None):
    if step_target is None:  # as a workflow saved before step_target existed calls it
        return sampling.RecallSamplerDDIM.execute(eta).result[0]
    return sampling.RecallSamplerDDIM.execute(eta, step_target).result[0]


def _diffusers_reference(prediction, spacing, steps, eta, x_T, seed, zsnr=False, offset=1):
    """diffusers' DDIMScheduler.step() with the same toy UNet; eta noise from ComfyUI's own default noise
    sampler (seeded as KSAMPLER seeds it; the seeding differs between releases), one draw per step that adds
    noise."""
    from comfy.k_diffusion import sampling as k_sampling
    from diffusers import DDIMScheduler
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=True, steps_offset=offset, prediction_type=prediction,
                              timestep_spacing=spacing, rescale_betas_zero_snr=zsnr)
    if zsnr:
        scheduler.alphas_cumprod[-1] = 4.8973451890853435e-08  # ComfyUI's finite terminal alpha
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.tolist()[:steps]
    draw = k_sampling.default_noise_sampler(x_T, seed=seed)
    x = x_T.clone()
    for i, t in enumerate(timesteps):
        target = t - 1000 // steps  # where diffusers' step() lands; below 0: alpha 1
        noise = draw(None, None) if eta > 0 and target >= 0 else None  # a step to alpha 1 adds no noise
        x = scheduler.step(toy_output(x, t), t, x, eta=eta, variance_noise=noise).prev_sample
    return x


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_eps_model_through_comfy_samplers_equals_diffusers(toy_model, sampling, eta):
    sigmas = _recall_sigmas(sampling, toy_model, 10, "trailing", 0)
    noise = _noise()
    out = _run(toy_model, _recall_sampler(sampling, eta), sigmas, noise, seed=11)
    # trailing starts at the model's sigma_max, where ComfyUI scales the noise by sqrt(1 + sigma^2):
    # exactly diffusers' unit-variance x_T
    assert _rel(out, _diffusers_reference("epsilon", "trailing", 10, eta, noise, seed=11)) < 1e-4


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_v_prediction_zero_snr_model_through_comfy_samplers_equals_diffusers(v_zsnr_model, sampling, eta):
    sigmas = _recall_sigmas(sampling, v_zsnr_model, 10, "trailing", 0, zsnr=True)
    noise = _noise()
    out = _run(v_zsnr_model, _recall_sampler(sampling, eta), sigmas, noise, seed=5)
    assert _rel(out, _diffusers_reference("v_prediction", "trailing", 10, eta, noise, seed=5, zsnr=True)) < 1e-4


@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("spacing,steps", [("linspace", 10), ("trailing", 7), ("trailing", 10), ("linspace", 25)])
def test_diffusers_step_target_through_comfy_samplers_equals_diffusers_step(toy_model, sampling, spacing, steps, eta):
    sigmas = _recall_sigmas(sampling, toy_model, steps, spacing, 0)
    noise = _noise()
    out = _run(toy_model, _recall_sampler(sampling, eta, "diffusers"), sigmas, noise, seed=11)
    assert _rel(out, _diffusers_reference("epsilon", spacing, steps, eta, noise, seed=11, offset=0)) < 1e-4


def test_diffusers_step_target_with_a_v_prediction_zero_snr_model_equals_diffusers_step(v_zsnr_model, sampling):
    sigmas = _recall_sigmas(sampling, v_zsnr_model, 7, "trailing", 0, zsnr=True)
    noise = _noise()
    out = _run(v_zsnr_model, _recall_sampler(sampling, 0.5, "diffusers"), sigmas, noise, seed=5)
    reference = _diffusers_reference("v_prediction", "trailing", 7, 0.5, noise, seed=5, zsnr=True, offset=0)
    assert _rel(out, reference) < 1e-4


def test_the_default_step_target_differs_from_diffusers_step_for_linspace(toy_model, sampling):
    sigmas = _recall_sigmas(sampling, toy_model, 10, "linspace", 0)
    noise = _noise()
    listed = _run(toy_model, _recall_sampler(sampling, 0.0), sigmas, noise)
    assert torch.equal(listed, _run(toy_model, _recall_sampler(sampling, 0.0, "next listed"), sigmas, noise))
    assert _rel(listed, _diffusers_reference("epsilon", "linspace", 10, 0.0, noise, seed=0, offset=0)) > 1e-2


def test_diffusers_step_target_refuses_sigmas_from_another_scheduler(toy_model, sampling):
    import comfy.samplers
    karras = comfy.samplers.calculate_sigmas(toy_model.get_model_object("model_sampling"), "karras", 6)
    with pytest.raises(ValueError, match="is not one of the model's training sigmas"):
        _run(toy_model, _recall_sampler(sampling, 0.0, "diffusers"), karras, _noise())


def _validate(prompt, node_id):
    import asyncio
    import execution
    return asyncio.run(execution.validate_inputs("test", prompt, node_id, {}))


def test_a_prompt_saved_before_step_target_validates_and_gets_the_default(sampling, monkeypatch):
    """ComfyUI skips a missing optional input (a missing required one is an error), so the node's default
    applies; the page fills widgets by position, so an old UI workflow's [eta] leaves step_target at its
    default as well."""
    import execution
    import nodes
    monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, "RecallSamplerDDIM", sampling.RecallSamplerDDIM)
    prompt = {"5": {"class_type": "RecallSamplerDDIM", "inputs": {"eta": 0.5}}}
    valid, errors, _ = _validate(prompt, "5")
    assert valid is True and errors == []
    inputs = execution.get_input_data(prompt["5"]["inputs"], sampling.RecallSamplerDDIM, "5")[0]
    assert "step_target" not in inputs
    sampler = sampling.RecallSamplerDDIM.execute(**{k: v[0] for k, v in inputs.items()}).result[0]
    assert sampler.extra_options == {"eta": 0.5, "step_target": "next listed"}


def test_an_unknown_step_target_fails_comfyuis_validation(sampling, monkeypatch):
    import nodes
    monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, "RecallSamplerDDIM", sampling.RecallSamplerDDIM)
    prompt = {"5": {"class_type": "RecallSamplerDDIM", "inputs": {"eta": 0.5, "step_target": "diffuser"}}}
    valid, errors, _ = _validate(prompt, "5")
    assert valid is False and "step_target" in str(errors)


def test_the_model_sees_exactly_diffusers_timesteps(toy_model, sampling):
    unet = toy_model.model.diffusion_model
    unet.seen_timesteps.clear()
    _run(toy_model, _recall_sampler(sampling, 0.0), _recall_sigmas(sampling, toy_model, 10, "leading", 1), _noise())
    assert unet.seen_timesteps == [901.0, 801.0, 701.0, 601.0, 501.0, 401.0, 301.0, 201.0, 101.0, 1.0]


def test_rescale_on_a_model_without_zsnr_is_a_clear_error(toy_model, sampling):
    with pytest.raises(ValueError, match="ModelSamplingDiscrete node with zsnr"):
        _recall_sigmas(sampling, toy_model, 10, "trailing", 0, zsnr=True)


def test_eta_zero_equals_comfyuis_ddim_with_ddim_uniform_at_10_steps(toy_model, sampling):
    import comfy.samplers
    ours = _recall_sigmas(sampling, toy_model, 10, "leading", 1)
    theirs = comfy.samplers.calculate_sigmas(toy_model.get_model_object("model_sampling"), "ddim_uniform", 10)
    assert torch.equal(ours, theirs)
    noise = _noise()
    a = _run(toy_model, _recall_sampler(sampling, 0.0), ours, noise)
    b = _run(toy_model, comfy.samplers.sampler_object("ddim"), theirs, noise)
    assert _rel(a, b) < 1e-5  # DDIM at eta 0 is Euler in ComfyUI's sigma space


def test_ddim_uniform_runs_one_step_more_when_steps_do_not_divide_1000(toy_model, sampling):
    import comfy.samplers
    theirs = comfy.samplers.calculate_sigmas(toy_model.get_model_object("model_sampling"), "ddim_uniform", 6)
    assert len(_recall_sigmas(sampling, toy_model, 6, "leading", 1)) == 7 and len(theirs) == 8


def test_eta_equals_euler_ancestral_with_that_eta_and_the_same_seed(toy_model, sampling):
    import comfy.samplers
    sigmas = _recall_sigmas(sampling, toy_model, 8, "trailing", 0)
    noise = _noise()
    a = _run(toy_model, _recall_sampler(sampling, 0.7), sigmas, noise, seed=21)
    b = _run(toy_model, comfy.samplers.ksampler("euler_ancestral", {"eta": 0.7}), sigmas, noise, seed=21)
    assert _rel(a, b) < 1e-5


def test_inpainting_mask_and_denoise_behave_like_comfyuis_euler(toy_model, sampling):
    import comfy.samplers
    sigmas = _recall_sigmas(sampling, toy_model, 6, "leading", 1, denoise=0.6)
    assert len(sigmas) == 7 and float(sigmas[0]) < float(toy_model.get_model_object("model_sampling").sigma_max)
    latent = torch.randn(SHAPE, generator=torch.Generator().manual_seed(8))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1.0
    noise = _noise()
    ours = _run(toy_model, _recall_sampler(sampling, 0.0), sigmas, noise, latent=latent, mask=mask)
    euler = _run(toy_model, comfy.samplers.sampler_object("euler"), sigmas, noise, latent=latent, mask=mask)
    assert _rel(ours, euler) < 1e-5
    inside = toy_model.model.latent_format.process_in(latent)
    assert torch.allclose(ours[..., 0, 0], inside[..., 0, 0])  # outside the mask: the input latent


def test_callback_runs_once_per_step(toy_model, sampling):
    steps = []
    _run(toy_model, _recall_sampler(sampling, 0.3), _recall_sigmas(sampling, toy_model, 5), _noise(),
         callback=lambda i, denoised, x, total: steps.append((i, total)))
    assert steps == [(i, 5) for i in range(5)]


def test_flow_models_are_refused_with_a_clear_error(sampling):
    import comfy.model_sampling

    class Flow(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    class FlowModel:
        def get_model_object(self, name):
            return Flow()

    with pytest.raises(ValueError, match="DDIM does not apply to flow-matching models"):
        _recall_sigmas(sampling, FlowModel(), 4)


def test_ksampler_setting_adds_ddim_eta_and_removes_it_without_a_trace(toy_model, sampling):
    import comfy.samplers
    import nodes
    from comfy.k_diffusion import sampling as k_sampling
    before = (list(comfy.samplers.KSAMPLER_NAMES), list(comfy.samplers.SAMPLER_NAMES))
    try:
        sampling.set_ksampler_ddim(True)
        sampling.set_ksampler_ddim(True)  # idempotent
        listed = nodes.KSampler.INPUT_TYPES()["required"]["sampler_name"][0]
        assert listed.count("ddim_eta") == 1
        assert "ddim_eta" in nodes.KSamplerAdvanced.INPUT_TYPES()["required"]["sampler_name"][0]
        sigmas = _recall_sigmas(sampling, toy_model, 6, "leading", 1)
        noise = _noise()
        via_ksampler = _run(toy_model, comfy.samplers.sampler_object("ddim_eta"), sigmas, noise)
        direct = _run(toy_model, _recall_sampler(sampling, 0.0), sigmas, noise)
        assert torch.equal(via_ksampler, direct)
    finally:
        sampling.set_ksampler_ddim(False)
    assert (comfy.samplers.KSAMPLER_NAMES, comfy.samplers.SAMPLER_NAMES) == before
    assert not hasattr(k_sampling, "sample_ddim_eta")


def test_every_input_has_a_tooltip(sampling):
    for node in sampling.NODES:
        schema = node.define_schema()
        assert schema.category == "Recall/sampling"
        assert all(inp.tooltip for inp in schema.inputs), node.__name__


def test_eta_out_of_range_fails_validation(sampling):
    assert "eta must be in [0, 1]" in sampling.RecallSamplerDDIM.validate_inputs(eta=1.5)
    assert sampling.RecallSamplerDDIM.validate_inputs(eta=0.5) is True
    assert sampling.RecallSamplerDDIM.validate_inputs(eta=0.5, step_target="diffusers") is True
