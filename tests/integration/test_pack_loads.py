"""The pack loads in a real ComfyUI from an oddly named folder, and the harness itself works.

What a user relies on: cloning the pack under any folder name gives its nodes
and one start-up line, with nothing in the log saying part of it broke.
"""
import re
from pathlib import Path

import pytest

from recall_pack.bench.harness.comfy_client import PromptRejected
from recall_pack.bench.harness.comfy_server import PACK_FOLDER_NAME
from support.pack_nodes import declared_node_ids

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
STARTUP_LINE = "[Recall] ComfyUI-Recall"


def pack_version() -> str:
    text = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE).group(1)


def tracebacks(log: str) -> list[str]:
    """Each 'Traceback ...' block of the log, up to and including its exception line."""
    blocks, current = [], None
    for line in log.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            current = [line]
            blocks.append(current)
        elif current is not None:
            current.append(line)
            if line and not line.startswith((" ", "\t")) and not line.startswith("During handling"):
                current = None
    return ["\n".join(block) for block in blocks]


def mentions_pack(text: str) -> bool:
    return PACK_FOLDER_NAME in text or str(REPO_ROOT) in text or "[Recall]" in text


def test_pack_loads_from_odd_folder_with_one_startup_line(comfy_server):
    log = comfy_server.log_text()
    startup = [line for line in log.splitlines() if STARTUP_LINE in line]
    assert len(startup) == 1, f"expected one start-up line, got {startup}"
    assert pack_version() in startup[0], f"start-up line lacks version {pack_version()}: {startup[0]}"
    assert "cache tiers" in startup[0]

    import_lines = [line for line in log.splitlines()
                    if line.rstrip().endswith(f"custom_nodes/{PACK_FOLDER_NAME}") and "seconds" in line]
    assert len(import_lines) == 1, "ComfyUI's import-times list does not show the pack folder"
    assert "IMPORT FAILED" not in import_lines[0]


def test_pack_start_up_logs_no_error_warning_or_traceback(comfy_server):
    log = comfy_server.log_text()
    pack_tracebacks = [t for t in tracebacks(log) if mentions_pack(t)]
    assert pack_tracebacks == [], "traceback(s) from the pack at start-up:\n" + "\n\n".join(pack_tracebacks)
    bad_words = ("cannot import", "import failed", "error", "warning", "failed", "skip ")
    complaints = [line for line in log.splitlines()
                  if mentions_pack(line) and any(word in line.lower() for word in bad_words)]
    assert complaints == []


def test_core_vae_workflow_runs_and_client_reports_nodes(comfy_server, models, run_prompt, input_image):
    image = input_image(name="recall_core_workflow.png", width=64, height=64, seed=3)
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": models["sd15_vae"].name}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["2", 0]}},
        "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "recall_core"}},
    }
    first = run_prompt(prompt)
    assert first.ok, first.errors
    assert sorted(first.executed) == ["1", "2", "3", "4"]
    assert first.cached == []
    assert first.wall_s > 0
    saved = first.outputs["4"]["latents"][0]
    assert (comfy_server.output_dir / saved["subfolder"] / saved["filename"]).stat().st_size > 0

    # The same prompt again: ComfyUI serves every node from its own cache, and the client says so.
    second = run_prompt(prompt)
    assert second.ok, second.errors
    assert sorted(second.cached) == ["1", "2", "3", "4"]
    assert second.executed == []


