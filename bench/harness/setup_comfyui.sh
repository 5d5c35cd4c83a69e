#!/usr/bin/env bash
# Build a venv that can run ComfyUI on the CPU, unpacking ComfyUI first when given a git snapshot.
# Idempotent: a marker file records a finished set-up, so a second call is instant;
# a lock makes concurrent callers wait for the first one instead of racing it.
#   setup_comfyui.sh GIT_DIR COMMIT DEST_DIR  ->  DEST_DIR/comfyui (that commit's tree), DEST_DIR/venv
#   setup_comfyui.sh COMFYUI_TREE DEST_DIR    ->  DEST_DIR/venv for that tree (left in place)
# bench/harness/setup_releases.sh sets up the releases the pack is tested on this way.
set -euo pipefail
if [ $# -eq 3 ]; then
  git_dir=$1 commit=$2 dest=$3 tree_src=""
elif [ $# -eq 2 ]; then
  git_dir="" commit="" tree_src=$1 dest=$2
else
  echo "usage: $0 GIT_DIR COMMIT DEST_DIR | $0 COMFYUI_TREE DEST_DIR" >&2
  exit 2
fi
marker="$dest/.ready"
full=""
if [ -n "$git_dir" ]; then
  full=$(git --git-dir="$git_dir" rev-parse --verify --quiet "$commit^{commit}") \
    || { echo "[setup_comfyui] $git_dir has no commit $commit (expected a snapshot holding it)" >&2; exit 2; }
fi
# Set up already, from the same commit when one is asked for.
done_already() { [ -f "$marker" ] && { [ -z "$full" ] || [ "$(cat "$dest/.commit" 2>/dev/null)" = "$full" ]; }; }
done_already && exit 0
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
done_already && exit 0
rm -f "$marker"

if [ -n "$tree_src" ]; then
  tree=$tree_src
else
  tree="$dest/comfyui"
  if [ ! -f "$tree/main.py" ] || [ "$(cat "$dest/.commit" 2>/dev/null)" != "$full" ]; then
    echo "[setup_comfyui] unpacking $full from $git_dir into $tree"
    # A snapshot lacks its largest blobs, and git archive stops at a missing one: archive
    # the commit's tree less the paths whose blobs are absent (listed in .missing-files).
    index=$(mktemp)
    rm -f "$index"
    GIT_INDEX_FILE=$index git --git-dir="$git_dir" read-tree "$full"
    missing=$(GIT_INDEX_FILE=$index git --git-dir="$git_dir" ls-files -s \
      | awk '{print $2}' | git --git-dir="$git_dir" cat-file --batch-check \
      | awk '$2 == "missing" {print $1}' | sort -u)
    : > "$dest/.missing-files"
    if [ -n "$missing" ]; then
      while read -r blob; do
        GIT_INDEX_FILE=$index git --git-dir="$git_dir" ls-files -s | awk -v b="$blob" '$2 == b {sub(/^[^\t]*\t/, ""); print}'
      done <<< "$missing" > "$dest/.missing-files"
      while read -r path; do
        GIT_INDEX_FILE=$index git --git-dir="$git_dir" rm -q --cached -- "$path"
      done < "$dest/.missing-files"
    fi
    treeid=$(GIT_INDEX_FILE=$index git --git-dir="$git_dir" write-tree)
    rm -f "$index"
    rm -rf "$dest/comfyui.tmp"
    mkdir -p "$dest/comfyui.tmp"
    git --git-dir="$git_dir" archive "$treeid" | tar x -C "$dest/comfyui.tmp"
    rm -rf "$tree"
    mv "$dest/comfyui.tmp" "$tree"
    echo "$full" > "$dest/.commit"
    [ -s "$dest/.missing-files" ] && echo "[setup_comfyui] left out (absent from the snapshot): $(tr '\n' ' ' < "$dest/.missing-files")"
  fi
fi

. "$(dirname "${BASH_SOURCE[0]}")/quiet.sh"

venv="$dest/venv"
echo "[setup_comfyui] building $venv (torch 2.13.0 + torchvision 0.28.0 + ComfyUI's requirements)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
# The registry has no CPU torchvision; the CUDA build runs on the CPU with --cpu.
# --isolated ignores any pip config that would redirect torch to the local CPU wheel.
quiet "${pip[@]}" --isolated torch==2.13.0 torchvision==0.28.0
grep -v -E '^(torch|torchvision|torchaudio)\s*$' "$tree/requirements.txt" > "$dest/req.txt"
echo 'torch==2.13.0' > "$dest/constraints.txt"
# 0.3.64 imports requests without listing it. Nothing else: this is the python a user has,
# and tests/run.sh adds only what ComfyUI-Manager would (the pack's requirements.txt).
quiet "${pip[@]}" -c "$dest/constraints.txt" -r "$dest/req.txt" requests
touch "$marker"
echo "[setup_comfyui] ready: $dest"
