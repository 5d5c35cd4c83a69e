"""Encoder identities after a restart, for models loaded through ComfyUI's own loader nodes.

A simulated restart: the per-object memo is emptied, the model is loaded again through the
core loader node (a new object), and the persistent memo is read back from its file. The
process is taken to have started after the model files were written (they are built by the
harness, possibly in this very session).
"""
import contextlib
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from recall_pack.bench.harness import lora_files
from support.recall_runtime import use_runtime
from test_encode_fixtures import inference_mode, sd_vae  # noqa: F401


@pytest.fixture
def restart(tmp_path, monkeypatch):
    """restart() -> hashing calls list, emptied; each call is a new process over the same memo file."""
    from recall_pack.cache.config import CacheConfig
    from recall_pack.cache.weights_memo import WeightsMemo
    from recall_pack.nodes import identity, runtime
    calls = []
    original = identity.fingerprint_tensors
    monkeypatch.setattr(identity, "fingerprint_tensors", lambda sd: calls.append(len(sd)) or original(sd))

    with contextlib.ExitStack() as runtimes:
        def start():
            monkeypatch.setattr(identity, "_weights_memo", type(identity._weights_memo)())
            memo = WeightsMemo(tmp_path / "cache" / runtime.WEIGHTS_MEMO_FILE)
            runtimes.enter_context(use_runtime(runtime.Runtime(
                CacheConfig(disk_dir=str(tmp_path / "cache")), weights_memo=memo,
                started_at=time.time() + 2 * identity.SETTLE_SECONDS)))
            calls.clear()
            return calls
        yield start


def graph(loader: str, inputs: dict, input_name: str, output: int = 0, between: dict | None = None) -> dict:
    """A prompt: loader "1" -> (optional node "2") -> the receiving node "9"."""
    prompt = {"1": {"class_type": loader, "inputs": inputs}}
    link = ["1", output]
    if between:
        prompt["2"] = {"class_type": between["class_type"], "inputs": {**between["inputs"], "clip": link}}
        link = ["2", between.get("output", 0)]
    prompt["9"] = {"class_type": "RecallReceiver", "inputs": {input_name: link}}
    return prompt


def test_vae_from_vae_loader_keeps_its_identity_after_a_restart(models, restart):
    import nodes
    from recall_pack.nodes import identity
    name = models["sd15_vae"].name
    prompt = graph("VAELoader", {"vae_name": name}, "vae")
    calls = restart()
    vae = nodes.VAELoader().load_vae(name)[0]
    assert identity.note_origin(vae, prompt, "9", "vae")
    first = identity.vae_identity(vae)
    assert len(calls) == 1
    del vae
    calls = restart()
    vae = nodes.VAELoader().load_vae(name)[0]
    assert identity.note_origin(vae, prompt, "9", "vae")
    assert identity.vae_identity(vae) == first and calls == []


def test_remembered_identity_equals_the_hashed_one(models, restart, sd_vae):
    import nodes
    from recall_pack.nodes import identity
    name = models["sd15_vae"].name
    restart()
    hashed = identity.vae_identity(sd_vae)  # the session fixture: no origin noted, hashed
    vae = nodes.VAELoader().load_vae(name)[0]
    identity.note_origin(vae, graph("VAELoader", {"vae_name": name}, "vae"), "9", "vae")
    identity.vae_identity(vae)
    calls = restart()
    again = nodes.VAELoader().load_vae(name)[0]
    identity.note_origin(again, graph("VAELoader", {"vae_name": name}, "vae"), "9", "vae")
    assert identity.vae_identity(again) == hashed and calls == []


def test_clip_vision_from_its_loader_keeps_its_identity_after_a_restart(models, restart):
    import nodes
    from recall_pack.nodes import identity
    name = models["clip_vision"].name
    prompt = graph("CLIPVisionLoader", {"clip_name": name}, "clip_vision")
    restart()
    first = nodes.CLIPVisionLoader().load_clip(name)[0]
    identity.note_origin(first, prompt, "9", "clip_vision")
    expected = identity.clip_vision_identity(first)
    del first
    calls = restart()
    cv = nodes.CLIPVisionLoader().load_clip(name)[0]
    assert identity.note_origin(cv, prompt, "9", "clip_vision")
    assert identity.clip_vision_identity(cv) == expected and calls == []


