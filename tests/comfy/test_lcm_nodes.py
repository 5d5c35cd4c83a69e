"""RecallLCMLoraLoader / RecallLCMScheduler in real ComfyUI, on a tiny random-weight SD1.5-layout UNet.

The UNet is ComfyUI's own UNetModel in the SD1.5 layout (context 768, SD1.5 block structure) at
model_channels 32, wrapped exactly as a checkpoint loader wraps it (SD15 model config -> BaseModel ->
ModelPatcher), so comfy.lora's key maps and ModelPatcher.add_patches see a real SD1.5 model.
"""
import builtins
import logging
import os
import time
from pathlib import Path

import pytest
import torch

from recall_pack.bench.harness import lora_files
from support.recall_runtime import use_runtime

CHANNELS = 32
UNET = {"use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": CHANNELS,
        "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4], "use_spatial_transformer": True,
        "legacy": False, "adm_in_channels": None, "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "transformer_depth_middle": 1, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8, "num_head_channels": -1,
        "use_temporal_attention": False, "use_temporal_resblock": False}
CLIP_WIDTH = 64
CLIP_CONFIG = {"hidden_act": "quick_gelu", "hidden_size": CLIP_WIDTH, "intermediate_size": 128,
               "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "num_attention_heads": 2,
               "num_hidden_layers": 2, "projection_dim": CLIP_WIDTH, "vocab_size": 49408,
               "bos_token_id": 0, "eos_token_id": 49407, "pad_token_id": 1}


def _fill(module, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():  # ComfyUI's layers skip init: fill every tensor
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


@pytest.fixture(scope="module")
def sd15_model():
    import comfy.model_patcher
    import comfy.supported_models
    config = comfy.supported_models.SD15(dict(UNET))
    model = config.get_model({}, device=torch.device("cpu"))
    _fill(model.diffusion_model, 0)
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


@pytest.fixture(scope="module")
def tiny_clip():
    import comfy.model_patcher
    import comfy.sd
    import comfy.sd1_clip
    clip = comfy.sd.CLIP(no_init=True)
    clip.cond_stage_model = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=torch.float32,
                                                        clip_model=comfy.sd1_clip.SDClipModel,
                                                        textmodel_json_config=dict(CLIP_CONFIG))
    _fill(clip.cond_stage_model, 1)
    clip.patcher = comfy.model_patcher.ModelPatcher(clip.cond_stage_model, load_device=torch.device("cpu"),
                                                    offload_device=torch.device("cpu"))
    clip.tokenizer, clip.layer_idx, clip.tokenizer_options = None, None, {}
    clip.use_clip_schedule, clip.apply_hooks_to_conds = False, None
    return clip


@pytest.fixture
def lcm(monkeypatch):
    from recall_pack.cache.config import CacheConfig
    from recall_pack.cache.memory import MemoryTier
    from recall_pack.cache.store import TieredStore
    from recall_pack.nodes import lcm_nodes
    from recall_pack.nodes.lib.file_digest import FileDigests
    store = TieredStore([MemoryTier("ram", max_bytes=1 << 30)], background_writes=False)
    # a clock an hour ahead: the files a test writes are past the window in which a stamp is not trusted
    digests = FileDigests(clock=lambda: time.time() + 3600)
    with use_runtime(lcm_nodes.runtime.Runtime(CacheConfig(), store, file_digests=digests)):
        yield lcm_nodes


@pytest.fixture
def loras(tmp_path):
    import folder_paths
    folder = tmp_path / "loras"
    folder.mkdir()
    folder_paths.add_model_folder_path("loras", str(folder))

    def write(name, tensors, peft_alpha=None):
        return lora_files.write(folder / name, tensors, peft_alpha=peft_alpha).name
    return write


def _load(lcm, model, name, clip=None, strength_model=1.0, strength_clip=1.0, lcm_sampling=False):
    out = lcm.RecallLCMLoraLoader.execute(model=model, clip=clip, lora_name=name, strength_model=strength_model,
                                          strength_clip=strength_clip, set_lcm_sampling=lcm_sampling)
    return out.args


def _patched(patcher, key):
    import comfy.lora
    weight = patcher.model.state_dict()[key].detach().clone().double()
    return comfy.lora.calculate_weight(patcher.patches[key], weight, key)


def _unet_key(model, module):
    import comfy.lora
    return comfy.lora.model_lora_keys_unet(model.model, {})["lora_unet_" + module.replace(".", "_")]


def _clip_key(clip, module):
    import comfy.lora
    return comfy.lora.model_lora_keys_clip(clip.cond_stage_model, {})["lora_te_" + module.replace(".", "_")]


