"""Cached encodes at the edges: restarts, damaged disk entries, preferred images, identity, autowrap, schemas."""
import pytest
import torch

from test_encode_fixtures import (assert_trees_equal, clip_vision, image, inference_mode,  # noqa: F401
                                  no_model_loads, recall, run, sd_vae, spy_encoder)


def recall_vae_encode(pixels, vae):
    from recall_pack.nodes.encode_nodes import RecallVAEEncode
    return run(RecallVAEEncode, pixels=pixels, vae=vae)[0]


def core_vae_encode(vae, pixels):
    import nodes
    return nodes.VAEEncode().encode(vae, pixels)[0]


def disk_files(recall):
    return sorted(p for p in recall.store.tier("disk").root.rglob("*.safetensors"))


# --- persistence --------------------------------------------------------------------------

def test_restart_hits_from_disk_and_equals_core(recall, sd_vae, spy_encoder, no_model_loads):
    pixels = image(70)
    expected = core_vae_encode(sd_vae, pixels)
    recall_vae_encode(pixels, sd_vae)
    recall.store.flush()
    recall.store.close()
    recall.rebuild()  # a new process: empty memory tiers, same disk folder
    calls = spy_encoder(sd_vae.first_stage_model, "encode")
    no_model_loads()
    out = recall_vae_encode(pixels, sd_vae)
    assert recall.last()["status"] == "hit" and recall.last()["tier"] == "disk" and calls == []
    assert_trees_equal(out, expected)


@pytest.mark.parametrize("damage", ["flip_bytes", "truncate", "foreign", "older_envelope"])
def test_damaged_disk_entry_is_a_miss_with_the_right_output(recall, sd_vae, damage):
    pixels = image(71)
    recall_vae_encode(pixels, sd_vae)
    recall.store.flush()
    recall.store.clear(tier="ram")
    (path,) = disk_files(recall)
    data = bytearray(path.read_bytes())
    if damage == "flip_bytes":
        for i in range(len(data) - 64, len(data) - 8):  # inside the tensor bytes, after the header
            data[i] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "older_envelope":  # as a Recall that wrapped values as {"v", "d"} wrote it
        from recall_pack.cache import serialize
        value, doc = serialize.loads(bytes(data))
        del doc["devices"]
        data = bytearray(serialize.dumps({"v": value, "d": ["cpu"]}, doc))
    else:
        from safetensors.torch import save
        data = bytearray(save({"samples": torch.zeros(1, 4, 8, 8)}))
    path.write_bytes(bytes(data))
    out = recall_vae_encode(pixels, sd_vae)
    assert recall.last()["status"] == "miss"
    assert_trees_equal(out, core_vae_encode(sd_vae, pixels))


def test_clip_vision_output_survives_a_restart(recall, clip_vision):
    import nodes
    from recall_pack.nodes.encode_nodes import RecallCLIPVisionEncode
    pixels = image(72, size=40)
    run(RecallCLIPVisionEncode, clip_vision=clip_vision, image=pixels, crop="center")
    recall.store.flush()
    recall.store.close()
    recall.rebuild()
    out = run(RecallCLIPVisionEncode, clip_vision=clip_vision, image=pixels, crop="center")[0]
    assert recall.last()["tier"] == "disk"
    assert_trees_equal(out, nodes.CLIPVisionEncode().encode(clip_vision, pixels, "center")[0])


# --- preferred images --------------------------------------------------------------------------

def test_preferred_image_entries_are_pinned(recall, sd_vae, tmp_path, monkeypatch):
    import folder_paths
    import nodes
    from PIL import Image
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda *a, **k: str(tmp_path))
    pixels = (torch.rand(1, 24, 32, 3, generator=torch.Generator().manual_seed(73)) * 255).to(torch.uint8)
    Image.fromarray(pixels[0].numpy()).save(tmp_path / "avatar.png")
    Image.fromarray(pixels[0].flip(0).numpy()).save(tmp_path / "other.png")
    recall.config = recall.config.replace({"preferred_images": ["avatar.png"]})
    loaded = nodes.LoadImage().load_image("avatar.png")[0]
    other = nodes.LoadImage().load_image("other.png")[0]
    recall_vae_encode(loaded, sd_vae)
    recall_vae_encode(other, sd_vae)
    ram = recall.store.tier("ram")
    pinned = {ram.get("shared", key).meta.pinned for key in ram.keys("shared")}
    assert sorted(pinned) == [False, True]


