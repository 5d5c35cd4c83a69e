"""In-process tests against real ComfyUI: run with the ComfyUI venv's python.

    COMFYUI_PATH=... $COMFYUI_PYTHON -m pytest tests/comfy     (tests/run.sh does this)

When ComfyUI cannot be imported here (the CPU test venv has no torchvision,
or COMFYUI_PATH is unset) the whole directory is skipped with a notice.
Otherwise COMFYUI_PATH goes on sys.path and ComfyUI is forced onto the CPU
before anything imports comfy.model_management (it probes CUDA at import).

Fixtures:
    comfyui   session  ComfyUIInstall(path, python, version) for this interpreter
    cache_mode         ComfyUI command-line args of a cache mode: a test taking it runs once per
                       mode this release has ([] = the default; support/cache_modes.py)
    models    session  {"sd15_vae" | "wan21_vae" | "clip_vision" | "sd15_checkpoint": Path}; each
                       folder is registered with folder_paths, so loader nodes take Path.name
"""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from support import cache_modes
from recall_pack.bench.harness import comfy_env


def _unavailable() -> str:
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        return "COMFYUI_PATH is not set"
    if not (Path(path) / "comfy" / "model_management.py").exists():
        return f"COMFYUI_PATH={path} is not a ComfyUI source tree"
    if importlib.util.find_spec("torchvision") is None:
        return f"{sys.executable} has no torchvision (run these with the ComfyUI venv's python)"
    return ""


_why = _unavailable()


class _SkippedModule(pytest.Module):
    """Stands in for each test module here without importing it (it would import comfy)."""

    def collect(self):
        pytest.skip(f"in-process ComfyUI tests skipped: {_why}")


def pytest_pycollect_makemodule(module_path, parent):
    if _why:
        return _SkippedModule.from_parent(parent, path=module_path)
    return None


if not _why:
    COMFYUI_PATH = Path(os.environ["COMFYUI_PATH"]).resolve()
    if str(COMFYUI_PATH) not in sys.path:
        sys.path.insert(0, str(COMFYUI_PATH))
    import comfy.cli_args  # must precede any import of comfy.model_management (it probes CUDA)

    comfy.cli_args.args.cpu = True

    # pytest sets up the repo folder as a package (it has an __init__.py) by importing that file with
    # the repo on sys.path[0], where the pack's nodes/ would then shadow ComfyUI's nodes.py: import
    # ComfyUI's first, so `import nodes` in a test is always ComfyUI's.
    import nodes  # noqa: E402,F401


def pytest_generate_tests(metafunc):
    if "cache_mode" in metafunc.fixturenames:
        modes = cache_modes.cache_modes(None if _why else COMFYUI_PATH)
        metafunc.parametrize("cache_mode", modes, ids=[cache_modes.mode_name(m) for m in modes])


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.comfy)


@pytest.fixture(scope="session")
def comfyui() -> comfy_env.ComfyUIInstall:
    return comfy_env.ComfyUIInstall(COMFYUI_PATH, Path(sys.executable), comfy_env.comfyui_version(COMFYUI_PATH))


@pytest.fixture(scope="session")
def models(comfyui) -> dict:
    paths = comfy_env.ensure_models(comfyui)
    import folder_paths
    for path in paths.values():
        folder_paths.add_model_folder_path(path.parent.name, str(path.parent))
    return paths


def pytest_terminal_summary(terminalreporter):
    if comfy_env.BUILD_LOG:
        terminalreporter.section("random-weight models built")
        for line in comfy_env.BUILD_LOG:
            terminalreporter.write_line(line)
