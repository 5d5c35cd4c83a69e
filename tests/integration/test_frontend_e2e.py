"""The Recall frontend in the real ComfyUI page, in headless Chromium (tests/e2e/recall_e2e.mjs).

One browser session per module: load a RecallVAEEncode workflow, run it with an image,
run it again with the same pixels under another file name (ComfyUI re-runs the node,
Recall hits), run it a third time unchanged (ComfyUI serves it, the node does not run),
then clear the cache from the panel. The script records what the page showed; each test
below checks one thing the user relies on. Skips with a notice when node, chromium or
playwright-core is missing.

Screenshots go to $RECALL_E2E_ARTIFACTS when set (else the test's temporary folder).
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.comfy_client import write_input_image
from support.comfy_server import PACK_FOLDER_NAME, ComfyServer, prepare_base_dir

E2E_DIR = Path(__file__).resolve().parent.parent / "e2e"
CHROMIUM = Path(os.environ.get("RECALL_CHROMIUM", "/usr/bin/chromium"))
GB = 2**30
# aiohttp 3.14 (ComfyUI 0.3.64's) never matches a static prefix with a space in it, so
# ComfyUI cannot serve the js/ of a pack folder named with spaces; the page test uses one without.
WEB_SAFE_FOLDER = "recall_e2e-copy"


def _tools() -> tuple[str | None, str]:
    node = shutil.which("node")
    if node is None:
        return None, "node is not installed"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < 20:
        return None, f"node {version} is too old for playwright-core (needs >= 20)"
    if not CHROMIUM.exists():
        return None, f"chromium not found at {CHROMIUM} (apt-get install chromium, or set RECALL_CHROMIUM)"
    if not (E2E_DIR / "node_modules" / "playwright-core").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            return None, "playwright-core is not installed in tests/e2e and npm is missing"
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=E2E_DIR, capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            return None, f"npm ci in tests/e2e failed: {done.stderr[-800:]}"
    return node, ""


@pytest.fixture(scope="module")
def page_run(comfyui, models, tmp_path_factory):
    node, why = _tools()
    if node is None:
        pytest.skip(f"frontend end-to-end test skipped: {why}")
    base = prepare_base_dir(tmp_path_factory.mktemp("frontend-e2e"), {"sd15_vae": models["sd15_vae"]})
    link = base / "custom_nodes" / PACK_FOLDER_NAME
    if " " in PACK_FOLDER_NAME:
        link.rename(link.with_name(WEB_SAFE_FOLDER))
    server = ComfyServer(Path(comfyui.path), Path(comfyui.python), base).start()
    out = Path(os.environ.get("RECALL_E2E_ARTIFACTS") or tmp_path_factory.mktemp("frontend-e2e-shots"))
    try:
        for name in ("e2e_a.png", "e2e_b.png"):  # same pixels, two names
            write_input_image(server.input_dir, name, 64, 64, seed=7)
        done = subprocess.run(
            [node, "recall_e2e.mjs", "--url", server.url, "--out", str(out), "--image-a", "e2e_a.png",
             "--image-b", "e2e_b.png", "--vae", models["sd15_vae"].name, "--chromium", str(CHROMIUM)],
            cwd=E2E_DIR, capture_output=True, text=True, timeout=480)
        if done.returncode != 0:
            pytest.fail(f"recall_e2e.mjs failed ({done.returncode}):\n{done.stderr[-4000:]}\n"
                        f"ComfyUI log tail:\n{server.log_tail(60)}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.stop()
    print(f"\nfrontend screenshots: {', '.join(result['screenshots'])}")
    return result


def recall_badges(run: dict) -> list[str]:
    return [text for text in run["badges"] if text.startswith(("HIT", "MISS", "Recall off", "ERROR"))]


def test_first_run_badge_says_miss_and_why(page_run):
    first = page_run["runs"][0]
    assert first["end"] == "success", first["error"]
    assert recall_badges(first) == ["MISS · first run"]


def test_repeat_with_the_same_pixels_badge_says_hit_with_tier_and_time_saved(page_run):
    second = page_run["runs"][1]
    assert second["end"] == "success", second["error"]
    [event] = second["events"]
    assert event["status"] == "hit" and event["saved_s"] > 0
    [badge] = recall_badges(second)
    assert badge.startswith("HIT RAM · saved "), badge


def test_a_node_that_did_not_run_shows_no_badge(page_run):
    third = page_run["runs"][2]
    assert third["end"] == "success", third["error"]
    assert third["events"] == []
    assert recall_badges(third) == []


def test_panel_counters_move_with_each_run(page_run):
    before = page_run["panel_before"]["total"]
    after_miss = page_run["panel_after_miss"]["total"]
    after_hit = page_run["panel_after_hit"]["total"]
    assert before["entries"] == "0"
    assert int(after_miss["entries"]) >= 1 and after_miss["bytes"] != "0 B"
    assert after_miss["misses"] > before["misses"]
    assert after_hit["hits"] > after_miss["hits"]
    assert after_hit["saved"] != "0 s"
    assert page_run["panel_after_hit"]["ram"]["hits"] >= 1


def test_clear_all_in_the_panel_empties_every_tier(page_run):
    cleared = page_run["panel_after_clear"]
    assert all(row["entries"] == "0" and row["bytes"] == "0 B" for row in cleared.values()), cleared
    assert page_run["stats_after_clear"]["totals"]["entries"] == 0


def test_settings_dialog_shows_the_servers_values_and_writes_through_the_route(page_run):
    assert page_run["settings_ui"] == {"enabled": True, "ram_gb": 5}  # the server was set to 5 GB first
    assert page_run["settings_after_change"]["ram_bytes"] == 3 * GB


def test_settings_dialog_has_a_recall_category_with_the_runtime_settings(page_run):
    labels = set(page_run["settings_dialog"])
    assert {"Enable the Recall cache", "RAM tier: size cap (GB)", "Disk tier: size cap (GB)",
            "Image encodings: keep in memory (minutes)"} <= labels, labels


def test_a_refused_setting_is_put_back_and_explained(page_run):
    refused = page_run["refused_setting"]
    assert refused["ui_after"] == 4
    assert refused["server_after"] == 4 * GB
    assert any("setting not applied" in text and "-2" in text for text in refused["toasts"]), refused["toasts"]


def test_a_backend_going_down_shows_a_toast(page_run):
    assert any("redis cache unavailable" in text and "refused the connection" in text
               for text in page_run["toasts"]), page_run["toasts"]


def test_the_page_logs_no_recall_errors(page_run):
    assert page_run["console_errors"] == []


def test_screenshots_are_written(page_run):
    for path in page_run["screenshots"]:
        assert Path(path).stat().st_size > 10_000, path
