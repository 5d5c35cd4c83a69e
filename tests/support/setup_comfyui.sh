#!/usr/bin/env bash
# Unpack ComfyUI from an archive and build a venv that can run it on the CPU.
# Idempotent: a marker file records a finished set-up, so a second call is instant.
#   setup_comfyui.sh ARCHIVE DEST_DIR   ->  DEST_DIR/comfyui, DEST_DIR/venv
set -euo pipefail
archive=$1
dest=$2
marker="$dest/.ready"
[ -f "$marker" ] && exit 0
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
[ -f "$marker" ] && exit 0

if [ ! -f "$dest/comfyui/main.py" ]; then
  rm -rf "$dest/comfyui.tmp"
  mkdir -p "$dest/comfyui.tmp"
  tar xzf "$archive" -C "$dest/comfyui.tmp"
  rm -rf "$dest/comfyui"
  mv "$dest/comfyui.tmp" "$dest/comfyui"
fi

venv="$dest/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
# The registry has no CPU torchvision; the CUDA build runs on the CPU with --cpu.
# --isolated ignores any pip config that would redirect torch to the local CPU wheel.
"${pip[@]}" --isolated torch==2.13.0 torchvision==0.28.0
grep -v -E '^(torch|torchvision|torchaudio)$' "$dest/comfyui/requirements.txt" > "$dest/req.txt"
echo 'torch==2.13.0' > "$dest/constraints.txt"
# 0.3.64 imports requests without listing it; websocket-client is the test client's.
"${pip[@]}" -c "$dest/constraints.txt" -r "$dest/req.txt" requests websocket-client
touch "$marker"
