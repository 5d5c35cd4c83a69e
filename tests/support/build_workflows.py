"""Regenerate workflows/*.json and their .jpg previews from the real ComfyUI page.

    .venv/bin/python tests/support/build_workflows.py [--only NAME] [--out DIR]

Starts a ComfyUI server (the harness's: see bench/harness/comfy_env.py) with the pack linked in
under a folder name without spaces (aiohttp cannot serve a pack's js/ from a folder whose name
has a space, and the page needs the pack's frontend), runs build_workflows.mjs in headless
Chromium against it, and stops the server. The graph specs live in build_workflows.mjs.
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SUPPORT_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(SUPPORT_DIR.parent.parent))  # run as a script: make the repo's `bench` importable

from bench.harness import comfy_env
from bench.harness.comfy_server import PACK_FOLDER_NAME, ComfyServer, prepare_base_dir

WEB_SAFE_FOLDER = "comfyui-recall"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SUPPORT_DIR.parent.parent / "workflows")
    parser.add_argument("--only", help="build one workflow (its base name)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed (needed to drive the page with playwright-core)")
    install, why = comfy_env.find_comfyui(build=True)
    if install is None:
        raise SystemExit(why)
    with tempfile.TemporaryDirectory(prefix="recall-workflows-") as tmp:
        base = prepare_base_dir(Path(tmp))
        (base / "custom_nodes" / PACK_FOLDER_NAME).rename(base / "custom_nodes" / WEB_SAFE_FOLDER)
        # A fresh user opens on the template dialog (and a minimap): the previews should show the graph.
        settings = base / "user" / "default" / "comfy.settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps({"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}))
        server = ComfyServer(Path(install.path), Path(install.python), base).start()
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            cmd = [node, str(SUPPORT_DIR / "build_workflows.mjs"), "--url", server.url, "--out", str(args.out.resolve()),
                   "--chromium", args.chromium] + (["--only", args.only] if args.only else [])
            done = subprocess.run(cmd, check=False, cwd=SUPPORT_DIR, timeout=600)
        finally:
            server.stop()
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
