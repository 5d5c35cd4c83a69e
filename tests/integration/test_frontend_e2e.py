"""The Recall frontend in the real ComfyUI page, in headless Chromium (tests/e2e/recall_e2e.mjs).

One browser session per module, on the frontend of the ComfyUI under test (1.27 with 0.3.64,
1.35 with 0.8.0): the settings dialog and its refusals; the template browser; a
RecallVAEEncode workflow run with an image, another image, the first image's pixels under
another name (ComfyUI re-runs the node, Recall hits), unchanged (the node does not run), and
with the cache switched off, on the LiteGraph canvas and, where the frontend has them, as
Vue nodes ("Nodes 2.0"); the disk tier failing; Clear all. Badges are read from what is
drawn (the canvas's text calls and pixels) or rendered (the Vue node's DOM), the panel from
its DOM; each test below checks one thing the user relies on. Skips with a notice when node,
chromium or playwright-core is missing.

Screenshots go to $RECALL_E2E_ARTIFACTS when set (else tests/e2e/artifacts/, gitignored).
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from recall_pack.bench.harness.comfy_client import write_input_image
from recall_pack.bench.harness.comfy_server import PACK_FOLDER_NAME, ComfyServer, prepare_base_dir

E2E_DIR = Path(__file__).resolve().parent.parent / "e2e"
WORKFLOWS = Path(__file__).resolve().parent.parent.parent / "workflows"
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
    module = PACK_FOLDER_NAME
    if " " in PACK_FOLDER_NAME:
        link.rename(link.with_name(WEB_SAFE_FOLDER))
        module = WEB_SAFE_FOLDER
    server = ComfyServer(Path(comfyui.path), Path(comfyui.python), base).start()
    label = f"comfyui-{comfyui.version}" if getattr(comfyui, "version", None) else Path(comfyui.path).parent.name
    out = Path(os.environ.get("RECALL_E2E_ARTIFACTS") or E2E_DIR / "artifacts")
    try:
        images = {"a": 7, "a2": 7, "b": 8, "c": 9, "d": 10}  # a and a2: the same pixels under two names
        for key, seed in images.items():
            write_input_image(server.input_dir, f"e2e_{key}.png", 64, 64, seed=seed)
        args = [arg for key in images for arg in (f"--image-{key}", f"e2e_{key}.png")]
        done = subprocess.run(
            [node, "recall_e2e.mjs", "--url", server.url, "--out", str(out), "--label", label, "--template-module", module, *args,
             "--vae", models["sd15_vae"].name, "--disk-dir", str(server.user_dir / "recall" / "cache"),
             "--chromium", str(CHROMIUM)],
            cwd=E2E_DIR, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"recall_e2e.mjs failed ({done.returncode}):\n{done.stderr[-6000:]}\n"
                        f"ComfyUI log tail:\n{server.log_tail(60)}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.stop()
    print(f"\nfrontend {result.get('frontend')} screenshots: {', '.join(result['screenshots'])}")
    return result


def seconds(s: float) -> str:
    """js/recall_format.js formatSeconds, for the values a 64x64 test image gives."""
    return "0 s" if s <= 0 else f"{s:.2f} s" if s < 1 else f"{s:.1f} s"


CANVAS_RUNS = ["canvas_miss", "canvas_miss_other", "canvas_hit", "canvas_off"]
VUE_RUNS = ["vue_miss", "vue_hit", "vue_off"]
MODES = [pytest.param("canvas", id="canvas"), pytest.param("vue", id="vue-nodes")]


def runs_of(page_run, mode):
    if mode == "vue" and not page_run["vue_available"]:
        assert not str(page_run["frontend"]).startswith("1.35"), "frontend 1.35 has Vue nodes: they must be tested"
        pytest.skip(f"frontend {page_run['frontend']} has no Nodes 2.0 mode")
    return {name.split("_", 1)[1]: run for name, run in page_run["runs"].items() if name.startswith(mode + "_")}


@pytest.mark.parametrize("mode", MODES)
def test_first_run_badge_says_miss_and_why(page_run, mode):
    miss = runs_of(page_run, mode)["miss"]
    assert miss["end"] == "success", miss["error"]
    assert miss["seen"]["texts"] == ["MISS · first run"], miss["seen"]


@pytest.mark.parametrize("mode", MODES)
def test_repeat_with_the_same_pixels_says_hit_with_the_servers_time_saved(page_run, mode):
    hit = runs_of(page_run, mode)["hit"]
    assert hit["end"] == "success", hit["error"]
    [event] = hit["events"]
    assert event["status"] == "hit" and event["saved_s"] > 0
    assert hit["seen"]["texts"] == [f"HIT RAM · saved {seconds(event['saved_s'])}"], hit["seen"]


def test_other_pixels_miss_on_the_canvas(page_run):
    other = page_run["runs"]["canvas_miss_other"]
    [event] = other["events"]
    assert event["status"] == "miss"
    assert other["seen"]["texts"] == [f"MISS · {event['reason']}"], other["seen"]


@pytest.mark.parametrize("mode", MODES)
def test_a_node_that_did_not_run_shows_no_badge(page_run, mode):
    not_run = runs_of(page_run, mode)["not_run"]
    assert not_run["end"] == "success", not_run["error"]
    assert not_run["events"] == []
    assert not_run["seen"]["texts"] == [], not_run["seen"]


@pytest.mark.parametrize("mode", MODES)
def test_with_the_cache_switched_off_the_badge_says_recall_off(page_run, mode):
    off = runs_of(page_run, mode)["off"]
    assert off["end"] == "success", off["error"]
    assert [e["status"] for e in off["events"]] == ["off"]
    assert off["seen"]["texts"] == ["Recall off"], off["seen"]


BADGE_RGB = {"HIT": (0x1F, 0x7A, 0x3A), "MISS": (0xE0, 0xA5, 0x26), "Recall off": (0x5C, 0x5C, 0x5C)}


def expected_rgb(text: str):
    return next(rgb for prefix, rgb in BADGE_RGB.items() if text.startswith(prefix))


@pytest.mark.parametrize("run", CANVAS_RUNS)
def test_canvas_badge_sits_above_the_title_from_the_nodes_left_edge_legibly(page_run, run):
    seen = page_run["runs"][run]["seen"]
    [badge] = seen["badges"]
    assert badge["badge_left"] >= badge["node_left"] - 1, badge  # never hangs past the left edge
    assert badge["badge_bottom"] <= badge["title_top"] + 1, badge  # above the title bar, not over it
    assert badge["font_px_on_screen"] >= 13, badge
    assert all(abs(a - b) <= 12 for a, b in zip(badge["background"], expected_rgb(badge["text"]))), badge
    assert seen["title_drawn"] == "VAE Encode (Recall)", seen


@pytest.mark.parametrize("run", VUE_RUNS)
def test_vue_node_badge_sits_above_the_node_and_leaves_the_title_whole(page_run, run):
    runs_of(page_run, "vue")
    seen = page_run["runs"][run]["seen"]
    badge, box = seen["badge"], seen["node"]
    assert badge["on_top"], seen  # nothing covers it
    assert badge["rect"]["left"] >= box["left"] - 1, seen
    assert badge["rect"]["bottom"] <= box["top"] + 1, seen
    assert badge["font_px"] * seen["zoom"] >= 13 or badge["font_px"] >= 13, seen
    assert not seen["title"]["truncated"] and seen["title"]["text"] == "VAE Encode (Recall)", seen


def test_panel_counts_two_images_once_each_with_their_copies_per_tier(page_run):
    cards = page_run["panel_after_runs"]["cards"]
    total = cards["total"]["fields"]
    assert total["entries"]["text"] == "2 encodings", total
    assert total["copies"]["text"] == "RAM 2, Disk 2", total
    assert cards["ram"]["fields"]["entries"]["text"].startswith("2 copies, "), cards["ram"]
    assert cards["disk"]["fields"]["entries"]["text"].startswith("2 copies, "), cards["disk"]


def test_panel_says_what_each_hit_rate_is_of(page_run):
    cards = page_run["panel_after_runs"]["cards"]
    assert cards["total"]["fields"]["hitRate"]["text"] == "33 % (1 of 3 lookups)"
    assert "Answered (of every lookup)" in cards["ram"]["labels"]
    assert cards["ram"]["fields"]["hitRate"]["text"] == "33 % (1 of 3)"
    assert "Answered (of lookups RAM missed)" in cards["disk"]["labels"]
    assert cards["disk"]["fields"]["hitRate"]["text"] == "0 % (0 of 2)"


def test_panel_labels_lifetime_counters_and_explains_each_tier(page_run):
    shown = page_run["panel_after_runs"]
    assert shown["cards"]["total"]["head"].startswith("Since ComfyUI started")
    assert shown["summary"].startswith("Recall: 1 hit · ") and shown["summary"].endswith(" saved since start-up")
    for tier in ("ram", "disk"):
        assert len(shown["cards"][tier]["help"]) > 20, shown["cards"][tier]
        assert shown["cards"][tier]["health"] == "up"
    assert not any("amespace" in h for h in shown["headings"]), shown["headings"]  # single user: no namespace jargon


def test_the_whole_saving_stays_on_the_sidebar_icon(page_run):
    badge = page_run["saving_badge"]
    assert badge["text"] and badge["text"][-1] in "smh", badge
    assert badge["label"] == page_run["panel_after_runs"]["summary"], badge


def test_a_failed_disk_tier_is_shown_down_with_a_toast_in_words(page_run):
    disk = page_run["panel_disk_down"]["cards"]["disk"]
    assert disk["health"] == "down" and "not working" in disk["head"], disk
    [toast] = [t for t in page_run["down_toasts"] if "stopped working" in t]
    assert "disk cache stopped working" in toast and "keeps working from memory" in toast, toast
    assert "Errno" not in toast and "/" not in toast.replace("n/a", ""), toast


def test_clear_all_empties_the_cache_says_what_was_freed_and_keeps_lifetime_counts(page_run):
    shown = page_run["panel_after_clear"]
    assert shown["cards"]["total"]["fields"]["entries"]["text"] == "0 encodings"
    assert shown["notice"].startswith("Cleared ") and " copies" in shown["notice"], shown["notice"]
    assert int(shown["cards"]["total"]["fields"]["hitRate"]["hits"]) >= 1  # since start-up, not since the clear
    assert page_run["stats_after_clear"]["totals"]["entries"] == 0


def test_settings_dialog_shows_the_servers_values_and_writes_through_the_route(page_run):
    assert page_run["settings_ui"] == {"enabled": True, "ram_gb": 5}  # the server was set to 5 GB first
    assert page_run["settings_after_change"]["ram_bytes"] == 3 * GB


def test_two_changes_in_a_row_end_at_the_second_even_when_the_first_answer_is_slow(page_run):
    assert page_run["changes_in_a_row"] == {"ui_after": 4, "server_after": 4 * GB, "posts": 2}


def test_settings_list_only_what_applies_in_tier_order(page_run):
    labels = page_run["settings_dialog"]
    assert {"Enable the Recall cache", "RAM tier: size cap (GB)", "Disk tier: size cap (GB)",
            "Image encodings: keep in memory (minutes)"} <= set(labels), labels
    assert not any(label.startswith("VRAM") for label in labels), labels  # the test server runs --cpu
    assert labels.index("RAM tier: size cap (GB)") < labels.index("Disk tier: size cap (GB)")


@pytest.mark.parametrize("case, words", [
    ("negative", "The RAM cap cannot be negative (you typed -3 GB)."),
    ("too_large", "The RAM cap of 99,999,999 GB is more than this machine's memory"),
    ("emptied", "The RAM cap is empty. Type a number (0 turns the tier off)."),
])
def test_a_setting_that_cannot_be_meant_is_refused_in_words_and_put_back(page_run, case, words):
    refused = page_run["refusals"][case]
    assert refused["ui_after"] == 4 and refused["server_after"] == 4 * GB, refused
    assert any(words in text and "It stays at 4 GB." in text for text in refused["toasts"]), refused["toasts"]
    assert not any("null" in text for text in refused["toasts"]), refused["toasts"]


def test_a_minus_sign_typed_into_the_dialog_is_refused_not_dropped(page_run):
    assert any("cannot be negative" in text for text in page_run["typed_refusal"]), page_run["typed_refusal"]


def test_each_template_card_shows_its_title_and_one_line_description(page_run):
    shown = {t["name"]: t for t in page_run["templates"]}
    files = sorted(WORKFLOWS.glob("*.json"))
    assert sorted(shown) == [f.stem for f in files]
    for path in files:
        meta = json.loads(path.read_text(encoding="utf-8"))["extra"]["recall_template"]
        card = shown[path.stem]
        assert (card["title"], card["description"]) == (meta["title"], meta["description"]), card
        assert card["thumb"] and card["thumb"]["w"] == card["thumb"]["h"] >= 256, card  # square: no crop in the card


def test_a_template_opens_with_every_node_in_view(page_run):
    view = page_run["template_view"]
    width, height = view["window"]["width"], view["window"]["height"]
    for node in view["nodes"]:
        assert node["left"] >= 0 and node["top"] >= 0 and node["right"] <= width and node["bottom"] <= height, node
        for b in view["blockers"]:
            overlap = min(node["right"], b["right"]) > max(node["left"], b["left"]) and \
                min(node["bottom"], b["bottom"]) > max(node["top"], b["top"])
            assert not overlap, (node, b)


def test_the_page_logs_no_recall_errors(page_run):
    assert page_run["console_errors"] == []


def test_screenshots_are_written(page_run):
    assert len(page_run["screenshots"]) >= 8
    for path in page_run["screenshots"]:
        assert Path(path).stat().st_size > 10_000, path