def test_a_preferred_image_the_vae_crops_before_encoding_is_still_pinned(recall, sd_vae, tmp_path, monkeypatch):
    # 26x35 pixels: VAE.encode crops them to whole latent cells (24x32), so the tensor the encoder
    # is called with is not the preferred file's pixels: only the node's own input names the file
    import folder_paths
    import nodes
    from PIL import Image
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda *a, **k: str(tmp_path))
    pixels = (torch.rand(1, 26, 35, 3, generator=torch.Generator().manual_seed(74)) * 255).to(torch.uint8)
    Image.fromarray(pixels[0].numpy()).save(tmp_path / "avatar.png")
    recall.config = recall.config.replace({"preferred_images": ["avatar.png"]})
    loaded = nodes.LoadImage().load_image("avatar.png")[0]
    assert tuple(sd_vae.vae_encode_crop_pixels(loaded).shape[1:3]) == (24, 32)
    out = recall_vae_encode(loaded, sd_vae)
    assert torch.equal(out["samples"], nodes.VAEEncode().encode(sd_vae, loaded)[0]["samples"])
    ram = recall.store.tier("ram")
    assert [ram.get("shared", key).meta.pinned for key in ram.keys("shared")] == [True]


# --- encoder identity --------------------------------------------------------------------------

def test_vae_fingerprint_is_computed_once_per_loaded_model(recall, sd_vae, monkeypatch):
    from recall_pack.nodes import identity
    calls = []
    original = identity.fingerprint_tensors
    monkeypatch.setattr(identity, "fingerprint_tensors", lambda sd: calls.append(1) or original(sd))
    monkeypatch.setattr(identity, "_weights_memo", type(identity._weights_memo)())
    for seed in (74, 75, 76):
        recall_vae_encode(image(seed), sd_vae)
    assert calls == [1]


def test_identity_ignores_weights_patched_in_place_while_loaded():
    import comfy.model_patcher
    from recall_pack.nodes import identity
    module = torch.nn.Linear(4, 4)
    patcher = comfy.model_patcher.ModelPatcher(module, load_device="cpu", offload_device="cpu")
    base = identity.fingerprint_tensors(identity.unpatched_state_dict(module, patcher))
    patcher.add_patches({"weight": ("diff", (torch.ones(4, 4),))}, 1.0)
    patcher.patch_model(device_to=torch.device("cpu"))  # weights now hold base + diff
    try:
        assert identity.fingerprint_tensors(identity.unpatched_state_dict(module, patcher)) == base
        assert identity.patches_fingerprint(patcher) != identity.patches_fingerprint(
            comfy.model_patcher.ModelPatcher(module, load_device="cpu", offload_device="cpu"))
    finally:
        patcher.unpatch_model()


# --- opt-in wrapping of core encoders -----------------------------------------------------------

@pytest.fixture
def autowrap():
    from recall_pack.nodes import autowrap
    yield autowrap
    autowrap.disable()


def test_autowrap_caches_the_core_vae_encode_node(recall, sd_vae, spy_encoder, autowrap):
    pixels = image(80)
    expected = core_vae_encode(sd_vae, pixels)
    autowrap.enable()
    calls = spy_encoder(sd_vae.first_stage_model, "encode")
    first = core_vae_encode(sd_vae, pixels)
    second = core_vae_encode(sd_vae, pixels)
    assert calls == [1] and recall.last()["status"] == "hit"
    assert_trees_equal(first, expected)
    assert_trees_equal(second, expected)


def test_autowrap_caches_the_core_clip_vision_encode_node(recall, clip_vision, spy_encoder, autowrap):
    import nodes
    pixels = image(81, size=40)
    autowrap.enable()
    first = nodes.CLIPVisionEncode().encode(clip_vision, pixels, "none")[0]
    calls = spy_encoder(clip_vision.model, "forward")
    second = nodes.CLIPVisionEncode().encode(clip_vision, pixels, "none")[0]
    assert calls == [] and recall.last()["status"] == "hit"
    assert_trees_equal(second, first)


