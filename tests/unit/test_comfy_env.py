"""Which ComfyUI the suites run on (bench/harness/comfy_env.py), on fake trees: no ComfyUI is imported."""
from pathlib import Path

import pytest

from support import cache_modes
from recall_pack.bench.harness import comfy_env


def fake_comfyui(root: Path, version: str) -> Path:
    (root / "comfy").mkdir(parents=True)
    (root / "comfy" / "model_management.py").write_text("")
    (root / "main.py").write_text("")
    (root / "comfyui_version.py").write_text(f'__version__ = "{version}"\n')
    return root


def fake_release(cache: Path, version: str, ready: bool = True) -> Path:
    dest = cache / f"comfyui-{version}"
    fake_comfyui(dest / "comfyui", version)
    (dest / "venv" / "bin").mkdir(parents=True)
    (dest / "venv" / "bin" / "python").write_text("")
    if ready:
        (dest / ".ready").write_text("")
    return dest


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("RECALL_TEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.delenv("COMFYUI_PYTHON", raising=False)
    monkeypatch.setattr(comfy_env, "host_comfyui", lambda pack_dir=None: None)
    return tmp_path


def test_every_ready_release_in_the_cache_is_found_oldest_first(env):
    for version in ("0.8.0", "0.3.64", "0.10.1"):
        fake_release(env / "cache", version)
    fake_release(env / "cache", "0.9.0", ready=False)  # still being set up
    installs, why = comfy_env.discover()
    assert [i.version for i in installs] == ["0.3.64", "0.8.0", "0.10.1"] and why == ""
    assert all(i.source == "cache" and i.python.name == "python" for i in installs)
    assert comfy_env.find_comfyui(build=False)[0].version == "0.10.1"  # a lone pytest takes the newest


def test_comfyui_path_overrides_the_cache(env, monkeypatch):
    fake_release(env / "cache", "0.3.64")
    mine = fake_comfyui(env / "MyComfy", "0.7.1")
    monkeypatch.setenv("COMFYUI_PATH", str(mine))
    monkeypatch.setenv("COMFYUI_PYTHON", "/opt/my/python")
    [install], _ = comfy_env.discover()
    assert (install.path, str(install.python), install.version, install.source) == \
        (mine.resolve(), "/opt/my/python", "0.7.1", "COMFYUI_PATH")


def test_comfyui_path_without_python_uses_the_venv_inside_it(env, monkeypatch):
    mine = fake_comfyui(env / "MyComfy", "0.7.1")
    (mine / ".venv" / "bin").mkdir(parents=True)
    (mine / ".venv" / "bin" / "python").write_text("")
    monkeypatch.setenv("COMFYUI_PATH", str(mine))
    [install], _ = comfy_env.discover(build=False)
    assert install.python == mine.resolve() / ".venv" / "bin" / "python"


def test_a_path_that_is_no_comfyui_is_refused_with_the_reason(env, monkeypatch):
    monkeypatch.setenv("COMFYUI_PATH", str(env))
    assert comfy_env.discover() == ([], f"COMFYUI_PATH={env} is not a ComfyUI source tree (no main.py, comfy/)")


def test_nothing_found_says_how_to_get_one(env):
    installs, why = comfy_env.discover()
    assert installs == [] and "setup_releases.sh" in why and "COMFYUI_PATH" in why


def test_a_checkout_inside_custom_nodes_finds_that_comfyui(tmp_path):
    comfy = fake_comfyui(tmp_path / "ComfyUI", "0.8.0")
    pack = comfy / "custom_nodes" / "ComfyUI-Recall"
    pack.mkdir(parents=True)
    assert comfy_env.host_comfyui(pack) == comfy
    elsewhere = tmp_path / "src" / "recall"
    elsewhere.mkdir(parents=True)
    (comfy / "custom_nodes" / "linked").symlink_to(elsewhere)
    assert comfy_env.host_comfyui(comfy / "custom_nodes" / "linked") == comfy  # linked in counts too
    assert comfy_env.host_comfyui(elsewhere) is None


def test_the_host_comfyui_comes_before_the_cache(env, monkeypatch):
    fake_release(env / "cache", "0.3.64")
    host = fake_comfyui(env / "ComfyUI", "0.8.0")
    (host / "venv" / "bin").mkdir(parents=True)
    (host / "venv" / "bin" / "python").write_text("")
    monkeypatch.setattr(comfy_env, "host_comfyui", lambda pack_dir=None: host)
    [install], _ = comfy_env.discover(build=False)
    assert (install.version, install.source, install.python) == ("0.8.0", "custom_nodes", host / "venv" / "bin" / "python")


def test_cache_modes_are_the_flags_of_the_releases_own_command_line(tmp_path):
    comfy = fake_comfyui(tmp_path / "ComfyUI", "0.8.0")
    (comfy / "comfy" / "cli_args.py").write_text(
        'cache_group.add_argument("--cache-classic", action="store_true")\n'
        'cache_group.add_argument("--cache-lru", type=int, default=0)\n'
        "cache_group.add_argument('--cache-ram', nargs='?', const=4.0, type=float, default=0)\n"
        'parser.add_argument("--cache-elsewhere")\n')
    assert cache_modes.cache_modes(comfy) == [[], ["--cache-classic"], ["--cache-lru", "8"], ["--cache-ram", "4"]]
    assert [cache_modes.keeps_outputs(m) for m in cache_modes.cache_modes(comfy)] == [True, True, True, True]
    assert not cache_modes.keeps_outputs(["--cache-none"])


def test_a_cache_mode_the_tests_do_not_know_fails_loudly(tmp_path):
    comfy = fake_comfyui(tmp_path / "ComfyUI", "9.0.0")
    (comfy / "comfy" / "cli_args.py").write_text('cache_group.add_argument("--cache-quantum", action="store_true")\n')
    with pytest.raises(RuntimeError, match="--cache-quantum"):
        cache_modes.cache_modes(comfy)