UNET_TARGETS = lora_files.sd15_targets(CHANNELS)
CLIP_TARGETS = lora_files.clip_targets(2, CLIP_WIDTH)


@pytest.mark.parametrize("fmt", lora_files.FORMATS)
def test_patched_weights_equal_the_reference_merge(fmt, lcm, loras, sd15_model, tiny_clip):
    unet = lora_files.make_pairs(UNET_TARGETS, rank=4, alpha=2.0, seed=3)
    te = lora_files.make_pairs(CLIP_TARGETS, rank=4, alpha=2.0, seed=4) if fmt != "peft" else {}
    tensors = {**lora_files.encode(unet, fmt), **lora_files.encode(te, fmt, "text_encoder")}
    peft_alpha = 8.0 if fmt == "peft" else None
    name = loras(f"lcm_{fmt}.safetensors", tensors, peft_alpha)
    model, clip = _load(lcm, sd15_model, name, tiny_clip, strength_model=0.7, strength_clip=0.4)
    for module, pair in unet.items():
        key = _unet_key(sd15_model, module)
        base = sd15_model.model.state_dict()[key].double()
        expected = base + lora_files.reference_delta(pair, 0.7, lora_files.effective_alpha(pair, fmt, peft_alpha))
        torch.testing.assert_close(_patched(model, key), expected.reshape(base.shape), rtol=1e-5, atol=1e-6)
    for module, pair in te.items():
        key = _clip_key(tiny_clip, module)
        base = tiny_clip.cond_stage_model.state_dict()[key].double()
        expected = base + lora_files.reference_delta(pair, 0.4, lora_files.effective_alpha(pair, fmt))
        torch.testing.assert_close(_patched(clip.patcher, key), expected, rtol=1e-5, atol=1e-6)
    assert len(model.patches) == len(unet)  # nothing else was touched


def test_output_equals_core_loraloader(lcm, loras, sd15_model, tiny_clip):
    import nodes
    tensors = {**lora_files.encode(lora_files.make_pairs(UNET_TARGETS, seed=5), "kohya"),
               **lora_files.encode(lora_files.make_pairs(CLIP_TARGETS, seed=6), "kohya", "text_encoder")}
    name = loras("lcm_core.safetensors", tensors)
    ours, our_clip = _load(lcm, sd15_model, name, tiny_clip, 0.8, 0.6)
    core, core_clip = nodes.LoraLoader().load_lora(sd15_model, tiny_clip, name, 0.8, 0.6)
    assert set(ours.patches) == set(core.patches) and set(our_clip.patcher.patches) == set(core_clip.patcher.patches)
    for key in core.patches:
        torch.testing.assert_close(_patched(ours, key), _patched(core, key), rtol=0, atol=0)


def test_merge_equals_peft_merge_and_unload(lcm, loras, sd15_model):
    peft = pytest.importorskip("peft")
    module = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    pair = lora_files.make_pairs({module: UNET_TARGETS[module]}, rank=4, seed=7)[module]
    name = loras("lcm_peft_ref.safetensors", lora_files.encode({module: pair}, "peft"), peft_alpha=16.0)
    model, _ = _load(lcm, sd15_model, name)
    key = _unet_key(sd15_model, module)
    base = sd15_model.model.state_dict()[key].detach().clone()

    holder = torch.nn.Sequential()
    holder.add_module("lin", torch.nn.Linear(base.shape[1], base.shape[0], bias=False))
    holder.lin.weight.data.copy_(base)
    wrapped = peft.get_peft_model(holder, peft.LoraConfig(r=4, lora_alpha=16.0, target_modules=["lin"]))
    wrapped.base_model.model.lin.lora_A["default"].weight.data.copy_(pair[0])
    wrapped.base_model.model.lin.lora_B["default"].weight.data.copy_(pair[1])
    merged = wrapped.merge_and_unload().lin.weight.detach().double()
    torch.testing.assert_close(_patched(model, key), merged, rtol=1e-5, atol=1e-6)


def test_composes_with_another_lora_loader(lcm, loras, sd15_model):
    import nodes
    module = "mid_block.attentions.0.transformer_blocks.0.attn1.to_q"
    first = lora_files.make_pairs({module: UNET_TARGETS[module]}, seed=8)
    second = lora_files.make_pairs({module: UNET_TARGETS[module]}, seed=9)
    style = loras("style.safetensors", lora_files.encode(first, "kohya"))
    lcm_name = loras("lcm.safetensors", lora_files.encode(second, "diffusers_ab"))
    (styled,) = nodes.LoraLoaderModelOnly().load_lora_model_only(sd15_model, style, 0.5)
    model, _ = _load(lcm, styled, lcm_name, strength_model=1.0)
    key = _unet_key(sd15_model, module)
    base = sd15_model.model.state_dict()[key].double()
    expected = (base + lora_files.reference_delta(first[module], 0.5, 2.0)
                + lora_files.reference_delta(second[module], 1.0, 4.0))
    torch.testing.assert_close(_patched(model, key), expected, rtol=1e-5, atol=1e-6)


