"""The random-weight model files load through ComfyUI's real loader nodes and compute finite outputs.

If a layout drifts from what ComfyUI expects (a renamed key, a wrong shape),
the loaders detect the wrong architecture or warn about missing keys, and
every integration test built on these files would be testing nothing.
"""
import logging

import pytest
import torch


@pytest.fixture
def missing_key_warnings(caplog):
    caplog.set_level(logging.WARNING)
    # The loaders' own complaints: "Missing VAE keys", "missing clip vision", "clip missing",
    # "unet missing", "No VAE weights detected".
    signs = ("missing vae keys", "missing clip vision", "clip missing", "unet missing", "unet unexpected",
             "no vae weights")
    yield lambda: [r.getMessage() for r in caplog.records if any(s in r.getMessage().lower() for s in signs)]


def _image(size: int, frames: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand((frames, size, size, 3), generator=gen)


def test_sd15_vae_loads_and_round_trips_finite(models, missing_key_warnings):
    import nodes
    (vae,) = nodes.VAELoader().load_vae(models["sd15_vae"].name)
    assert vae.latent_channels == 4 and vae.downscale_ratio == 8
    (latent,) = nodes.VAEEncode().encode(vae, _image(64))
    assert latent["samples"].shape == (1, 4, 8, 8)
    assert torch.isfinite(latent["samples"]).all()
    (decoded,) = nodes.VAEDecode().decode(vae, latent)
    assert decoded.shape == (1, 64, 64, 3) and torch.isfinite(decoded).all()
    assert missing_key_warnings() == []


def test_wan21_vae_loads_as_video_vae(models, missing_key_warnings):
    import nodes
    (vae,) = nodes.VAELoader().load_vae(models["wan21_vae"].name)
    assert vae.latent_channels == 16 and vae.latent_dim == 3
    (latent,) = nodes.VAEEncode().encode(vae, _image(32, frames=5))
    # 5 frames -> 1 + (5 - 1) / 4 = 2 latent frames, 32 px -> 4 latent px.
    assert latent["samples"].shape == (1, 16, 2, 4, 4)
    assert torch.isfinite(latent["samples"]).all()
    assert missing_key_warnings() == []


def test_clip_vision_loads_as_vit_l14(models, missing_key_warnings):
    import nodes
    (clip_vision,) = nodes.CLIPVisionLoader().load_clip(models["clip_vision"].name)
    (output,) = nodes.CLIPVisionEncode().encode(clip_vision, _image(64), "center")
    assert output.image_embeds.shape == (1, 768)
    assert output.last_hidden_state.shape == (1, 257, 1024)
    assert torch.isfinite(output.image_embeds).all() and torch.isfinite(output.penultimate_hidden_states).all()
    assert missing_key_warnings() == []


def test_sd15_checkpoint_loads_and_samples_finite(models, missing_key_warnings):
    import comfy.supported_models
    import nodes
    model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(models["sd15_checkpoint"].name)
    assert isinstance(model.model.model_config, comfy.supported_models.SD15)
    (positive,) = nodes.CLIPTextEncode().encode(clip, "a photo of a cat")
    (negative,) = nodes.CLIPTextEncode().encode(clip, "")
    assert torch.isfinite(positive[0][0]).all()
    (latent,) = nodes.EmptyLatentImage().generate(64, 64, 1)
    (samples,) = nodes.KSampler().sample(model, 0, 2, 1.0, "euler", "normal", positive, negative, latent)
    assert torch.isfinite(samples["samples"]).all()
    (image,) = nodes.VAEDecode().decode(vae, samples)
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(image).all()
    assert missing_key_warnings() == []
