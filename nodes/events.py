"""How Recall nodes tell the user what the cache did: one log line and one UI event.

The UI event goes through PromptServer.instance.send_sync to the client that
queued the prompt; the frontend (js/) turns it into a badge on the node.

Event "recall.node" payload (documented in README):
    node_id      str   the node's id in the prompt (UNIQUE_ID)
    node_type    str   e.g. "RecallVAEEncode"
    status       str   "hit" | "miss" | "off" (caching disabled) | "error"
    tier         str | None   tier that answered a hit: "vram" | "ram" | "disk" | "redis"
    saved_s      float  compute seconds a hit saved (0 on a miss)
    compute_s    float  seconds the miss spent computing (0 on a hit)
    reason       str | None   why it missed, for the user ("first run", "pixels changed", ...)
    key          str | None   short cache key prefix, for support
    near_db      float | None a near hit (match: near): the thumbnail PSNR in dB by which the encoding
                              of another, near-identical image was reused (null for exact; 1e9 = identical
                              thumbnails); the log line and the badge say "near"

Event "recall.backend" payload: {"backend": "redis" | "disk" | ..., "state": "down" | "up", "message": str}
"""
import logging

_log = logging.getLogger("recall")

NODE_EVENT = "recall.node"
BACKEND_EVENT = "recall.backend"


def _send(event: str, payload: dict) -> None:
    try:
        from server import PromptServer
    except ImportError:  # outside a running ComfyUI (unit tests, bench scripts)
        return
    server = getattr(PromptServer, "instance", None)
    if server is None:
        return
    server.send_sync(event, payload, getattr(server, "client_id", None))


def report_node(node_id, node_type: str, status: str, *, tier=None, saved_s: float = 0.0,
                compute_s: float = 0.0, reason=None, key=None, near_db=None) -> dict:
    payload = {
        "node_id": None if node_id is None else str(node_id),
        "node_type": node_type,
        "status": status,
        "tier": tier,
        "saved_s": round(float(saved_s), 4),
        "compute_s": round(float(compute_s), 4),
        "reason": reason,
        "key": key[:16] if key else None,
        "near_db": None if near_db is None else round(min(float(near_db), 1e9), 1),
    }
    if status == "hit" and near_db is not None:
        _log.info("[Recall] %s #%s: hit in %s (%s: the encoding of a near-identical image), saved %.2fs",
                  node_type, node_id, tier, _near_words(near_db), saved_s)
    elif status == "hit":
        _log.info("[Recall] %s #%s: hit in %s, saved %.2fs", node_type, node_id, tier, saved_s)
    else:
        _log.info("[Recall] %s #%s: %s (%s), computed in %.2fs", node_type, node_id, status, reason or "no reason", compute_s)
    _send(NODE_EVENT, payload)
    return payload


def _near_words(db: float) -> str:
    return "near, identical thumbnails" if db >= 1e9 else f"near, {db:.0f} dB"


def report_backend(backend: str, state: str, message: str) -> dict:
    payload = {"backend": backend, "state": state, "message": message}
    _send(BACKEND_EVENT, payload)
    return payload
