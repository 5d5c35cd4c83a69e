"""The pack's layers hold: each folder imports only the layers below it, found by walking the source.

    digest.py   imports nothing of the pack
    cache/      imports only cache/ and digest.py
    nodes/lib/  imports only nodes/lib/ and digest.py (never cache/)
    bench/      never loads tests/ (tests may use bench's helpers, not the reverse)
ComfyUI's modules are checked by test_no_comfy_imports.py.
"""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACK_PARTS = {"cache", "nodes", "bench", "digest", "js", "tests", "workflows"}

# folder (or module) -> the pack modules it may import (dotted prefixes, relative to the repo root)
ALLOWED = {
    "digest.py": set(),
    "cache": {"cache", "digest"},
    "nodes/lib": {"nodes.lib", "digest"},
}


def _module_of(path: Path, root: Path) -> list[str]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def pack_imports(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """(line, dotted module relative to the repo root) of every import of the pack in path, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_of(path, root)
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            if node.level - 1 > len(package):
                found.append((node.lineno, "<beyond the repo root>"))
                continue
            base = package[:len(package) - (node.level - 1)]
            targets = [".".join(base + ([node.module] if node.module else []))] if node.module else \
                [".".join(base + [alias.name]) for alias in node.names]
            found += [(node.lineno, t) for t in targets]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "recall_pack":
            found.append((node.lineno, node.module.split(".", 1)[1] if "." in node.module else ""))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".", 1)[1]) for alias in node.names
                      if alias.name.startswith("recall_pack.")]
    return found


def _allowed(target: str, allowed: set[str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


def _layer_sources():
    for layer, allowed in ALLOWED.items():
        where = REPO / layer
        for path in ([where] if where.is_file() else sorted(where.rglob("*.py"))):
            yield pytest.param(path, allowed, id=str(path.relative_to(REPO)))


@pytest.mark.parametrize("path, allowed", list(_layer_sources()))
def test_module_imports_only_the_layers_below_it(path, allowed):
    bad = [f"{path.relative_to(REPO)}:{line} imports {target}"
           for line, target in pack_imports(path) if not _allowed(target, allowed)]
    assert bad == []


def loads_of_tests(path: Path) -> list[str]:
    """Imports of what only tests/ provides (its sys.path modules) and paths that start in tests/."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    found = [f"imports {m}" for m in imported if m.split(".")[0] in {"support", "tests", "conftest"}]
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return found + [f"names {s!r}" for s in strings if s == "tests" or s.startswith(("tests/", "tests\\"))]


@pytest.mark.parametrize("path", sorted((REPO / "bench").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_bench_does_not_load_tests(path):
    assert loads_of_tests(path) == []


def test_the_bench_check_catches_a_load_of_tests(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from pathlib import Path\nfrom support import comfy_env\n"
                   "DATA = Path(__file__).parent.parent / 'tests' / 'support'\nX = 'tests/unit/data/p.json'\n")
    assert sorted(loads_of_tests(bad)) == ["imports support", "names 'tests'", "names 'tests/unit/data/p.json'"]


def test_the_walk_resolves_relative_imports(tmp_path):
    (tmp_path / "nodes" / "lib").mkdir(parents=True)
    bad = tmp_path / "nodes" / "lib" / "bad.py"
    bad.write_text("import torch\nfrom . import ddim\nfrom .ddim import x\n"
                   "def f():\n    from ...cache.keys import build_key\n    from ... import digest\n"
                   "    from recall_pack.cache import store\n")
    assert pack_imports(bad, tmp_path) == [
        (2, "nodes.lib.ddim"), (3, "nodes.lib.ddim"), (5, "cache.keys"), (6, "digest"), (7, "cache")]
    assert [t for _, t in pack_imports(bad, tmp_path) if not _allowed(t, ALLOWED["nodes/lib"])] == [
        "cache.keys", "cache"]
