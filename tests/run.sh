#!/usr/bin/env bash
# The pack's whole test suite: bash tests/run.sh [extra pytest args]
#
#  1. A test venv (CPU torch and the pack's test extras) in the cache, linked to .venv. The unit
#     tests (tests/unit, tests/js ...) run there once, and so does pytest's side of the live-server suite.
#  2. Which ComfyUI (bench/harness/comfy_env.py decides): COMFYUI_PATH (+ COMFYUI_PYTHON); else
#     the ComfyUI whose custom_nodes/ holds this checkout; else every release set up in the cache
#     (bench/harness/setup_releases.sh); else a notice, and the ComfyUI suites skip.
#  3. For each ComfyUI: install the pack into its python as ComfyUI-Manager does
#     (pip install -r requirements.txt, nothing else, so a missing runtime dependency fails),
#     run the live-server suite (tests/integration) against it, then the in-process suite
#     (tests/comfy) with a test venv layered over its python (the test extras live there, not
#     in ComfyUI's environment). One summary line per ComfyUI.
#
# Cache: $RECALL_TEST_CACHE, default ~/.cache/comfyui-recall (releases, test venvs, models).
# RECALL_RUN_SUMMARY=FILE also writes the summary lines to FILE (.ci/run prints them last).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
CACHE=${RECALL_TEST_CACHE:-$HOME/.cache/comfyui-recall}
export RECALL_TEST_CACHE=$CACHE
mkdir -p "$CACHE"
results=$(mktemp -d "${TMPDIR:-/tmp}/recall-tests.XXXXXX")
summary=()

t0=$SECONDS
stage_start=$SECONDS
stage() {
  echo "[tests/run.sh] $1 done in $((SECONDS - stage_start)) s (total $((SECONDS - t0)) s)"
  stage_start=$SECONDS
}
say() { echo "[tests/run.sh] $*"; }

. "$REPO/bench/harness/quiet.sh"
pip_install() { quiet "$1" -m pip install --disable-pip-version-check -q "${@:2}"; }