def test_lcm_sampling_equals_core_model_sampling_discrete(lcm, loras, sd15_model):
    from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete
    name = loras("lcm_sampling.safetensors", lora_files.encode(lora_files.make_pairs(UNET_TARGETS), "kohya"))
    ours, _ = _load(lcm, sd15_model, name, lcm_sampling=True)
    (core,) = ModelSamplingDiscrete().patch(sd15_model, "lcm", False)
    ours_s, core_s = ours.get_model_object("model_sampling"), core.get_model_object("model_sampling")
    assert [c.__name__ for c in type(ours_s).__mro__[1:3]] == [c.__name__ for c in type(core_s).__mro__[1:3]]
    torch.testing.assert_close(ours_s.sigmas, core_s.sigmas, rtol=0, atol=0)
    sigma = torch.tensor([1.5])
    x, eps = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    torch.testing.assert_close(ours_s.calculate_denoised(sigma, eps, x), core_s.calculate_denoised(sigma, eps, x))
    off, _ = _load(lcm, sd15_model, name, lcm_sampling=False)
    assert off.get_model_object("model_sampling") is sd15_model.get_model_object("model_sampling")


def test_sdxl_lora_on_sd15_model_is_refused_naming_both(lcm, loras, sd15_model):
    name = loras("lcm-sdxl.safetensors", lora_files.encode(lora_files.make_pairs(lora_files.sdxl_targets(10)), "kohya"))
    with pytest.raises(ValueError, match=r"LoRA 'lcm-sdxl\.safetensors' is for SDXL .*the MODEL is SD1\.5"):
        _load(lcm, sd15_model, name)


def test_truncated_file_error_names_the_file(lcm, loras, sd15_model):
    name = loras("cut.safetensors", lora_files.encode(lora_files.make_pairs(UNET_TARGETS), "kohya"))
    import folder_paths
    path = Path(folder_paths.get_full_path("loras", name))
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ValueError, match=r"'cut\.safetensors' is not a readable safetensors file"):
        _load(lcm, sd15_model, name)


def test_non_lora_file_error_names_the_file(lcm, loras, sd15_model):
    name = loras("checkpoint.safetensors", {"model.diffusion_model.out.2.weight": torch.ones(4, 4)})
    with pytest.raises(ValueError, match=r"'checkpoint\.safetensors' holds no LoRA weights"):
        _load(lcm, sd15_model, name)


def test_keys_comfyui_does_not_apply_are_reported_by_name(lcm, loras, sd15_model, caplog):
    tensors = lora_files.encode(lora_files.make_pairs(UNET_TARGETS), "kohya")
    tensors["lora_unet_no_such_layer.lora_down.weight"] = torch.ones(4, 8)
    tensors["lora_unet_no_such_layer.lora_up.weight"] = torch.ones(8, 4)
    name = loras("extra.safetensors", tensors)
    caplog.set_level(logging.INFO, logger="recall")
    model, _ = _load(lcm, sd15_model, name)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of" in warnings[0] and "lora_unet_no_such_layer.lora_up.weight" in warnings[0]
    assert len(model.patches) == len(UNET_TARGETS)


def test_file_whose_keys_all_miss_the_model_is_an_error(lcm, loras, sd15_model):
    tensors = {"lora_unet_nowhere_attn2_to_k.lora_down.weight": torch.ones(4, 768),
               "lora_unet_nowhere_attn2_to_k.lora_up.weight": torch.ones(32, 4)}
    name = loras("nowhere.safetensors", tensors)
    with pytest.raises(ValueError, match=r"none of the 2 keys of 'nowhere\.safetensors' match the MODEL") as err:
        _load(lcm, sd15_model, name)
    assert "expected keys of a LoRA for SD1.5" in str(err.value)  # the model is named


def test_text_encoder_keys_without_clip_are_logged_not_dropped_silently(lcm, loras, sd15_model, caplog):
    tensors = {**lora_files.encode(lora_files.make_pairs(UNET_TARGETS), "kohya"),
               **lora_files.encode(lora_files.make_pairs(CLIP_TARGETS), "kohya", "text_encoder")}
    name = loras("with_te.safetensors", tensors)
    caplog.set_level(logging.INFO, logger="recall")
    _, clip = _load(lcm, sd15_model, name, clip=None)
    assert clip is None
    assert any("24 text-encoder keys not applied because no CLIP is connected" in r.getMessage()
               for r in caplog.records)


