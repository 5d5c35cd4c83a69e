"""The Redis tier against a real redis-server: sharing between worker processes, outages, a full Redis.

Only the cache engine is used (no ComfyUI), so these run in the pack's test venv.
Skipped with a notice when redis-server or redis-py is not installed.
"""
import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("redis", reason="redis-py is not installed (pip install redis)")

from recall_pack.bench.harness.redis_server import RedisServer, redis_server_binary  # noqa: E402
from recall_pack.cache.memory import MemoryTier  # noqa: E402
from recall_pack.cache.redis_tier import RedisTier  # noqa: E402
from recall_pack.cache.store import TieredStore  # noqa: E402
from recall_pack.cache.tier import EntryMeta  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent.parent

if redis_server_binary() is None:
    pytest.skip("redis-server is not installed (apt-get install -y redis-server); Redis integration tests "
                "skipped", allow_module_level=True)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def latent(seed, shape=(1, 4, 64, 64)):
    g = torch.Generator().manual_seed(seed)
    return {"samples": torch.randn(shape, generator=g)}


def meta(seconds=1.0):
    return EntryMeta(seconds, time.time())


# A worker process: the cache engine configured from RECALL_* like a ComfyUI worker would be.
WORKER = textwrap.dedent("""
    import json, sys, torch
    import conftest  # registers the repo as package recall_pack (no pytest needed)
    from recall_pack.cache import build_store, content_key, load_config
    from recall_pack.cache.redis_tier import build_redis_tier

    role, disk_dir = sys.argv[1], sys.argv[2]
    config = load_config(None)
    redis_tier = build_redis_tier(config)
    store = build_store(config, disk_dir=disk_dir, shared_tier=redis_tier)
    calls = []

    def encode():
        calls.append(1)
        g = torch.Generator().manual_seed(7 if role == "A" else 8)   # B's compute would differ
        return {"samples": torch.randn(1, 4, 64, 64, generator=g)}

    out = store.get_or_compute("imgkey", encode, namespace="shared", label="a.png")
    # no flush: the store flushes its queued writes at exit, which a short-lived worker relies on
    print(json.dumps({"hit": out.hit, "tier": out.tier, "computed": len(calls),
                      "content": content_key(out.value["samples"]), "saved": out.saved_seconds}))
""")


def run_worker(role, url, disk_dir):
    env = {"RECALL_BACKEND": "redis", "RECALL_REDIS_URL": url, "PATH": "/usr/bin:/bin",
           "RECALL_REDIS_TIMEOUT_MS": "200"}
    proc = subprocess.run([sys.executable, "-c", WORKER, role, str(disk_dir)], cwd=TESTS_DIR, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_worker_b_hits_what_worker_a_stored(redis_server, tmp_path):
    a = run_worker("A", redis_server.url, tmp_path / "disk_a")
    b = run_worker("B", redis_server.url, tmp_path / "disk_b")  # its own disk: only Redis is shared
    assert (a["hit"], a["computed"]) == (False, 1)
    assert (b["hit"], b["tier"], b["computed"]) == (True, "redis", 0)
    assert b["content"] == a["content"]  # A's tensor, bit for bit
    assert redis_server.client().exists("recall:shared:imgkey")


def test_stopped_redis_falls_back_fast_then_recovers(redis_server, caplog):
    clock = Clock()
    tier = RedisTier(redis_server.url, timeout_ms=50, clock=clock, backoff_seconds=2.0)
    store = TieredStore([MemoryTier("ram", 10**8, clock=clock), tier], background_writes=False)
    events = []
    store.add_listener(lambda e, info: events.append(e))
    assert tier.put("shared", "k", latent(1), meta=meta())

    redis_server.stop()
    with caplog.at_level(logging.WARNING, "recall.cache"):
        times = []
        for i in range(10):
            start = time.perf_counter()
            assert store.get(f"missing{i}") is None   # local tiers answer; Redis adds little
            times.append(time.perf_counter() - start)
        store.put("k2", latent(2))                      # a skipped write, not an error
    assert max(times) < 0.1, times
    assert caplog.text.count("failed to") == 1
    assert events == ["backend_down"]

    redis_server.start()                                # same port: a Redis restart
    for _ in range(5):  # a probe may still meet the old server's dropped socket; the next one reconnects
        clock.now += 60.0                               # past the longest back-off
        assert store.get("missing-again") is None       # starts the probe; the lookup does not wait for it
        tier.wait_background(5.0)
        if not tier.is_down:
            break
    assert events == ["backend_down", "backend_up"]
    assert tier.put("shared", "k3", latent(3), meta=meta())
    other = RedisTier(redis_server.url)
    assert torch.equal(other.get("shared", "k3").value["samples"], latent(3)["samples"])


def test_values_expire_through_redis_ttl(redis_server):
    tier = RedisTier(redis_server.url, ttl_seconds=3600)
    tier.put("shared", "k", latent(1), meta=EntryMeta(1.0, time.time(), ttl_seconds=600))
    ttl_ms = redis_server.client().pttl("recall:shared:k")
    assert 590_000 < ttl_ms <= 600_000


def test_full_redis_skips_writes_and_keeps_reads(redis_server, caplog):
    tier = RedisTier(redis_server.url)
    tier.put("shared", "old", latent(1), meta=meta())
    admin = redis_server.client()
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)                    # every write is now refused with OOM
    with caplog.at_level(logging.WARNING, "recall.cache"):
        assert not tier.put("shared", "new", latent(2), meta=meta())
    assert "Redis is full" in caplog.text
    assert tier.get("shared", "old") is not None and not tier.is_down


