"""Cache-engine benchmark: key throughput, encoder fingerprint cost, tier latency vs. VAE encode time.

    python -m bench.bench_cache [--quick] [--comfyui PATH] [--no-encode] [--no-identity] [--redis-url URL]

Also (bench_identity.py): the first encoder identity after a restart, hashed vs. remembered,
for models loaded through the core loader nodes (needs ComfyUI), and a new process's first
Redis lookup with and without the start-up warm-up (a real server with --redis-url, else a
fakeredis TCP server).

Run from the repo root. Prints a table and writes bench/results/cache-<time>.json.
The encode column needs ComfyUI: run with ComfyUI's venv python and COMFYUI_PATH (or --comfyui)
set; it uses the harness's random-weight SD1.5 / Wan 2.1 VAE files when they exist under
~/.cache/comfyui-recall/models-v1, else builds the SD1.5 VAE from a random state dict.
"""
import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import bench_identity
from .common import REPO, median_seconds, progress, register_pack, use_comfyui, write_results
MODELS = Path.home() / ".cache" / "comfyui-recall" / "models-v1"


def _import_cache():
    register_pack()
    import recall_pack.cache as cache
    return cache


def bench_keys(cache, quick: bool) -> list[dict]:
    rows = []
    for shape in [(1, 512, 512, 3), (81, 480, 832, 3)]:
        t = torch.rand(shape, dtype=torch.float32)
        seconds = median_seconds(lambda: cache.content_key(t), 3 if quick else 7)
        # VAE Decode's IMAGE layout: a movedim'd [B,C,H,W] tensor, not contiguous
        strided = torch.rand(shape[0], shape[3], shape[1], shape[2]).movedim(1, -1)
        seconds_nc = median_seconds(lambda: cache.content_key(strided), 1 if quick else 3)
        rows.append({"shape": list(shape), "bytes": t.nbytes, "seconds": seconds, "gb_per_s": t.nbytes / seconds / 1e9,
                     "non_contiguous_gb_per_s": t.nbytes / seconds_nc / 1e9})
        del t, strided
    return rows


class _Model:
    """Stands in for a loaded model object (weak-referenceable, as ComfyUI's are)."""


def bench_fingerprint(cache, quick: bool) -> dict:
    # ~83.7M fp32 parameters like the SD VAE: the layout does not matter to the cost, the bytes do
    sd = {f"block{i}.weight": torch.randn(1_000_000) for i in range(83)}
    sd["tail.weight"] = torch.randn(653_000)
    params = sum(v.numel() for v in sd.values())
    seconds = median_seconds(lambda: cache.fingerprint_tensors(sd), 2 if quick else 5)
    memo = cache.FingerprintMemo()
    owner = _Model()
    memo.get(owner, "t", lambda: cache.fingerprint_tensors(sd))
    memo_seconds = median_seconds(lambda: memo.get(owner, "t", lambda: cache.fingerprint_tensors(sd)), 100)
    return {"params": params, "bytes": params * 4, "seconds": seconds, "memoised_seconds": memo_seconds}


def make_tiers(cache_dir: Path):
    from recall_pack.cache.disk import DiskTier
    from recall_pack.cache.memory import MemoryTier
    tiers = []
    if torch.cuda.is_available():
        tiers.append(MemoryTier("vram", 2**31, 100, device=torch.device("cuda")))
    tiers.append(MemoryTier("ram", 2**32))
    tiers.append(DiskTier("disk", cache_dir, 2**32))
    return tiers


def bench_tiers(cache, quick: bool, cache_dir: Path) -> list[dict]:
    from recall_pack.cache.tier import EntryMeta
    rows = []
    n = 5 if quick else 20
    for name, shape in [("sd15 1x4x64x64", (1, 4, 64, 64)), ("wan 1x16x21x60x104", (1, 16, 21, 60, 104))]:
        value = {"samples": torch.randn(shape)}
        for tier in make_tiers(cache_dir):
            counter = iter(range(10**9))
            meta = EntryMeta(1.0, time.time())
            put = median_seconds(lambda: tier.put("bench", f"k{next(counter)}", value, meta=meta), n)
            tier.put("bench", "hit", value, meta=meta)
            get = median_seconds(lambda: tier.get("bench", "hit"), n)
            rows.append({"latent": name, "shape": list(shape), "bytes": value["samples"].nbytes, "tier": tier.name,
                         "put_ms": put * 1e3, "get_ms": get * 1e3})
            tier.clear()
    return rows


def _load_vae(kind: str):
    import comfy.sd
    import comfy.utils
    path = MODELS / "vae" / f"recall_test_{kind}_vae.safetensors"
    if path.exists():
        return comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(path))), str(path)
    if kind != "sd15":
        return None, None
    from comfy.ldm.models.autoencoder import AutoencoderKL
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in AutoencoderKL(ddconfig=ddconfig, embed_dim=4).state_dict().items()}
    sd = {k: torch.randn(s) * 0.02 for k, s in shapes.items()}
    return comfy.sd.VAE(sd=sd), "random state dict (SD1.5 VAE layout)"


