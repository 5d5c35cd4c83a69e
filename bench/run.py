"""Core nodes vs Recall nodes, side by side, in a real ComfyUI server.

    python -m bench                      # sets up / starts ComfyUI itself, random-weight models
    python -m bench --url http://127.0.0.1:8188 --clip-vision clip_vision_h.safetensors ...

Per scenario (svd, wan) and arm (core, recall), on one server, after one untimed warm-up run
that loads the models (on another image):
  same image  N runs of image A, each with a changed frame count (svd) / prompt (wan)
  alternate   images C, D, C, D (new to both arms)
  restart     the server is restarted (RAM empty, the disk tier kept) and image A runs once more,
              one restart per arm (only when the benchmark started the server itself)
Per run: wall time (post to the end of the prompt), encode time (seconds between the
"executing" message of each encode-bearing node and the next message of the run), Recall's
hits / misses (its "recall.node" events), and the server's peak RSS during the run (VmHWM,
reset before each run through /proc/<pid>/clear_refs).
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from . import graphs, report, server_stats
from .harness import comfy_env
from .harness.comfy_client import write_input_image
from .harness.comfy_server import prepare_base_dir, start_server
from .harness.make_models import MODELS as STANDIN_FILES
from .harness.workflow_convert import combo_choices
from .common import RESULTS, write_results

DISTRIBUTED = {"svd_checkpoint": ("ImageOnlyCheckpointLoader", "ckpt_name", ("svd_xt.safetensors", "svd.safetensors")),
               "clip_vision": ("CLIPVisionLoader", "clip_name", ("clip_vision_h.safetensors",)),
               "wan_vae": ("VAELoader", "vae_name", ("wan_2.1_vae.safetensors",)),
               "text_encoder": ("CLIPLoader", "clip_name", ("umt5_xxl_fp8_e4m3fn_scaled.safetensors",))}
FOLDERS = {"svd_checkpoint": "checkpoints", "checkpoint": "checkpoints", "clip_vision": "clip_vision",
           "svd_vae": "vae", "wan_vae": "vae", "text_encoder": "text_encoders"}
OPTION = {"svd_vae": "--vae"}
STANDINS = {"clip_vision": "clip_vision", "svd_vae": "sd15_vae", "wan_vae": "wan21_vae", "checkpoint": "sd15_checkpoint"}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--url", help="a running ComfyUI with the pack installed (else one is started)")
    p.add_argument("--comfyui", help="ComfyUI source tree to start (default $COMFYUI_PATH, else the ComfyUI "
                                     "whose custom_nodes/ holds the pack, else the newest release set up in "
                                     "~/.cache/comfyui-recall by bench/harness/setup_releases.sh)")
    p.add_argument("--runs", type=int, default=5, help="runs of the same image per arm (default 5)")
    p.add_argument("--scenarios", default="svd,wan", help="comma list of svd, wan (default both)")
    p.add_argument("--width", type=int, default=256, help="SVD width and height (default 256)")
    p.add_argument("--wan-size", type=int, default=128, help="Wan width and height (default 128)")
    p.add_argument("--frames", type=int, default=9, help="Wan length / first SVD frame count (default 9)")
    p.add_argument("--no-restart", action="store_true", help="skip the restart phase")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON")
    models = p.add_argument_group("model files (a file name the server lists, or a path when the benchmark "
                                  "starts the server; unnamed ones: the distributed name if the server has "
                                  "it, else a random-weight stand-in)")
    models.add_argument("--svd-checkpoint", help="e.g. svd_xt.safetensors (CLIP vision + VAE for svd)")
    models.add_argument("--clip-vision", help="e.g. clip_vision_h.safetensors")
    models.add_argument("--vae", dest="svd_vae", help="VAE for svd when there is no --svd-checkpoint")
    models.add_argument("--wan-vae", help="e.g. wan_2.1_vae.safetensors")
    models.add_argument("--text-encoder", help="umt5 for wan, e.g. umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    models.add_argument("--checkpoint", help="a checkpoint whose CLIP encodes the wan prompt without --text-encoder")
    return p.parse_args(argv)


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Target:
    """The server under test: ours (started here, restartable, pid known) or the user's (--url)."""

    def __init__(self, args):
        self.args, self.server, self.pid = args, None, None
        self.install = None
        self.named_paths = {k: Path(v) for k in FOLDERS if (v := getattr(args, k)) and Path(v).exists()}

    def start(self) -> str:
        if self.args.url:
            self.pid = server_stats.pid_for_url(self.args.url)
            say(f"using the running ComfyUI at {self.args.url} (pid {self.pid or 'unknown: no peak RSS'})")
            return self.args.url
        if self.args.comfyui:
            os.environ["COMFYUI_PATH"] = self.args.comfyui
        say("finding ComfyUI (COMFYUI_PATH, else the ComfyUI holding the pack, else the newest release in the "
            "test cache)...")
        self.install, why = comfy_env.find_comfyui(build=True)
        if self.install is None:
            raise SystemExit(f"[bench] {why}")
        say(f"{self.install}; building random-weight stand-ins if missing...")
        standins = comfy_env.ensure_models(self.install)
        base = Path(tempfile.mkdtemp(prefix="recall-bench-"))
        prepare_base_dir(base, standins)
        for key, path in self.named_paths.items():  # the user's real files, linked in under their names
            link = base / "models" / FOLDERS[key] / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path.resolve())
        say(f"starting ComfyUI in {base} ...")
        self.server = start_server(self.install.path, self.install.python, base)
        self.pid = self.server.process.pid
        say(f"ComfyUI up in {self.server.startup_s:.1f} s at {self.server.url} (log {self.server.log_path})")
        return self.server.url

    def restart(self) -> str:
        self.server.restart()
        self.pid = self.server.process.pid
        say(f"restarted in {self.server.startup_s:.1f} s (RAM tier empty, disk tier kept)")
        return self.server.url

    def stop(self):
        if self.server:
            self.server.stop()


