"""Near-match benchmark: lookup cost at 10k and 100k indexed entries, false hits, PSNR of JPEG re-saves.

    python -m bench.bench_near [--quick] [--sizes 10000,100000] [--pairs 3000]

Run from the repo root (any python with torch, xxhash and Pillow). Three parts:
- lookup cost: a near index in SQLite (in a temporary folder) holding N entries of ONE group
  (the worst case: every entry a candidate group member) with random hashes, plus one true near
  duplicate; the median time of the index probe for a query that matches nothing, and of a whole
  verified near hit (probe + thumbnail read from the RAM tier + PSNR + value read); and the time to
  hash and thumbnail a 512x512 query image.
- false hits: `--pairs` distinct random photo-like images stored, as many other distinct images
  looked up (each query against every stored image of its group), and the same number of
  same-hash impostors (a brightness shift keeps the difference hash bit for bit): hits must be 0.
- JPEG re-saves: PSNR of the thumbnails of an image and its JPEG round trip at q95/q90/q75, at
  256 and 512 pixels, and whether each preset (40/45/50 dB) accepts it.
Prints a table and the goals, and writes bench/results/near-<time>.json. --quick: 10k entries,
300 pairs, 256 px only.
"""
import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from .common import REPO, load_support, progress, register_pack

GOALS = {"lookup_ms_at_100k": 2.0, "false_hits": 0}
GROUP = "bench-group"


def _ms(samples: list) -> float:
    return round(statistics.median(samples) * 1000, 4)


def lookup_cost(size: int, folder: Path, probes: int = 300) -> dict:
    from recall_pack.cache.memory import MemoryTier
    from recall_pack.cache.near import NearMatcher, NearQuery
    from recall_pack.cache.near_index import NearIndex
    from recall_pack.cache.perceptual import dhash, thumbnail
    from recall_pack.cache.store import TieredStore
    images = load_support("near_images")

    rng = random.Random(size)
    index = NearIndex(folder / f"near-{size}.sqlite")
    start = time.perf_counter()
    batch = []
    for i in range(size):
        batch.append((GROUP, f"k{i}", rng.getrandbits(64)))
        if len(batch) == 10_000:
            index.add_many(batch)
            batch = []
    index.add_many(batch)
    fill_s = time.perf_counter() - start
    store = TieredStore([MemoryTier("ram", 2**30, None, None)], background_writes=False)
    matcher = NearMatcher(index)
    png = images.photo(1, (512, 512))
    store.put("true-near", {"samples": torch.randn(1, 4, 64, 64)})
    matcher.remember(store, NearQuery(GROUP, "true-near", dhash(png), thumbnail(png), 45.0), namespace="shared")

    jpg = images.jpeg_round_trip(png, 95)
    hit_query = NearQuery(GROUP, "query", dhash(jpg), thumbnail(jpg), 45.0)
    miss_probe, hit_lookup, describe = [], [], []
    for _ in range(probes):
        h = rng.getrandbits(64)
        t0 = time.perf_counter()
        index.candidates(GROUP, h, 7)
        miss_probe.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        found = matcher.find(store, hit_query, namespace="shared")
        hit_lookup.append(time.perf_counter() - t0)
        assert found is not None and found.key == "true-near"
    for _ in range(min(probes, 50)):
        t0 = time.perf_counter()
        dhash(jpg), thumbnail(jpg)
        describe.append(time.perf_counter() - t0)
    band_rows = len(index.candidates(GROUP, hit_query.dhash, 7))
    out = {"entries": len(index), "fill_s": round(fill_s, 2), "probe_ms": _ms(miss_probe),
           "probe_p99_ms": round(sorted(miss_probe)[int(0.99 * len(miss_probe))] * 1000, 4),
           "verified_hit_ms": _ms(hit_lookup), "hash_and_thumb_512_ms": _ms(describe),
           "candidates_in_radius": band_rows, "thumb_bytes": thumbnail(png).numel() * 2}
    index.close()
    store.close()
    return out