@pytest.fixture(scope="module")
def text_encoder(models, tmp_path_factory):
    """The harness checkpoint's CLIP-L as a standalone text-encoder file (what CLIPLoader reads)."""
    import folder_paths
    folder = tmp_path_factory.mktemp("text_encoders")
    prefix = "cond_stage_model.transformer."
    with safe_open(str(models["sd15_checkpoint"]), "pt") as f:
        tensors = {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    save_file(tensors, str(folder / "recall_test_clip_l.safetensors"))
    folder_paths.add_model_folder_path("text_encoders", str(folder))
    loras = tmp_path_factory.mktemp("loras")
    pairs = lora_files.make_pairs(lora_files.clip_targets(1, 768), rank=4, seed=3)
    lora_files.write(loras / "recall_test_clip_lora.safetensors", lora_files.encode(pairs, "kohya", "text_encoder"))
    folder_paths.add_model_folder_path("loras", str(loras))
    return "recall_test_clip_l.safetensors", "recall_test_clip_lora.safetensors"


def test_clip_from_clip_loader_and_its_lora_after_a_restart(text_encoder, restart):
    import nodes
    from recall_pack.nodes import identity
    name, lora = text_encoder
    loader = {"clip_name": name, "type": "stable_diffusion", "device": "default"}
    plain = graph("CLIPLoader", loader, "clip")
    lora_inputs = {"model": None, "lora_name": lora, "strength_model": 0.0, "strength_clip": 0.8}
    patched_graph = graph("CLIPLoader", loader, "clip",
                          between={"class_type": "LoraLoader", "inputs": lora_inputs, "output": 1})

    def load():
        clip = nodes.CLIPLoader().load_clip(name, "stable_diffusion")[0]
        patched = nodes.LoraLoader().load_lora(None, clip, lora, 0.0, 0.8)[1]
        return clip, patched

    restart()
    clip, patched = load()
    assert identity.note_origin(clip, plain, "9", "clip")
    assert identity.note_origin(patched, patched_graph, "9", "clip")
    base_id, lora_id = identity.clip_identity(clip), identity.clip_identity(patched)
    assert base_id != lora_id  # the LoRA makes it another function
    del clip, patched
    calls = restart()
    clip, patched = load()
    identity.note_origin(patched, patched_graph, "9", "clip")  # traced through LoraLoader to CLIPLoader
    assert identity.clip_identity(patched) == lora_id and identity.clip_identity(clip) == base_id
    assert calls == []


def test_file_replaced_under_the_same_name_is_hashed_again(models, restart, tmp_path):
    import folder_paths
    import nodes
    from recall_pack.nodes import identity
    folder = tmp_path / "vae"
    folder.mkdir()
    source = models["sd15_vae"].read_bytes()
    (folder / "recall_test_swap_vae.safetensors").write_bytes(source)
    folder_paths.add_model_folder_path("vae", str(folder))
    prompt = graph("VAELoader", {"vae_name": "recall_test_swap_vae.safetensors"}, "vae")
    restart()
    vae = nodes.VAELoader().load_vae("recall_test_swap_vae.safetensors")[0]
    identity.note_origin(vae, prompt, "9", "vae")
    first = identity.vae_identity(vae)
    del vae
    # another VAE under the same name: the decoder's last bias differs
    from safetensors.torch import load_file
    tensors = load_file(str(models["sd15_vae"]))
    key = "decoder.conv_out.bias"
    tensors[key] = tensors[key] + 1.0
    save_file(tensors, str(folder / "swap.tmp"))
    (folder / "swap.tmp").replace(folder / "recall_test_swap_vae.safetensors")
    calls = restart()
    vae = nodes.VAELoader().load_vae("recall_test_swap_vae.safetensors")[0]
    identity.note_origin(vae, prompt, "9", "vae")
    assert identity.vae_identity(vae) != first and len(calls) == 1


def test_a_loader_a_pack_replaced_is_not_trusted(models, restart, monkeypatch):
    import nodes
    from recall_pack.nodes import identity

    class PackVAELoader(nodes.VAELoader):  # a pack's class registered under core's name
        pass
    monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, "VAELoader", PackVAELoader)
    restart()
    vae = nodes.VAELoader().load_vae(models["sd15_vae"].name)[0]
    assert not identity.note_origin(vae, graph("VAELoader", {"vae_name": models["sd15_vae"].name}, "vae"), "9", "vae")


