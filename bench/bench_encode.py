"""Cached encoding benchmark: core ComfyUI nodes vs Recall nodes side by side, in-process.

    COMFYUI_PATH=... <ComfyUI venv>/bin/python -m bench.bench_encode [--quick] [--runs 5]

Run from the repo root with ComfyUI's venv. Uses the harness's random-weight model files
(~/.cache/comfyui-recall/models-v1; build them with bench/harness/make_models.py).

Scenarios (the same image N times, in-process, models loaded once as ComfyUI's loader cache would):
  svd  SVD_img2vid_Conditioning, video_frames changed every run (14, 16, 18, ...)
  wan  CLIPTextEncode + WanImageToVideo, the prompt changed every run
Arms: core (the core nodes, plain encoders), recall (the Recall drop-in nodes), wrapped (the
core nodes with encoders wrapped as the Recall VAE / CLIP Vision / CLIP nodes hand them on).
Each (scenario, arm) runs in its own child process, so peak RSS is per arm. Per run:
  encode_s  seconds inside the encoders' torch modules (VAE first stage, CLIP-vision model)
  run_s     seconds for the run's conditioning graph (text encode + conditioning node)
The sampler is left out: it is the same in both arms and would take minutes per run on a CPU.
After the N runs the Recall arm "restarts" (a new store over the same disk folder) and runs once more.
A last child measures what a miss costs over the core node (VAE Encode at 512^2, every run a new
image, hashing included; drop-in and wrapped VAE) and what fingerprinting the SD VAE costs once
per loaded model.
Writes bench/results/encode-<time>.json.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .common import REPO, run_v3_node, use_comfyui, write_results
MODELS = Path(os.environ.get("RECALL_TEST_CACHE") or Path.home() / ".cache" / "comfyui-recall") / "models-v1"
FILES = {"sd15_vae": "vae/recall_test_sd15_vae.safetensors", "wan21_vae": "vae/recall_test_wan21_vae.safetensors",
         "clip_vision": "clip_vision/recall_test_clip_vision_vit_l14.safetensors",
         "sd15_checkpoint": "checkpoints/recall_test_sd15.safetensors"}
PROMPTS = ["a red fox in the snow", "a red fox running through snow", "a fox at dusk, cinematic",
           "a fox looking back, slow motion", "a fox in a snowy forest, wide shot", "a fox, close up"]


# --- child side: one (scenario, arm) in a fresh process ---------------------------------------

def _setup(comfyui: str):
    use_comfyui(comfyui)
    import folder_paths
    for folder in ("vae", "clip_vision", "checkpoints"):
        folder_paths.add_model_folder_path(folder, str(MODELS / folder))


class Recall:
    """A real TieredStore (RAM + disk in a temp folder) installed as the nodes' runtime.

    Every Recall made in a child is undone by Recall.undo_all() (the runtime and the UI
    event sender it replaced are put back), which the child entry point calls on its way out."""

    _undo: list = []

    def __init__(self, disk: Path):
        from recall_pack.cache.config import CacheConfig, build_store
        from recall_pack.nodes import events, runtime
        self.disk, self.reports = disk, []
        self.config = CacheConfig(disk_dir=str(disk))
        self.build = lambda: build_store(self.config, disk_dir=disk)
        self.store = self.build()
        self._runtime, self._events = runtime, events
        previous_send = events._send
        previous = runtime.install(self._make_runtime())
        events._send = lambda name, payload: self.reports.append(payload)
        Recall._undo.append(lambda: (runtime.install(previous), setattr(events, "_send", previous_send)))

    def _make_runtime(self):
        return self._runtime.Runtime(self.config, self.store, namespace=lambda: "bench")

    def restart(self):
        self.store.flush()
        self.store.close()
        self.store = self.build()
        self._runtime.install(self._make_runtime())

    @classmethod
    def undo_all(cls) -> None:
        while cls._undo:
            cls._undo.pop()()


class EncodeClock:
    """Seconds spent inside the encoders' torch modules (wraps those modules' methods).

    Not the VAE object's own encode: an instance attribute set on a loaded VAE would also
    shadow the wrapped VAE's encode (the two share their attributes)."""

    def __init__(self, *objects_and_methods):
        self.seconds = 0.0
        for obj, name in objects_and_methods:
            original = getattr(obj, name)
            setattr(obj, name, self._timed(original))

    def _timed(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def _image(width: int, height: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((1, height, width, 3), generator=torch.Generator().manual_seed(seed))


def _run_node(node_cls, **inputs):
    return run_v3_node(node_cls, "bench", **inputs)


def _encoders(arm: str, *encoders):
    """The encoders as the arm hands them to the core node (wrapped in the wrapped arm)."""
    if arm != "wrapped":
        return encoders
    from recall_pack.nodes.encoder_wrap import wrap
    return tuple(wrap(e) for e in encoders)


def child_svd(arm: str, args) -> dict:
    import nodes
    from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning
    clip_vision = nodes.CLIPVisionLoader().load_clip(Path(FILES["clip_vision"]).name)[0]
    vae = nodes.VAELoader().load_vae(Path(FILES["sd15_vae"]).name)[0]
    clock = EncodeClock((vae.first_stage_model, "encode"), (clip_vision.model, "forward"))
    init = _image(args.svd_size, args.svd_size)
    recall = Recall(Path(args.tmp)) if arm != "core" else None
    given_vision, given_vae = _encoders(arm, clip_vision, vae)

    def once(frames):
        common = dict(width=args.svd_size, height=args.svd_size, video_frames=frames, motion_bucket_id=127,
                      fps=6, augmentation_level=0.0)
        if arm != "recall":
            return SVD_img2vid_Conditioning().encode(given_vision, init, given_vae, **common)
        from recall_pack.nodes.video_encode_nodes import RecallSVDImg2VidConditioning
        return _run_node(RecallSVDImg2VidConditioning, clip_vision=clip_vision, init_image=init, vae=vae, seed=0, **common)

    return _runs(once, [14 + 2 * i for i in range(args.runs)], clock, recall)


def child_wan(arm: str, args) -> dict:
    import comfy.sd
    import folder_paths
    import nodes
    from comfy_extras.nodes_wan import WanImageToVideo
    vae = nodes.VAELoader().load_vae(Path(FILES["wan21_vae"]).name)[0]
    ckpt = folder_paths.get_full_path_or_raise("checkpoints", Path(FILES["sd15_checkpoint"]).name)
    clip = comfy.sd.load_checkpoint_guess_config(ckpt, output_vae=False, output_clip=True, output_model=False)[1]
    clock = EncodeClock((vae.first_stage_model, "encode"))
    start = _image(args.wan_size, args.wan_size)
    recall = Recall(Path(args.tmp)) if arm != "core" else None
    (negative,) = nodes.CLIPTextEncode().encode(clip, "blurry")
    size = dict(width=args.wan_size, height=args.wan_size, length=args.wan_length, batch_size=1)
    given_clip, given_vae = _encoders(arm, clip, vae)

    def once(prompt):
        if arm != "recall":
            (positive,) = nodes.CLIPTextEncode().encode(given_clip, prompt)
            node_start = time.perf_counter()
            WanImageToVideo.execute(positive=positive, negative=negative, vae=given_vae, start_image=start, **size)
            return time.perf_counter() - node_start
        from recall_pack.nodes.encode_nodes import RecallCLIPTextEncode
        from recall_pack.nodes.video_encode_nodes import RecallWanImageToVideo
        (positive,) = _run_node(RecallCLIPTextEncode, text=prompt, clip=clip)
        node_start = time.perf_counter()
        _run_node(RecallWanImageToVideo, positive=positive, negative=negative, vae=vae, start_image=start, **size)
        return time.perf_counter() - node_start

    return _runs(once, PROMPTS[:args.runs], clock, recall)


def _runs(once, variants, clock, recall) -> dict:
    rows = []
    with torch.inference_mode():
        for variant in variants:
            start = time.perf_counter()
            node_s = once(variant)
            run_s = time.perf_counter() - start
            # node_s: the image-conditioning node alone (Wan's run also encodes the new prompt)
            rows.append({"variant": variant, "run_s": run_s, "node_s": node_s if isinstance(node_s, float) else run_s,
                         "encode_s": clock.take(), "status": _status(recall)})
        restart = None
        if recall is not None:
            recall.restart()
            start = time.perf_counter()
            once(variants[0])
            restart = {"run_s": time.perf_counter() - start, "encode_s": clock.take(), "status": _status(recall),
                       "tier": recall.reports[-1].get("tier")}
    return {"runs": rows, "restart": restart, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _status(recall) -> str:
    """Status of the run's image-encoding node (the last report; text encodes report before it)."""
    return "core" if recall is None else recall.reports[-1]["status"]


def child_overhead(args) -> dict:
    """A miss vs the core node: VAE Encode, every run a new image (so every Recall run misses)."""
    import nodes
    from recall_pack.cache.keys import content_key
    from recall_pack.nodes import identity
    from recall_pack.nodes.encode_nodes import RecallVAEEncode
    name = Path(FILES["sd15_vae"]).name
    vae = nodes.VAELoader().load_vae(name)[0]
    start = time.perf_counter()
    identity.vae_identity(vae)  # first call on a freshly loaded VAE: hashes its weights
    fingerprint_s = time.perf_counter() - start
    start = time.perf_counter()
    identity.vae_identity(vae)
    memo_s = time.perf_counter() - start
    recall = Recall(Path(args.tmp))
    clock = EncodeClock((vae.first_stage_model, "encode"))
    (wrapped,) = _encoders("wrapped", vae)
    core, ours, inside, hashing, through_wrapped = [], [], [], [], []
    core_inside, wrapped_inside = [], []
    with torch.inference_mode():
        nodes.VAEEncode().encode(vae, _image(64, 64, 999))  # warm-up: first-call allocations
        clock.take()  # not the warm-up's encode in the first run's inside time
        for i in range(args.runs):
            pixels = _image(args.overhead_size, args.overhead_size, 100 + i)
            t = time.perf_counter()
            nodes.VAEEncode().encode(vae, pixels)
            core.append(time.perf_counter() - t)
            core_inside.append(clock.take())
            pixels = _image(args.overhead_size, args.overhead_size, 200 + i)
            t = time.perf_counter()
            _run_node(RecallVAEEncode, pixels=pixels, vae=vae)
            ours.append(time.perf_counter() - t)
            inside.append(clock.take())
            if recall.reports[-1]["status"] != "miss":
                raise RuntimeError(f"expected a miss for a new image, got {recall.reports[-1]}")
            pixels = _image(args.overhead_size, args.overhead_size, 300 + i)
            t = time.perf_counter()
            nodes.VAEEncode().encode(wrapped, pixels)
            through_wrapped.append(time.perf_counter() - t)
            wrapped_inside.append(clock.take())
            if recall.reports[-1]["status"] != "miss":
                raise RuntimeError(f"expected a miss for a new image, got {recall.reports[-1]}")
            t = time.perf_counter()
            content_key(pixels)
            hashing.append(time.perf_counter() - t)
    weights = sum(t.numel() * t.element_size() for t in vae.first_stage_model.state_dict().values())
    recall.store.flush()  # the disk writes ran on the background thread; include nothing of them above
    return {"core_s": core, "recall_miss_s": ours, "recall_inside_encoder_s": inside, "content_key_s": hashing,
            "wrapped_miss_s": through_wrapped, "core_inside_encoder_s": core_inside,
            "wrapped_inside_encoder_s": wrapped_inside, "fingerprint_s": fingerprint_s,
            "fingerprint_memo_s": memo_s, "vae_weight_bytes": weights, "vae_dtype": str(vae.vae_dtype)}


# --- parent side: spawn the children, print the table -------------------------------------------

def _child(argv: list[str], comfyui: str) -> dict:
    env = dict(os.environ, COMFYUI_PATH=comfyui)
    proc = subprocess.run([sys.executable, "-m", "bench.bench_encode", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {argv} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def summarize(result: dict) -> dict:
    runs = result["runs"]
    hits = sum(r["status"] == "hit" for r in runs)
    return {"encode_s_mean": statistics.mean(r["encode_s"] for r in runs),
            "run_s_mean": statistics.mean(r["run_s"] for r in runs),
            "hit_rate": hits / len(runs), "peak_rss_mb": result["peak_rss_mb"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images, for a smoke run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.svd_size, args.wan_size, args.wan_length, args.overhead_size = (
        (128, 64, 5, 256) if args.quick else (512, 256, 9, 512))
    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui:
        parser.error("set COMFYUI_PATH to a ComfyUI checkout and run with its venv's python")
    missing = [f for f in FILES.values() if not (MODELS / f).exists()]
    if missing:
        parser.error(f"model files missing under {MODELS}: {missing}; build them with bench/harness/make_models.py")

    if args.child:
        _setup(comfyui)
        torch.manual_seed(0)
        kind = args.child[0]
        try:
            result = (child_overhead(args) if kind == "overhead"
                      else {"svd": child_svd, "wan": child_wan}[kind](args.child[1], args))
        finally:
            Recall.undo_all()
        print(json.dumps(result))
        return 0

    common = ["--runs", str(args.runs)] + (["--quick"] if args.quick else [])
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "threads": torch.get_num_threads()},
              "settings": {k: getattr(args, k) for k in ("runs", "svd_size", "wan_size", "wan_length", "overhead_size")}}
    for scenario in ("svd", "wan"):
        for arm in ("core", "recall", "wrapped"):
            with tempfile.TemporaryDirectory(prefix="recall-bench-") as tmp:
                raw = _child(["--child", scenario, arm, "--tmp", tmp] + common, comfyui)
            report[f"{scenario}_{arm}"] = {"raw": raw, "summary": summarize(raw)}
            print(f"[bench_encode] {scenario} {arm}: {report[f'{scenario}_{arm}']['summary']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="recall-bench-") as tmp:
        report["overhead"] = _child(["--child", "overhead", "--tmp", tmp] + common, comfyui)
    _print_table(report)
    print(f"[bench_encode] wrote {write_results('encode', report)}")
    return 0


def _print_table(report: dict) -> None:
    print(f"\nSame image, {report['settings']['runs']} runs; {report['machine']['cpus']} CPUs, torch "
          f"{report['machine']['torch']}")
    print(f"{'scenario':<26}{'arm':<8}{'encode s/run':>13}{'run s/run':>11}{'hit rate':>10}{'peak RSS MB':>13}")
    for scenario, label in (("svd", "SVD, frames changed"), ("wan", "Wan I2V, prompt changed")):
        core = report[f"{scenario}_core"]["summary"]
        for arm in ("core", "recall", "wrapped"):
            s = report[f"{scenario}_{arm}"]["summary"]
            print(f"{label:<26}{arm:<8}{s['encode_s_mean']:>13.2f}{s['run_s_mean']:>11.2f}"
                  f"{s['hit_rate']:>10.0%}{s['peak_rss_mb']:>13.0f}")
        core_first = report[f"{scenario}_core"]["raw"]["runs"]
        core_node = statistics.median(r["node_s"] for r in core_first)
        for arm in ("recall", "wrapped"):
            raw = report[f"{scenario}_{arm}"]["raw"]
            hits = [r["node_s"] for r in raw["runs"] if r["status"] == "hit"]
            hit_s = statistics.median(hits) if hits else float("nan")
            restart = raw["restart"]
            print(f"{'':<26}{arm}: the node on a hit {hit_s:.4f} s = {hit_s / core_node * 100:.2f}% of the core node "
                  f"({core_node:.2f} s); first run (miss) {raw['runs'][0]['node_s'] / core_first[0]['node_s']:.3f}x "
                  f"core's first; after a restart: {restart['status']} from {restart['tier']}, "
                  f"run {restart['run_s']:.3f} s")
    o = report["overhead"]
    core_s, ours_s = statistics.median(o["core_s"]), statistics.median(o["recall_miss_s"])
    print(f"\nMiss cost, VAE Encode {report['settings']['overhead_size']}^2 (medians of {len(o['core_s'])}, new image "
          f"each run): core {core_s:.3f} s, Recall drop-in miss {ours_s:.3f} s = {ours_s / core_s:.3f}x; "
          f"content key {statistics.median(o['content_key_s']) * 1000:.1f} ms")
    wrapped_s = statistics.median(o["wrapped_miss_s"])
    print(f"Miss through a wrapped VAE (core VAEEncode, Recall VAE): {wrapped_s:.3f} s = {wrapped_s / core_s:.3f}x "
          f"the core node")
    # The encoder's own time swings ±15% run to run on a shared CPU; what a miss adds is the time
    # outside the encoder's torch module, beside core's (its pre/post-processing) in the same run.
    if "core_inside_encoder_s" in o:
        outside = {arm: statistics.median(t - i for t, i in zip(o[total], o[inner]))
                   for arm, total, inner in (("core", "core_s", "core_inside_encoder_s"),
                                             ("drop-in", "recall_miss_s", "recall_inside_encoder_s"),
                                             ("wrapped", "wrapped_miss_s", "wrapped_inside_encoder_s"))}
        for arm in ("drop-in", "wrapped"):
            extra = outside[arm] - outside["core"]
            print(f"Outside the encoder on a miss, {arm}: {outside[arm] * 1000:.1f} ms vs core {outside['core'] * 1000:.1f} ms"
                  f" = {extra * 1000:+.1f} ms, i.e. {1 + extra / core_s:.4f}x the core node")
    print(f"SD VAE fingerprint ({o['vae_weight_bytes'] / 1e6:.0f} MB {o['vae_dtype']}): {o['fingerprint_s'] * 1000:.0f} ms "
          f"once per loaded model ({o['fingerprint_s'] / core_s * 100:.1f}% of one core encode), then "
          f"{o['fingerprint_memo_s'] * 1e6:.0f} us")


if __name__ == "__main__":
    sys.exit(main())
