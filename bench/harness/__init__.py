"""The harness that drives a real ComfyUI: set-up of releases, a server launcher, a client, model stand-ins.

The benchmarks and the test suites both use it (tests import it as recall_pack.bench.harness;
nothing here imports tests/). setup_releases.sh builds the tested ComfyUI releases into
~/.cache/comfyui-recall; comfy_env.py decides which ComfyUI a run uses.
"""