def test_autowrap_disable_restores_the_exact_original_attributes(recall, sd_vae, spy_encoder, autowrap):
    import comfy.clip_vision
    import comfy.sd
    before = {name: comfy.sd.VAE.__dict__[name] for name in ("encode", "encode_tiled")}
    before["encode_image"] = comfy.clip_vision.ClipVisionModel.__dict__["encode_image"]
    autowrap.enable()
    autowrap.sync(True)  # idempotent: one layer of wrapping
    assert comfy.sd.VAE.__dict__["encode"] is not before["encode"]
    assert comfy.sd.VAE.__dict__["encode"].__wrapped__ is before["encode"]
    autowrap.sync(False)
    after = {name: comfy.sd.VAE.__dict__[name] for name in ("encode", "encode_tiled")}
    after["encode_image"] = comfy.clip_vision.ClipVisionModel.__dict__["encode_image"]
    assert all(after[name] is before[name] for name in before)
    calls = spy_encoder(sd_vae.first_stage_model, "encode")
    pixels = image(82)
    core_vae_encode(sd_vae, pixels)
    core_vae_encode(sd_vae, pixels)
    assert calls == [1, 1]


def test_autowrap_does_not_look_up_twice_under_a_recall_node(recall, sd_vae, autowrap):
    autowrap.enable()
    recall_vae_encode(image(83), sd_vae)
    assert [p["node_type"] for _, p in recall.reports] == ["RecallVAEEncode"]


# --- schemas mirror the core nodes ----------------------------------------------------------------

def _core_pairs():
    import nodes
    from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning
    from comfy_extras.nodes_wan import WanFirstLastFrameToVideo, WanImageToVideo
    from recall_pack.nodes import encode_nodes as e
    from recall_pack.nodes import video_encode_nodes as v
    return [(e.RecallVAEEncode, nodes.VAEEncode), (e.RecallVAEEncodeTiled, nodes.VAEEncodeTiled),
            (e.RecallCLIPVisionEncode, nodes.CLIPVisionEncode), (e.RecallCLIPTextEncode, nodes.CLIPTextEncode),
            (v.RecallSVDImg2VidConditioning, SVD_img2vid_Conditioning), (v.RecallWanImageToVideo, WanImageToVideo),
            (v.RecallWanFirstLastFrameToVideo, WanFirstLastFrameToVideo)]


def _inputs(node_cls) -> dict:
    spec = node_cls.INPUT_TYPES()
    out = {}
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            options = entry[1] if len(entry) > 1 else {}
            kind = entry[0] if isinstance(entry[0], str) else tuple(entry[0])
            if kind == "COMBO":
                kind = tuple(options.get("options", ()))
            out[name] = (section, kind, {k: options.get(k) for k in ("default", "min", "max", "step")})
    return out


@pytest.mark.parametrize("index", range(7))
def test_recall_node_inputs_and_outputs_mirror_the_core_node(index):
    ours, core = _core_pairs()[index]
    mine, theirs = _inputs(ours), _inputs(core)
    extra = {"seed"} if ours.__name__ == "RecallSVDImg2VidConditioning" else set()
    if ours.__name__ != "RecallCLIPTextEncode":
        extra.add("match")  # exact or a verified near match for the pixels (nodes/near_match.py)
    assert [name for name in mine if name not in extra] == list(theirs)  # same names, same order
    for name, (section, kind, numbers) in theirs.items():
        assert mine[name][:2] == (section, kind), name
        assert {k: v for k, v in mine[name][2].items() if v is not None} == \
               {k: v for k, v in numbers.items() if v is not None}, name
    assert tuple(ours.RETURN_TYPES) == tuple(core.RETURN_TYPES)


@pytest.mark.parametrize("index", range(7))
def test_recall_node_schema_conventions(index):
    ours, core = _core_pairs()[index]
    schema = ours.GET_SCHEMA()
    assert schema.node_id.startswith("Recall") and schema.category == "Recall/encode"
    assert schema.display_name.endswith("(Recall)") and not schema.not_idempotent
    assert all(i.tooltip for i in schema.inputs), [i.id for i in schema.inputs if not i.tooltip]
    assert [h.value for h in schema.hidden] == ["PROMPT", "UNIQUE_ID"]
