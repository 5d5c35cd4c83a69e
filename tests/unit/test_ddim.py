"""DDIM math (nodes/lib/ddim*.py) against diffusers' DDIMScheduler: same toy model, same noise, same result.

Run in the CPU venv with diffusers installed; skipped without diffusers for the reference tests.
"""
import math
from pathlib import Path

import pytest
import torch

from recall_pack.nodes.lib import ddim, ddim_schedule

LIB_DIR = Path(__file__).resolve().parents[2] / "nodes" / "lib"

SHAPE = (2, 4, 6, 6)
PATTERN = torch.linspace(-1.0, 1.0, math.prod(SHAPE), dtype=torch.float32).reshape(SHAPE)


def toy_output(sample: torch.Tensor, t: int) -> torch.Tensor:
    """A deterministic 'UNet': depends on the sample and on the timestep, so a wrong t or x shows."""
    return 0.8 * torch.tanh(sample) * math.cos(t / 250.0) + 0.3 * PATTERN * math.sin(t / 170.0 + 0.3)


def noises(count: int, seed: int = 1234) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPE, generator=generator) for _ in range(count)]


def initial_noise(seed: int = 99) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


class Stride:
    """Makes diffusers' ``N // num_inference_steps`` evaluate to a chosen stride (see diffusers_loop)."""

    def __init__(self, stride: int):
        self.stride = stride

    def __rfloordiv__(self, other):
        return self.stride


def diffusers_scheduler(spacing, prediction_type, zsnr, set_alpha_to_one=True, steps_offset=0, clip_sample=False):
    from diffusers import DDIMScheduler
    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", clip_sample=clip_sample, set_alpha_to_one=set_alpha_to_one,
                         steps_offset=steps_offset, prediction_type=prediction_type,
                         timestep_spacing=spacing, rescale_betas_zero_snr=zsnr)


def diffusers_loop(scheduler, steps, eta, step_noises, x_T, follow_list=False, start=0):
    """diffusers' DDIMScheduler.step over its own timesteps.

    follow_list=True makes each step go to the next listed timestep (the DDIM sub-sequence) instead of
    ``t - N // n``; diffusers' step() hard-codes the latter, which is only the next timestep for
    "leading" (and "trailing" when n divides N): diffusers issues #12633 and #11347.  The stride shim
    changes nothing else in step().
    """
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.tolist()[:steps]
    x = x_T.clone()
    for i, t in enumerate(timesteps):
        if i < start:  # img2img: diffusers' pipelines run the tail of the planned list
            continue
        if follow_list:
            stride = t - timesteps[i + 1] if i + 1 < len(timesteps) else t + 1
            scheduler.num_inference_steps = Stride(stride)
        x = scheduler.step(toy_output(x, t), t, x, eta=eta, variance_noise=step_noises[i]).prev_sample
    return x


def table(zsnr: bool) -> torch.Tensor:
    betas = ddim_schedule.make_betas(1000, 0.00085, 0.012, "scaled_linear")
    if zsnr:
        betas = ddim_schedule.rescale_zero_terminal_snr(betas)
    return ddim_schedule.alphas_cumprod_from_betas(betas)