def false_hits(pairs: int, side: int) -> dict:
    from recall_pack.cache.memory import MemoryTier
    from recall_pack.cache.near import NearMatcher, NearQuery
    from recall_pack.cache.near_index import NearIndex
    from recall_pack.cache.perceptual import dhash, hamming, thumbnail
    from recall_pack.cache.store import TieredStore
    images = load_support("near_images")

    store = TieredStore([MemoryTier("ram", 2**33, None, None)], background_writes=False)
    matcher = NearMatcher(NearIndex(None))
    stored = []
    for i in range(pairs):
        img = images.photo(10_000 + i, (side, side))
        q = NearQuery(GROUP, f"s{i}", dhash(img), thumbnail(img), 40.0)  # the loosest preset
        store.put(q.key, {"samples": torch.zeros(1)})
        matcher.remember(store, q, namespace="shared")
        stored.append((img, q))
    random_hits = 0
    for i in range(pairs):
        img = images.photo(50_000 + i, (side, side))
        if matcher.find(store, NearQuery(GROUP, f"q{i}", dhash(img), thumbnail(img), 40.0), namespace="shared"):
            random_hits += 1
    reached = matcher.stats()["rejected"]
    impostor_hits = same_hash = 0
    for i, (img, q) in enumerate(stored):
        other = images.brighter(img)
        h = dhash(other)
        same_hash += h == q.dhash
        if matcher.find(store, NearQuery(GROUP, f"b{i}", h, thumbnail(other), 40.0), namespace="shared"):
            impostor_hits += 1
    # pairs of distinct images whose hashes are close enough to be verified at all
    hashes = [q.dhash for _, q in stored]
    close = sum(1 for a in range(len(hashes)) for b in range(a + 1, min(len(hashes), a + 200))
                if hamming(hashes[a], hashes[b]) <= 7)
    store.close()
    return {"side": side, "pairs": pairs, "random_hits": random_hits, "random_verified": reached,
            "impostors": pairs, "impostors_same_hash": same_hash, "impostor_hits": impostor_hits,
            "stored_close_hash_pairs_of_200_window": close}


def jpeg_psnr(sides: list) -> list:
    from recall_pack.cache.perceptual import dhash, hamming, psnr, thumbnail
    images = load_support("near_images")
    rows = []
    for side in sides:
        for quality in (95, 90, 75):
            dbs, dists = [], []
            for seed in range(5):
                png = images.photo(seed, (side, side))
                jpg = images.jpeg_round_trip(png, quality)
                dbs.append(psnr(thumbnail(png), thumbnail(jpg)))
                dists.append(hamming(dhash(png), dhash(jpg)))
            full = psnr(images.photo(0, (side, side)).half(), images.jpeg_round_trip(images.photo(0, (side, side)),
                                                                                      quality).half())
            rows.append({"side": side, "quality": quality, "thumb_psnr_min": round(min(dbs), 1),
                         "thumb_psnr_max": round(max(dbs), 1), "full_psnr": round(full, 1),
                         "hash_distance_max": max(dists),
                         "accepted_at": [db for db in (40, 45, 50) if min(dbs) >= db]})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default=None)
    parser.add_argument("--pairs", type=int, default=None)
    args = parser.parse_args(argv)
    register_pack()
    torch.set_num_threads(1)  # lookups run on one thread in the server; so does the measurement
    sizes = [int(s) for s in (args.sizes or ("10000" if args.quick else "10000,100000")).split(",")]
    pairs = args.pairs or (300 if args.quick else 3000)
    with tempfile.TemporaryDirectory() as tmp:
        lookups = []
        for size in sizes:
            progress(f"lookup cost at {size} entries")
            lookups.append(lookup_cost(size, Path(tmp)))
    progress(f"false hits over {pairs} random pairs and {pairs} same-hash impostors")
    false = false_hits(pairs, 128 if args.quick else 256)
    progress("JPEG re-saves")
    jpegs = jpeg_psnr([256] if args.quick else [256, 512])

    print("| entries | index probe (median / p99) | verified near hit | hash + thumbnail of a 512² query |")
    print("|---|---|---|---|")
    for row in lookups:
        print(f"| {row['entries']:,} | {row['probe_ms']} / {row['probe_p99_ms']} ms | {row['verified_hit_ms']} ms "
              f"| {row['hash_and_thumb_512_ms']} ms |")
    print(f"\nfalse hits: {false['random_hits']} of {false['pairs']} random pairs "
          f"({false['random_verified']} reached verification); {false['impostor_hits']} of {false['impostors']} "
          f"same-hash impostors ({false['impostors_same_hash']} with an identical hash)")
    print("\n| image | JPEG quality | thumbnail PSNR (min-max of 5) | full-size PSNR | hash bits apart | presets that accept |")
    print("|---|---|---|---|---|---|")
    for row in jpegs:
        print(f"| {row['side']}² | q{row['quality']} | {row['thumb_psnr_min']}-{row['thumb_psnr_max']} dB "
              f"| {row['full_psnr']} dB | {row['hash_distance_max']} | {row['accepted_at'] or 'none'} |")
    at_100k = next((r for r in lookups if r["entries"] >= 100_000), None)
    goals = {"false_hits": false["random_hits"] + false["impostor_hits"]}
    if at_100k:
        goals["lookup_ms_at_100k"] = at_100k["verified_hit_ms"]
    print("\ngoals:", ", ".join(f"{k} {v} (goal {'≤' if k.endswith('ms_at_100k') else '='} {GOALS[k]})"
                                for k, v in goals.items()))
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"near-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": platform.platform(), "python": sys.version.split()[0],
                                "lookups": lookups, "false_hits": false, "jpeg": jpegs, "goals": goals},
                               indent=2) + "\n", encoding="utf-8")
    progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