def bench_encode(comfyui: str | None, quick: bool, wan_size=(240, 416)) -> dict:
    """Seconds the real VAE takes to encode the image that each benchmark latent comes from."""
    if not comfyui:
        return {"skipped": "no ComfyUI (set COMFYUI_PATH or --comfyui and use its venv)"}
    sys.path.insert(0, comfyui)
    import comfy.cli_args
    comfy.cli_args.args.cpu = not torch.cuda.is_available()
    out = {}
    progress("sd1.5 VAE encode 512x512")
    vae, source = _load_vae("sd15")
    image = torch.rand(1, 512, 512, 3)
    out["sd15 1x4x64x64"] = {"image": [1, 512, 512, 3], "source": source,
                             "seconds": median_seconds(lambda: vae.encode(image), 1 if quick else 3)}
    vae, source = _load_vae("wan21")
    if vae is not None:
        # 81 frames at 480x832 take minutes and >10 GB on a CPU. Time 1 and 5 frames at `wan_size`
        # and extrapolate: the Wan VAE encodes the first frame alone, then 4-frame chunks of equal
        # work, and its cost is linear in the pixel count.
        h, w = wan_size
        scale = (480 * 832) / (h * w)
        progress(f"wan 2.1 VAE encode at {h}x{w}")
        one = median_seconds(lambda: vae.encode(torch.rand(1, h, w, 3)), 1, warmup=0)
        five = median_seconds(lambda: vae.encode(torch.rand(5, h, w, 3)), 1, warmup=0)
        out["wan 1x16x21x60x104"] = {"image": [81, 480, 832, 3], "source": source, "measured_at": [h, w],
                                     "seconds_1_frame": one, "seconds_5_frames": five,
                                     "seconds": (one + 20 * (five - one)) * scale, "extrapolated": True}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (CI smoke run)")
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="ComfyUI source folder")
    ap.add_argument("--no-encode", action="store_true", help="skip the VAE encode timings")
    ap.add_argument("--wan-size", default="240x416", help="HxW the Wan VAE encode is timed at (480x832 needs >10 GB)")
    ap.add_argument("--no-identity", action="store_true", help="skip the identity-after-restart timings")
    ap.add_argument("--redis-url", default=None, help="a Redis for the first-lookup timing (default: fakeredis)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # one core: the throughput target is per core
    cache = _import_cache()
    results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "cpu": platform.processor() or platform.machine(), "cuda": torch.cuda.is_available()}}
    progress("content keys")
    results["keys"] = bench_keys(cache, args.quick)
    progress("fingerprint")
    results["fingerprint"] = bench_fingerprint(cache, args.quick)
    progress("tiers")
    with tempfile.TemporaryDirectory(prefix="recall-bench-") as tmp:
        results["tiers"] = bench_tiers(cache, args.quick, Path(tmp))
    torch.set_num_threads(os.cpu_count() or 1)
    results["encode"] = {"skipped": "--no-encode"} if args.no_encode else bench_encode(
        args.comfyui, args.quick, tuple(int(v) for v in args.wan_size.split("x")))
    results["identity_restart"] = []
    if args.comfyui and not args.no_identity:
        use_comfyui(args.comfyui)
        results["identity_restart"] = bench_identity.bench_identity_restart(args.quick)
    progress("redis first lookup")
    results["redis_first_lookup"] = bench_identity.bench_redis_first_lookup(args.redis_url, args.quick)
    print_table(results)
    bench_identity.print_rows(results["identity_restart"], results["redis_first_lookup"])
    print(f"\nwritten: {write_results('cache', results, args.out)}")
    return 0


def print_table(r: dict) -> None:
    print("content_key (xxh3_128, one core)")
    for row in r["keys"]:
        print(f"  {'x'.join(map(str, row['shape'])):>16} float32 {row['bytes'] / 1e6:9.1f} MB  "
              f"{row['gb_per_s']:6.2f} GB/s  ({row['seconds'] * 1e3:8.2f} ms; non-contiguous "
              f"{row['non_contiguous_gb_per_s']:.2f} GB/s, VAE Decode layout)")
    fp = r["fingerprint"]
    print(f"fingerprint_tensors, {fp['params'] / 1e6:.1f}M fp32 params: {fp['seconds'] * 1e3:.1f} ms once per "
          f"model object; memoised lookup {fp['memoised_seconds'] * 1e6:.1f} us")
    enc = r["encode"]
    print(f"{'latent':>20} {'tier':>5} {'put ms':>9} {'get ms':>9} {'encode ms':>10} {'encode/get':>10}")
    for row in r["tiers"]:
        e = enc.get(row["latent"], {}).get("seconds")
        e_ms = f"{e * 1e3:10.1f}" if e else f"{'-':>10}"
        ratio = f"{e * 1e3 / row['get_ms']:9.0f}x" if e else f"{'-':>10}"
        print(f"{row['latent']:>20} {row['tier']:>5} {row['put_ms']:9.3f} {row['get_ms']:9.3f} {e_ms} {ratio}")
    wan_key = next((row for row in r["keys"] if row["shape"] == [81, 480, 832, 3]), None)
    wan_encode = enc.get("wan 1x16x21x60x104", {}).get("seconds")
    if wan_key:
        share = f", {wan_key['seconds'] / wan_encode * 100:.2g}% of its encode" if wan_encode else ""
        print(f"hashing a Wan 81x480x832 clip passed to vae.encode ({wan_key['bytes'] / 1e6:.0f} MB float32): "
              f"{wan_key['seconds'] * 1e3:.0f} ms{share}")
    if "skipped" in enc:
        print(f"encode times skipped: {enc['skipped']}")
    elif any(v.get("extrapolated") for v in enc.values() if isinstance(v, dict)):
        print("wan encode time extrapolated to 81x480x832 from 1- and 5-frame encodes at --wan-size")


if __name__ == "__main__":
    sys.exit(main())