def comfy_sigma_table(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """What ComfyUI's ModelSamplingDiscrete stores: float32 sigmas, the zero alpha clamped."""
    return torch.tensor([ddim_schedule.sigma_from_alpha(float(a)) for a in alphas_cumprod], dtype=torch.float32)


class ToyComfyModel:
    """A ComfyUI-style denoiser: model(x, sigma) -> x_0, with x = x_t * sqrt(1 + sigma^2).

    Maps sigma to a timestep as ModelSamplingDiscrete.timestep does (nearest log sigma), feeds the toy
    'UNet' the model input x / sqrt(1 + sigma^2) and turns its output into x_0 as ComfyUI's EPS and
    V_PREDICTION do.
    """

    def __init__(self, sigma_table: torch.Tensor, prediction_type: str):
        self.log_sigmas = sigma_table.double().log()
        self.prediction_type = prediction_type
        self.calls = 0

    def __call__(self, x, sigma, **extra):
        self.calls += 1
        s = float(sigma[0])
        t = int((math.log(s) - self.log_sigmas).abs().argmin())
        model_input = x / math.sqrt(1.0 + s * s)
        out = toy_output(model_input, t)
        if self.prediction_type == "epsilon":
            return x - out * s
        alpha = 1.0 / (1.0 + s * s)
        return math.sqrt(alpha) * model_input - math.sqrt(1.0 - alpha) * out


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference|."""
    return float((ours.double() - reference.double()).abs().max() / reference.double().abs().max())


# ---------------------------------------------------------------- schedules

@pytest.fixture(scope="module")
def diffusers():
    return pytest.importorskip("diffusers")


@pytest.mark.parametrize("spacing,offset", [("leading", 0), ("leading", 1), ("trailing", 0), ("linspace", 0)])
@pytest.mark.parametrize("steps", [1, 2, 3, 7, 10, 20, 25, 50, 61, 999])
def test_timesteps_equal_diffusers(diffusers, spacing, offset, steps):
    reference = diffusers_scheduler(spacing, "epsilon", False, steps_offset=offset)
    reference.set_timesteps(steps)
    expected = reference.timesteps.tolist()
    ours = ddim_schedule.ddim_timesteps(steps, 1000, spacing, offset)
    assert ours == expected[:steps]
    # diffusers' trailing list has one extra timestep, -1, where np.arange rounds up (61, 103, ...)
    assert expected[steps:] in ([], [-1])


def test_trailing_drops_the_extra_minus_one_numpy_gives_diffusers_at_61_steps(diffusers):
    reference = diffusers_scheduler("trailing", "epsilon", False)
    reference.set_timesteps(61)
    assert len(reference.timesteps) == 62 and int(reference.timesteps[-1]) == -1
    assert len(ddim_schedule.ddim_timesteps(61, 1000, "trailing")) == 61


def test_exact_schedules_for_10_steps():
    assert ddim_schedule.ddim_timesteps(10, 1000, "leading", 1) == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
    assert ddim_schedule.ddim_timesteps(10, 1000, "trailing") == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert ddim_schedule.ddim_timesteps(10, 1000, "linspace") == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]


def test_steps_offset_that_leaves_the_table_is_a_clear_error():
    with pytest.raises(ValueError, match="steps_offset 1 puts timestep 1000 outside 0..999"):
        ddim_schedule.ddim_timesteps(1000, 1000, "leading", 1)


def test_more_steps_than_training_timesteps_is_a_clear_error():
    with pytest.raises(ValueError, match="steps must be in 1..1000, got 1001"):
        ddim_schedule.ddim_timesteps(1001, 1000, "leading")


@pytest.mark.parametrize("zsnr", [False, True])
def test_alphas_cumprod_equal_diffusers(diffusers, zsnr):
    reference = diffusers_scheduler("leading", "epsilon", zsnr).alphas_cumprod.double()
    ours = table(zsnr)
    assert ours[-1] == 0.0 if zsnr else ours[-1] > 0.0
    assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-9)


def test_zero_snr_keeps_the_first_alpha_and_zeroes_the_last():
    plain, rescaled = table(False), table(True)
    assert math.isclose(float(rescaled[0]), float(plain[0]), rel_tol=1e-12)
    assert float(rescaled[-1]) == 0.0


def test_sigma_of_a_zero_alpha_is_comfyuis_finite_terminal_sigma():
    assert math.isclose(ddim_schedule.sigma_from_alpha(0.0),
                        math.sqrt((1 - ddim_schedule.TERMINAL_ALPHA_CUMPROD) / ddim_schedule.TERMINAL_ALPHA_CUMPROD))


def test_sigmas_come_from_the_table_and_end_at_zero_with_set_alpha_to_one():
    sigma_table = comfy_sigma_table(table(False))
    sigmas = ddim_schedule.schedule_sigmas_from_table(sigma_table, 10, "leading", 1, True)
    assert sigmas.tolist() == [float(sigma_table[t]) for t in [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]] + [0.0]


def test_without_set_alpha_to_one_the_last_sigma_is_the_first_training_sigma():
    sigma_table = comfy_sigma_table(table(False))
    sigmas = ddim_schedule.schedule_sigmas_from_table(sigma_table, 4, "trailing", 0, False)
    assert float(sigmas[-1]) == float(sigma_table[0]) and len(sigmas) == 5


def test_denoise_keeps_the_tail_of_the_longer_schedule_like_basicscheduler():
    sigma_table = comfy_sigma_table(table(False))
    full = ddim_schedule.schedule_sigmas_from_table(sigma_table, 20, "leading", 1, True)
    half = ddim_schedule.schedule_sigmas_from_table(sigma_table, 10, "leading", 1, True, denoise=0.5)
    assert torch.equal(half, full[-11:])
    assert len(ddim_schedule.schedule_sigmas_from_table(sigma_table, 10, denoise=0.0)) == 0


# ---------------------------------------------------------------- the step and the loops vs diffusers

SPACING_CASES = [("leading", 1, 10), ("leading", 0, 7), ("trailing", 0, 10), ("trailing", 0, 7), ("linspace", 0, 10)]
ETAS = [0.0, 0.5, 1.0]
PREDICTIONS = ["epsilon", "v_prediction"]


def _skip_unsupported(spacing, offset, steps, prediction, zsnr, eta):
    first = ddim_schedule.ddim_timesteps(steps, 1000, spacing, offset)[0]
    if zsnr and prediction == "epsilon" and first == 999:
        pytest.skip("alpha_999 = 0 after zero-SNR rescaling: an epsilon model cannot predict x_0 there "
                    "(diffusers divides by zero; Lin et al. 2024 pair zero SNR with v-prediction)")
    if zsnr and eta == 1.0 and first == 999:
        pytest.skip("diffusers returns NaN here: at alpha_t = 0 and eta 1, 1 - alpha_prev - sigma_t^2 is 0 and "
                    "rounds below 0 in float32 before its sqrt; ours clamps it (see the finite-result test)")


def _follows_list(spacing, steps):
    # diffusers' step goes to t - N // n, the next listed timestep only for these
    return not (spacing == "leading" or (spacing == "trailing" and 1000 % steps == 0))


@pytest.mark.parametrize("zsnr", [False, True], ids=["plain", "zsnr"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("eta", ETAS)
@pytest.mark.parametrize("spacing,offset,steps", SPACING_CASES)
def test_ddim_step_loop_equals_diffusers(diffusers, spacing, offset, steps, eta, prediction, zsnr):
    _skip_unsupported(spacing, offset, steps, prediction, zsnr, eta)
    step_noises, x_T = noises(steps), initial_noise()
    reference = diffusers_loop(diffusers_scheduler(spacing, prediction, zsnr, steps_offset=offset), steps, eta,
                               step_noises, x_T, follow_list=_follows_list(spacing, steps))
    schedule = ddim_schedule.build_schedule(table(zsnr), steps, spacing, offset, True)
    x = x_T.clone()
    for i, t in enumerate(schedule.timesteps):
        x, _ = ddim.ddim_step(x, toy_output(x, t), schedule.alphas[i], schedule.alphas_prev[i], eta,
                              step_noises[i], prediction)
    assert relative_error(x, reference) < 1e-4


@pytest.mark.parametrize("zsnr", [False, True], ids=["plain", "zsnr"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("eta", ETAS)
@pytest.mark.parametrize("spacing,offset,steps", SPACING_CASES)
def test_comfy_space_sampler_equals_diffusers(diffusers, spacing, offset, steps, eta, prediction, zsnr):
    """sample_ddim on x = x_t * sqrt(1 + sigma^2) with a ComfyUI-style x_0 model gives diffusers' x_t.

    With zero SNR, diffusers' alpha_999 is exactly 0; ComfyUI stores 4.9e-8 there (a finite sigma), so
    the reference gets the same value for the comparison.
    """
    _skip_unsupported(spacing, offset, steps, prediction, zsnr, eta)
    step_noises, x_T = noises(steps), initial_noise()
    scheduler = diffusers_scheduler(spacing, prediction, zsnr, steps_offset=offset)
    if zsnr:
        scheduler.alphas_cumprod[-1] = ddim_schedule.TERMINAL_ALPHA_CUMPROD
    reference = diffusers_loop(scheduler, steps, eta, step_noises, x_T, follow_list=_follows_list(spacing, steps))

    sigma_table = comfy_sigma_table(table(zsnr))
    sigmas = ddim_schedule.schedule_sigmas_from_table(sigma_table, steps, spacing, offset, True)
    drawn = iter(step_noises)
    x = x_T * math.sqrt(1.0 + float(sigmas[0]) ** 2)  # diffusers' unit-variance x_T in ComfyUI's space
    out = ddim.sample_ddim(ToyComfyModel(sigma_table, prediction), x, sigmas, eta=eta,
                           noise_sampler=lambda s, s_next: next(drawn))
    assert relative_error(out, reference) < 1e-4


@pytest.mark.parametrize("eta", ETAS)
def test_without_set_alpha_to_one_the_result_is_diffusers_scaled_by_the_final_alpha(diffusers, eta):
    step_noises, x_T = noises(10), initial_noise()
    reference = diffusers_loop(diffusers_scheduler("leading", "epsilon", False, False, 1), 10, eta, step_noises, x_T)
    alphas = table(False)
    sigma_table = comfy_sigma_table(alphas)
    sigmas = ddim_schedule.schedule_sigmas_from_table(sigma_table, 10, "leading", 1, False)
    drawn = iter(step_noises)
    out = ddim.sample_ddim(ToyComfyModel(sigma_table, "epsilon"), x_T * math.sqrt(1 + float(sigmas[0]) ** 2),
                           sigmas, eta=eta, noise_sampler=lambda s, s_next: next(drawn))
    # ComfyUI's x at the final alpha is x_t / sqrt(alpha): diffusers' sample, rescaled
    assert relative_error(out * math.sqrt(float(alphas[0])), reference) < 1e-4


def test_diffusers_linspace_step_does_not_follow_its_own_timesteps(diffusers):
    """Why follow_list exists: at 10 linspace steps the list strides by 111, diffusers' step() by 100."""
    step_noises, x_T = noises(10), initial_noise()
    as_is = diffusers_loop(diffusers_scheduler("linspace", "epsilon", False), 10, 0.0, step_noises, x_T)
    fixed = diffusers_loop(diffusers_scheduler("linspace", "epsilon", False), 10, 0.0, step_noises, x_T, True)
    assert relative_error(as_is, fixed) > 1e-2


def test_zero_snr_eta_one_from_the_terminal_timestep_stays_finite():
    schedule = ddim_schedule.build_schedule(table(True), 10, "trailing", 0, True)
    x = initial_noise()
    for i, t in enumerate(schedule.timesteps):
        x, _ = ddim.ddim_step(x, toy_output(x, t), schedule.alphas[i], schedule.alphas_prev[i], 1.0,
                              noises(10)[i], "v_prediction")
    assert schedule.alphas[0] == 0.0 and torch.isfinite(x).all()


# ---------------------------------------------------------------- step_target "diffusers" and clip_sample

# every spacing, step counts where diffusers' t - N // n is and is not the next listed timestep
TARGET_CASES = [(spacing, offset, steps) for spacing, offset in [("leading", 1), ("trailing", 0), ("linspace", 0)]
                for steps in (1, 2, 3, 7, 10, 25, 61)]


def indexed_noise(sigmas, step_noises):
    """A noise sampler that gives step i its own noise, however many steps draw (diffusers: variance_noise[i])."""
    index = {float(s): i for i, s in enumerate(sigmas[:-1])}
    return lambda s, s_next: step_noises[index[float(s)]]


def test_diffusers_targets_jump_by_n_over_n_not_to_the_next_listed_timestep():
    linspace = ddim_schedule.ddim_timesteps(10, 1000, "linspace")
    assert ddim_schedule.diffusers_targets(linspace, 1000, 10) == [899, 788, 677, 566, 455, 344, 233, 122, 11, -1]
    trailing = ddim_schedule.ddim_timesteps(7, 1000, "trailing")
    assert trailing == [999, 856, 713, 570, 428, 285, 142]
    assert ddim_schedule.diffusers_targets(trailing, 1000, 7) == [857, 714, 571, 428, 286, 143, 0]


@pytest.mark.parametrize("spacing,offset,steps", [("leading", 1, 7), ("leading", 0, 10), ("trailing", 0, 10),
                                                  ("trailing", 0, 8)])
def test_both_step_targets_agree_where_diffusers_steps_to_the_next_listed_timestep(spacing, offset, steps):
    ours = ddim_schedule.build_schedule(table(False), steps, spacing, offset, True, "next listed")
    theirs = ddim_schedule.build_schedule(table(False), steps, spacing, offset, True, "diffusers")
    assert ours == theirs


@pytest.mark.parametrize("zsnr", [False, True], ids=["plain", "zsnr"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("eta", ETAS)
@pytest.mark.parametrize("spacing,offset,steps", TARGET_CASES)
def test_diffusers_step_target_loop_equals_diffusers_step(diffusers, spacing, offset, steps, eta, prediction, zsnr):
    """No shim: diffusers' own step() against ddim_step over build_schedule(step_target="diffusers")."""
    _skip_unsupported(spacing, offset, steps, prediction, zsnr, eta)
    step_noises, x_T = noises(steps), initial_noise()
    reference = diffusers_loop(diffusers_scheduler(spacing, prediction, zsnr, steps_offset=offset), steps, eta,
                               step_noises, x_T)
    schedule = ddim_schedule.build_schedule(table(zsnr), steps, spacing, offset, True, "diffusers")
    x = x_T.clone()
    for i, t in enumerate(schedule.timesteps):
        x, _ = ddim.ddim_step(x, toy_output(x, t), schedule.alphas[i], schedule.alphas_prev[i], eta,
                              step_noises[i], prediction)
    assert relative_error(x, reference) < 1e-4


@pytest.mark.parametrize("zsnr", [False, True], ids=["plain", "zsnr"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("eta", ETAS)
@pytest.mark.parametrize("spacing,offset,steps", TARGET_CASES)
def test_comfy_space_sampler_with_diffusers_step_target_equals_diffusers_step(diffusers, spacing, offset, steps,
                                                                             eta, prediction, zsnr):
    _skip_unsupported(spacing, offset, steps, prediction, zsnr, eta)
    step_noises, x_T = noises(steps), initial_noise()
    scheduler = diffusers_scheduler(spacing, prediction, zsnr, steps_offset=offset)
    if zsnr:
        scheduler.alphas_cumprod[-1] = ddim_schedule.TERMINAL_ALPHA_CUMPROD
    reference = diffusers_loop(scheduler, steps, eta, step_noises, x_T)

    sigma_table = comfy_sigma_table(table(zsnr))
    sigmas = ddim_schedule.schedule_sigmas_from_table(sigma_table, steps, spacing, offset, True)
    out = ddim.sample_ddim(ToyComfyModel(sigma_table, prediction), x_T * math.sqrt(1.0 + float(sigmas[0]) ** 2),
                           sigmas, eta=eta, noise_sampler=indexed_noise(sigmas, step_noises),
                           step_alphas=ddim_schedule.diffusers_step_alphas(sigma_table, sigmas))
    assert relative_error(out, reference) < 1e-4


@pytest.mark.parametrize("spacing,offset", [("leading", 1), ("trailing", 0), ("linspace", 0)])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_diffusers_step_target_with_denoise_equals_diffusers_img2img_tail(diffusers, spacing, offset, eta):
    """denoise 0.5 at 6 steps plans 12, as diffusers' img2img at strength 0.5 does, and strides by 1000 // 12."""
    planned, kept = 12, 6
    step_noises, x_start = noises(planned), initial_noise()
    reference = diffusers_loop(diffusers_scheduler(spacing, "epsilon", False, steps_offset=offset), planned, eta,
                               step_noises, x_start, start=planned - kept)
    sigma_table = comfy_sigma_table(table(False))
    sigmas = ddim_schedule.schedule_sigmas_from_table(sigma_table, kept, spacing, offset, True, denoise=0.5)
    out = ddim.sample_ddim(ToyComfyModel(sigma_table, "epsilon"), x_start * math.sqrt(1.0 + float(sigmas[0]) ** 2),
                           sigmas, eta=eta, noise_sampler=indexed_noise(sigmas, step_noises[planned - kept:]),
                           step_alphas=ddim_schedule.diffusers_step_alphas(sigma_table, sigmas))
    assert relative_error(out, reference) < 1e-4


def test_the_plan_size_of_a_denoise_tail_is_the_planned_step_count():
    sigma_table = comfy_sigma_table(table(False))
    sigmas = ddim_schedule.schedule_sigmas_from_table(sigma_table, 6, "linspace", 0, True, denoise=0.5)
    timesteps = ddim_schedule.timesteps_of_sigmas(sigma_table, sigmas[:-1], "test")
    assert timesteps == ddim_schedule.ddim_timesteps(12, 1000, "linspace")[-6:]
    assert ddim_schedule.find_plan_size(timesteps, 1000) == 12


def test_diffusers_step_target_refuses_sigmas_off_the_training_table():
    sigma_table = comfy_sigma_table(table(False))
    with pytest.raises(ValueError, match="is not one of the model's training sigmas"):
        ddim_schedule.diffusers_step_alphas(sigma_table, torch.tensor([14.0, 3.0, 0.0]))


def test_diffusers_step_target_refuses_sigmas_that_stop_before_the_end():
    sigma_table = comfy_sigma_table(table(False))
    head = ddim_schedule.schedule_sigmas_from_table(sigma_table, 10, "linspace", 0, True)[:5]
    with pytest.raises(ValueError, match="needs SIGMAS that end a DDIM schedule"):
        ddim_schedule.diffusers_step_alphas(sigma_table, head)


def test_an_unknown_step_target_is_a_clear_error():
    with pytest.raises(ValueError, match="step_target 'next' is not supported"):
        ddim_schedule.build_schedule(table(False), 10, "leading", 1, True, "next")


@pytest.mark.parametrize("spacing,offset", [("leading", 1), ("linspace", 0)])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_clip_sample_equals_diffusers_clip_sample(diffusers, spacing, offset, eta):
    """clip_sample (diffusers' default True, range 1) clamps the predicted x_0; SD configs turn it off."""
    steps = 10
    step_noises, x_T = noises(steps), initial_noise() * 3.0  # large enough that x_0 leaves [-1, 1]
    scheduler = diffusers_scheduler(spacing, "epsilon", False, steps_offset=offset, clip_sample=True)
    reference = diffusers_loop(scheduler, steps, eta, step_noises, x_T)
    unclipped = diffusers_loop(diffusers_scheduler(spacing, "epsilon", False, steps_offset=offset), steps, eta,
                               step_noises, x_T)
    assert relative_error(unclipped, reference) > 1e-2  # the clamp matters in this case
    sigma_table = comfy_sigma_table(table(False))
    sigmas = ddim_schedule.schedule_sigmas_from_table(sigma_table, steps, spacing, offset, True)
    out = ddim.sample_ddim(ToyComfyModel(sigma_table, "epsilon"), x_T * math.sqrt(1.0 + float(sigmas[0]) ** 2),
                           sigmas, eta=eta, noise_sampler=indexed_noise(sigmas, step_noises), clip_sample=1.0,
                           step_alphas=ddim_schedule.diffusers_step_alphas(sigma_table, sigmas))
    assert relative_error(out, reference) < 1e-4


# ---------------------------------------------------------------- invariants

def _run(eta, seed, steps=6, callback=None):
    sigma_table = comfy_sigma_table(table(False))
    sigmas = ddim_schedule.schedule_sigmas_from_table(sigma_table, steps, "trailing", 0, True)
    generator = torch.Generator().manual_seed(seed)
    model = ToyComfyModel(sigma_table, "epsilon")
    out = ddim.sample_ddim(model, initial_noise() * float(sigmas[0]), sigmas, eta=eta, callback=callback,
                           noise_sampler=lambda s, s_next: torch.randn(SHAPE, generator=generator))
    return out, model


def test_eta_zero_is_deterministic_whatever_the_noise():
    first, _ = _run(0.0, seed=1)
    second, _ = _run(0.0, seed=2)
    assert torch.equal(first, second)


def test_eta_one_depends_on_the_noise_and_the_same_seed_reproduces():
    a, _ = _run(1.0, seed=1)
    b, _ = _run(1.0, seed=2)
    c, _ = _run(1.0, seed=1)
    assert not torch.allclose(a, b) and torch.equal(a, c)


def test_callback_is_called_once_per_step_with_comfyuis_keys():
    seen = []
    _, model = _run(0.5, seed=0, steps=6, callback=seen.append)
    assert [event["i"] for event in seen] == list(range(6)) and model.calls == 6
    assert set(seen[0]) == {"x", "i", "sigma", "sigma_hat", "denoised"}


def test_noise_is_drawn_only_for_steps_that_add_noise():
    sigma_table = comfy_sigma_table(table(False))
    sigmas = ddim_schedule.schedule_sigmas_from_table(sigma_table, 5, "trailing", 0, True)
    draws = []
    ddim.sample_ddim(ToyComfyModel(sigma_table, "epsilon"), initial_noise() * 14.6, sigmas, eta=0.5,
                     noise_sampler=lambda s, s_next: draws.append(float(s_next)) or torch.zeros(SHAPE))
    assert len(draws) == 4 and 0.0 not in draws  # the last step (to sigma 0) adds none


def test_the_last_step_to_sigma_zero_returns_the_models_x0():
    sigma_table = comfy_sigma_table(table(False))
    sigmas = torch.tensor([float(sigma_table[500]), 0.0])
    model = ToyComfyModel(sigma_table, "epsilon")
    x = initial_noise() * float(sigmas[0])
    out = ddim.sample_ddim(model, x, sigmas, eta=1.0, noise_sampler=lambda s, s_next: torch.ones(SHAPE))
    assert torch.allclose(out, model(x, sigmas[:1].expand(2)))


@pytest.mark.parametrize("eta", [-0.1, 1.5, float("nan")])
def test_eta_outside_0_1_is_a_clear_error(eta):
    with pytest.raises(ValueError, match="eta must be in \\[0, 1\\]"):
        ddim.check_eta(eta)


def test_eta_above_zero_without_noise_sampler_is_a_clear_error():
    with pytest.raises(ValueError, match="needs a noise_sampler"):
        ddim.sample_ddim(lambda x, s: x, torch.zeros(SHAPE), torch.tensor([1.0, 0.5]), eta=0.5)


@pytest.mark.parametrize("name", ["ddim.py", "ddim_schedule.py"])
def test_the_ddim_lib_imports_no_comfyui(name):
    import ast
    banned = {"comfy", "comfy_api", "folder_paths", "nodes", "server", "execution", "latent_preview"}
    tree = ast.parse((LIB_DIR / name).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not imported & banned
