#!/usr/bin/env bash
# The pack's whole test suite on a fresh machine: bash tests/run.sh [extra pytest args]
#
#  1. .venv: the small CPU torch and the pack's test extras (unit + integration tests run here).
#  2. Real ComfyUI: COMFYUI_PATH (+ COMFYUI_PYTHON), else the archive ../shared/comfyui/ComfyUI-*.tar.gz
#     unpacked with its own venv into the cache, else a notice and those suites skip.
#  3. pytest tests (without tests/comfy), then tests/comfy with ComfyUI's python, then node --test tests/js/.
#
# Cache: $RECALL_TEST_CACHE, default ~/.cache/comfyui-recall (ComfyUI venvs, random-weight models).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
CACHE=${RECALL_TEST_CACHE:-$HOME/.cache/comfyui-recall}
export RECALL_TEST_CACHE=$CACHE
mkdir -p "$CACHE"

t0=$SECONDS
stage_start=$SECONDS
stage() {
  echo "[tests/run.sh] $1 done in $((SECONDS - stage_start)) s (total $((SECONDS - t0)) s)"
  stage_start=$SECONDS
}

# pip says "Location ... is ignored" for each local index the machine's config
# names that a constraint or --isolated skips: harmless, and hides real output.
quiet() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  grep -v -E 'Location .* is ignored|^[[:space:]]*$' "$log" || true
  rm -f "$log"
  return "$rc"
}

# setuptools leaves these in the repo when pip installs '.[extras]'.
clean_build_outputs() { rm -rf "$REPO/build" "$REPO"/*.egg-info; }

deps_hash() { cat "$REPO/pyproject.toml" "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# 1. The test venv.
venv="$REPO/.venv"
stamp="$venv/.recall-deps-$(deps_hash)"
if [ ! -f "$stamp" ]; then
  echo "[tests/run.sh] installing the test venv at $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  quiet "$venv/bin/python" -m pip install --disable-pip-version-check -q torch==2.13.0 "$REPO[test,redis]"
  clean_build_outputs
  rm -f "$venv"/.recall-deps-*
  touch "$stamp"
fi
stage "test venv"

# 2. Real ComfyUI.
comfy_ready=0
if [ -n "${COMFYUI_PATH:-}" ]; then
  COMFYUI_PATH=$(cd "$COMFYUI_PATH" && pwd)
  if [ -z "${COMFYUI_PYTHON:-}" ]; then
    version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$COMFYUI_PATH/comfyui_version.py" 2>/dev/null || true)
    dest="$CACHE/comfyui-${version:-unknown}-$(echo "$COMFYUI_PATH" | sha256sum | cut -c1-12)"
    bash "$REPO/tests/support/setup_comfyui.sh" "$COMFYUI_PATH" "$dest"
    COMFYUI_PYTHON="$dest/venv/bin/python"
  fi
  comfy_ready=1
else
  archive=$(ls "$REPO"/../shared/comfyui/ComfyUI-*.tar.gz 2>/dev/null | sort | tail -n 1 || true)
  if [ -n "$archive" ]; then
    version=$(basename "$archive" .tar.gz)
    version=${version#ComfyUI-}
    dest="$CACHE/comfyui-$version"
    bash "$REPO/tests/support/setup_comfyui.sh" "$archive" "$dest"
    COMFYUI_PATH="$dest/comfyui"
    COMFYUI_PYTHON="$dest/venv/bin/python"
    comfy_ready=1
  fi
fi

if [ "$comfy_ready" = 1 ]; then
  export COMFYUI_PATH COMFYUI_PYTHON
  # The pack's test deps in ComfyUI's venv, with its torch pinned so nothing replaces it.
  torch_version=$("$COMFYUI_PYTHON" -c 'import torch; print(torch.__version__.split("+")[0])')
  stamp_dir="$CACHE/stamps"
  mkdir -p "$stamp_dir"
  stamp="$stamp_dir/$(echo "$COMFYUI_PYTHON" | sha256sum | cut -c1-12)-$(deps_hash)"
  if [ ! -f "$stamp" ]; then
    echo "[tests/run.sh] installing the pack's test deps into $COMFYUI_PYTHON"
    constraints=$(mktemp)
    echo "torch==$torch_version" > "$constraints"
    quiet "$COMFYUI_PYTHON" -m pip install --disable-pip-version-check -q -c "$constraints" "$REPO[test,redis]"
    rm -f "$constraints"
    clean_build_outputs
    touch "$stamp"
  fi
  echo "[tests/run.sh] ComfyUI: $COMFYUI_PATH (python $COMFYUI_PYTHON, torch $torch_version)"
else
  echo "############################################################################"
  echo "# NOTICE: ComfyUI not found. The integration (tests/integration) and"
  echo "# in-process (tests/comfy) suites will be SKIPPED. Set COMFYUI_PATH to a"
  echo "# ComfyUI checkout (and COMFYUI_PYTHON to a python that runs it), or put"
  echo "# ComfyUI-<version>.tar.gz in ../shared/comfyui/ beside this repo."
  echo "############################################################################"
fi
stage "ComfyUI set-up"

# 3. The suites. Run all of them, then fail if any failed.
failed=()

rc=0
# A module that fails to import is reported as an error, without hiding every other test.
"$venv/bin/python" -m pytest tests --ignore=tests/comfy --continue-on-collection-errors --durations=10 "$@" || rc=$?
[ "$rc" = 0 ] || failed+=("pytest tests (exit $rc)")
stage "unit + integration tests"

if [ "$comfy_ready" = 1 ]; then
  rc=0
  "$COMFYUI_PYTHON" -m pytest tests/comfy --continue-on-collection-errors --durations=10 "$@" || rc=$?
  # Exit 5 = no tests collected: fine while tests/comfy is still empty.
  [ "$rc" = 0 ] || [ "$rc" = 5 ] || failed+=("pytest tests/comfy (exit $rc)")
  stage "in-process ComfyUI tests"
fi

if [ -d tests/js ]; then
  rc=0
  node --test tests/js/ || rc=$?
  [ "$rc" = 0 ] || failed+=("node --test tests/js (exit $rc)")
  stage "frontend unit tests"
fi

if [ "${#failed[@]}" -gt 0 ]; then
  echo "[tests/run.sh] FAILED after $((SECONDS - t0)) s: ${failed[*]}"
  exit 1
fi
echo "[tests/run.sh] all suites passed in $((SECONDS - t0)) s"
