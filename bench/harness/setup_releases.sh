#!/usr/bin/env bash
# Set up the ComfyUI releases the pack is tested on, in the test cache, from git snapshots:
#   bash bench/harness/setup_releases.sh GIT_DIR_0.3.64 GIT_DIR_0.8.0
# GIT_DIR_0.3.64: a git directory of github.com/Comfy-Org/ComfyUI holding commit a125cd84;
# GIT_DIR_0.8.0: one of github.com/pollockjj/ComfyUI, whose master is upstream 3cd7b32f.
# Each lands in $RECALL_TEST_CACHE/comfyui-<version>/ (comfyui/ + venv/), where tests/run.sh finds it.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 GIT_DIR_0.3.64 GIT_DIR_0.8.0" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${RECALL_TEST_CACHE:-$HOME/.cache/comfyui-recall}
# Each release: its git directory, commit and the version its comfyui_version.py must state.
release() {
  local git_dir=$1 commit=$2 version=$3 dest="$CACHE/comfyui-$3" found
  bash "$HERE/setup_comfyui.sh" "$git_dir" "$commit" "$dest"
  found=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$dest/comfyui/comfyui_version.py")
  if [ "$found" != "$version" ]; then
    echo "[setup_releases] $dest holds ComfyUI $found, expected $version (commit $commit of $git_dir)" >&2
    rm -f "$dest/.ready"
    exit 1
  fi
}
release "$1" a125cd84 0.3.64
release "$2" 3cd7b32f 0.8.0
echo "[setup_releases] ready in $CACHE: comfyui-0.3.64, comfyui-0.8.0 (bash tests/run.sh runs the suites on both)"
