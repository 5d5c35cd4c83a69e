"""Finds real ComfyUI for the tests and the random-weight model files they use.

Order: COMFYUI_PATH (a source tree; its python is COMFYUI_PYTHON, else a venv
built for it in the cache), else the archive ../shared/comfyui/ComfyUI-*.tar.gz
beside the repo, unpacked with a venv into the cache by setup_comfyui.sh,
else None (the suites that need it skip with a notice). tests/run.sh does the
same before pytest and exports COMFYUI_PATH / COMFYUI_PYTHON, so under it
this finds them at once.

Cache: $RECALL_TEST_CACHE, default ~/.cache/comfyui-recall.
"""
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SUPPORT_DIR = Path(__file__).resolve().parent
REPO_ROOT = SUPPORT_DIR.parent.parent
MODELS_VERSION = "models-v1"
BUILD_LOG: list = []  # what ensure_models built this session, for the terminal summary


def cache_dir() -> Path:
    return Path(os.environ.get("RECALL_TEST_CACHE") or Path.home() / ".cache" / "comfyui-recall")


@dataclass(frozen=True)
class ComfyUIInstall:
    path: Path      # ComfyUI source tree (has main.py)
    python: Path    # a python that can run it (torch, torchvision, its requirements)
    version: str

    def __str__(self) -> str:
        return f"ComfyUI {self.version} at {self.path} (python {self.python})"


def comfyui_version(path: Path) -> str:
    version_file = Path(path) / "comfyui_version.py"
    if version_file.exists():
        match = re.search(r'__version__\s*=\s*"([^"]+)"', version_file.read_text())
        if match:
            return match.group(1)
    return "unknown"


def find_archive() -> Path | None:
    archives = sorted((REPO_ROOT.parent / "shared" / "comfyui").glob("ComfyUI-*.tar.gz"))
    return archives[-1] if archives else None


def _setup(archive_or_tree: Path, dest: Path) -> Path:
    """Run setup_comfyui.sh (idempotent, locked); returns the venv python."""
    subprocess.run(["bash", str(SUPPORT_DIR / "setup_comfyui.sh"), str(archive_or_tree), str(dest)], check=True)
    return dest / "venv" / "bin" / "python"


def find_comfyui(build: bool = True) -> tuple[ComfyUIInstall | None, str]:
    """(install, why-not). With build=False nothing is unpacked or installed."""
    env_path = os.environ.get("COMFYUI_PATH")
    if env_path:
        path = Path(env_path).resolve()
        if not (path / "main.py").exists():
            return None, f"COMFYUI_PATH={env_path} has no main.py"
        version = comfyui_version(path)
        python = os.environ.get("COMFYUI_PYTHON")
        if python:
            return ComfyUIInstall(path, Path(python), version), ""
        dest = cache_dir() / f"comfyui-{version}-{_slug(path)}"
        if not (dest / ".ready").exists() and not build:
            return None, f"no venv for COMFYUI_PATH={env_path} yet (set COMFYUI_PYTHON)"
        return ComfyUIInstall(path, _setup(path, dest), version), ""
    archive = find_archive()
    if archive is None:
        return None, ("ComfyUI not found: set COMFYUI_PATH to a ComfyUI checkout (and COMFYUI_PYTHON to its "
                      "python), or put ComfyUI-<version>.tar.gz in ../shared/comfyui/")
    version = archive.name[len("ComfyUI-"):-len(".tar.gz")]
    dest = cache_dir() / f"comfyui-{version}"
    if not (dest / ".ready").exists() and not build:
        return None, f"{archive} not set up yet in {dest}"
    return ComfyUIInstall(dest / "comfyui", _setup(archive, dest), version), ""


def _slug(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", str(path)).strip("_")[-60:]


def models_dir() -> Path:
    return cache_dir() / MODELS_VERSION


def ensure_models(install: ComfyUIInstall, names=None) -> dict:
    """name -> Path of each random-weight model file, building missing ones (cached, locked)."""
    sys.path.insert(0, str(SUPPORT_DIR))
    try:
        from make_models import MODELS
    finally:
        sys.path.remove(str(SUPPORT_DIR))
    names = list(names or MODELS)
    out = models_dir()
    paths = {name: out / MODELS[name][0] / MODELS[name][1] for name in names}
    missing = [name for name, path in paths.items() if not path.exists()]
    if missing:
        began = time.monotonic()
        done = subprocess.run([str(install.python), str(SUPPORT_DIR / "make_models.py"),
                               "--comfyui", str(install.path), "--out", str(out), *missing],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building test models failed (exit {done.returncode}):\n"
                               f"{done.stdout}\n{done.stderr[-5000:]}")
        BUILD_LOG.extend(done.stdout.splitlines())
        BUILD_LOG.append(f"[make_models] {len(missing)} file(s) in {time.monotonic() - began:.1f} s "
                         f"(including ComfyUI imports)")
    return paths
