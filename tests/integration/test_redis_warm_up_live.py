"""With backend: redis, a real ComfyUI connects to Redis at start-up, before any workflow, and
starts normally when Redis is down.

The Redis here is a fakeredis TCP server in the test process that notes each connection.
"""
import threading

import pytest
import requests

from recall_pack.bench.harness.redis_server import free_port

STARTUP_LINE = "[Recall] ComfyUI-Recall"


def _config(tmp_path, port: int):
    path = tmp_path / "recall.yaml"
    path.write_text(f"cache:\n  backend: redis\n  redis_url: redis://127.0.0.1:{port}/0\n"
                    "  redis_timeout_ms: 2000\n", encoding="utf-8")
    return {"RECALL_CONFIG": str(path)}


def test_server_connects_to_redis_at_start_up_before_any_workflow(comfy_server_factory, tmp_path):
    fakeredis = pytest.importorskip("fakeredis")
    connected = threading.Event()

    class Server(fakeredis.TcpFakeServer):
        def verify_request(self, request, client_address):
            connected.set()
            return True

    redis = Server(("127.0.0.1", 0), server_type="redis")
    threading.Thread(target=redis.serve_forever, daemon=True).start()
    try:
        server = comfy_server_factory(extra_env=_config(tmp_path, redis.server_address[1]))
        # no prompt is ever queued here: a connection can only come from the start-up warm-up
        assert connected.wait(timeout=120)
        assert STARTUP_LINE in server.log_text()
    finally:
        redis.shutdown()
        redis.server_close()


def test_server_starts_when_redis_is_down(comfy_server_factory, tmp_path):
    server = comfy_server_factory(extra_env=_config(tmp_path, free_port()))  # nothing listens there
    assert STARTUP_LINE in server.log_text()
    nodes = requests.get(f"{server.url}/object_info/RecallVAEEncode", timeout=30).json()
    assert "RecallVAEEncode" in nodes  # the pack's nodes are there, and the server answers
