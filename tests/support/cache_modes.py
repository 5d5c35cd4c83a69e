"""ComfyUI's execution-cache modes, as each release's own command line offers them.

0.3.64 has the default, --cache-classic (the default spelled out), --cache-lru N and
--cache-none (a dependency-aware cache); 0.8.0 makes --cache-none a null cache and adds
--cache-ram [GB] (evicts outputs when free RAM falls under GB). The modes are read from the release's comfy/cli_args.py, so a test
parametrized with cache_modes() covers every mode of the release it runs on, and a
release that adds a mode these tests do not know fails loudly instead of going untested.
No ComfyUI import: the live-server suite runs in the test venv.
"""
import re
from pathlib import Path

# The arguments each flag is tested with. --cache-ram 4: evict only when under 4 GB free,
# so ComfyUI keeps outputs as the classic cache does on a machine with RAM to spare.
MODE_ARGS = {
    "--cache-classic": ["--cache-classic"],
    "--cache-lru": ["--cache-lru", "8"],
    "--cache-none": ["--cache-none"],
    "--cache-ram": ["--cache-ram", "4"],
}
# Modes in which ComfyUI keeps node outputs between runs (a repeated branch does not run).
KEEPS_OUTPUTS = {"default", "--cache-classic", "--cache-lru", "--cache-ram"}


def cache_flags(comfyui_path: Path) -> list[str]:
    """The --cache-* flags of the release's command line, in its order."""
    text = (Path(comfyui_path) / "comfy" / "cli_args.py").read_text(encoding="utf-8")
    return re.findall(r"""cache_group\.add_argument\(\s*["'](--cache-[a-z-]+)["']""", text)


def cache_modes(comfyui_path: Path | None) -> list[list[str]]:
    """[] (the default) and the arguments of every cache flag the release has."""
    if comfyui_path is None:
        return [[]]
    flags = cache_flags(comfyui_path)
    unknown = [flag for flag in flags if flag not in MODE_ARGS]
    if unknown:
        raise RuntimeError(f"ComfyUI at {comfyui_path} has cache modes the tests do not cover: {unknown} "
                           f"(expected only {sorted(MODE_ARGS)}). Add them to tests/support/cache_modes.py.")
    return [[]] + [MODE_ARGS[flag] for flag in flags]


def mode_name(args: list[str]) -> str:
    return args[0] if args else "default"


def keeps_outputs(args: list[str]) -> bool:
    return mode_name(args) in KEEPS_OUTPUTS
