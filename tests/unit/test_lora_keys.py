"""LoRA key formats map to the kohya names ComfyUI applies; base models are told apart; bad files name themselves."""
import os

import pytest
import torch

from recall_pack.bench.harness import lora_files
from recall_pack.nodes.lib import file_digest, lora_keys

SMALL = lora_files.sd15_targets(model_channels=32)


def _kohya_names(pairs, part="unet"):
    return set(lora_files.encode(pairs, "kohya", part))


@pytest.mark.parametrize("fmt,expected", [("kohya", "kohya"), ("diffusers", "diffusers"),
                                          ("diffusers_ab", "diffusers"), ("diffusers_old", "diffusers"),
                                          ("peft", "peft")])
def test_format_is_detected_from_key_names(fmt, expected):
    pairs = lora_files.make_pairs(SMALL, alpha=None)
    assert lora_keys.detect_format(lora_files.encode(pairs, fmt)) == expected


@pytest.mark.parametrize("fmt", ["diffusers", "diffusers_ab", "diffusers_old", "peft"])
def test_every_format_normalises_to_the_kohya_names(fmt):
    pairs = lora_files.make_pairs(SMALL, alpha=None)
    tensors, origin = lora_keys.normalize(lora_files.encode(pairs, fmt), fmt.split("_")[0])
    assert set(tensors) == _kohya_names(pairs)
    # and each normalised tensor is the very tensor of the file key it claims to come from
    encoded = lora_files.encode(pairs, fmt)
    assert all(tensors[k] is encoded[origin[k]] for k in tensors)


@pytest.mark.parametrize("fmt", ["diffusers", "diffusers_ab", "diffusers_old"])
def test_text_encoder_keys_normalise_to_lora_te(fmt):
    pairs = lora_files.make_pairs(lora_files.clip_targets(2, 16), alpha=None)
    tensors, _ = lora_keys.normalize(lora_files.encode(pairs, fmt, part="text_encoder"), "diffusers")
    assert set(tensors) == _kohya_names(pairs, part="text_encoder")


def test_diffusers_own_kohya_conversion_maps_back_to_the_same_modules():
    # diffusers converts kohya files to its attention-processor keys, then to PEFT keys; both must land
    # on the modules the kohya names address, or ComfyUI would patch different weights than diffusers
    pipelines = pytest.importorskip("diffusers").StableDiffusionPipeline
    from diffusers.utils import convert_unet_state_dict_to_peft
    unet = lora_files.make_pairs(SMALL)
    te = lora_files.make_pairs(lora_files.clip_targets(1, 16), seed=1)
    kohya = {**lora_files.encode(unet, "kohya"), **lora_files.encode(te, "kohya", "text_encoder")}
    converted, alphas = pipelines.lora_state_dict(dict(kohya))
    tensors, _ = lora_keys.normalize(converted, lora_keys.detect_format(converted))
    expected = {k for k in kohya if not k.endswith(".alpha")}
    assert set(tensors) == expected
    peft_unet = convert_unet_state_dict_to_peft({k: v for k, v in converted.items() if k.startswith("unet.")})
    tensors, _ = lora_keys.normalize(peft_unet, "diffusers")
    assert set(tensors) == {k for k in expected if k.startswith("lora_unet_")}
    assert set(alphas.values()) == {2.0}


def test_peft_alpha_from_adapter_config_is_applied_to_every_pair(tmp_path):
    pairs = lora_files.make_pairs(SMALL, alpha=None)
    path = lora_files.write(tmp_path / "adapter_model.safetensors", lora_files.encode(pairs, "peft"), peft_alpha=8)
    parsed = lora_keys.parse(path.read_bytes(), path.name, alpha=lora_keys.peft_alpha(path))
    alphas = {k: float(v) for k, v in parsed.tensors.items() if k.endswith(".alpha")}
    assert len(alphas) == len(pairs) and set(alphas.values()) == {8.0}
    assert not any(k.endswith(".alpha") for k in parsed.file_keys)  # injected, not the file's


@pytest.mark.parametrize("targets,base", [
    (SMALL, "SD1.5"),
    (lora_files.sd15_targets(32, context_dim=1024), "SD2.x"),
    (lora_files.sdxl_targets(depth=10), "SDXL"),
    (lora_files.sdxl_targets(depth=4), "SSD-1B"),
])
@pytest.mark.parametrize("fmt", ["kohya", "diffusers_ab", "peft"])
def test_base_model_is_detected_from_shapes_and_depth(targets, base, fmt):
    encoded = lora_files.encode(lora_files.make_pairs(targets, alpha=None), fmt)
    tensors, _ = lora_keys.normalize(encoded, lora_keys.detect_format(encoded))
    assert lora_keys.detect_lora_base(tensors)[0] == base


