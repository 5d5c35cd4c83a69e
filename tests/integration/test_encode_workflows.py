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