def test_allkeys_lru_evicts_old_entries_instead_of_refusing(redis_server):
    admin = redis_server.client()
    used = admin.info("memory")["used_memory"]
    admin.config_set("maxmemory", used + 3 * 2**20)     # room for ~40 of the 64 KiB latents
    admin.config_set("maxmemory-policy", "allkeys-lru")
    tier = RedisTier(redis_server.url, timeout_ms=400)  # about eviction, not latency: room for a loaded machine
    for i in range(80):
        assert tier.put("shared", f"k{i}", latent(i), meta=meta()), i
    assert tier.skipped_writes == 0
    assert tier.get("shared", "k79") is not None
    # which keys go is Redis's approximate LRU (5 samples, a 1 s clock: all 80 writes look equally
    # old), so only the count is certain: some entries were evicted instead of a write refused
    survivors = [i for i in range(80) if tier.get("shared", f"k{i}") is not None]
    assert len(survivors) < 80 and admin.info("stats")["evicted_keys"] > 0


def test_background_writes_reach_redis_from_the_store(redis_server, tmp_path):
    tier = RedisTier(redis_server.url)
    store = TieredStore([MemoryTier("ram", 10**8), tier])
    store.put("k", latent(4), compute_seconds=2.0)
    assert store.flush(timeout=10)
    reader = RedisTier(redis_server.url)
    entry = reader.get("shared", "k")
    assert torch.equal(entry.value["samples"], latent(4)["samples"]) and entry.meta.compute_seconds == 2.0


def _svd_prompt(image_name: str, models: dict, video_frames: int) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "2": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": models["clip_vision"].name}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": models["sd15_vae"].name}},
        "4": {"class_type": "RecallSVDImg2VidConditioning",
              "inputs": {"clip_vision": ["2", 0], "init_image": ["1", 0], "vae": ["3", 0], "width": 64,
                         "height": 64, "video_frames": video_frames, "motion_bucket_id": 127, "fps": 6,
                         "augmentation_level": 0.0, "seed": 0}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 2]}},
    }


@pytest.mark.integration
def test_two_comfyui_workers_share_svd_encodings_through_redis(redis_server, comfy_server_factory, models):
    """Worker A (its own folders) encodes; worker B (other folders, empty disk cache) hits in Redis.
    One server at a time: A is stopped before B starts, so only Redis can carry the encoding."""
    from recall_pack.bench.harness.comfy_client import ComfyClient, write_input_image

    # what this test is about is sharing, not latency: a loaded CI machine can take longer than the
    # default 25 ms lookup wait for a fresh worker's first GET (the wait is tested in tests/unit)
    env = {"RECALL_BACKEND": "redis", "RECALL_REDIS_URL": redis_server.url, "RECALL_REDIS_TIMEOUT_MS": "400"}
    statuses = []
    for worker, frames in (("A", 14), ("B", 25)):   # B also changes the frame count: still a hit
        server = comfy_server_factory(extra_env=env)
        name = write_input_image(server.input_dir, "recall_redis_svd.png", 80, 64, seed=611)
        result = ComfyClient(server.url).run_prompt(_svd_prompt(name, models, frames), timeout_s=300)
        assert result.ok, result.errors
        statuses.append([(e["status"], e.get("tier")) for e in result.node_events("4")])
        if worker == "A":
            # the write-through runs on a background thread: wait for it before A goes away
            deadline = time.monotonic() + 30
            while not list(redis_server.client().scan_iter("recall:*")) and time.monotonic() < deadline:
                time.sleep(0.05)
        server.stop()
    assert statuses[0] == [("miss", None)]
    assert statuses[1] == [("hit", "redis")]
