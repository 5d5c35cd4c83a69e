"""LCM timestep selection equals diffusers' LCMScheduler; sigmas are the training schedule's at those steps."""
import ast
from pathlib import Path

import pytest
import torch

from recall_pack.nodes.lib import lcm_schedule

diffusers = pytest.importorskip("diffusers")


def _reference(steps, original=50, strength=1.0):
    scheduler = diffusers.LCMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear",
                                       beta_start=0.00085, beta_end=0.012)
    scheduler.set_timesteps(steps, original_inference_steps=original, strength=strength)
    return scheduler


@pytest.mark.parametrize("steps", range(1, 9))
def test_timesteps_equal_lcmscheduler_for_1_to_8_steps(steps):
    assert lcm_schedule.lcm_timesteps(steps) == _reference(steps).timesteps.tolist()


# every grid size up to 200 plus larger ones, with denoise values whose grid length N * strength
# is not a whole number (0.33, 0.9) as well as ones that are
ORIGINALS = list(range(1, 201)) + [250, 300, 333, 500, 777, 999, 1000]
STRENGTHS = [1.0, 0.9, 0.75, 0.5, 0.33]


@pytest.mark.parametrize("steps", range(1, 61))
def test_timesteps_equal_lcmscheduler_for_every_grid_and_denoise(steps):
    scheduler = _reference(1)
    mismatches = []
    for original in ORIGINALS:
        for strength in STRENGTHS:
            if steps > int(original * strength):
                continue  # diffusers refuses these too (see the limit test below)
            scheduler.set_timesteps(steps, original_inference_steps=original, strength=strength)
            expected = scheduler.timesteps.tolist()
            if lcm_schedule.lcm_timesteps(steps, original, strength=strength) != expected:
                mismatches.append((original, strength))
    assert mismatches == []


def test_float_error_of_numpys_linspace_is_reproduced_at_22_of_30():
    # diffusers' 12th index is floor(11 * (30 / 22)) = floor(14.999999999999998) = 14 -> grid point
    # 16 * 33 - 1 = 527; exact arithmetic gives index 15 -> 494
    timesteps = lcm_schedule.lcm_timesteps(22, 30)
    assert timesteps == _reference(22, 30).timesteps.tolist()
    assert timesteps[10:13] == [560, 527, 461]


@pytest.mark.parametrize("original", [8, 20, 25, 33, 100, 1000])
@pytest.mark.parametrize("steps", [1, 3, 4, 7, 8])
def test_timesteps_equal_lcmscheduler_for_other_distillation_grids(steps, original):
    assert lcm_schedule.lcm_timesteps(steps, original) == _reference(steps, original).timesteps.tolist()


@pytest.mark.parametrize("strength", [0.3, 0.5, 0.75, 0.99])
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_denoise_equals_lcmscheduler_strength(steps, strength):
    expected = _reference(steps, 50, strength).timesteps.tolist()
    assert lcm_schedule.lcm_timesteps(steps, 50, strength=strength) == expected


def test_more_steps_than_the_grid_allows_is_refused_naming_the_limit():
    with pytest.raises(ValueError, match=r"steps is 8 \(expected 1\.\.5"):
        lcm_schedule.lcm_timesteps(8, 50, strength=0.1)


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5])
def test_denoise_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match="denoise"):
        lcm_schedule.lcm_timesteps(4, strength=bad)


def test_sigmas_are_the_training_schedule_at_the_lcm_timesteps_then_zero():
    scheduler = _reference(4)
    alphas = scheduler.alphas_cumprod
    table = ((1 - alphas) / alphas) ** 0.5
    sigmas = lcm_schedule.sigmas_for_timesteps(table, lcm_schedule.lcm_timesteps(4))
    expected = [float(table[t]) for t in scheduler.timesteps.tolist()] + [0.0]
    assert sigmas.tolist() == pytest.approx(expected, rel=1e-6)


def test_timesteps_outside_the_table_are_refused():
    with pytest.raises(ValueError, match="outside the model's schedule"):
        lcm_schedule.sigmas_for_timesteps(torch.ones(500), [999, 499])


def test_sgm_uniform_lands_between_lcm_grid_points_for_4_steps():
    # the fact the README states: sgm_uniform's 4 timesteps are not on the LCM grid (except the first)
    lcm = lcm_schedule.lcm_timesteps(4)
    sgm = lcm_schedule.sgm_uniform_timesteps(4, t_max=999, t_min=19)
    assert sgm[0] == lcm[0] == 999
    assert [round(t) for t in sgm[1:]] == [754, 509, 264] and lcm[1:] == [759, 499, 259]
    assert [lcm_schedule.nearest_grid_timestep(t) for t in sgm[1:]] == [759, 519, 259]


def test_lib_modules_never_import_comfyui():
    lib = Path(lcm_schedule.__file__).parent
    banned = {"comfy", "comfy_api", "folder_paths", "nodes", "server", "execution", "comfy_extras"}
    for name in ("lcm_schedule.py", "lora_keys.py"):
        tree = ast.parse((lib / name).read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            assert not [n for n in names if n.split(".")[0] in banned], (name, names)
