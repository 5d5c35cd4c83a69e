// Drives the real ComfyUI page in headless Chromium and records what the Recall frontend
// shows. tests/integration/test_frontend_e2e.py starts the server, runs this script and
// asserts on the JSON it prints (last line of stdout).
//
//   node recall_e2e.mjs --url http://127.0.0.1:PORT --out DIR --image-a a.png --image-b b.png --vae vae.safetensors
//
// image-a and image-b hold the same pixels under two names: ComfyUI's own cache sees two
// different inputs and runs the Recall node again; Recall sees the same content and hits.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const { values: opt } = parseArgs({
  options: {
    url: { type: "string" },
    out: { type: "string" },
    "image-a": { type: "string" },
    "image-b": { type: "string" },
    vae: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "timeout-ms": { type: "string", default: "240000" },
  },
});
const TIMEOUT = Number(opt["timeout-ms"]);
const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

function log(...args) {
  console.error("[e2e]", ...args);
}

async function serverPost(path, body) {
  const response = await fetch(`${opt.url}${path}`, { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" } });
  if (!response.ok) throw new Error(`POST ${path}: HTTP ${response.status} ${await response.text()}`);
  return response;
}

function prompt(imageName) {
  return {
    1: { class_type: "LoadImage", inputs: { image: imageName } },
    2: { class_type: "VAELoader", inputs: { vae_name: opt.vae } },
    3: { class_type: "RecallVAEEncode", inputs: { pixels: ["1", 0], vae: ["2", 0] } },
    4: { class_type: "SaveLatent", inputs: { samples: ["3", 0], filename_prefix: "recall_e2e" } },
  };
}

// In the page: load the workflow (first run) or point its LoadImage at another file name,
// queue it, wait for the run to end, and read the Recall node's badges the way litegraph
// draws them (node.badges).
async function runInPage(page, { load = null, image = null } = {}) {
  return await page.evaluate(async ({ load, image }) => {
    const { app } = window.comfyAPI.app;
    const { api } = window.comfyAPI.api;
    if (load) {
      app.loadApiJson(load, "recall_e2e.json");
      app.canvas.ds.offset[0] += 320; // out from under the sidebar panel, for the screenshots
      app.canvas.setDirty(true, true);
    }
    if (image) {
      const loader = app.graph.nodes.find((n) => n.type === "LoadImage");
      loader.widgets.find((w) => w.name === "image").value = image;
    }
    const done = new Promise((resolve) => {
      const finish = (kind) => (event) => resolve({ kind, detail: event.detail });
      api.addEventListener("execution_success", finish("success"), { once: true });
      api.addEventListener("execution_error", finish("error"), { once: true });
    });
    const events = [];
    const onRecall = (event) => events.push(event.detail);
    api.addEventListener("recall.node", onRecall);
    await app.queuePrompt(0, 1);
    const end = await done;
    api.removeEventListener("recall.node", onRecall);
    const node = app.graph.nodes.find((n) => n.type === "RecallVAEEncode");
    const badges = (node?.badges ?? []).map((b) => (typeof b === "function" ? b() : b))
      .map((b) => b?.text ?? "").filter((text) => text.length > 0);
    return { end: end.kind, error: end.kind === "error" ? end.detail?.exception_message : null, events, badges,
      status: node?.recallStatus?.status ?? null };
  }, { load, image });
}

async function panelCounters(page) {
  return await page.evaluate(() => {
    const read = (row) => {
      const fields = Object.fromEntries([...row.querySelectorAll("[data-field]")]
        .map((cell) => [cell.dataset.field, cell.textContent.trim()]));
      const rate = row.querySelector("[data-field=hitRate]");
      return { ...fields, hits: Number(rate?.dataset.hits ?? NaN), misses: Number(rate?.dataset.misses ?? NaN) };
    };
    const rows = {};
    for (const row of document.querySelectorAll(".recall-panel [data-tier]")) {
      rows[row.dataset.tier] = read(row);
    }
    return rows;
  });
}

async function waitForPanel(page, predicate, what) {
  const deadline = Date.now() + 30000;
  let last = null;
  while (Date.now() < deadline) {
    last = await panelCounters(page);
    if (last.total && predicate(last)) return last;
    await page.waitForTimeout(200);
  }
  throw new Error(`the panel never showed ${what}; last seen ${JSON.stringify(last)}`);
}

const GB = 1024 ** 3;

async function serverGet(path) {
  const response = await fetch(`${opt.url}${path}`);
  if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status} ${await response.text()}`);
  return await response.json();
}

async function pollServer(path, predicate, what) {
  const deadline = Date.now() + 30000;
  let last = null;
  while (Date.now() < deadline) {
    last = await serverGet(path);
    if (predicate(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`GET ${path} never showed ${what}; last ${JSON.stringify(last)}`);
}

// Two animation frames: the canvas has drawn what the last event changed.
async function painted(page) {
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
}

async function main() {
  mkdirSync(opt.out, { recursive: true });
  const result = { screenshots: [], runs: [], console_errors: [] };
  // A fresh user would get the template browser over the canvas; this is not a first visit.
  await serverPost("/api/settings", { "Comfy.TutorialCompleted": true });
  await serverPost("/recall/clear", {});
  await serverPost("/recall/settings", { ram_bytes: 5 * GB });

  const browser = await chromium.launch({ executablePath: opt.chromium, args: CHROMIUM_FLAGS, headless: true });
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
    page.setDefaultTimeout(TIMEOUT);
    page.on("console", (msg) => {
      if (msg.type() === "error" && /recall/i.test(msg.text())) result.console_errors.push(msg.text());
    });
    page.on("pageerror", (error) => {
      if (/recall/i.test(String(error.stack ?? error))) result.console_errors.push(String(error));
    });
    await page.goto(opt.url, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => window.comfyAPI?.app?.app?.graph && document.querySelector(".recall-tab-button"));
    log("page loaded");

    // Settings: the dialog shows what the server runs with (5 GB, set before the page loaded)...
    const settingValue = (id) => page.evaluate((key) => window.comfyAPI.app.app.extensionManager.setting.get(key), id);
    const setSetting = (id, value) => page.evaluate(([key, v]) => window.comfyAPI.app.app.extensionManager.setting.set(key, v),
      [id, value]);
    await page.waitForFunction(() => window.comfyAPI.app.app.extensionManager.setting.get("Recall.Cache.RamGB") === 5,
      null, { timeout: 30000 }).catch(() => {});
    result.settings_ui = { enabled: await settingValue("Recall.Cache.Enabled"), ram_gb: await settingValue("Recall.Cache.RamGB") };
    // ...and a change in the dialog goes to the server through POST /recall/settings.
    await setSetting("Recall.Cache.RamGB", 3);
    result.settings_after_change = await pollServer("/recall/settings", (s) => s.ram_bytes !== 5 * GB, "the new RAM cap");
    await setSetting("Recall.Cache.RamGB", 4);
    await pollServer("/recall/settings", (s) => s.ram_bytes === 4 * GB, "the RAM cap put back");
    // A value the cache refuses is put back, with a toast saying why.
    await page.evaluate(() => window.comfyAPI.app.app.extensionManager.setting.set("Recall.Cache.RamGB", -2));
    await page.waitForSelector(".p-toast-message", { timeout: 30000 });
    await page.waitForFunction(() => window.comfyAPI.app.app.extensionManager.setting.get("Recall.Cache.RamGB") !== -2,
      null, { timeout: 30000 }).catch(() => {});
    result.refused_setting = {
      toasts: await page.$$eval(".p-toast-message", (els) => els.map((e) => e.textContent.trim())),
      ui_after: await page.evaluate(() => window.comfyAPI.app.app.extensionManager.setting.get("Recall.Cache.RamGB")),
      server_after: (await serverGet("/recall/settings")).ram_bytes,
    };
    await page.evaluate(() => window.comfyAPI.app.app.extensionManager.toast.removeAll());
    await page.waitForSelector(".p-toast-message", { state: "detached", timeout: 30000 });

    // The Settings dialog has a Recall category with those settings.
    await page.evaluate(() => window.comfyAPI.app.app.extensionManager.command.execute("Comfy.ShowSettingsDialog"));
    await page.locator(".settings-sidebar, .p-dialog").getByText("Recall", { exact: true }).first().click();
    await page.getByText("RAM tier: size cap (GB)", { exact: true }).waitFor({ timeout: 30000 });
    result.settings_dialog = await page.$$eval(".settings-tab-panels .form-label span", (els) => els.map((e) => e.textContent.trim()));
    const settingsShot = join(opt.out, "recall_settings.png");
    await page.screenshot({ path: settingsShot });
    result.screenshots.push(settingsShot);
    await page.keyboard.press("Escape");
    await page.waitForSelector(".settings-tab-panels", { state: "detached", timeout: 30000 });

    await page.click(".recall-tab-button");
    result.panel_before = await waitForPanel(page, (rows) => rows.total.entries === "0", "an empty cache");
    log("panel open", JSON.stringify(result.panel_before.total));

    result.runs.push(await runInPage(page, { load: prompt(opt["image-a"]) }));
    log("run 1", JSON.stringify(result.runs[0]));
    result.panel_after_miss = await waitForPanel(page, (rows) => Number(rows.total.entries) >= 1, "the stored entry");
    await painted(page);
    const missShot = join(opt.out, "recall_miss.png");
    await page.screenshot({ path: missShot });
    result.screenshots.push(missShot);

    result.runs.push(await runInPage(page, { image: opt["image-b"] }));
    log("run 2", JSON.stringify(result.runs[1]));
    const hitsBefore = result.panel_after_miss.total.hits;
    result.panel_after_hit = await waitForPanel(page, (rows) => rows.total.hits > hitsBefore, "a hit");
    await painted(page);
    const hitShot = join(opt.out, "recall_hit.png");
    await page.screenshot({ path: hitShot });
    result.screenshots.push(hitShot);

    // Same prompt again: ComfyUI serves every node from its own cache, Recall's node does not run.
    result.runs.push(await runInPage(page, {}));
    log("run 3", JSON.stringify(result.runs[2]));

    // A backend going down: the toast (the event is the one nodes/events.py sends).
    await page.evaluate(() => window.comfyAPI.api.api.dispatchEvent(new CustomEvent("recall.backend",
      { detail: { backend: "redis", state: "down", message: "Redis at 127.0.0.1:6379 refused the connection." } })));
    await page.waitForSelector(".p-toast-message", { timeout: 30000 });
    result.toasts = await page.$$eval(".p-toast-message", (els) => els.map((e) => e.textContent.trim()));
    const toastShot = join(opt.out, "recall_toast.png");
    await page.screenshot({ path: toastShot });
    result.screenshots.push(toastShot);

    await page.click(".recall-panel button[data-clear-all]");
    await page.click(".p-dialog button:has-text('Confirm')");
    result.panel_after_clear = await waitForPanel(page, (rows) => rows.total.entries === "0", "the cleared cache");
    const clearShot = join(opt.out, "recall_cleared.png");
    await page.screenshot({ path: clearShot });
    result.screenshots.push(clearShot);
    result.stats_after_clear = await serverGet("/recall/stats");
  } catch (error) {
    // What the page looked like when it went wrong, and how far the run got.
    try {
      const shot = join(opt.out, "recall_failure.png");
      await browser.contexts()[0]?.pages()[0]?.screenshot({ path: shot });
      log(`failure screenshot: ${shot}`);
    } catch {
      // the browser itself is gone
    }
    log(`partial result: ${JSON.stringify(result).slice(0, 3000)}`);
    throw error;
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
