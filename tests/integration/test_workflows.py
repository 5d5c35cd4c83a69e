"""Every example workflow in workflows/, converted to API format and run in real ComfyUI on the CPU.

Each graph gets tiny random-weight stand-ins for its models (the harness's `models`), small
sizes, few frames and steps. Parts that need a model the harness has no stand-in for (the SVD
and Wan diffusion models, the umt5 text encoder) are replaced where an equivalent exists (the
SD1.5 checkpoint's CLIP for umt5, a VAE / CLIP-vision file for ImageOnlyCheckpointLoader's) and
otherwise cut off, with a PreviewAny on the Recall node's outputs in place of the sampler.
The cache workflows run twice, the second time with a changed frame count / prompt: the image
encoders must not run again.
"""
import json
import shutil
from pathlib import Path

import pytest
from recall_pack.bench.harness import lora_files
from recall_pack.bench.harness.comfy_client import write_input_image
from recall_pack.bench.harness.workflow_convert import to_api

pytestmark = pytest.mark.integration
WORKFLOWS_DIR = Path(__file__).resolve().parent.parent.parent / "workflows"
LORA_NAME = "recall_test_workflows_lcm.safetensors"


@pytest.fixture(scope="module")
def object_info(comfy_client) -> dict:
    return comfy_client.object_info()


def load_api(name: str, object_info: dict) -> dict:
    return to_api(json.loads((WORKFLOWS_DIR / f"{name}.json").read_text(encoding="utf-8")), object_info)


def ids_of(prompt: dict, class_type: str) -> list:
    return [nid for nid, node in prompt.items() if node["class_type"] == class_type]


def one(prompt: dict, class_type: str) -> str:
    found = ids_of(prompt, class_type)
    assert len(found) == 1, f"expected one {class_type}, found {found}"
    return found[0]


def set_all(prompt: dict, class_type: str, **values) -> None:
    for nid in ids_of(prompt, class_type):
        prompt[nid]["inputs"].update(values)


def rewire(prompt: dict, old: list, new: list) -> None:
    """Every input fed by output `old` ([node, slot]) is fed by `new` instead."""
    for node in prompt.values():
        for name, value in node["inputs"].items():
            if value == old:
                node["inputs"][name] = list(new)


def prune(prompt: dict, dead: set) -> None:
    """Remove `dead` nodes and everything downstream of them."""
    dead = set(dead)
    while True:
        more = {nid for nid, node in prompt.items() if nid not in dead and any(
            isinstance(v, list) and len(v) == 2 and v[0] in dead for v in node["inputs"].values())}
        if not more:
            break
        dead |= more
    for nid in dead:
        prompt.pop(nid, None)


def add(prompt: dict, class_type: str, **inputs) -> str:
    nid = str(max(int(k) for k in prompt) + 1)
    prompt[nid] = {"class_type": class_type, "inputs": inputs}
    return nid


def svd_standin(prompt: dict, models: dict, image: str, frames: int) -> dict:
    loader = one(prompt, "ImageOnlyCheckpointLoader")
    vision = add(prompt, "CLIPVisionLoader", clip_name=models["clip_vision"].name)
    vae = add(prompt, "VAELoader", vae_name=models["sd15_vae"].name)
    rewire(prompt, [loader, 1], [vision, 0])
    rewire(prompt, [loader, 2], [vae, 0])
    prune(prompt, {loader})  # no SVD UNet stand-in: the sampler, decoder and saver go with it
    cond = one(prompt, "RecallSVDImg2VidConditioning")
    prompt[cond]["inputs"].update(width=64, height=64, video_frames=frames)
    add(prompt, "PreviewAny", source=[cond, 2])
    set_all(prompt, "LoadImage", image=image)
    return prompt


def wan_standin(prompt: dict, models: dict, image: str, text: str) -> dict:
    checkpoint = add(prompt, "CheckpointLoaderSimple", ckpt_name=models["sd15_checkpoint"].name)
    rewire(prompt, [one(prompt, "CLIPLoader"), 0], [checkpoint, 1])  # no umt5 stand-in: SD1.5's CLIP
    prune(prompt, {one(prompt, "CLIPLoader"), one(prompt, "UNETLoader")})
    set_all(prompt, "CLIPVisionLoader", clip_name=models["clip_vision"].name)
    set_all(prompt, "VAELoader", vae_name=models["wan21_vae"].name)
    set_all(prompt, "LoadImage", image=image)
    i2v = one(prompt, "RecallWanImageToVideo")
    prompt[i2v]["inputs"].update(width=32, height=32, length=5)
    positive = prompt[i2v]["inputs"]["positive"][0]
    prompt[positive]["inputs"]["text"] = text
    add(prompt, "PreviewAny", source=[i2v, 2])
    return prompt


def sd15_standin(prompt: dict, models: dict, steps: int) -> dict:
    set_all(prompt, "CheckpointLoaderSimple", ckpt_name=models["sd15_checkpoint"].name)
    set_all(prompt, "EmptyLatentImage", width=64, height=64)
    set_all(prompt, "KSampler", steps=steps)
    set_all(prompt, "RecallDDIMScheduler", steps=steps)
    set_all(prompt, "RecallLCMLoraLoader", lora_name=LORA_NAME)
    return prompt


