"""digest.py, cache/ and nodes/lib/ must import without ComfyUI: no import of its modules, at any depth."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {"comfy", "comfy_api", "comfy_extras", "folder_paths", "nodes", "server", "execution"}
FOLDERS = ["cache", "nodes/lib"]


def comfy_imports(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "__import__", "import_module") and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        else:
            continue
        found += [f"{path.relative_to(root)}:{node.lineno} imports {n}" for n in names
                  if n.split(".")[0] in FORBIDDEN]
    return found


def sources():
    return sorted([REPO / "digest.py"] + [p for folder in FOLDERS for p in (REPO / folder).rglob("*.py")])


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_module_does_not_import_comfyui(path):
    assert comfy_imports(path) == []


def test_the_check_catches_imports_inside_functions(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom . import keys\n"
                   "def f():\n    import comfy.model_management\n    from folder_paths import x\n"
                   "    __import__('server')\n")
    assert [line.split(" imports ")[1] for line in comfy_imports(bad, tmp_path)] == [
        "comfy.model_management", "folder_paths", "server"]