def choose_models(args, object_info: dict) -> graphs.Models:
    """The user's files where named or present under their distributed names, stand-ins otherwise."""
    def listed(node, field):
        spec = object_info.get(node, {}).get("input", {}).get("required", {}).get(field)
        return set(combo_choices(spec)) if spec else set()
    chosen, standin = {}, []
    for key in FOLDERS:
        value = getattr(args, key)
        if value:
            chosen[key] = Path(value).name
        elif key in DISTRIBUTED:
            node, field, names = DISTRIBUTED[key]
            found = [n for n in names if n in listed(node, field)]
            if found:
                chosen[key] = found[0]
    stand_names = {k: STANDIN_FILES[v][1] for k, v in STANDINS.items()}
    for key, name in stand_names.items():
        needed = key not in chosen and not (key == "svd_vae" and "svd_checkpoint" in chosen) \
            and not (key == "checkpoint" and "text_encoder" in chosen)
        if needed:
            if name not in listed(*_LISTS[FOLDERS[key]]):
                raise SystemExit(f"[bench] no model for {key}: name one with {OPTION.get(key, '--' + key.replace('_', '-'))} "
                                 f"(the server has no random-weight stand-in {name})")
            chosen[key] = name
            standin.append(key)
    return graphs.Models(**chosen, standin=tuple(standin))


_LISTS = {"checkpoints": ("CheckpointLoaderSimple", "ckpt_name"), "clip_vision": ("CLIPVisionLoader", "clip_name"),
          "vae": ("VAELoader", "vae_name"), "text_encoders": ("CLIPLoader", "clip_name")}


def timed_run(client, graph: dict, pid, scenario: str) -> dict:
    server_stats.reset_peak_rss(pid)
    result = client.run_prompt(graph, timeout_s=1800)
    if not result.ok:
        raise SystemExit(f"[bench] the {scenario} graph failed: {result.errors}")
    events = result.events("recall.node")
    encode = sum(result.node_seconds.get(n, 0.0) for n in graphs.ENCODE_NODES[scenario])
    return {"wall_s": result.wall_s, "encode_s": encode, "node_s": result.node_seconds,
            "hits": sum(e["status"] == "hit" for e in events), "misses": sum(e["status"] == "miss" for e in events),
            "recall_events": events, "executed": result.executed, "peak_rss_mb": server_stats.peak_rss_mb(pid)}


def plan(runs: int) -> list:
    """(phase, image label, run index) in order; the restart phase is run separately."""
    return [("same image", "A", i) for i in range(runs)] + [("alternate", label, i)
                                                           for i, label in enumerate("CDCD", start=runs)]


