#!/usr/bin/env bash
# Build a venv that can run ComfyUI on the CPU, unpacking ComfyUI first when given an archive.
# Idempotent: a marker file records a finished set-up, so a second call is instant;
# a lock makes concurrent callers wait for the first one instead of racing it.
#   setup_comfyui.sh ARCHIVE.tar.gz DEST_DIR  ->  DEST_DIR/comfyui, DEST_DIR/venv
#   setup_comfyui.sh COMFYUI_TREE   DEST_DIR  ->  DEST_DIR/venv for that tree (left in place)
set -euo pipefail
source=$1
dest=$2
marker="$dest/.ready"
[ -f "$marker" ] && exit 0
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
[ -f "$marker" ] && exit 0

if [ -d "$source" ]; then
  tree=$source
else
  tree="$dest/comfyui"
  if [ ! -f "$tree/main.py" ]; then
    echo "[setup_comfyui] unpacking $source into $tree"
    rm -rf "$dest/comfyui.tmp"
    mkdir -p "$dest/comfyui.tmp"
    tar xzf "$source" -C "$dest/comfyui.tmp"
    rm -rf "$tree"
    mv "$dest/comfyui.tmp" "$tree"
  fi
fi

# pip warns "Location ... is ignored" for every local index the machine's pip
# config names that --isolated or a constraint makes it skip: harmless noise.
quiet() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  grep -v -E 'Location .* is ignored|^[[:space:]]*$' "$log" || true
  rm -f "$log"
  return "$rc"
}

venv="$dest/venv"
echo "[setup_comfyui] building $venv (torch 2.13.0 + torchvision 0.28.0 + ComfyUI's requirements)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
# The registry has no CPU torchvision; the CUDA build runs on the CPU with --cpu.
# --isolated ignores any pip config that would redirect torch to the local CPU wheel.
quiet "${pip[@]}" --isolated torch==2.13.0 torchvision==0.28.0
grep -v -E '^(torch|torchvision|torchaudio)$' "$tree/requirements.txt" > "$dest/req.txt"
echo 'torch==2.13.0' > "$dest/constraints.txt"
# 0.3.64 imports requests without listing it; websocket-client is the test client's.
quiet "${pip[@]}" -c "$dest/constraints.txt" -r "$dest/req.txt" requests websocket-client
touch "$marker"
echo "[setup_comfyui] ready: $dest"
