"""Scale benchmark: the disk tier at 1k-300k entries and the RAM tier at 100k, as a cache used for months.

    python -m bench.bench_scale [--quick] [--sizes 1000,10000,100000,300000] [--ram-size 100000] [--dir PATH]

Run from the repo root (any python with torch, safetensors and xxhash). Every disk size is filled
first, each in a fresh folder, with small entries (so the disk is not the limit); then puts go into
all the filled tiers in turn ("side by side": each size meets the same machine load, which is what
the per-put flatness goal compares). Per size, then: restart the tier with a cold
page cache (`echo 3 > /proc/sys/vm/drop_caches`, as root; reported when it cannot be done) and time
the first lookup (a hit) and the first miss, then steady lookups, puts that evict when the tier is
full, a statistics request and a miss explanation's recent labels; and the memory the restarted
tier's index takes (RSS growth: the index lives in SQLite, whose page cache is bounded). The RAM
tier is filled to the RAM size and measured the same way (its index memory by tracemalloc, not
counting the values or the keys and metas the store makes). Prints a table and the goals, and writes
bench/results/scale-<time>.json. --quick: 1k and 10k on disk, 10k in RAM.
"""
import argparse
import gc
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch

from .common import REPO, progress, register_pack, write_results

GOALS = {"first_get_ms_at_100k": 50.0, "put_flat_ratio": 2.0, "index_bytes_per_entry": 200.0}
RESTARTS = 3  # restarts per size; the median first lookup is reported (and the slowest)
TAIL = 1000  # the per-put cost at a size: the mean of the last TAIL puts of the fill
SIDE_PUTS = 1000  # puts per size, taken in turn across the filled tiers


def _value(i: int) -> dict:
    return {"samples": torch.full((16,), float(i % 977))}


def _meta(i: int):
    from recall_pack.cache.tier import EntryMeta
    return EntryMeta(0.5, time.time(), f"seed {i} steps 4", False)


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def drop_page_cache() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def _median_ms(fn, n: int) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def fill(tier, n: int) -> dict:
    tail = []
    start = time.perf_counter()
    for i in range(n):
        if i >= n - TAIL:
            t = time.perf_counter()
            tier.put("ns", f"key{i}", _value(i), meta=_meta(i))
            tail.append(time.perf_counter() - t)
        else:
            tier.put("ns", f"key{i}", _value(i), meta=_meta(i))
    total = time.perf_counter() - start
    return {"fill_s": total, "put_ms_mean": total / n * 1e3, "put_ms_at_size": statistics.fmean(tail) * 1e3,
            "puts_per_s": n / total}


def common_ops(tier, n: int, quick: bool) -> dict:
    rng = random.Random(1)
    reps = 100 if quick else 300
    out = {"steady_get_ms": _median_ms(lambda i: tier.get("ns", f"key{rng.randrange(n)}"), reps),
           "stats_ms": _median_ms(lambda i: tier.stats(), 20),
           "recent_labels_ms": _median_ms(lambda i: tier.labels("ns", 64), 20)}
    used = sum(s.bytes for s in tier.stats().values())
    tier.configure(max_bytes=used)  # full: every further put evicts the least recently used
    before = tier.stats()["ns"].evictions
    out["put_full_ms"] = _median_ms(lambda i: tier.put("ns", f"new{i}", _value(i), meta=_meta(i)), reps)
    out["evicted"] = tier.stats()["ns"].evictions - before
    out["bytes_after"] = sum(s.bytes for s in tier.stats().values())
    out["cap_held"] = out["bytes_after"] <= used
    return out


def fill_disk(n: int, base: Path) -> tuple[Path, dict]:
    from recall_pack.cache.disk import DiskTier
    root = Path(tempfile.mkdtemp(prefix=f"scale-{n}-", dir=base))
    progress(f"disk: filling {n:,} entries")
    tier = DiskTier("disk", root, 2**40)
    row = {"tier": "disk", "entries": n, **fill(tier, n)}
    tier.close()
    db = root / "v1" / "index.sqlite3"
    row["index_file_bytes_per_entry"] = sum(p.stat().st_size for p in db.parent.glob("index.sqlite3*")) / n
    return root, row


def puts_side_by_side(roots: dict[int, Path], reps: int) -> dict[int, dict]:
    """Puts into every filled tier in turn, so each size meets the same load: the machine's
    load over a long fill cannot pass for a cost of the size. The entries are removed after."""
    from recall_pack.cache.disk import DiskTier
    progress(f"disk: {reps} puts side by side into the {len(roots)} filled tiers")
    tiers = {n: DiskTier("disk", root, 2**40) for n, root in roots.items()}
    times: dict[int, list] = {n: [] for n in tiers}
    try:
        for r in range(reps):
            for n, tier in tiers.items():
                t = time.perf_counter()
                tier.put("ns", f"side{r}", _value(r), meta=_meta(r))
                times[n].append(time.perf_counter() - t)
        for tier in tiers.values():
            for r in range(reps):
                tier.delete("ns", f"side{r}")
    finally:
        for tier in tiers.values():
            tier.close()
    return {n: {"put_side_ms_median": statistics.median(ts) * 1e3, "put_side_ms_mean": statistics.fmean(ts) * 1e3}
            for n, ts in times.items()}


