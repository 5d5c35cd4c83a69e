"""The live benchmark's table (markdown, printed) and JSON file."""
import statistics


def fmt(value, digits=2, unit=""):
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def hit_rate(row: dict) -> str:
    total = row["hits"] + row["misses"]
    return "-" if row["arm"] == "core" or total == 0 else f"{row['hits']}/{total}"


def run_table(rows: list) -> str:
    lines = ["| scenario | arm | phase | run | image | change | wall s | encode s | hits | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['arm']} | {r['phase']} | {r['run']} | {r['image_label']} | {r['change']} "
                     f"| {fmt(r['wall_s'])} | {fmt(r['encode_s'])} | {hit_rate(r)} | {fmt(r['peak_rss_mb'], 0)} |")
    return "\n".join(lines)


def summary_table(rows: list) -> str:
    """Per scenario and arm: first run, mean of the repeats, alternation, after restart."""
    header = ("| scenario | arm | run 1 wall s | runs 2..N wall s (mean) | encode s, runs 2..N (mean) "
              "| alternation C,D,C,D wall s | after restart wall s | hit rate | peak RSS MB (max) |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["scenario"], r["arm"]) for r in rows}, key=lambda k: (k[0], k[1] != "core"))
    for scenario, arm in keys:
        mine = [r for r in rows if r["scenario"] == scenario and r["arm"] == arm]
        same = [r for r in mine if r["phase"] == "same image"]
        alt = [r for r in mine if r["phase"] == "alternate"]
        restart = [r for r in mine if r["phase"] == "restart"]
        rest = same[1:]
        hits = sum(r["hits"] for r in mine)
        total = hits + sum(r["misses"] for r in mine)
        rate = "-" if arm == "core" or not total else f"{100 * hits / total:.0f}% ({hits}/{total})"
        rss = [r["peak_rss_mb"] for r in mine if r["peak_rss_mb"] is not None]
        lines.append(
            f"| {scenario} | {arm} | {fmt(same[0]['wall_s']) if same else '-'} "
            f"| {fmt(statistics.mean(r['wall_s'] for r in rest)) if rest else '-'} "
            f"| {fmt(statistics.mean(r['encode_s'] for r in rest), 3) if rest else '-'} "
            f"| {' / '.join(fmt(r['wall_s']) for r in alt) or '-'} "
            f"| {fmt(restart[0]['wall_s']) if restart else '-'} | {rate} | {fmt(max(rss), 0) if rss else '-'} |")
    return "\n".join(lines)