# setuptools leaves these in the repo when pip installs '.[extras]'.
clean_build_outputs() { rm -rf "$REPO/build" "$REPO"/*.egg-info; }

deps_hash() { cat "$REPO/pyproject.toml" "$@" 2>/dev/null | sha256sum | cut -c1-16; }
path_hash() { echo "$1" | sha256sum | cut -c1-12; }

# 1. The test venv: built once per set of dependencies in the cache (a clean clone finds it
# there), locked against a concurrent build, and linked to .venv for the README's commands.
venv="$CACHE/test-venvs/unit-$(deps_hash)"
if [ ! -f "$venv/.ready" ]; then
  mkdir -p "$CACHE/test-venvs"
  exec 8>"$venv.lock"
  flock 8
  if [ ! -f "$venv/.ready" ]; then
    say "installing the test venv at $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    pip_install "$venv/bin/python" torch==2.13.0 "$REPO[test,redis]"
    clean_build_outputs
    touch "$venv/.ready"
  fi
  exec 8>&-
fi
# .venv: replaced when it is a link or an old run's venv (it has a .recall-deps-* stamp).
if [ -L "$REPO/.venv" ] || compgen -G "$REPO/.venv/.recall-deps-*" >/dev/null; then
  rm -rf "$REPO/.venv"
fi
[ -e "$REPO/.venv" ] || ln -s "$venv" "$REPO/.venv"
py="$venv/bin/python"
stage "test venv"

# The pack as ComfyUI-Manager installs it: its requirements.txt into ComfyUI's python; then
# redis-py, as the README tells a user who turns on the shared Redis tier (the live Redis tests
# run ComfyUI with that backend). Its version comes from pyproject.toml's "redis" extra.
install_like_manager() {
  local comfy_python=$1 stamp redis_req
  redis_req=$("$py" -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["redis"])')
  stamp="$CACHE/stamps/manager-$(path_hash "$comfy_python")-$(echo "$redis_req" | cat requirements.txt - | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  say "pip install -r requirements.txt into $comfy_python (as ComfyUI-Manager does), then $redis_req (the Redis tier's)"
  pip_install "$comfy_python" -r "$REPO/requirements.txt"
  pip_install "$comfy_python" "$redis_req"
  mkdir -p "$CACHE/stamps"
  touch "$stamp"
}

# A venv over ComfyUI's python for the in-process suite: a .pth puts ComfyUI's site-packages
# behind its own, and the test extras go in with everything ComfyUI's python has pinned
# (so the tests import the same torch, transformers ... that ComfyUI runs). Prints its python.
test_venv_over() {
  local comfy_python=$1 dir stamp site constraints
  dir="$CACHE/test-venvs/$(path_hash "$comfy_python")"
  stamp="$dir/.recall-deps-$(deps_hash)"
  if [ ! -f "$stamp" ]; then
    say "layering the test extras over $comfy_python in $dir" >&2
    [ -x "$dir/bin/python" ] || "$comfy_python" -m venv "$dir"
    site=$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$comfy_python" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))' \
      > "$site/recall-comfyui-base.pth"
    constraints="$dir/constraints.txt"
    "$comfy_python" -m pip freeze --disable-pip-version-check 2>/dev/null | grep -E '^[A-Za-z0-9_.-]+==' > "$constraints" || true
    pip_install "$dir/bin/python" -c "$constraints" "$REPO[test,redis]" >&2
    clean_build_outputs
    rm -f "$dir"/.recall-deps-*
    touch "$stamp"
  fi
  echo "$dir/bin/python"
}

failed=()
# run_suite NAME TAG PYTHON PYTEST-ARGS...: pytest with a JUnit file at $results/TAG-NAME.xml.
run_suite() {
  local name=$1 tag=$2 python=$3 rc=0
  shift 3
  # A module that fails to import is reported as an error, without hiding every other test.
  "$python" -m pytest --continue-on-collection-errors --durations=10 -p no:cacheprovider \
    --junitxml="$results/$tag-$name.xml" "$@" || rc=$?
  # Exit 5 = no tests collected (a -k that selects none of this suite): not a failure.
  [ "$rc" = 0 ] || [ "$rc" = 5 ] || failed+=("$tag $name (pytest exit $rc)")
}
counts() { "$py" tests/support/junit_summary.py "$@"; }

# 2. Which ComfyUI.
listing=$("$py" bench/harness/comfy_env.py --build 2>"$results/why") || true
why=$(cat "$results/why")

# 3a. Once: unit tests (no ComfyUI) and the frontend's pure tests.
run_suite unit all "$py" tests --ignore=tests/comfy --ignore=tests/integration "$@"
unit_line="unit: $(counts "$results/all-unit.xml")"
stage "unit tests"
if [ -d tests/js ]; then
  rc=0
  node --test tests/js/ || rc=$?
  [ "$rc" = 0 ] || failed+=("node --test tests/js (exit $rc)")
  unit_line+="; node --test tests/js: exit $rc"
  stage "frontend unit tests"
fi
summary+=("$unit_line")

# 3b. The ComfyUI suites, once per ComfyUI found.
ran_on=()
if [ -z "$listing" ]; then
  echo "############################################################################"
  echo "# NOTICE: ComfyUI not found. The live-server (tests/integration) and"
  echo "# in-process (tests/comfy) suites will be SKIPPED."
  echo "# $why"
  echo "# Set up the tested releases with bench/harness/setup_releases.sh, or run"
  echo "# COMFYUI_PATH=<your ComfyUI> COMFYUI_PYTHON=<its python> bash tests/run.sh"
  echo "############################################################################"
  run_suite live none "$py" tests/integration "$@"
  run_suite inprocess none "$py" tests/comfy "$@"
  summary+=("no ComfyUI: live-server $(counts "$results/none-live.xml"); in-process $(counts "$results/none-inprocess.xml") (SKIPPED: $why)")
else
  # fd 3, so nothing in the loop (pip, pytest, node) can read the listing from stdin
  while IFS=$'\t' read -r -u 3 version path comfy_python source; do
    began=$SECONDS
    tag="comfyui-$version"
    install_like_manager "$comfy_python"
    frontend=$("$comfy_python" -c 'import importlib.metadata as m; print(m.version("comfyui-frontend-package"))' 2>/dev/null || echo "?")
    torch_version=$("$comfy_python" -c 'import torch; print(torch.__version__)')
    label="ComfyUI $version (frontend $frontend, torch $torch_version, from $source)"
    say "=== $label: $path"
    COMFYUI_PATH=$path COMFYUI_PYTHON=$comfy_python run_suite live "$tag" "$py" tests/integration "$@"
    stage "$label: live-server suite"
    test_python=$(test_venv_over "$comfy_python")
    COMFYUI_PATH=$path COMFYUI_PYTHON=$comfy_python run_suite inprocess "$tag" "$test_python" tests/comfy "$@"
    stage "$label: in-process suite"
    summary+=("$label: live-server $(counts "$results/$tag-live.xml"); in-process $(counts "$results/$tag-inprocess.xml"); $((SECONDS - began)) s")
    ran_on+=("ComfyUI $version (frontend $frontend)")
  done 3<<< "$listing"
fi

echo
say "summary ($((SECONDS - t0)) s):"
for line in "${summary[@]}"; do echo "  $line"; done
for xml in "$results"/*.xml; do
  reasons=$(counts --reasons "$xml" | tail -n +2)
  [ -z "$reasons" ] || { echo "  skips in $(basename "$xml" .xml):"; echo "$reasons"; }
done
if [ "${#ran_on[@]}" -gt 0 ]; then
  ran="the ComfyUI suites ran on: $(IFS=,; echo "${ran_on[*]}" | sed 's/,/, /g')"
else
  ran="the ComfyUI suites ran on: none (skipped: $why)"
fi
say "$ran"
if [ -n "${RECALL_RUN_SUMMARY:-}" ]; then
  { printf '%s\n' "${summary[@]}"; echo "$ran"; } > "$RECALL_RUN_SUMMARY"
fi

if [ "${#failed[@]}" -gt 0 ]; then
  say "FAILED after $((SECONDS - t0)) s: ${failed[*]}"
  exit 1
fi
say "all suites passed in $((SECONDS - t0)) s"
