"""The node ids the pack declares, read from its source without importing ComfyUI.

Each topic module in nodes/ (nodes/*_nodes.py) defines V3 nodes whose
define_schema() returns io.Schema(node_id="...", ...). Reading them with ast
lets a test compare the pack's own list with a live server's /object_info,
so the check grows as nodes are added.
"""
import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def declared_node_ids(nodes_dir: Path = REPO_ROOT / "nodes") -> dict:
    """node id -> source file name, for every Schema(node_id="literal") call."""
    found = {}
    for path in sorted(Path(nodes_dir).glob("*_nodes.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call) or _callee_name(call) != "Schema":
                continue
            for kw in call.keywords:
                if kw.arg == "node_id" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    found[kw.value.value] = path.name
    return found


def _callee_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""
