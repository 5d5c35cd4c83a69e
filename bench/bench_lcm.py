"""LCM benchmark: LoRA load+apply vs ComfyUI's LoraLoader, the cached reload, and 4 LCM steps vs 25 DDIM steps.

    COMFYUI_PATH=... <ComfyUI venv>/bin/python -m bench.bench_lcm [--quick] [--size 256] [--rank 64]

Run from the repo root with ComfyUI's venv. Uses the harness's random-weight full-width SD1.5
checkpoint (~/.cache/comfyui-recall/models-v1/checkpoints/recall_test_sd15.safetensors; build it with
bench/harness/make_models.py) and a synthetic LCM-LoRA (kohya keys, fp16, every attention-side layer
of the UNet at --rank). Prints a table and writes bench/results/lcm-<time>.json.

Load+apply in both loaders is ComfyUI's lazy path: read + key mapping + ModelPatcher.add_patches;
the weights are merged when the sampler loads the model, which the sampling rows include.
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from .common import REPO, use_comfyui, write_results
from .harness import lora_files
CHECKPOINT = Path.home() / ".cache" / "comfyui-recall" / "models-v1" / "checkpoints" / "recall_test_sd15.safetensors"


def _import_pack(comfyui: str):
    use_comfyui(comfyui)
    from recall_pack.nodes import lcm_nodes
    try:  # events.py imports server per report; inside ComfyUI it is loaded already, so keep it out of the timings
        import server  # noqa: F401
    except Exception:  # outside a server process it may not import: a stand-in without an instance
        sys.modules["server"] = types.SimpleNamespace(PromptServer=types.SimpleNamespace(instance=None))
    return lcm_nodes, lora_files


def _median(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _fresh_store(lcm_nodes):
    """A runtime with an empty RAM-only store for the loader (bench_load puts the previous one back)."""
    from recall_pack.cache.config import CacheConfig
    from recall_pack.cache.memory import MemoryTier
    from recall_pack.cache.store import TieredStore
    from recall_pack.nodes.lib.file_digest import FileDigests
    store = TieredStore([MemoryTier("ram", max_bytes=4 << 30)], background_writes=False)
    # a clock an hour ahead: the LoRA file written for the run is past the window in which a stamp is not trusted
    digests = FileDigests(clock=lambda: time.time() + 3600)
    lcm_nodes.runtime.install(lcm_nodes.runtime.Runtime(CacheConfig(), store, file_digests=digests))


def bench_load(lcm_nodes, model, clip, name: str, repeat: int) -> dict:
    import nodes

    def core():
        return nodes.LoraLoader().load_lora(model, clip, name, 1.0, 1.0)  # a new node instance reads the file

    def ours():
        return lcm_nodes.RecallLCMLoraLoader.execute(model=model, clip=clip, lora_name=name, strength_model=1.0,
                                                     strength_clip=1.0, set_lcm_sampling=True).args

    def ours_cold():
        _fresh_store(lcm_nodes)
        return ours()

    core()  # warm the OS page cache so every row reads from RAM, not disk
    core_s, _ = _median(core, repeat)
    previous = lcm_nodes.runtime.install(None)
    try:
        cold_s, _ = _median(ours_cold, repeat)
        _fresh_store(lcm_nodes)
        ours()
        cached_s, result = _median(lambda: lcm_nodes.RecallLCMLoraLoader.execute(
            model=model, clip=clip, lora_name=name, strength_model=0.9, strength_clip=1.0,
            set_lcm_sampling=True).args, repeat)
    finally:
        lcm_nodes.runtime.install(previous)
    return {"core_loraloader_s": core_s, "recall_first_load_s": cold_s, "recall_cached_load_s": cached_s,
            "lcm_model": result[0]}


def bench_sampling(lcm_model, base_model, clip, size: int, ddim_steps: int) -> dict:
    import comfy.sample
    import nodes
    (positive,) = nodes.CLIPTextEncode().encode(clip, "a lighthouse on a cliff at dusk")
    (negative,) = nodes.CLIPTextEncode().encode(clip, "")
    latent = torch.zeros(1, 4, size // 8, size // 8)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))

    def run(model, steps, cfg, sampler, scheduler):
        start = time.perf_counter()
        out = comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive, negative, latent,
                                  denoise=1.0, disable_pbar=True, seed=0)
        return time.perf_counter() - start, out

    # one 1-step run per model first: loads and patches the weights, so the rows time sampling only
    run(lcm_model, 1, 1.0, "lcm", "sgm_uniform")
    lcm_s, lcm_out = run(lcm_model, 4, 1.0, "lcm", "sgm_uniform")
    run(base_model, 1, 7.5, "ddim", "ddim_uniform")
    ddim_s, ddim_out = run(base_model, ddim_steps, 7.5, "ddim", "ddim_uniform")
    return {"latent_px": size, "lcm_4_steps_cfg1_s": lcm_s, f"ddim_{ddim_steps}_steps_cfg7.5_s": ddim_s,
            "speedup": ddim_s / lcm_s, "finite": bool(torch.isfinite(lcm_out).all() and torch.isfinite(ddim_out).all())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="ComfyUI source folder")
    ap.add_argument("--checkpoint", default=str(CHECKPOINT))
    ap.add_argument("--size", type=int, default=256, help="image side in px (latent is size/8)")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="1 repeat, 128 px, 10 DDIM steps")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    if not args.comfyui:
        print("bench_lcm needs ComfyUI: set COMFYUI_PATH or --comfyui and run with its venv's python")
        return 2
    lcm_nodes, lora_files = _import_pack(args.comfyui)
    import comfy.sd
    import folder_paths
    torch.set_grad_enabled(False)

    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(args.checkpoint, output_vae=False, output_clip=True)
    repeat = 1 if args.quick else 3
    size, ddim_steps = (128, 10) if args.quick else (args.size, 25)
    with tempfile.TemporaryDirectory() as tmp:
        folder_paths.add_model_folder_path("loras", tmp)
        pairs = lora_files.make_pairs(lora_files.sd15_targets(320), rank=args.rank, alpha=float(args.rank), scale=0.01)
        tensors = {k: v.half() if v.ndim else v for k, v in lora_files.encode(pairs, "kohya").items()}
        path = lora_files.write(Path(tmp) / "bench_lcm_sd15.safetensors", tensors)
        results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                               "device": "cuda" if torch.cuda.is_available() else "cpu",
                               "threads": torch.get_num_threads()},
                   "lora": {"file_mb": round(path.stat().st_size / 2**20, 1), "keys": len(tensors), "rank": args.rank}}
        load = bench_load(lcm_nodes, model, clip, path.name, repeat)
        lcm_model = load.pop("lcm_model")
        results["load"] = load
        results["sampling"] = bench_sampling(lcm_model, model, clip, size, ddim_steps)

    print(f"LoRA: {results['lora']['file_mb']} MB, {results['lora']['keys']} keys, rank {args.rank}")
    for key, value in {**results["load"], **results["sampling"]}.items():
        print(f"  {key:28s} {value:.3f}" if isinstance(value, float) else f"  {key:28s} {value}")
    print(f"wrote {write_results('lcm', results, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
