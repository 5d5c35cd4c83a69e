"""DDIM benchmark: the Recall DDIM sampler's own per-step overhead against ComfyUI's euler, as a ratio.

    COMFYUI_PATH=... <ComfyUI venv>/bin/python -m bench.bench_sampling [--quick] [--no-sd15]

Run from the repo root with ComfyUI's venv. Three rows per sampler:

* own:  the sampler function alone with a free model (x -> 0.9 x) on a 1x4x64x64 latent (512 px):
        the step math, the loop and the noise draws, nothing else.
* toy:  comfy.samplers.sample end to end (CFGGuider, KSAMPLER wrapper, cfg 1) on ComfyUI's SD15
        BaseModel whose UNet is swapped for x -> 0.1 x: ComfyUI's per-step machinery plus the sampler
        (here also step_target diffusers, whose per-run table look-up needs the model's own sigmas).
* sd15: the same on the harness's random-weight full-width SD1.5 UNet at a 16x16 latent (128 px), where
        the model dominates (skipped with --no-sd15 or when the checkpoint is missing).

Prints a table and writes bench/results/sampling-<time>.json.
"""
import argparse
import os
import platform
import sys
import types
from pathlib import Path

import torch

from .common import REPO, median_seconds, use_comfyui, write_results
from .harness.make_models import SD15_UNET
CHECKPOINT = Path.home() / ".cache" / "comfyui-recall" / "models-v1" / "checkpoints" / "recall_test_sd15.safetensors"


def _import_pack(comfyui: str):
    use_comfyui(comfyui)
    from recall_pack.nodes import sampling_nodes
    return sampling_nodes


def _samplers(sampling_nodes):
    import comfy.samplers
    return {
        "euler": comfy.samplers.sampler_object("euler"),
        "recall_ddim_eta0": sampling_nodes.RecallSamplerDDIM.execute(0.0).result[0],
        "recall_ddim_eta1": sampling_nodes.RecallSamplerDDIM.execute(1.0).result[0],
        # diffusers' step target: looks the sigmas up in the model's table once per run
        "recall_ddim_diffusers": sampling_nodes.RecallSamplerDDIM.execute(0.0, "diffusers").result[0],
        "euler_ancestral_eta1": comfy.samplers.ksampler("euler_ancestral", {"eta": 1.0}),
        "comfy_ddim": comfy.samplers.sampler_object("ddim"),
    }


def bench_own(sampling_nodes, steps: int, repeat: int) -> dict:
    """Per-step seconds of each sampler function with a free model (its own overhead)."""
    from comfy.k_diffusion import sampling as k_sampling
    sigmas = torch.linspace(14.6, 0.03, steps).tolist() + [0.0]
    sigmas = torch.tensor(sigmas)
    x = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(0))

    import comfy.model_sampling

    class EpsSampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
        pass

    class FreeModel:
        """x -> 0.9 x, shaped like KSAMPLER's model (samplers look up inner_model.inner_model.model_sampling)."""
        inner_model = types.SimpleNamespace(inner_model=types.SimpleNamespace(model_sampling=EpsSampling()))

        def __call__(self, x, sigma, **kwargs):
            return x * 0.9

    free_model = FreeModel()

    functions = {
        "euler": lambda: k_sampling.sample_euler(free_model, x, sigmas, disable=True),
        "recall_ddim_eta0": lambda: sampling_nodes.sample_ddim_eta(free_model, x, sigmas, {"seed": 1}, disable=True,
                                                                   eta=0.0),
        "recall_ddim_eta1": lambda: sampling_nodes.sample_ddim_eta(free_model, x, sigmas, {"seed": 1}, disable=True,
                                                                   eta=1.0),
        "euler_ancestral_eta1": lambda: k_sampling.sample_euler_ancestral(
            free_model, x, sigmas, {"seed": 1}, disable=True, eta=1.0,
            noise_sampler=k_sampling.default_noise_sampler(x, seed=1)),
    }
    return {name: median_seconds(fn, repeat) / steps for name, fn in functions.items()}


def _toy_model():
    import comfy.model_patcher
    import comfy.supported_models
    # SD1.5's UNet layout, narrowed: the sampler's own cost is what is timed, not the model's
    unet = {**SD15_UNET, "model_channels": 32, "num_res_blocks": [1, 1, 1, 1], "channel_mult": [1, 1, 1, 1]}

    class CheapUNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        @property
        def dtype(self):
            return torch.float32

        def forward(self, x, timesteps, context=None, **kwargs):
            return x * 0.1

    model = comfy.supported_models.SD15(unet).get_model({}, device=torch.device("cpu"))
    model.diffusion_model = CheapUNet()
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def _sd15_model():
    import comfy.sd
    model, _clip, _vae, _ = comfy.sd.load_checkpoint_guess_config(str(CHECKPOINT), output_vae=False,
                                                                  output_clipvision=False)
    return model


def bench_pipeline(sampling_nodes, model, latent_hw: int, steps: int, repeat: int) -> dict:
    """Per-step seconds of comfy.samplers.sample with each sampler on the same model and sigmas."""
    import comfy.samplers
    sigmas = sampling_nodes.RecallDDIMScheduler.execute(model, steps, "leading", 1, True, False, 1.0).result[0]
    cond = [[torch.zeros(1, 77, 768), {}]]
    latent = torch.zeros(1, 4, latent_hw, latent_hw)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    out = {}
    for name, sampler in _samplers(sampling_nodes).items():
        def run():
            return comfy.samplers.sample(model, noise, cond, cond, 1.0, model.load_device, sampler, sigmas,
                                         latent_image=latent, disable_pbar=True, seed=1)
        out[name] = median_seconds(run, repeat) / steps
    return out


def _ratios(row: dict) -> dict:
    return {name: value / row["euler"] for name, value in row.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--no-sd15", action="store_true", help="skip the full-size SD1.5 UNet row")
    args = parser.parse_args(argv)
    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui:
        parser.error("set COMFYUI_PATH to a ComfyUI checkout and run with its venv's python")
    sampling_nodes = _import_pack(comfyui)
    torch.set_grad_enabled(False)
    repeat = 3 if args.quick else 15
    results = {"own": bench_own(sampling_nodes, 20, repeat * 2),
               "toy": bench_pipeline(sampling_nodes, _toy_model(), 64, 20, repeat)}
    if not args.no_sd15 and CHECKPOINT.exists():
        results["sd15"] = bench_pipeline(sampling_nodes, _sd15_model(), 16, 4, max(2, repeat // 5))
    report = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "cuda": torch.cuda.is_available()},
              "seconds_per_step": results,
              "ratio_to_euler": {row: _ratios(values) for row, values in results.items()}}
    print(f"{'row':6} {'sampler':22} {'ms/step':>10} {'x euler':>8}")
    for row, values in results.items():
        for name, seconds in values.items():
            print(f"{row:6} {name:22} {seconds * 1000:10.3f} {seconds / values['euler']:8.2f}")
    print(f"wrote {write_results('sampling', report).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
