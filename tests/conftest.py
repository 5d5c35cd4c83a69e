"""Makes the pack importable in tests without running its root __init__.py.

The repo is registered as a package named `recall_pack` (a module object whose
__path__ is the repo root), so `recall_pack.cache` and `recall_pack.nodes.lib`
import with their relative imports working, whatever the checkout's folder is
called. tests/support/ holds the harness (ComfyUI set-up, models, server, client).
"""
import sys
import types
from pathlib import Path

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
