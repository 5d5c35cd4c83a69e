"""ComfyUI-Recall benchmarks. `python -m bench` runs the main one (bench/run.py) against real ComfyUI."""
