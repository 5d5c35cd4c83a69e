"""What happens once when ComfyUI asks the pack for its nodes: one log line, routes, settings.

Only cheap work here: read the config and say which cache tiers are in use.
Tiers open their folders and connections on first use, never at start-up.
"""
import logging
import re
from pathlib import Path

_log = logging.getLogger("recall")

PACK_ROOT = Path(__file__).resolve().parent.parent


def pack_version() -> str:
    text = (PACK_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else "unknown"


def on_pack_loaded(nodes: list) -> None:
    tiers = "unknown"
    try:
        from . import runtime
        tiers = runtime.describe_tiers()
        runtime.on_startup()
    except Exception:
        _log.exception("[Recall] cache set-up failed; the nodes still run, without caching")
    _log.info("[Recall] ComfyUI-Recall %s: %d nodes, cache tiers: %s", pack_version(), len(nodes), tiers)
