"""Finds real ComfyUI for the tests and the random-weight model files they use.

Which ComfyUI the suites run on, first match wins:
  1. COMFYUI_PATH (a source tree) with COMFYUI_PYTHON (a python that runs it; when unset,
     a venv inside that tree (venv/ or .venv/), else one built for it in the cache);
  2. the ComfyUI whose custom_nodes/ holds this checkout (a user who cloned the pack
     there): its python is COMFYUI_PYTHON, else a venv inside that ComfyUI (venv/ or
     .venv/), else one built for it in the cache;
  3. every release set up in the cache: $RECALL_TEST_CACHE/comfyui-<version>/ holding
     comfyui/, venv/ and the marker .ready (bench/harness/setup_releases.sh makes them);
  4. none: the suites that need ComfyUI skip with a notice.
tests/run.sh runs the ComfyUI suites once per install found (`python comfy_env.py`
lists them) and exports COMFYUI_PATH / COMFYUI_PYTHON for each, so under it
find_comfyui() returns exactly that one. Run directly, pytest takes the first
install found (in the cache: the newest release).

Cache: $RECALL_TEST_CACHE, default ~/.cache/comfyui-recall.
"""
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent
REPO_ROOT = HARNESS_DIR.parent.parent
MODELS_VERSION = "models-v1"
BUILD_LOG: list = []  # what ensure_models built this session, for the terminal summary
NOT_FOUND = ("ComfyUI not found: no release is set up in {cache} (bench/harness/setup_releases.sh), "
             "COMFYUI_PATH is unset and the pack is not inside a ComfyUI's custom_nodes/. Set COMFYUI_PATH "
             "to a ComfyUI checkout (and COMFYUI_PYTHON to the python that runs it)")


def cache_dir() -> Path:
    return Path(os.environ.get("RECALL_TEST_CACHE") or Path.home() / ".cache" / "comfyui-recall")


@dataclass(frozen=True)
class ComfyUIInstall:
    path: Path      # ComfyUI source tree (has main.py)
    python: Path    # a python that can run it (torch, torchvision, its requirements)
    version: str
    source: str = "COMFYUI_PATH"  # how it was found: COMFYUI_PATH, custom_nodes or cache

    def __str__(self) -> str:
        return f"ComfyUI {self.version} at {self.path} (python {self.python}; from {self.source})"


def comfyui_version(path: Path) -> str:
    version_file = Path(path) / "comfyui_version.py"
    if version_file.exists():
        match = re.search(r'__version__\s*=\s*"([^"]+)"', version_file.read_text())
        if match:
            return match.group(1)
    return "unknown"


def _version_key(version: str) -> tuple:
    return tuple(int(part) if part.isdigit() else -1 for part in re.split(r"[.\-]", version))


def is_comfyui_tree(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy" / "model_management.py").is_file()


def host_comfyui(pack_dir: Path | None = None) -> Path | None:
    """The ComfyUI whose custom_nodes/ holds this checkout, when a user cloned the pack there.

    Both the path as given (a symlink into custom_nodes/ counts) and the resolved one.
    """
    given = Path(pack_dir) if pack_dir else Path(os.path.abspath(__file__)).parent.parent.parent
    for candidate in dict.fromkeys([given, given.resolve()]):
        if candidate.parent.name == "custom_nodes" and is_comfyui_tree(candidate.parent.parent):
            return candidate.parent.parent
    return None


def cache_releases() -> list["ComfyUIInstall"]:
    """The releases set up in the cache (a .ready marker, a tree and a venv), oldest first."""
    found = []
    for dest in cache_dir().glob("comfyui-*"):
        tree, python = dest / "comfyui", dest / "venv" / "bin" / "python"
        if (dest / ".ready").exists() and is_comfyui_tree(tree) and python.exists():
            found.append(ComfyUIInstall(tree, python, comfyui_version(tree), "cache"))
    return sorted(found, key=lambda install: _version_key(install.version))


def _tree_python(tree: Path, build: bool) -> tuple[Path | None, str]:
    """A python for a ComfyUI tree found without COMFYUI_PYTHON: a venv inside it, else one built."""
    for venv in (tree / "venv", tree / ".venv"):
        if (venv / "bin" / "python").exists():
            return venv / "bin" / "python", ""
    dest = cache_dir() / f"comfyui-{comfyui_version(tree)}-{_slug(tree)}"
    if not (dest / ".ready").exists() and not build:
        return None, f"no python for ComfyUI at {tree} yet (set COMFYUI_PYTHON)"
    subprocess.run(["bash", str(HARNESS_DIR / "setup_comfyui.sh"), str(tree), str(dest)], check=True)
    return dest / "venv" / "bin" / "python", ""


def discover(build: bool = False) -> tuple[list[ComfyUIInstall], str]:
    """Every ComfyUI the suites should run on (see the module docstring), and why none when empty.

    With build=False nothing is installed: a tree without a usable python is reported, not set up.
    """
    env_path = os.environ.get("COMFYUI_PATH")
    if env_path:
        tree, source = Path(env_path).resolve(), "COMFYUI_PATH"
        if not is_comfyui_tree(tree):
            return [], f"COMFYUI_PATH={env_path} is not a ComfyUI source tree (no main.py, comfy/)"
    else:
        tree, source = host_comfyui(), "custom_nodes"
    if tree is None:
        releases = cache_releases()
        return releases, "" if releases else NOT_FOUND.format(cache=cache_dir())
    python, why = os.environ.get("COMFYUI_PYTHON"), ""
    if not python:
        python, why = _tree_python(tree, build)
    if python is None:
        return [], why
    return [ComfyUIInstall(tree, Path(python), comfyui_version(tree), source)], ""


def find_comfyui(build: bool = True) -> tuple[ComfyUIInstall | None, str]:
    """(install, why-not): the one ComfyUI a single pytest run uses (the newest when several)."""
    installs, why = discover(build)
    return (installs[-1], "") if installs else (None, why)


def _slug(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", str(path)).strip("_")[-60:]


def models_dir() -> Path:
    return cache_dir() / MODELS_VERSION


def ensure_models(install: ComfyUIInstall, names=None) -> dict:
    """name -> Path of each random-weight model file, building missing ones (cached, locked)."""
    sys.path.insert(0, str(HARNESS_DIR))
    try:
        from make_models import ALL_MODELS, MODELS
    finally:
        sys.path.remove(str(HARNESS_DIR))
    names = list(names or MODELS)  # the larger EXTRA_MODELS only when named
    out = models_dir()
    paths = {name: out / ALL_MODELS[name][0] / ALL_MODELS[name][1] for name in names}
    missing = [name for name, path in paths.items() if not path.exists()]
    if missing:
        began = time.monotonic()
        done = subprocess.run([str(install.python), str(HARNESS_DIR / "make_models.py"),
                               "--comfyui", str(install.path), "--out", str(out), *missing],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building test models failed (exit {done.returncode}):\n"
                               f"{done.stdout}\n{done.stderr[-5000:]}")
        BUILD_LOG.extend(done.stdout.splitlines())
        BUILD_LOG.append(f"[make_models] {len(missing)} file(s) in {time.monotonic() - began:.1f} s "
                         f"(including ComfyUI imports)")
    return paths


def main(argv: list[str]) -> int:
    """`python comfy_env.py [--build]`: one line per install found, tab-separated
    (version, path, python, source); nothing (exit 3) with the reason on stderr when none."""
    installs, why = discover(build="--build" in argv)
    for install in installs:
        print(f"{install.version}\t{install.path}\t{install.python}\t{install.source}")
    if not installs:
        print(why, file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