def graph_for(scenario, arm, models, image, args, index):
    if scenario == "svd":
        return graph_for_svd(arm, models, image, args, index), f"frames={args.frames + index}"
    prompt = graphs.PROMPTS[index % len(graphs.PROMPTS)]
    return graphs.wan_graph(arm, models, image, args.wan_size, args.wan_size, args.frames, prompt), f"prompt #{index}"


def graph_for_svd(arm, models, image, args, index):
    return graphs.svd_graph(arm, models, image, args.width, args.width, args.frames + index)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    target = Target(args)
    rows, warmup = [], []
    try:
        url = target.start()
        client = server_stats.TimedClient(url)
        models = choose_models(args, client.object_info())
        say(f"models: {models}")
        if models.standin:
            say(f"RANDOM-WEIGHT STAND-INS for {', '.join(models.standin)}: timings show the cache, not real "
                f"model quality (name real files with --clip-vision, --vae, --wan-vae, ...)")
        images = upload_images(client, args, target)
        total = len(scenarios) * 2 * (args.runs + 4)
        warmup = warm_up(client, scenarios, models, images, args)
        for scenario in scenarios:
            for arm in ("core", "recall"):
                for phase, label, index in plan(args.runs):
                    graph, change = graph_for(scenario, arm, models, images[(scenario, label)], args, index)
                    row = {"scenario": scenario, "arm": arm, "phase": phase, "run": index + 1, "image_label": label,
                           "change": change, **timed_run(client, graph, target.pid, scenario)}
                    rows.append(row)
                    say(f"{len(rows)}/{total} {scenario} {arm:6} {phase} {label} {change}: wall {row['wall_s']:.2f} s, "
                        f"encode {row['encode_s']:.2f} s, hits {row['hits']}/{row['hits'] + row['misses']}")
        if target.server and not args.no_restart:
            # One restart per arm, so each arm's first run after it pays its own model loading.
            for arm in ("core", "recall"):
                client = server_stats.TimedClient(target.restart())
                for scenario in scenarios:
                    index = args.runs + 4
                    graph, change = graph_for(scenario, arm, models, images[(scenario, "A")], args, index)
                    row = {"scenario": scenario, "arm": arm, "phase": "restart", "run": index + 1, "image_label": "A",
                           "change": change, **timed_run(client, graph, target.pid, scenario)}
                    rows.append(row)
                    say(f"restart {scenario} {arm:6}: wall {row['wall_s']:.2f} s, encode {row['encode_s']:.2f} s, "
                        f"hits {row['hits']}/{row['hits'] + row['misses']}")
        elif not target.server:
            say("restart phase skipped: the server at --url is not ours to restart")
    finally:
        target.stop()
    print("\n" + report.summary_table(rows) + "\n\n" + report.run_table(rows) + "\n")
    meta = {"warmup": warmup, "comfyui": str(target.install) if target.install else args.url, "args": {k: str(v) for k, v in
            vars(args).items()}, "models": vars(models), "encode_nodes": graphs.ENCODE_NODES}
    path = write_results("live", {"meta": meta, "runs": rows}, args.out)
    print(f"results: {path}")
    return 0


def upload_images(client, args, target) -> dict:
    """One image per (scenario, label), distinct pixels, uploaded through /upload/image."""
    images = {}
    with tempfile.TemporaryDirectory() as tmp:
        for s_index, scenario in enumerate(("svd", "wan")):
            size = args.width if scenario == "svd" else args.wan_size
            for l_index, label in enumerate("ACDW"):
                name = write_input_image(Path(tmp), f"recall_bench_{scenario}_{label}.png", size, size,
                                         seed=9000 + 10 * s_index + l_index + int(time.time()) % 1000 * 100)
                images[(scenario, label)] = client.upload_image(Path(tmp) / name)
    return images


def warm_up(client, scenarios, models, images, args) -> list:
    """One untimed core run per scenario on its own image (W): models get loaded before either arm's
    run 1, so run 1 compares encoding, not file loading. ComfyUI keeps the loader nodes for both arms."""
    out = []
    for scenario in scenarios:
        graph, _ = graph_for(scenario, "core", models, images[(scenario, "W")], args, 0)
        result = client.run_prompt(graph, timeout_s=1800)
        if not result.ok:
            raise SystemExit(f"[bench] the {scenario} warm-up run failed: {result.errors}")
        out.append({"scenario": scenario, "wall_s": result.wall_s})
        say(f"warm-up {scenario} (loads the models, not in the table): {result.wall_s:.2f} s")
    return out