def test_client_reports_execution_and_validation_errors(comfy_server, models, run_prompt):
    # A 16-channel (SD3-style) latent into the 4-channel SD1.5 VAE fails inside VAEDecode.
    prompt = {
        "1": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": models["sd15_vae"].name}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    result = run_prompt(prompt)
    assert result.status == "error"
    assert [error["node_id"] for error in result.errors] == ["3"]

    prompt["1"]["inputs"]["width"] = "not a number"
    with pytest.raises(PromptRejected) as rejected:
        run_prompt(prompt)
    assert rejected.value.status == 400


def test_every_declared_node_is_registered(comfy_client):
    declared = declared_node_ids()
    if not declared:
        pytest.skip("the pack declares no nodes yet (no io.Schema(node_id=...) in nodes/*_nodes.py)")
    registered = comfy_client.object_info()
    missing = sorted(node_id for node_id in declared if node_id not in registered)
    assert missing == [], f"declared but not in /object_info: {missing} (from {declared})"
    for node_id in declared:
        assert registered[node_id]["python_module"].startswith("custom_nodes."), node_id


def test_node_id_reader_finds_schema_literals(tmp_path):
    (tmp_path / "demo_nodes.py").write_text(
        "from ._api import io\n"
        "class A(io.ComfyNode):\n"
        "    @classmethod\n"
        "    def define_schema(cls):\n"
        "        return io.Schema(node_id='RecallDemoA', display_name='A', inputs=[])\n"
        "class B(io.ComfyNode):\n"
        "    @classmethod\n"
        "    def define_schema(cls):\n"
        "        return Schema(display_name='B', node_id=\"RecallDemoB\")\n")
    (tmp_path / "helpers.py").write_text("io.Schema(node_id='NotANodeModule')\n")
    assert declared_node_ids(tmp_path) == {"RecallDemoA": "demo_nodes.py", "RecallDemoB": "demo_nodes.py"}


def test_factory_server_takes_args_and_restarts_on_same_base_dir(comfy_server_factory, models, run_prompt):
    server = comfy_server_factory(extra_args=["--cache-none"], extra_env={"RECALL_HARNESS_PROBE": "1"})
    assert "--cache-none" in server_argv(server)
    prompt = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "recall_factory"}},
    }
    assert sorted(run_prompt(prompt, server=server).executed) == ["1", "2"]
    # --cache-none: the same prompt runs every node again.
    assert sorted(run_prompt(prompt, server=server).executed) == ["1", "2"]
    saved = sorted(server.output_dir.glob("recall_factory_*.latent"))
    assert len(saved) == 2

    first_port, first_pid = server.port, server.process.pid
    server.restart()
    assert server.is_running() and server.process.pid != first_pid
    assert sorted(server.output_dir.glob("recall_factory_*.latent")) == saved  # the base dir survived
    assert run_prompt(prompt, server=server).ok
    assert server.log_text().count("===== start #") == 2 and first_port > 0


def server_argv(server) -> list:
    import requests
    return requests.get(server.url + "/system_stats", timeout=10).json()["system"]["argv"]


# Import names that differ from the distribution's name, for the requirements files read below.
IMPORT_NAMES = {"pyyaml": "yaml", "pillow": "PIL", "opencv-python": "cv2", "scikit-image": "skimage",
                "websocket-client": "websocket", "redis": "redis"}


def requirement_names(text: str) -> set[str]:
    """The import names of a requirements list (one requirement a line, '#' comments)."""
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if match and not line.startswith("-"):
            dist = match.group(0).lower()
            names.add(IMPORT_NAMES.get(dist, dist.replace("-", "_")))
    return names


def pack_imports() -> list[tuple[str, str, bool]]:
    """(module file, top-level name, imported at module level?) for each absolute import of the pack."""
    import ast
    found = []
    files = [REPO_ROOT / "__init__.py", *sorted((REPO_ROOT / "nodes").rglob("*.py")),
             *sorted((REPO_ROOT / "cache").rglob("*.py"))]
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nested = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for node in ast.walk(fn)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            found += [(str(path.relative_to(REPO_ROOT)), top, id(node) not in nested) for top in tops]
    return found


def test_every_runtime_import_is_in_requirements_or_comfyui(comfyui):
    """What pip install -r requirements.txt (ComfyUI-Manager) gives must be all the pack needs.

    A module-level import must be the standard library, ComfyUI's own code or requirements
    (of the release under test), or the pack's requirements.txt; an optional extra of
    pyproject.toml (redis) is imported only inside the function that needs it.
    """
    import sys
    import tomllib
    ours = requirement_names((REPO_ROOT / "requirements.txt").read_text(encoding="utf-8"))
    comfy_reqs = requirement_names((comfyui.path / "requirements.txt").read_text(encoding="utf-8"))
    comfy_modules = {p.stem if p.suffix == ".py" else p.name for p in comfyui.path.iterdir()
                     if p.suffix == ".py" or (p.is_dir() and any(p.glob("*.py")))}
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    optional = requirement_names("\n".join(req for name, reqs in extras.items() if name != "test" for req in reqs))
    allowed = set(sys.stdlib_module_names) | ours | comfy_reqs | comfy_modules
    unlisted = sorted({(f, top) for f, top, _ in pack_imports() if top not in allowed | optional})
    assert unlisted == [], f"imports neither in requirements.txt nor ComfyUI {comfyui.version}'s: {unlisted}"
    eager_optional = sorted({(f, top) for f, top, module_level in pack_imports() if top in optional and module_level})
    assert eager_optional == [], f"optional packages imported at module level (the pack must load without them): " \
                                 f"{eager_optional}"
