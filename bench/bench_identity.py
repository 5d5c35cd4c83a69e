"""Start-up costs of the first workflow: encoder identities and the Redis connection.

Used by bench_cache (python -m bench.bench_cache). Two measurements:
- identity after a restart: the first vae_identity / clip_vision_identity / clip_identity
  of a model loaded through its core loader node, with the weights hashed (no remembered
  identity: a start without the memo) and answered by the persistent memo (a restart after the
  first one). Both in one run, on the same loaded object, side by side.
- Redis first lookup: a fresh process (redis-py not imported yet) that builds the tier and
  looks one entry up, with and without the start-up warm-up; and a later lookup.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from .common import REPO, progress

MODELS = Path.home() / ".cache" / "comfyui-recall" / "models-v1"


def _text_encoder_file(folder: Path) -> str | None:
    """The harness checkpoint's CLIP-L as a standalone text-encoder file, as CLIPLoader reads one."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    ckpt = MODELS / "checkpoints" / "recall_test_sd15.safetensors"
    if not ckpt.exists():
        return None
    prefix = "cond_stage_model.transformer."
    with safe_open(str(ckpt), "pt") as f:
        tensors = {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    save_file(tensors, str(folder / "recall_bench_clip_l.safetensors"))
    return "recall_bench_clip_l.safetensors"


def _models(tmp: Path) -> list[tuple]:
    """(label, loader class, inputs, input name, load() -> encoder, identity fn name)."""
    import folder_paths
    import nodes
    out = []
    for folder in ("vae", "clip_vision"):
        if (MODELS / folder).is_dir():
            folder_paths.add_model_folder_path(folder, str(MODELS / folder))
    vae = "recall_test_sd15_vae.safetensors"
    if (MODELS / "vae" / vae).exists():
        out.append(("SD1.5 VAE (83.7M)", "VAELoader", {"vae_name": vae}, "vae",
                    lambda: nodes.VAELoader().load_vae(vae)[0], "vae_identity"))
    cv = "recall_test_clip_vision_vit_l14.safetensors"
    if (MODELS / "clip_vision" / cv).exists():
        out.append(("CLIP ViT-L/14 vision (304M)", "CLIPVisionLoader", {"clip_name": cv}, "clip_vision",
                    lambda: nodes.CLIPVisionLoader().load_clip(cv)[0], "clip_vision_identity"))
    te_dir = tmp / "text_encoders"
    te_dir.mkdir()
    te = _text_encoder_file(te_dir)
    if te:
        folder_paths.add_model_folder_path("text_encoders", str(te_dir))
        out.append(("CLIP-L text encoder (123M)", "CLIPLoader",
                    {"clip_name": te, "type": "stable_diffusion", "device": "default"}, "clip",
                    lambda: nodes.CLIPLoader().load_clip(te, "stable_diffusion")[0], "clip_identity"))
    return out


def bench_identity_restart(quick: bool) -> list[dict]:
    from recall_pack.cache.config import CacheConfig
    from recall_pack.cache.weights_memo import WeightsMemo
    from recall_pack.nodes import identity, runtime
    rows = []
    repeat = 1 if quick else 3
    hashed = []
    original = identity.fingerprint_tensors
    identity.fingerprint_tensors = lambda sd: hashed.append(1) or original(sd)
    previous = runtime.current()
    try:
        with tempfile.TemporaryDirectory(prefix="recall-bench-id-") as tmp:
            memo_path = Path(tmp) / "encoder_identities.json"
            started = time.time() + 2 * identity.SETTLE_SECONDS  # the files predate the "server"
            for label, loader, inputs, input_name, load, fn_name in _models(Path(tmp)):
                progress(f"identity after restart: {label}")
                fn = getattr(identity, fn_name)
                encoder = load()
                prompt = {"1": {"class_type": loader, "inputs": inputs},
                          "9": {"class_type": "RecallBench", "inputs": {input_name: ["1", 0]}}}

                def first(with_memo: bool) -> tuple[float, int]:
                    identity._weights_memo = type(identity._weights_memo)()   # a new process
                    runtime.install(runtime.Runtime(CacheConfig(), weights_memo=WeightsMemo(memo_path) if with_memo
                                                    else None, started_at=started if with_memo else None))
                    hashed.clear()
                    t0 = time.perf_counter()
                    identity.note_origin(encoder, prompt, "9", input_name)
                    fn(encoder)
                    return time.perf_counter() - t0, len(hashed)

                before = [first(False) for _ in range(repeat)]
                first(True)  # the first start with the memo: hashes once and remembers
                after = [first(True) for _ in range(repeat)]
                params = sum(t.numel() for t in _module(encoder).state_dict().values())
                rows.append({"model": label, "params": params,
                             "before_seconds": statistics.median(s for s, _ in before),
                             "after_seconds": statistics.median(s for s, _ in after),
                             "hashes_before": before[-1][1], "hashes_after": after[-1][1]})
                del encoder
    finally:
        identity.fingerprint_tensors = original
        runtime.install(previous)
    return rows


def _module(encoder):
    for attr in ("first_stage_model", "cond_stage_model", "model"):
        if hasattr(encoder, attr):
            return getattr(encoder, attr)
    raise TypeError(type(encoder))


_PROBE = r"""
import json, sys, time, types
sys.modules.setdefault("recall_pack", types.ModuleType("recall_pack")).__path__ = [sys.argv[1]]
from recall_pack.cache.config import CacheConfig
t0 = time.perf_counter()   # cold: the first lookup builds the tier (imports redis-py) and connects
from recall_pack.cache.redis_tier import build_redis_tier
tier = build_redis_tier(CacheConfig(backend="redis", redis_url=sys.argv[2], redis_timeout_ms=2000))
if sys.argv[3] == "warm":
    tier.warm_up()   # what the start-up thread does before any workflow
    t0 = time.perf_counter()
first = tier.get("shared", "bench-key")
t1 = time.perf_counter()
second = tier.get("shared", "bench-key")
t2 = time.perf_counter()
print(json.dumps({"first": t1 - t0, "later": t2 - t1, "hit": first is not None and second is not None}))
"""


def bench_redis_first_lookup(url: str | None, quick: bool) -> dict:
    """Median seconds of a fresh process's first and second Redis lookup, cold and warmed up."""
    server = None
    if url is None:
        try:
            import fakeredis
        except ImportError:
            return {"skipped": "no --redis-url and no fakeredis to stand in for a server"}
        server = fakeredis.TcpFakeServer(("127.0.0.1", 0), server_type="redis")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"redis://127.0.0.1:{server.server_address[1]}/0"
    try:
        from recall_pack.cache.redis_tier import RedisTier
        from recall_pack.cache.tier import EntryMeta
        seed = RedisTier(url, timeout_ms=2000)
        seed.put("shared", "bench-key", {"samples": torch.randn(1, 4, 64, 64)}, meta=EntryMeta(1.0, time.time()))
        seed.close()
        out = {"url": url if server is None else "fakeredis TCP server (127.0.0.1)"}
        for arm in ("cold", "warm"):
            runs = []
            for _ in range(2 if quick else 5):
                done = subprocess.run([sys.executable, "-c", _PROBE, str(REPO), url, arm],
                                      capture_output=True, text=True, timeout=120)
                if done.returncode != 0:
                    return {"skipped": f"probe failed: {done.stderr[-500:]}"}
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            out[arm] = {"first_seconds": statistics.median(r["first"] for r in runs),
                        "later_seconds": statistics.median(r["later"] for r in runs),
                        "all_hits": all(r["hit"] for r in runs)}
        return out
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def print_rows(identity_rows, redis) -> None:
    if identity_rows:
        print("first encoder identity after a restart (loaded through the core loader node)")
        for r in identity_rows:
            print(f"  {r['model']:>28}: hashed {r['before_seconds'] * 1e3:8.1f} ms ({r['hashes_before']} hash) -> "
                  f"remembered {r['after_seconds'] * 1e3:6.2f} ms ({r['hashes_after']} hashes), "
                  f"{r['before_seconds'] / max(r['after_seconds'], 1e-9):.0f}x")
    if redis:
        if "skipped" in redis:
            print(f"redis first lookup skipped: {redis['skipped']}")
        else:
            c, w = redis["cold"], redis["warm"]
            print(f"redis first lookup in a new process ({redis['url']}): cold {c['first_seconds'] * 1e3:.1f} ms "
                  f"(build tier + import redis-py + connect + GET), after start-up warm-up {w['first_seconds'] * 1e3:.1f} ms; "
                  f"later lookups {c['later_seconds'] * 1e3:.1f} / {w['later_seconds'] * 1e3:.1f} ms")