def test_lora_without_cross_attention_gives_no_base_evidence():
    pairs = lora_files.make_pairs({"down_blocks.0.attentions.0.proj_in": (32, 32, 1, 1)})
    assert lora_keys.detect_lora_base(lora_files.encode(pairs, "kohya"))[0] is None


@pytest.mark.parametrize("context,depth,name,expected", [
    (768, [1, 1, 1, 1, 1, 1, 0, 0], "SD15", "SD1.5"),
    (1024, [1, 1, 1, 1, 1, 1, 0, 0], "SD21", "SD2.x"),
    (2048, [0, 0, 2, 2, 10, 10], "SDXL", "SDXL"),
    (2048, [0, 0, 2, 2, 4, 4], "SSD1B", "SSD-1B"),
    (None, None, "Flux", "Flux"),
])
def test_model_base_from_unet_config(context, depth, name, expected):
    assert lora_keys.model_base(context, depth, name) == expected


@pytest.mark.parametrize("lora_base,model", [("SDXL", "SD1.5"), ("SD1.5", "SDXL"), ("SDXL", "SSD-1B"),
                                             ("SSD-1B", "SDXL"), ("SD1.5", "Flux")])
def test_wrong_base_model_error_names_both(lora_base, model):
    with pytest.raises(ValueError) as err:
        lora_keys.check_base("x.safetensors", lora_base, "why", model)
    assert f"LoRA 'x.safetensors' is for {lora_base}" in str(err.value)
    assert f"the MODEL is {model}" in str(err.value)


@pytest.mark.parametrize("lora_base,model", [("SD1.5", "SD1.5"), ("SDXL-family", "SSD-1B"), (None, "SD1.5"),
                                             ("SSD-1B", "SSD-1B")])
def test_matching_or_unknown_base_passes(lora_base, model):
    lora_keys.check_base("x.safetensors", lora_base, "why", model)


def test_truncated_file_error_names_the_file(tmp_path):
    path = lora_files.write(tmp_path / "lcm.safetensors", lora_files.encode(lora_files.make_pairs(SMALL), "kohya"))
    data = path.read_bytes()[: os.path.getsize(path) // 2]
    with pytest.raises(lora_keys.LoraFileError, match=r"'lcm\.safetensors' is not a readable safetensors"):
        lora_keys.parse(data, "lcm.safetensors")


def test_file_without_lora_keys_error_names_the_file(tmp_path):
    path = lora_files.write(tmp_path / "ckpt.safetensors", {"model.diffusion_model.out.2.weight": torch.ones(4, 4)})
    with pytest.raises(lora_keys.LoraFileError, match=r"'ckpt\.safetensors' holds no LoRA weights"):
        lora_keys.parse(path.read_bytes(), "ckpt.safetensors")


def test_garbage_bytes_error_names_the_file():
    with pytest.raises(ValueError, match="'junk.safetensors'"):
        lora_keys.parse(b"not a safetensors file at all", "junk.safetensors")


def test_a_file_read_once_is_known_by_size_and_mtime(tmp_path):
    path = tmp_path / "a.safetensors"
    path.write_bytes(b"12345")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    digests = file_digest.FileDigests(clock=lambda: 10_000.0)
    assert digests.known(path) is None
    digest, data = digests.read(path)
    assert bytes(data) == b"12345" and digest == file_digest.hash_file(path)
    assert digests.known(path) == digest and digests.digest(path) == digest and digests.hashed == 1
    path.write_bytes(b"123456")  # size changes: the old digest is not returned
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert digests.known(path) is None
    path.write_bytes(b"654321")  # same size, another mtime: not returned either
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    assert digests.known(path) is None
    assert digests.read(path)[0] == file_digest.hash_file(path) != digest


def test_safetensors_views_equal_safetensors_own_loader():
    import safetensors.torch
    gen = torch.Generator().manual_seed(0)
    tensors = {"a.lora_down.weight": torch.randn(3, 5, generator=gen).half(), "b": torch.randn(7, generator=gen).double(),
               "c.alpha": torch.tensor(2.0), "empty": torch.zeros(0, 3), "bf": torch.randn(2, 2, generator=gen).bfloat16(),
               "flags": torch.tensor([True, False, True]), "i8": torch.arange(-3, 4, dtype=torch.int8)}
    data = safetensors.torch.save(tensors)
    ours, theirs = lora_keys.load_tensors(data, "x.safetensors"), safetensors.torch.load(data)
    assert set(ours) == set(theirs)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key


@pytest.mark.parametrize("cut", [0, 5, 8, 40, -1, -17])
def test_every_truncation_is_an_error_never_a_short_tensor(cut):
    import safetensors.torch
    data = safetensors.torch.save({"w.lora_down.weight": torch.ones(4, 16), "w.lora_up.weight": torch.ones(16, 4)})
    with pytest.raises(lora_keys.LoraFileError, match="'t.safetensors' is not a readable safetensors file"):
        lora_keys.load_tensors(data[:cut], "t.safetensors")
