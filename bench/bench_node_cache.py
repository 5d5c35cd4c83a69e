"""What the Recall Cache's lookup costs before a hit: signature of the upstream graph and file digests.

    .venv/bin/python bench/bench_node_cache.py [--nodes 400] [--file-mb 256]

Prints, for a recorded SVD prompt and for a synthetic chain of N upstream nodes, the time
to build the signature; and the time to digest a model-sized file the first time (read and
hash) and then from the memo (stat only). The end-to-end saving (run 2 / run 1 with the
encoder skipped) is measured by tests/integration/test_recall_cache.py in a live ComfyUI.
ComfyUI-free: the lookups run on nodes/lib only.
"""
import argparse
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, register_pack


def _lib(name):
    register_pack()  # nodes/__init__.py imports no ComfyUI, so nodes.lib imports as part of the pack
    return importlib.import_module(f"recall_pack.nodes.lib.{name}")


def timed(fn, repeat=20):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def chain_prompt(n):
    prompt = {"0": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}}
    for i in range(1, n):
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    prompt["cache"] = {"class_type": "RecallCache", "inputs": {"value": [str(n - 1), 0]}}
    return prompt


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=400)
    parser.add_argument("--file-mb", type=int, default=256)
    args = parser.parse_args()
    signature, rules_mod, digest_mod = _lib("signature"), _lib("sensitivity_rules"), _lib("file_digest")
    rules, _ = rules_mod.build_ruleset()

    doc = json.loads((REPO / "bench" / "data" / "prompts" / "svd_recall.json").read_text())
    prompt, workflow = doc["prompt"], doc["extra_data"]["extra_pnginfo"]["workflow"]

    def svd():
        signature.compute_signature(prompt.__getitem__, prompt["4"]["inputs"]["value"], rules=rules,
                                    randomized=signature.randomized_inputs(workflow, prompt.__getitem__))
    print(f"signature, recorded SVD prompt (4 upstream nodes): {timed(svd) * 1e3:.3f} ms")

    chain = chain_prompt(args.nodes)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * args.nodes))
    t = timed(lambda: signature.compute_signature(chain.__getitem__, chain["cache"]["inputs"]["value"], rules=rules), 5)
    print(f"signature, chain of {args.nodes} upstream nodes: {t * 1e3:.2f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        block = bytes(range(256)) * 4096
        with open(path, "wb") as f:
            for _ in range(args.file_mb):
                f.write(block)
        digests = digest_mod.FileDigests(clock=lambda: time.time() + 10.0)  # treat the file as settled
        t = time.perf_counter()
        digests.digest(path)
        first = time.perf_counter() - t
        again = timed(lambda: digests.digest(path))
        print(f"file digest, {args.file_mb} MB: first {first:.3f} s ({args.file_mb / first:.0f} MB/s), "
              f"memoised {again * 1e6:.0f} us")


if __name__ == "__main__":
    main()