@pytest.fixture
def count_reads(monkeypatch):
    opened = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        opened.append(os.path.basename(str(file)))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", counting_open)
    return opened


def test_strength_change_and_rerun_do_not_read_the_file_again(lcm, loras, sd15_model, count_reads):
    name = loras("cached.safetensors", lora_files.encode(lora_files.make_pairs(UNET_TARGETS, seed=11), "kohya"))
    first, _ = _load(lcm, sd15_model, name, strength_model=1.0)
    second, _ = _load(lcm, sd15_model, name, strength_model=0.3)
    third, _ = _load(lcm, sd15_model, name, strength_model=0.3)
    assert count_reads.count(name) == 1
    key = next(iter(first.patches))
    base = sd15_model.model.state_dict()[key].double()
    torch.testing.assert_close(_patched(second, key) - base, 0.3 * (_patched(first, key) - base))
    torch.testing.assert_close(_patched(third, key), _patched(second, key))


def test_changed_file_content_is_read_again(lcm, loras, sd15_model, count_reads):
    name = loras("changing.safetensors", lora_files.encode(lora_files.make_pairs(UNET_TARGETS, seed=12), "kohya"))
    first, _ = _load(lcm, sd15_model, name)
    new = lora_files.make_pairs(UNET_TARGETS, seed=13)
    path = loras(name, lora_files.encode(new, "kohya"))
    import folder_paths
    full = folder_paths.get_full_path("loras", path)
    os.utime(full, ns=(os.stat(full).st_atime_ns, os.stat(full).st_mtime_ns + 10**9))
    second, _ = _load(lcm, sd15_model, name)
    assert count_reads.count(name) == 2
    module = next(iter(new))
    key = _unet_key(sd15_model, module)
    base = sd15_model.model.state_dict()[key].double()
    torch.testing.assert_close(_patched(second, key), base + lora_files.reference_delta(new[module], 1.0, 2.0))


def test_scheduler_sigmas_are_the_models_sigmas_at_lcm_timesteps(lcm, loras, sd15_model):
    from recall_pack.nodes.lib import lcm_schedule
    import comfy.samplers
    name = loras("sched.safetensors", lora_files.encode(lora_files.make_pairs(UNET_TARGETS), "kohya"))
    lcm_model, _ = _load(lcm, sd15_model, name, lcm_sampling=True)
    table = sd15_model.get_model_object("model_sampling").sigmas
    for steps in range(1, 9):
        (plain,) = lcm.RecallLCMScheduler.execute(sd15_model, steps, 50, 1.0).args
        (patched,) = lcm.RecallLCMScheduler.execute(lcm_model, steps, 50, 1.0).args
        expected = [float(table[t]) for t in lcm_schedule.lcm_timesteps(steps)] + [0.0]
        assert plain.tolist() == pytest.approx(expected, rel=1e-6) and patched.tolist() == plain.tolist()
    # sgm_uniform on the LCM model agrees at 1 step and differs from the LCM grid at 4
    sampling = lcm_model.get_model_object("model_sampling")
    (ours,) = lcm.RecallLCMScheduler.execute(lcm_model, 4, 50, 1.0).args
    sgm = comfy.samplers.calculate_sigmas(sampling, "sgm_uniform", 4)
    assert float(sgm[0]) == pytest.approx(float(ours[0]), rel=1e-5)
    assert not torch.allclose(sgm[1:4], ours[1:4], rtol=1e-3)


def test_lcm_sampler_runs_with_scheduler_sigmas(lcm, loras, sd15_model):
    import comfy.sample
    import comfy.samplers
    name = loras("run.safetensors", lora_files.encode(lora_files.make_pairs(UNET_TARGETS), "kohya"))
    model, _ = _load(lcm, sd15_model, name, lcm_sampling=True)
    (sigmas,) = lcm.RecallLCMScheduler.execute(model, 4, 50, 1.0).args
    latent = torch.zeros(1, 4, 8, 8)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    cond = [[torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(1)), {}]]
    calls = []
    out = comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.sampler_object("lcm"), sigmas, cond, cond,
                                     latent, callback=lambda *a: calls.append(a[0]), disable_pbar=True, seed=0)
    assert out.shape == latent.shape and torch.isfinite(out).all() and calls == [0, 1, 2, 3]
