#!/usr/bin/env bash
# Set up the ComfyUI releases the pack is tested on, in the test cache, from git snapshots:
#   bash tests/support/setup_releases.sh GIT_DIR_0.3.64 GIT_DIR_0.8.0
# GIT_DIR_0.3.64: a git directory of github.com/Comfy-Org/ComfyUI holding commit a125cd84;
# GIT_DIR_0.8.0: one of github.com/pollockjj/ComfyUI, whose master is upstream 3cd7b32f.
# Each lands in $RECALL_TEST_CACHE/comfyui-<version>/ (comfyui/ + venv/), where tests/run.sh finds it.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 GIT_DIR_0.3.64 GIT_DIR_0.8.0" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${RECALL_TEST_CACHE:-$HOME/.cache/comfyui-recall}
bash "$HERE/setup_comfyui.sh" "$1" a125cd84 "$CACHE/comfyui-0.3.64"
bash "$HERE/setup_comfyui.sh" "$2" 3cd7b32f "$CACHE/comfyui-0.8.0"
