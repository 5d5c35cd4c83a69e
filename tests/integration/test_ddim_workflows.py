"""DDIM workflows run to completion in a live ComfyUI on the random-weight SD1.5 checkpoint (64x64 px, 3 steps).

1. SamplerCustom with DDIM Sampler (Recall) + DDIM Scheduler (Recall), eta 0.5: as a prompt saved before the
   sampler's step_target input existed (no such key), and with step_target "diffusers" on linspace.
2. With RECALL_DDIM_IN_KSAMPLER=1, the regular KSampler lists "ddim_eta" and runs it.

Both run on one server started with the setting on (one server for the module, stopped after it).
"""
import pytest

from recall_pack.bench.harness.comfy_client import ComfyClient
from recall_pack.bench.harness.comfy_server import start_server


@pytest.fixture(scope="module")
def ddim_server(comfyui, models, tmp_path_factory):
    server = start_server(comfyui.path, comfyui.python, tmp_path_factory.mktemp("comfy-ddim"), models,
                          extra_env={"RECALL_DDIM_IN_KSAMPLER": "1"})
    yield server
    server.stop()


def _common(checkpoint: str) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a lighthouse at dusk"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    }


def _decode_and_save(prompt: dict, samples: list, prefix: str) -> dict:
    prompt["8"] = {"class_type": "VAEDecode", "inputs": {"samples": samples, "vae": ["1", 2]}}
    prompt["9"] = {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}}
    return prompt


def _sampler_custom_workflow(checkpoint: str, step_target=None, spacing="trailing") -> dict:
    prompt = _common(checkpoint)
    prompt["5"] = {"class_type": "RecallSamplerDDIM", "inputs": {"eta": 0.5}}
    if step_target is not None:
        prompt["5"]["inputs"]["step_target"] = step_target
    prompt["6"] = {"class_type": "RecallDDIMScheduler",
                   "inputs": {"model": ["1", 0], "steps": 3, "timestep_spacing": spacing, "steps_offset": 1,
                              "set_alpha_to_one": True, "rescale_zero_terminal_snr": False, "denoise": 1.0}}
    prompt["7"] = {"class_type": "SamplerCustom",
                   "inputs": {"model": ["1", 0], "add_noise": True, "noise_seed": 3, "cfg": 1.0,
                              "positive": ["2", 0], "negative": ["3", 0], "sampler": ["5", 0],
                              "sigmas": ["6", 0], "latent_image": ["4", 0]}}
    return _decode_and_save(prompt, ["7", 0], "recall_ddim_custom")


def _ksampler_workflow(checkpoint: str) -> dict:
    prompt = _common(checkpoint)
    prompt["7"] = {"class_type": "KSampler",
                   "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                              "latent_image": ["4", 0], "seed": 3, "steps": 3, "cfg": 1.0,
                              "sampler_name": "ddim_eta", "scheduler": "ddim_uniform", "denoise": 1.0}}
    return _decode_and_save(prompt, ["7", 0], "recall_ddim_ksampler")


def _saved_image(server, result, node="9"):
    images = result.outputs[node]["images"]
    assert len(images) == 1
    return server.output_dir / images[0]["subfolder"] / images[0]["filename"]


@pytest.mark.parametrize("step_target,spacing", [(None, "trailing"), ("diffusers", "linspace")],
                         ids=["saved-before-step_target", "diffusers-linspace"])
def test_sampler_custom_with_recall_ddim_runs_to_completion(ddim_server, models, step_target, spacing):
    client = ComfyClient(ddim_server.url)
    prompt = _sampler_custom_workflow(models["sd15_checkpoint"].name, step_target, spacing)
    result = client.run_prompt(prompt, timeout_s=300)
    assert result.ok, result.errors
    assert {"5", "6", "7", "8", "9"} <= set(result.executed)
    assert _saved_image(ddim_server, result).exists()


def test_ksampler_lists_and_runs_ddim_eta_when_the_setting_is_on(ddim_server, models):
    client = ComfyClient(ddim_server.url)
    listed = client.object_info()["KSampler"]["input"]["required"]["sampler_name"][0]
    assert listed.count("ddim_eta") == 1
    result = client.run_prompt(_ksampler_workflow(models["sd15_checkpoint"].name), timeout_s=300)
    assert result.ok, result.errors
    assert "7" in result.executed and _saved_image(ddim_server, result).exists()


def test_step_target_is_the_last_widget_and_optional_so_saved_workflows_keep_their_values(ddim_server):
    # the page assigns a saved node's widgets_values by position and leaves later widgets at their
    # defaults; the server skips a missing optional input (a missing required one fails validation)
    info = ComfyClient(ddim_server.url).object_info()["RecallSamplerDDIM"]
    assert info["input_order"] == {"required": ["eta"], "optional": ["step_target"]}
    assert info["input"]["optional"]["step_target"][1]["default"] == "next listed"