def cache_standin(prompt: dict, models: dict, image: str, text: str) -> dict:
    sd15_standin(prompt, models, steps=1)
    set_all(prompt, "CLIPVisionLoader", clip_name=models["clip_vision"].name)
    set_all(prompt, "LoadImage", image=image)
    positive = prompt[one(prompt, "unCLIPConditioning")]["inputs"]["conditioning"][0]
    prompt[positive]["inputs"]["text"] = text
    return prompt


def status_of(result, node_id: str) -> list:
    return [event["status"] for event in result.node_events(node_id)]


def check_ok(result) -> None:
    assert result.ok, result.errors


def test_svd_img2vid_recall_changed_frame_count_runs_no_encoder(run_prompt, object_info, models, comfy_server):
    image = write_input_image(comfy_server.input_dir, "wf_svd.png", 72, 64, seed=1001)
    first = run_prompt(svd_standin(load_api("svd_img2vid_recall", object_info), models, image, 6))
    check_ok(first)
    second = run_prompt(svd_standin(load_api("svd_img2vid_recall", object_info), models, image, 8))
    check_ok(second)
    cond = one(load_api("svd_img2vid_recall", object_info), "RecallSVDImg2VidConditioning")
    assert status_of(first, cond) == ["miss"]
    assert cond in second.executed and status_of(second, cond) == ["hit"]


def test_wan_i2v_recall_changed_prompt_runs_no_image_encoder(run_prompt, object_info, models, comfy_server):
    image = write_input_image(comfy_server.input_dir, "wf_wan.png", 48, 40, seed=1002)
    first = run_prompt(wan_standin(load_api("wan_i2v_recall", object_info), models, image, "a fox"), timeout_s=600)
    check_ok(first)
    second = run_prompt(wan_standin(load_api("wan_i2v_recall", object_info), models, image, "a fox in snow"),
                        timeout_s=600)
    check_ok(second)
    base = load_api("wan_i2v_recall", object_info)
    i2v, vision = one(base, "RecallWanImageToVideo"), one(base, "RecallCLIPVisionEncode")
    assert status_of(first, i2v) == ["miss"] and status_of(first, vision) == ["miss"]
    assert i2v in second.executed and status_of(second, i2v) == ["hit"]  # the new prompt re-ran it: no VAE encode
    assert vision not in second.executed or status_of(second, vision) == ["hit"]


def test_sd15_lcm_lora_4step_completes(run_prompt, object_info, models, comfy_server):
    pairs = lora_files.make_pairs(lora_files.sd15_targets(320), rank=4, alpha=4.0, scale=0.01)
    lora_files.write(comfy_server.base_dir / "models" / "loras" / LORA_NAME, lora_files.encode(pairs, "kohya"))
    prompt = sd15_standin(load_api("sd15_lcm_lora_4step", object_info), models, steps=4)
    assert prompt[one(prompt, "KSampler")]["inputs"]["sampler_name"] == "lcm"
    result = run_prompt(prompt, timeout_s=600)
    check_ok(result)
    assert len(result.outputs[one(prompt, "SaveImage")]["images"]) == 1


def test_ddim_eta_saves_both_images(run_prompt, object_info, models):
    prompt = sd15_standin(load_api("ddim_eta", object_info), models, steps=2)
    etas = sorted(prompt[nid]["inputs"]["eta"] for nid in ids_of(prompt, "RecallSamplerDDIM"))
    assert etas == [0.0, 1.0]
    result = run_prompt(prompt, timeout_s=600)
    check_ok(result)
    assert all(len(result.outputs[nid]["images"]) == 1 for nid in ids_of(prompt, "SaveImage"))


def test_recall_cache_clip_vision_second_run_skips_loader_and_encoder(run_prompt, object_info, models, comfy_server):
    image = write_input_image(comfy_server.input_dir, "wf_cache_a.png", 96, 96, seed=1003)
    first = run_prompt(cache_standin(load_api("recall_cache_clip_vision", object_info), models, image, "a boat"),
                       timeout_s=600)
    check_ok(first)
    # The same pixels under a new name and a new prompt: ComfyUI's own cache would re-run the branch.
    shutil.copy(comfy_server.input_dir / image, comfy_server.input_dir / "wf_cache_b.png")
    second = run_prompt(cache_standin(load_api("recall_cache_clip_vision", object_info), models, "wf_cache_b.png",
                                      "a red boat"), timeout_s=600)
    check_ok(second)
    base = load_api("recall_cache_clip_vision", object_info)
    cache, loader, encoder = one(base, "RecallCache"), one(base, "CLIPVisionLoader"), one(base, "CLIPVisionEncode")
    assert status_of(first, cache) == ["miss"] and {loader, encoder} <= set(first.executed)
    assert status_of(second, cache) == ["hit"]
    assert not {loader, encoder} & set(second.executed)
    assert one(base, "KSampler") in second.executed
