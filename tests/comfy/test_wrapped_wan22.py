"""The Wan 2.2 VAE (48 latent channels, 16x spatial compression) through a wrapped encoder.

Its random-weight file (705M parameters, 1.4 GB) is built on first use only by this file, not by
the session-wide `models` fixture: the other suites never load it.
"""
import subprocess

import pytest

from recall_pack.bench.harness import comfy_env
from test_encode_fixtures import assert_trees_equal, image, inference_mode, recall, spy_encoder  # noqa: F401
from test_wrapped_encoders import core, statuses


@pytest.fixture(scope="module")
def wan22_vae(comfyui, models):
    import folder_paths
    import nodes
    from recall_pack.bench.harness.make_models import EXTRA_MODELS
    folder, filename, _seed = EXTRA_MODELS["wan22_vae"]
    path = comfy_env.models_dir() / folder / filename
    if not path.exists():
        done = subprocess.run([str(comfyui.python), str(comfy_env.HARNESS_DIR / "make_models.py"), "--comfyui", str(comfyui.path),
                               "--out", str(comfy_env.models_dir()), "wan22_vae"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    folder_paths.add_model_folder_path(folder, str(path.parent))
    vae = nodes.VAELoader().load_vae(filename)[0]
    assert vae.latent_channels == 48
    return vae


def _latent_inputs(**changes):
    return {**dict(width=32, height=32, length=5, batch_size=1, start_image=image(70, size=32)), **changes}


def test_wan22_image_to_video_latent_equals_plain_on_miss_and_hit(recall, wan22_vae, spy_encoder):
    from recall_pack.nodes.encoder_wrap import wrap
    expected = core("Wan22ImageToVideoLatent", vae=wan22_vae, **_latent_inputs())
    assert_trees_equal(core("Wan22ImageToVideoLatent", vae=wrap(wan22_vae), **_latent_inputs()), expected)
    assert statuses(recall, 0) == {"miss"}
    seen, calls = len(recall.reports), spy_encoder(wan22_vae.first_stage_model, "encode")
    assert_trees_equal(core("Wan22ImageToVideoLatent", vae=wrap(wan22_vae), **_latent_inputs()), expected)
    assert statuses(recall, seen) == {"hit"} and calls == []


def test_wan22_batch_size_hits_and_start_image_misses(recall, wan22_vae):
    from recall_pack.nodes.encoder_wrap import wrap
    core("Wan22ImageToVideoLatent", vae=wrap(wan22_vae), **_latent_inputs())
    seen = len(recall.reports)
    out = core("Wan22ImageToVideoLatent", vae=wrap(wan22_vae), **_latent_inputs(batch_size=2))
    assert statuses(recall, seen) == {"hit"}
    assert_trees_equal(out, core("Wan22ImageToVideoLatent", vae=wan22_vae, **_latent_inputs(batch_size=2)))
    seen = len(recall.reports)
    changed = _latent_inputs(start_image=image(71, size=32))
    out = core("Wan22ImageToVideoLatent", vae=wrap(wan22_vae), **changed)
    assert statuses(recall, seen) == {"miss"}
    assert_trees_equal(out, core("Wan22ImageToVideoLatent", vae=wan22_vae, **changed))
