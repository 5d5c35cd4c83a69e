"""A 4-step LCM workflow built on RecallLCMLoraLoader runs to completion in a live ComfyUI.

CheckpointLoaderSimple -> LCM-LoRA Loader (Recall) -> KSampler (lcm, sgm_uniform, 4 steps, cfg 1,
64x64 px) -> VAEDecode -> SaveImage, with a synthetic SD1.5 LCM-LoRA (kohya keys, every attention
layer of the full-width UNet) in the server's loras folder. A second run at another strength must
find the parsed file in the RAM tier (a "hit" event), and the log must not show ComfyUI's
"lora key not loaded" for any of its keys.
"""
from recall_pack.bench.harness import lora_files

LORA_NAME = "recall_test_lcm_sd15.safetensors"


def _workflow(checkpoint: str, strength: float, seed: int = 0) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "RecallLCMLoraLoader",
              "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": LORA_NAME,
                         "strength_model": strength, "strength_clip": 1.0, "set_lcm_sampling": True}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 1], "text": "a lighthouse at dusk"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 1], "text": ""}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "KSampler",
              "inputs": {"model": ["2", 0], "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["5", 0],
                         "seed": seed, "steps": 4, "cfg": 1.0, "sampler_name": "lcm", "scheduler": "sgm_uniform",
                         "denoise": 1.0}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "recall_lcm"}},
    }


def test_four_step_lcm_workflow_runs_and_reuses_the_parsed_lora(comfy_server, models, run_prompt):
    pairs = lora_files.make_pairs(lora_files.sd15_targets(320), rank=4, alpha=4.0, scale=0.01)
    lora_files.write(comfy_server.base_dir / "models" / "loras" / LORA_NAME, lora_files.encode(pairs, "kohya"))
    checkpoint = models["sd15_checkpoint"].name

    first = run_prompt(_workflow(checkpoint, 1.0))
    assert first.ok, first.errors
    assert {"2", "6", "7", "8"} <= set(first.executed)
    images = first.outputs["8"]["images"]
    assert len(images) == 1 and (comfy_server.output_dir / images[0]["subfolder"] / images[0]["filename"]).exists()
    loader_events = [e for e in first.events() if e["node_type"] == "RecallLCMLoraLoader"]
    assert [e["status"] for e in loader_events] == ["miss"]

    second = run_prompt(_workflow(checkpoint, 0.8))
    assert second.ok, second.errors
    assert "2" in second.executed
    assert [e["status"] for e in second.events() if e["node_type"] == "RecallLCMLoraLoader"] == ["hit"]

    log = comfy_server.log_text()
    assert "lora key not loaded" not in log and "NOT LOADED" not in log
