# Sourced by bench/harness/setup_comfyui.sh and tests/run.sh: quiet CMD... runs CMD with its output
# held back, then prints it without pip's "Location ... is ignored" lines (one for each local index
# the machine's pip config names that --isolated or a constraint makes it skip: harmless noise that
# hides real output) and blank lines; returns CMD's exit status.
quiet() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  grep -v -E 'Location .* is ignored|^[[:space:]]*$' "$log" || true
  rm -f "$log"
  return "$rc"
}