def bench_disk(n: int, root: Path, row: dict, quick: bool) -> dict:
    """Restarts of a filled tier with a cold page cache, then its steady operations."""
    from recall_pack.cache.disk import DiskTier
    try:
        rng = random.Random(2)
        firsts, misses, dropped = [], [], []
        for _ in range(RESTARTS):  # each: a new tier over the same folder, the page cache dropped first
            dropped.append(drop_page_cache())
            t = time.perf_counter()
            tier = DiskTier("disk", root, 2**40)
            miss = tier.get("ns", "never stored")
            misses.append((time.perf_counter() - t) * 1e3)
            tier.close()
            assert miss is None
        for _ in range(RESTARTS):
            dropped.append(drop_page_cache())
            gc.collect()
            rss0 = _rss()
            t = time.perf_counter()
            tier = DiskTier("disk", root, 2**40)
            hit = tier.get("ns", f"key{rng.randrange(n)}")
            firsts.append((time.perf_counter() - t) * 1e3)
            assert hit is not None
            if len(firsts) < RESTARTS:
                tier.close()
        row["page_cache_dropped"] = all(dropped)
        row["first_get_ms"], row["first_get_ms_max"] = statistics.median(firsts), max(firsts)
        row["first_miss_ms"] = statistics.median(misses)
        row.update(common_ops(tier, n, quick))
        row["index_bytes_per_entry"] = max(0, _rss() - rss0) / n
        tier.close()
        return row
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench_ram(n: int, quick: bool) -> dict:
    from recall_pack.cache.memory import MemoryTier
    progress(f"ram: filling {n:,} entries")
    tier = MemoryTier("ram", 2**40)
    row = {"tier": "ram", "entries": n, **fill(tier, n)}
    row.update({"first_get_ms": None, "first_miss_ms": None, "index_file_bytes_per_entry": None})
    row.update(common_ops(tier, n, quick))
    # the index's own memory: values shared (one tensor), keys made before tracing (the caller's)
    # (the store makes the key and the meta of every entry whatever the tier; the RAM tier's 30-minute TTL is on)
    value, keys, metas = _value(0), [f"key{i}" for i in range(n)], [_meta(i) for i in range(n)]
    tier = MemoryTier("ram", 2**40, ttl_seconds=1800)
    gc.collect()
    tracemalloc.start()
    for key, meta in zip(keys, metas):
        tier.put("ns", key, value, meta=meta)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    row["index_bytes_per_entry"] = current / n
    return row


def _fmt(v, unit="") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.3g}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def print_table(rows: list[dict], goals: dict) -> None:
    cols = [("tier", "tier", ""), ("entries", "entries", ""), ("put_ms_mean", "put, fill mean", " ms"),
            ("put_ms_at_size", f"put at size (last {TAIL})", " ms"),
            ("put_side_ms_mean", "put side by side, mean", " ms"), ("put_side_ms_median", "put side by side, median", " ms"),
            ("first_get_ms", "first get after restart", " ms"),
            ("first_miss_ms", "first miss after restart", " ms"), ("steady_get_ms", "steady get", " ms"),
            ("put_full_ms", "put when full (evicts)", " ms"), ("stats_ms", "stats", " ms"),
            ("recent_labels_ms", "recent labels", " ms"), ("index_bytes_per_entry", "index memory B/entry", ""),
            ("index_file_bytes_per_entry", "index file B/entry", "")]
    print("| " + " | ".join(c[1] for c in cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(_fmt(r.get(c[0]), c[2]) for c in cols) + " |")
    print()
    for name, g in goals.items():
        print(f"goal {name}: {g['value'] if g['value'] is None else round(g['value'], 3)} "
              f"(limit {g['limit']}) -> {'met' if g['met'] else 'NOT met' if g['met'] is False else 'not measured'}")


def evaluate(rows: list[dict]) -> dict:
    disk = {r["entries"]: r for r in rows if r["tier"] == "disk"}
    at100k = disk.get(100_000)
    per_put = [r["put_side_ms_mean"] for r in disk.values()]
    ratio = max(per_put) / min(per_put) if len(per_put) > 1 else None
    mem = max((r["index_bytes_per_entry"] for r in rows if r["entries"] >= 10_000), default=None)

    def goal(value, limit):
        return {"value": value, "limit": limit, "met": None if value is None else value <= limit}
    return {"first_get_ms_at_100k": goal(at100k and at100k["first_get_ms"], GOALS["first_get_ms_at_100k"]),
            "put_flat_ratio": goal(ratio, GOALS["put_flat_ratio"]),
            "index_bytes_per_entry": goal(mem, GOALS["index_bytes_per_entry"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1k and 10k on disk, 10k in RAM")
    ap.add_argument("--sizes", help="comma list of disk sizes (default 1000,10000,100000,300000)")
    ap.add_argument("--ram-size", type=int, help="entries in the RAM tier (default 100000)")
    ap.add_argument("--dir", type=Path, help="folder for the disk tiers (default: the system temp folder)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    register_pack()
    torch.set_num_threads(1)
    sizes = [int(s) for s in (args.sizes or ("1000,10000" if args.quick else "1000,10000,100000,300000")).split(",")]
    ram_size = args.ram_size or (10_000 if args.quick else 100_000)
    filled = {n: fill_disk(n, args.dir) for n in sizes}
    side = puts_side_by_side({n: root for n, (root, _) in filled.items()}, SIDE_PUTS // (4 if args.quick else 1))
    rows = [bench_disk(n, root, {**row, **side[n]}, args.quick) for n, (root, row) in filled.items()]
    if ram_size > 0:
        rows.append(bench_ram(ram_size, args.quick))
    goals = evaluate(rows)
    print_table(rows, goals)
    results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "cpus": os.cpu_count(), "platform": platform.platform()},
               "argv": sys.argv[1:], "rows": rows, "goals": goals}
    print(f"\nwrote {write_results('scale', results, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