def test_checkpoint_vae_and_clip_have_origins_by_output(models):
    from recall_pack.nodes.model_origin import origin_of
    prompt = graph("CheckpointLoaderSimple", {"ckpt_name": models["sd15_checkpoint"].name}, "vae", output=2)
    assert origin_of(prompt, "9", "vae", "vae") is not None
    assert origin_of(prompt, "9", "vae", "clip") is None  # output 2 is the VAE, not the CLIP
    assert origin_of(graph("VAELoader", {"vae_name": "pixel_space"}, "vae"), "9", "vae", "vae") is None


def test_image_only_checkpoint_loader_is_recognised_as_core(comfyui):
    import asyncio
    import nodes
    from recall_pack.nodes import model_origin
    if "ImageOnlyCheckpointLoader" not in nodes.NODE_CLASS_MAPPINGS:  # loaded as ComfyUI loads its extras
        path = comfyui.path / "comfy_extras" / "nodes_video_model.py"
        assert asyncio.run(nodes.load_custom_node(str(path), module_parent="comfy_extras"))
    assert model_origin._is_core("ImageOnlyCheckpointLoader", model_origin.LOADERS["ImageOnlyCheckpointLoader"][0])


def test_weights_of_a_patched_clone_are_not_taken_for_the_base(restart):
    import comfy.model_patcher
    from recall_pack.nodes import identity
    restart()
    module = torch.nn.Linear(4, 4)
    base = comfy.model_patcher.ModelPatcher(module, load_device="cpu", offload_device="cpu")
    clone = base.clone()
    clone.add_patches({"weight": ("diff", (torch.ones(4, 4),))}, 1.0)
    clone.patch_model(device_to=torch.device("cpu"))  # the clone's LoRA is in the shared weights
    try:
        with pytest.raises(ValueError, match="another clone"):
            identity._base_weights(module, base)
    finally:
        clone.unpatch_model()


def test_a_name_found_in_two_model_folders_has_no_origin(models, tmp_path):
    import folder_paths
    from recall_pack.nodes.model_origin import origin_of
    name = "recall_test_twice_vae.safetensors"
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / name).write_bytes(models["sd15_vae"].read_bytes()[:1024])
        folder_paths.add_model_folder_path("vae", str(tmp_path / sub))
    assert origin_of(graph("VAELoader", {"vae_name": name}, "vae"), "9", "vae", "vae") is None


def _run_with_prompt(node_cls, prompt: dict, node_id: str, **inputs):
    """Execute a V3 node as ComfyUI does, with its hidden PROMPT and UNIQUE_ID."""
    from comfy_api.latest import io
    hidden = {io.Hidden.prompt: prompt, io.Hidden.unique_id: node_id}
    if hasattr(io, "V3Data"):  # 0.8.0 passes V3Data; 0.3.64 the hidden inputs themselves
        hidden = {"hidden_inputs": hidden, "dynamic_paths": {}, "create_dynamic_tuple": False}
    return node_cls.PREPARE_CLASS_CLONE(hidden).execute(**inputs).result


def test_recall_vae_node_remembers_its_loaders_file_across_a_restart(models, restart):
    """The Recall VAE node tells identity where its VAE came from: no weight hashing after a restart."""
    import nodes
    from recall_pack.nodes import identity
    from recall_pack.nodes.wrap_nodes import RecallVAE
    name = models["sd15_vae"].name
    prompt = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": name}},
              "9": {"class_type": "RecallVAE", "inputs": {"vae": ["1", 0]}}}
    calls = restart()
    first = identity.vae_identity(_run_with_prompt(RecallVAE, prompt, "9", vae=nodes.VAELoader().load_vae(name)[0])[0])
    assert len(calls) == 1
    calls = restart()
    wrapped = _run_with_prompt(RecallVAE, prompt, "9", vae=nodes.VAELoader().load_vae(name)[0])[0]
    assert identity.vae_identity(wrapped) == first and calls == []
