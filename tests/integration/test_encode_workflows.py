"""Image-to-video conditioning graphs in a live ComfyUI: five runs, the encoders run once.

Each graph runs five times changing only what the brief says must not re-encode (SVD:
the frame count; Wan: the prompt). ComfyUI re-executes the Recall node every time (its
inputs changed), and the node's "recall.node" events show one miss and four hits:
the image encodings were computed once and served from the cache afterwards.
"""
import pytest

pytestmark = pytest.mark.integration


def svd_prompt(image_name: str, models: dict, video_frames: int) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "2": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": models["clip_vision"].name}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": models["sd15_vae"].name}},
        "4": {"class_type": "RecallSVDImg2VidConditioning",
              "inputs": {"clip_vision": ["2", 0], "init_image": ["1", 0], "vae": ["3", 0], "width": 64, "height": 64,
                         "video_frames": video_frames, "motion_bucket_id": 127, "fps": 6,
                         "augmentation_level": 0.0, "seed": 0}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 2]}},
    }


def wan_prompt(image_name: str, models: dict, text: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": models["sd15_checkpoint"].name}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": models["wan21_vae"].name}},
        "4": {"class_type": "RecallCLIPTextEncode", "inputs": {"text": text, "clip": ["2", 1]}},
        "5": {"class_type": "RecallCLIPTextEncode", "inputs": {"text": "blurry", "clip": ["2", 1]}},
        "6": {"class_type": "RecallWanImageToVideo",
              "inputs": {"positive": ["4", 0], "negative": ["5", 0], "vae": ["3", 0], "width": 32, "height": 32,
                         "length": 5, "batch_size": 1, "start_image": ["1", 0]}},
        "7": {"class_type": "PreviewAny", "inputs": {"source": ["6", 0]}},
    }


def statuses(results, node_id: str) -> list:
    out = []
    for result in results:
        assert result.ok, result.errors
        events = result.node_events(node_id)
        assert len(events) == 1, f"expected one recall.node event per run from node {node_id}, got {events}"
        out.append(events[0]["status"])
    return out


def test_svd_graph_five_frame_counts_encode_once(run_prompt, input_image, models):
    name = input_image(name="recall_encode_svd.png", width=80, height=64, seed=501)
    results = [run_prompt(svd_prompt(name, models, frames)) for frames in (14, 16, 18, 20, 25)]
    assert all("4" in r.executed for r in results)  # ComfyUI re-ran the node every time...
    assert statuses(results, "4") == ["miss", "hit", "hit", "hit", "hit"]  # ...the encoders ran once
    first = results[0].node_events("4")[0]
    assert first["compute_s"] > 0 and all(r.node_events("4")[0]["saved_s"] > 0 for r in results[1:])


def test_wan_graph_five_prompts_encode_once(run_prompt, input_image, models):
    name = input_image(name="recall_encode_wan.png", width=48, height=40, seed=502)
    prompts = ["a fox", "a fox running", "a fox in snow", "a red fox", "a fox at night"]
    results = [run_prompt(wan_prompt(name, models, text), timeout_s=600) for text in prompts]
    assert all("6" in r.executed for r in results)
    assert statuses(results, "6") == ["miss", "hit", "hit", "hit", "hit"]
    assert statuses(results, "4") == ["miss"] * 5  # each new prompt is a new text encoding


def img2img_prompt(image_name: str, models: dict, cfg: float) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": models["sd15_checkpoint"].name}},
        "3": {"class_type": "RecallVAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["2", 2]}},
        "4": {"class_type": "RecallCLIPTextEncode", "inputs": {"text": "a fox", "clip": ["2", 1]}},
        "5": {"class_type": "RecallCLIPTextEncode", "inputs": {"text": "blurry", "clip": ["2", 1]}},
        "6": {"class_type": "KSampler",
              "inputs": {"model": ["2", 0], "seed": 0, "steps": 1, "cfg": cfg, "sampler_name": "euler",
                         "scheduler": "normal", "positive": ["4", 0], "negative": ["5", 0],
                         "latent_image": ["3", 0], "denoise": 0.5}},
        "7": {"class_type": "PreviewAny", "inputs": {"source": ["6", 0]}},
    }


def test_img2img_cfg_change_and_image_a_b_a_encode_each_image_once(run_prompt, input_image, models):
    a = input_image(name="recall_encode_a.png", width=64, height=64, seed=503)
    b = input_image(name="recall_encode_b.png", width=64, height=64, seed=504)
    results = [run_prompt(img2img_prompt(name, models, cfg), timeout_s=600)
               for name, cfg in ((a, 7.0), (a, 3.0), (b, 3.0), (a, 5.0))]
    assert all(r.ok for r in results), [r.errors for r in results]
    assert [e["status"] for e in results[0].node_events("3")] == ["miss"]
    assert results[1].node_events("3") == [] and "6" in results[1].executed  # cfg: only the sampler re-ran
    assert [e["status"] for e in results[2].node_events("3")] == ["miss"]  # image B
    # Back to A: ComfyUI's own cache forgot A (it keeps the last run), Recall did not.
    assert "3" in results[3].executed and [e["status"] for e in results[3].node_events("3")] == ["hit"]
