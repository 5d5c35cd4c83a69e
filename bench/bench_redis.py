"""Redis tier latency next to the local tiers (ram, disk), for an SD1.5 and a Wan 2.1 latent.

    python -m bench.bench_redis [--quick] [--url redis://host:port/0]

Run from the repo root with the pack's test venv (torch, redis-py). Without --url it starts
its own redis-server (127.0.0.1, a free port, a temp folder, persistence off) and stops it.
Per shape: put and get medians for each tier (a Redis put is the full write: serialize + SET;
in a workflow it runs on the writer thread), the part of a Redis get spent on the network vs.
decoding/verifying, and what a lookup costs while Redis is down or hung.
Prints a table and writes bench/results/redis-<time>.json.
"""
import argparse
import platform
import socket
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from .common import median_seconds, progress, register_pack, write_results
SHAPES = {"sd15 1x4x64x64": (1, 4, 64, 64), "wan21 1x16x21x60x104": (1, 16, 21, 60, 104)}


def _import_cache():
    register_pack()
    import recall_pack.cache.disk as disk
    import recall_pack.cache.memory as memory
    import recall_pack.cache.redis_tier as redis_tier
    import recall_pack.cache.serialize as serialize
    import recall_pack.cache.store as store
    import recall_pack.cache.tier as tier
    return types.SimpleNamespace(disk=disk, memory=memory, redis_tier=redis_tier, serialize=serialize, store=store,
                                 tier=tier)


def median_ms(fn, repeat: int, warmup: int = 1) -> float:
    return round(median_seconds(fn, repeat, warmup) * 1000, 3)


def bench_shape(c, label, shape, url, workdir, repeat) -> dict:
    value = {"samples": torch.randn(shape)}
    meta = c.tier.EntryMeta(1.0, time.time())
    ram = c.memory.MemoryTier("ram", 2**34)
    disk = c.disk.DiskTier("disk", Path(workdir) / "disk", 2**34)
    redis = c.redis_tier.RedisTier(url, max_value_bytes=2**30, timeout_ms=1000)
    row = {"shape": label, "mbytes": round(value["samples"].nbytes / 2**20, 2)}
    n = [0]

    def fresh_put(tier):
        def put():
            n[0] += 1
            assert tier.put("bench", f"k{n[0]}", value, meta=meta)
        return put

    for name, tier in (("ram", ram), ("disk", disk), ("redis", redis)):
        row[f"{name}_put_ms"] = median_ms(fresh_put(tier), repeat)
        tier.put("bench", "hot", value, meta=meta)
        row[f"{name}_get_ms"] = median_ms(lambda t=tier: t.get("bench", "hot"), repeat)
    client = redis._client()
    rkey = c.redis_tier.redis_key("bench", "hot")
    blob = client.get(rkey)
    row["redis_get_network_ms"] = median_ms(lambda: client.get(rkey), repeat)
    row["decode_verify_ms"] = median_ms(lambda: c.serialize.loads(blob), repeat)
    row["serialize_ms"] = median_ms(lambda: c.serialize.dumps(value, {"k": 1}), repeat)
    # the caller's cost of a store put with the store's writer (the write runs on its thread)
    background = c.redis_tier.RedisTier(url, max_value_bytes=2**30)
    store = c.store.TieredStore([background], write_queue_entries=10**4, write_queue_bytes=2**34)

    def store_put():
        n[0] += 1
        store.put(f"k{n[0]}", value, namespace="bench")
    row["redis_put_enqueue_ms"] = median_ms(store_put, repeat)
    store.flush(timeout=120)
    for t in (redis, background):
        t.clear("bench")
    redis.close()
    store.close()
    return row


def bench_outage(c, repeat) -> dict:
    """A lookup's cost while Redis is refused (nothing listening) and hung (accepts, never answers)."""
    out = {}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = c.redis_tier.RedisTier(f"redis://127.0.0.1:{port}/0", timeout_ms=50)
    start = time.perf_counter()
    refused.get("bench", "k")
    out["refused_first_lookup_ms"] = round((time.perf_counter() - start) * 1000, 3)
    out["breaker_open_lookup_ms"] = median_ms(lambda: refused.get("bench", "k"), repeat, warmup=0)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    hung = c.redis_tier.RedisTier(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", timeout_ms=50)
    start = time.perf_counter()
    hung.get("bench", "k")
    out["hung_first_lookup_ms"] = round((time.perf_counter() - start) * 1000, 3)
    out["hung_breaker_open_lookup_ms"] = median_ms(lambda: hung.get("bench", "k"), repeat, warmup=0)
    hung.close()
    listener.close()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--url", help="use this Redis instead of starting a redis-server")
    args = parser.parse_args(argv)
    c = _import_cache()
    repeat = 5 if args.quick else 15
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="recall-bench-redis-") as workdir:
        server = None
        url = args.url
        if url is None:
            from .harness import redis_server as rs
            if rs.redis_server_binary() is None:
                progress("redis-server is not installed (apt-get install -y redis-server) or pass --url")
                return 2
            server = rs.RedisServer(Path(workdir) / "redis").start()
            url = server.url
        try:
            rows = []
            for label, shape in SHAPES.items():
                progress(f"{label}")
                rows.append(bench_shape(c, label, shape, url, workdir, repeat))
            progress("outage")
            outage = bench_outage(c, repeat)
        finally:
            if server is not None:
                server.stop()
    cols = ["shape", "mbytes", "ram_put_ms", "ram_get_ms", "disk_put_ms", "disk_get_ms", "redis_put_ms",
            "redis_get_ms", "redis_get_network_ms", "decode_verify_ms", "serialize_ms", "redis_put_enqueue_ms"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[k]) for k in cols))
    for k, v in outage.items():
        print(f"{k}: {v}")
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
              "python": platform.python_version(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "redis": "own redis-server" if args.url is None else "--url",
              "rows": rows, "outage": outage}
    progress(f"wrote {write_results('redis', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
