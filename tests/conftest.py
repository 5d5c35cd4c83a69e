"""Makes the pack importable in tests without running its root __init__.py.

The repo is registered as a package named `recall_pack` (a module object whose
__path__ is the repo root), so `recall_pack.cache` and `recall_pack.nodes.lib`
import with their relative imports working, whatever the checkout's folder is
called. The repo root is collected as a plain directory, not as a package
(below). bench/harness/ holds the harness (ComfyUI set-up, models, server, client), which the
suites import as recall_pack.bench.harness; tests/support/ what only the tests need.
"""
import sys
import types
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_NAME = "recall_pack"

if PACKAGE_NAME not in sys.modules:
    package = types.ModuleType(PACKAGE_NAME)
    package.__path__ = [str(REPO_ROOT)]
    package.__file__ = str(REPO_ROOT / "__init__.py")
    sys.modules[PACKAGE_NAME] = package

_tests_dir = str(Path(__file__).resolve().parent)
if _tests_dir not in sys.path:
    sys.path.insert(0, _tests_dir)


class _RootIsAPlainDirectory:
    """pytest >= 8 collects a directory holding __init__.py as a Package and, before its first
    test, imports that __init__.py (for setup_module), putting the folder above it (or, when the
    folder's name is no identifier, the repo root itself) first on sys.path. The root
    __init__.py is ComfyUI's entry point: imported so, it fails its relative import whenever
    comfy_api is importable (the in-process suite), and the repo root on sys.path makes
    `import nodes` find the pack's nodes/ instead of ComfyUI's nodes.py.
    """

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path, parent):
        if Path(path) == REPO_ROOT:
            return pytest.Dir.from_parent(parent, path=path)
        return None


def pytest_configure(config):
    # a plugin, not a hook of this conftest: the root is collected before conftests under it apply
    if hasattr(pytest, "Dir"):
        config.pluginmanager.register(_RootIsAPlainDirectory(), "recall-root-is-a-plain-directory")
