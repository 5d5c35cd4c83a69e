"""What every benchmark script needs: the pack importable without ComfyUI's loader, timers, progress."""
import json
import statistics
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "recall_pack"
RESULTS = REPO / "bench" / "results"


def register_pack() -> None:
    """Import the repo as the package `recall_pack` without running its root __init__.py.

    The root __init__.py registers the nodes with a running ComfyUI; a benchmark only
    needs cache/ and nodes/ (the same trick as tests/conftest.py).
    """
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(REPO)]
        sys.modules[PACKAGE] = package


def use_comfyui(comfyui: str) -> None:
    """Make ComfyUI's modules importable in-process, on the CPU unless a GPU is there."""
    import torch
    if comfyui not in sys.path:
        sys.path.insert(0, comfyui)
    import comfy.cli_args  # before comfy.model_management reads the device flags
    comfy.cli_args.args.cpu = not torch.cuda.is_available()
    register_pack()


def run_v3_node(node_cls, node_id: str, **inputs):
    """Execute a V3 node as ComfyUI does: a class clone holding its hidden inputs."""
    import inspect

    from comfy_api.latest import io
    hidden = {io.Hidden.unique_id: node_id}
    # 0.3.64 takes the hidden inputs themselves; later releases a V3Data dict that holds them
    if "v3_data" in inspect.signature(node_cls.PREPARE_CLASS_CLONE).parameters:
        hidden = {"hidden_inputs": hidden}
    return node_cls.PREPARE_CLASS_CLONE(hidden).execute(**inputs).result


def write_results(name: str, payload, out_dir: Path = RESULTS) -> Path:
    """Write a run's results to <out_dir>/<name>-<UTC date-time>.json and return the path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def progress(what: str) -> None:
    sys.stderr.write(f"[bench] {what}\n")
    sys.stderr.flush()


def median_seconds(fn, repeat: int, warmup: int = 1) -> float:
    """Median wall seconds of fn() over `repeat` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
