"""Recall Cache in a live ComfyUI: the upstream loader and encoder do not run again.

LoadImage -> CLIPVisionLoader/CLIPVisionEncode -> Recall Cache -> unCLIPConditioning (with a
CLIPTextEncode prompt from the SD1.5 checkpoint) -> PreviewAny. "Executed" is read from the
server's "executing" websocket messages, as the browser sees them. The second run's wall time
is printed as a ratio of the first (pytest -s shows it; the closing note quotes it).
"""
import shutil

from support.cache_modes import keeps_outputs


def workflow(models, image, text, crop="center"):
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": models["clip_vision"].name}},
        "3": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["2", 0], "image": ["1", 0], "crop": crop}},
        "4": {"class_type": "RecallCache", "inputs": {"value": ["3", 0], "allow_nondeterministic": False}},
        "5": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": models["sd15_checkpoint"].name}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["5", 1], "text": text}},
        "7": {"class_type": "unCLIPConditioning",
              "inputs": {"conditioning": ["6", 0], "clip_vision_output": ["4", 0], "strength": 1.0,
                         "noise_augmentation": 0.0}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["7", 0]}},
    }


UPSTREAM = {"1", "2", "3"}


def recall_status(result):
    return [(e["status"], e["tier"]) for e in result.node_events("4")]


def test_changed_prompt_rename_and_restart_skip_the_encoder(comfy_server_factory, models, run_prompt):
    server = comfy_server_factory()
    from recall_pack.bench.harness.comfy_client import write_input_image
    image = write_input_image(server.input_dir, "recall_cache_a.png", 96, 96, seed=3)

    first = run_prompt(workflow(models, image, "a red boat"), server=server)
    assert first.ok, first.errors
    assert UPSTREAM | {"4"} <= set(first.executed)
    assert recall_status(first) == [("miss", None)]

    # a changed prompt: ComfyUI's own cache keeps the branch in the default mode
    second = run_prompt(workflow(models, image, "a blue boat"), server=server)
    assert second.ok, second.errors
    assert "6" in second.executed and not UPSTREAM & set(second.executed)
    print(f"\n[recall-cache] default mode, changed prompt: run 2 / run 1 = "
          f"{second.wall_s:.2f} s / {first.wall_s:.2f} s = {second.wall_s / first.wall_s:.3f}")

    # the same picture under another name: ComfyUI's key changes, Recall's (content) does not
    shutil.copy(server.input_dir / image, server.input_dir / "recall_cache_b.png")
    renamed = run_prompt(workflow(models, "recall_cache_b.png", "a blue boat"), server=server)
    assert renamed.ok, renamed.errors
    assert "4" in renamed.executed and not UPSTREAM & set(renamed.executed)
    assert recall_status(renamed) == [("hit", "ram")]
    print(f"[recall-cache] default mode, image renamed (ComfyUI's key changed): run / first run = "
          f"{renamed.wall_s:.2f} s / {first.wall_s:.2f} s = {renamed.wall_s / first.wall_s:.3f}")

    server.restart()  # disk tier: ComfyUI's caches and Recall's RAM tier are gone
    third = run_prompt(workflow(models, image, "a green boat"), server=server)
    assert third.ok, third.errors
    assert "4" in third.executed and not UPSTREAM & set(third.executed)
    assert recall_status(third) == [("hit", "disk")]
    print(f"[recall-cache] after a restart (disk hit), changed prompt: run / first run = "
          f"{third.wall_s:.2f} s / {first.wall_s:.2f} s = {third.wall_s / first.wall_s:.3f}")

    changed = run_prompt(workflow(models, image, "a green boat", crop="none"), server=server)
    assert changed.ok, changed.errors
    assert "3" in changed.executed
    events = changed.node_events("4")
    assert events[0]["status"] == "miss" and 'crop "center" -> "none"' in events[0]["reason"]


def test_every_cache_mode_of_the_release_skips_the_encoder(comfy_server_factory, models, run_prompt, cache_flag):
    args = cache_flag  # the default mode: test_changed_prompt_rename_and_restart_skip_the_encoder
    server = comfy_server_factory(extra_args=args)
    from recall_pack.bench.harness.comfy_client import write_input_image
    image = write_input_image(server.input_dir, "recall_cache_a.png", 96, 96, seed=4)

    first = run_prompt(workflow(models, image, "a red boat"), server=server)
    assert first.ok, first.errors
    assert UPSTREAM <= set(first.executed)
    if keeps_outputs(args):  # ComfyUI keeps the branch itself: rename to change its key
        shutil.copy(server.input_dir / image, server.input_dir / "recall_cache_b.png")
        image = "recall_cache_b.png"
    second = run_prompt(workflow(models, image, "a blue boat"), server=server)
    assert second.ok, second.errors
    assert "4" in second.executed and not UPSTREAM & set(second.executed)
    assert recall_status(second) == [("hit", "ram")]
    print(f"\n[recall-cache] {' '.join(args)}, changed prompt: run 2 / run 1 = "
          f"{second.wall_s:.2f} s / {first.wall_s:.2f} s = {second.wall_s / first.wall_s:.3f}")
