// Drives the real ComfyUI page in headless Chromium and records what the Recall frontend
// shows: what the canvas draws (its fillText calls and pixels), what Vue nodes render (DOM),
// the panel, the settings dialog, toasts and the template browser. test_frontend_e2e.py
// starts the server, runs this script and asserts on the JSON it prints (last line of stdout).
//
//   node recall_e2e.mjs --url http://127.0.0.1:PORT --out DIR --vae vae.safetensors --disk-dir DIR
//        --image-a a.png --image-a2 a2.png --image-b b.png --image-c c.png --image-d d.png
//
// a and a2 hold the same pixels under two names (ComfyUI runs the node again, Recall hits);
// b, c and d hold other pixels (misses).
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

import { canvasBadges, vueBadges } from "./recall_e2e_read.mjs";

const { values: opt } = parseArgs({
  options: {
    url: { type: "string" },
    out: { type: "string" },
    "image-a": { type: "string" },
    "image-a2": { type: "string" },
    "image-b": { type: "string" },
    "image-c": { type: "string" },
    "image-d": { type: "string" },
    vae: { type: "string" },
    "disk-dir": { type: "string" },
    label: { type: "string", default: "page" },
    "template-module": { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "timeout-ms": { type: "string", default: "240000" },
  },
});
const TIMEOUT = Number(opt["timeout-ms"]);
const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const GB = 1024 ** 3;
const RECALL_NODE = "3";

function log(...args) {
  console.error("[e2e]", ...args);
}

async function serverPost(path, body) {
  const response = await fetch(`${opt.url}${path}`, { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" } });
  if (!response.ok) throw new Error(`POST ${path}: HTTP ${response.status} ${await response.text()}`);
  return response;
}

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

function prompt(imageName) {
  return {
    1: { class_type: "LoadImage", inputs: { image: imageName } },
    2: { class_type: "VAELoader", inputs: { vae_name: opt.vae } },
    [RECALL_NODE]: { class_type: "RecallVAEEncode", inputs: { pixels: ["1", 0], vae: ["2", 0] } },
    4: { class_type: "SaveLatent", inputs: { samples: [RECALL_NODE, 0], filename_prefix: "recall_e2e" } },
  };
}

// In the page: load the workflow (first run) or point its LoadImage at another file, queue
// it and wait for the run to end. Returns the run's end and the recall.node events.
async function runInPage(page, { load = null, image = null } = {}) {
  return await page.evaluate(async ({ load, image }) => {
    const { app } = window.comfyAPI.app;
    const { api } = window.comfyAPI.api;
    if (load) {
      app.loadApiJson(load, "recall_e2e.json");
      const node = app.graph.getNodeById(3);
      // the Recall node in the middle of the free canvas, at 100 % zoom
      app.canvas.ds.scale = 1;
      app.canvas.ds.offset = [700 - node.pos[0], 380 - node.pos[1]];
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
    return { end: end.kind, error: end.kind === "error" ? end.detail?.exception_message : null, events };
  }, { load, image });
}

// A run, then what the user sees on the Recall node in the current node mode.
async function runAndRead(page, mode, args, shot = null) {
  const run = await runInPage(page, args);
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  run.seen = mode === "vue" ? await vueBadges(page, RECALL_NODE) : await canvasBadges(page, RECALL_NODE);
  if (shot) run.screenshot = await screenshot(page, shot);
  return run;
}

const screenshots = [];
async function screenshot(page, name, options = {}) {
  const path = join(opt.out, `${opt.label}_${name}.png`);
  await page.screenshot({ path, ...options });
  screenshots.push(path);
  return path;
}

// The panel as shown: every [data-field] of every card, keyed by card.
async function panelShown(page) {
  return await page.evaluate(() => {
    const cards = {};
    for (const card of document.querySelectorAll(".recall-panel [data-tier]")) {
      const fields = {};
      for (const cell of card.querySelectorAll("[data-field]")) {
        fields[cell.dataset.field] = { text: cell.textContent.trim(), ...cell.dataset };
        delete fields[cell.dataset.field].field;
      }
      const head = card.querySelector(".recall-card-head")?.textContent.trim() ?? "";
      cards[card.dataset.tier] = { head, health: card.dataset.health ?? null, help: card.querySelector(".recall-help")?.textContent.trim() ?? "",
        labels: [...card.querySelectorAll(".recall-line-label")].map((e) => e.textContent.trim()), fields };
    }
    return {
      summary: document.querySelector(".recall-panel [data-field=summary]")?.textContent.trim() ?? null,
      notice: document.querySelector(".recall-panel [data-field=notice]")?.textContent.trim() ?? null,
      headings: [...document.querySelectorAll(".recall-panel h4")].map((e) => e.textContent.trim()),
      cards,
    };
  });
}

async function waitForPanel(page, predicate, what) {
  const deadline = Date.now() + 30000;
  let last = null;
  while (Date.now() < deadline) {
    last = await panelShown(page);
    try {
      if (last.cards.total && predicate(last)) return last;
    } catch {
      // a card it asks about is not there yet
    }
    await page.waitForTimeout(250);
  }
  throw new Error(`the panel never showed ${what}; last seen ${JSON.stringify(last)}`);
}

const num = (field) => Number(field?.entries ?? field?.hits ?? NaN);

async function toastsShown(page, pattern) {
  await page.waitForFunction((source) => [...document.querySelectorAll(".p-toast-message")]
    .some((e) => new RegExp(source).test(e.textContent)), pattern, { timeout: 30000 });
  return await page.$$eval(".p-toast-message", (els) => els.map((e) => e.textContent.replace(/\s+/g, " ").trim()));
}

async function dismissToasts(page) {
  await page.evaluate(() => window.comfyAPI.app.app.extensionManager.toast.removeAll());
  await page.waitForSelector(".p-toast-message", { state: "detached", timeout: 30000 });
}

const settingValue = (page, id) => page.evaluate((key) => window.comfyAPI.app.app.extensionManager.setting.get(key), id);
const setSetting = (page, id, value) => page.evaluate(([key, v]) => window.comfyAPI.app.app.extensionManager.setting.set(key, v),
  [id, value]);

// Types a value into the dialog the way a user's refused entry reaches Recall, and records
// the toast, what the dialog shows afterwards and what the server kept.
async function refuse(page, value, pattern) {
  await setSetting(page, "Recall.Cache.RamGB", value);
  const toasts = await toastsShown(page, pattern);
  await page.waitForFunction(() => window.comfyAPI.app.app.extensionManager.setting.get("Recall.Cache.RamGB") === 4,
    null, { timeout: 30000 }).catch(() => {});
  const shown = { typed: value, toasts, ui_after: await settingValue(page, "Recall.Cache.RamGB"),
    server_after: (await serverGet("/recall/settings")).ram_bytes };
  await dismissToasts(page);
  return shown;
}

// Two changes made back to back while the answer to the first is slow (held 1.5 s): the
// dialog and the server must both end at the second value, as the user typed them.
async function changesInARow(page, first, second) {
  let held = 0;
  const hold = async (route) => {
    if (route.request().method() !== "POST" || held++ > 0) return route.continue();
    const response = await route.fetch();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await route.fulfill({ response });
  };
  await page.route("**/recall/settings", hold);
  try {
    await setSetting(page, "Recall.Cache.RamGB", first);
    await setSetting(page, "Recall.Cache.RamGB", second);
    await pollServer("/recall/settings", (s) => s.ram_bytes === second * GB, "the second of two changes");
    // Long enough for the held answer and anything it sets off to come back.
    await page.waitForTimeout(3000);
  } finally {
    await page.unroute("**/recall/settings", hold);
  }
  return { ui_after: await settingValue(page, "Recall.Cache.RamGB"),
    server_after: (await serverGet("/recall/settings")).ram_bytes, posts: held };
}

async function settingsChecks(page, result) {
  await page.waitForFunction(() => window.comfyAPI.app.app.extensionManager.setting.get("Recall.Cache.RamGB") === 5,
    null, { timeout: 30000 }).catch(() => {});
  result.settings_ui = { enabled: await settingValue(page, "Recall.Cache.Enabled"), ram_gb: await settingValue(page, "Recall.Cache.RamGB") };
  await setSetting(page, "Recall.Cache.RamGB", 3);
  result.settings_after_change = await pollServer("/recall/settings", (s) => s.ram_bytes !== 5 * GB, "the new RAM cap");
  result.changes_in_a_row = await changesInARow(page, 2, 4);
  await pollServer("/recall/settings", (s) => s.ram_bytes === 4 * GB, "the RAM cap put back");
  result.refusals = {
    negative: await refuse(page, -3, "negative"),
    too_large: await refuse(page, 99999999, "more than this machine"),
    emptied: await refuse(page, null, "is empty"),
  };
  result.refusal_screenshot = null;

  await page.evaluate(() => window.comfyAPI.app.app.extensionManager.command.execute("Comfy.ShowSettingsDialog"));
  await page.locator(".settings-sidebar, .p-dialog").getByText("Recall", { exact: true }).first().click();
  await page.getByText("RAM tier: size cap (GB)", { exact: true }).waitFor({ timeout: 30000 });
  result.settings_dialog = await page.$$eval(".settings-tab-panels .form-label span", (els) => els.map((e) => e.textContent.trim()));
  // a refusal as the user sees it: typed into the dialog's own field
  const field = page.getByText("RAM tier: size cap (GB)", { exact: true })
    .locator("xpath=ancestor::*[.//input][1]//input").first();
  // typed as a user types it: the number field handles keys itself
  await field.click();
  await field.press("Control+a");
  await page.keyboard.type("-3", { delay: 50 });
  await page.keyboard.press("Tab");
  result.typed_refusal = await toastsShown(page, "negative").catch(() => []);
  await screenshot(page, "settings_refused");
  await dismissToasts(page).catch(() => {});
  await page.keyboard.press("Escape");
  await page.waitForSelector(".settings-tab-panels", { state: "detached", timeout: 30000 });
}

async function templateChecks(page, result) {
  await page.evaluate(() => window.comfyAPI.app.app.extensionManager.command.execute("Comfy.BrowseTemplates"));
  const card = '[data-testid^="template-workflow-"][data-recall-template]';
  // 1.35 files a pack's templates under EXTENSIONS; 1.27 under the pack's own category.
  const nav = page.getByText(opt["template-module"], { exact: true }).first();
  await page.waitForSelector('[data-testid^="template-workflow-"]', { timeout: 60000 });
  if (!(await page.locator(card).count())) await nav.click({ timeout: 10000 }).catch(() => {});
  await page.waitForSelector(card, { timeout: 60000 });
  await page.waitForTimeout(500); // every card's metadata answered
  result.templates = [];
  for (const each of await page.locator(card).all()) {
    // previews load lazily, when their card scrolls into view
    await each.scrollIntoViewIfNeeded();
    await each.locator("img").first().evaluate((img) => img.complete && img.naturalWidth > 0 ? null
      : new Promise((resolve) => { img.addEventListener("load", resolve, { once: true }); setTimeout(resolve, 10000); }))
      .catch(() => {});
    result.templates.push(await each.evaluate((e) => ({
      name: e.dataset.recallTemplate,
      title: e.querySelector("h3")?.textContent.trim(),
      description: e.querySelector("p")?.textContent.trim(),
      thumb: e.querySelector("img") ? { w: e.querySelector("img").naturalWidth, h: e.querySelector("img").naturalHeight } : null,
    })));
  }
  await screenshot(page, "templates");
  // Open one: every node lands inside the window, clear of the side bar, top bar and run bar.
  await page.locator(`${card}[data-recall-template="svd_img2vid_recall"]`).click();
  await page.waitForFunction(() => window.comfyAPI.app.app.graph.nodes.some((n) => n.type === "RecallSVDImg2VidConditioning"),
    null, { timeout: 30000 });
  await page.waitForTimeout(500);
  result.template_view = await page.evaluate(() => {
    const { app } = window.comfyAPI.app;
    const rect = app.canvas.canvas.getBoundingClientRect();
    const blockers = [...document.querySelectorAll(".actionbar, .actionbar-container, .side-tool-bar-container, .comfyui-menu, .workflow-tabs-container, .litegraph-minimap, .minimap-main-container")]
      .map((e) => e.getBoundingClientRect()).filter((r) => r.width > 0 && r.height > 0)
      .map((r) => ({ left: r.left, top: r.top, right: r.right, bottom: r.bottom }));
    const nodes = app.graph.nodes.map((n) => {
      const [x, y] = app.canvas.ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - 30]);
      const s = app.canvas.ds.scale;
      return { title: n.title, left: rect.left + x, top: rect.top + y, right: rect.left + x + n.size[0] * s,
        bottom: rect.top + y + (n.size[1] + 30) * s };
    });
    return { window: { width: innerWidth, height: innerHeight }, nodes, blockers, scale: app.canvas.ds.scale };
  });
  await screenshot(page, "template_opened");
}

async function main() {
  mkdirSync(opt.out, { recursive: true });
  const result = { runs: {}, console_errors: [] };
  // A fresh user would get the template browser over the canvas; this is not a first visit.
  await serverPost("/api/settings", { "Comfy.TutorialCompleted": true, "Comfy.VueNodes.Enabled": false });
  await serverPost("/recall/clear", {});
  await serverPost("/recall/settings", { ram_bytes: 5 * GB, enabled: true });

  const browser = await chromium.launch({ executablePath: opt.chromium, args: CHROMIUM_FLAGS, headless: true });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    page.setDefaultTimeout(TIMEOUT);
    // Records what the canvas is told to draw, for canvasBadges().
    await page.addInitScript(() => {
      const fillText = CanvasRenderingContext2D.prototype.fillText;
      CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
        const into = window.__recallDrawn;
        if (into) {
          const m = this.getTransform();
          into.push({ text: String(text), x: m.a * x + m.c * y + m.e, y: m.b * x + m.d * y + m.f, scale: m.a,
            font: this.font, canvas: this.canvas });
        }
        return fillText.call(this, text, x, y, ...rest);
      };
    });
    page.on("console", (msg) => {
      if (msg.type() === "error" && /recall/i.test(msg.text())) result.console_errors.push(msg.text());
    });
    page.on("pageerror", (error) => {
      if (/recall/i.test(String(error.stack ?? error))) result.console_errors.push(String(error));
    });
    await page.goto(opt.url, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => window.comfyAPI?.app?.app?.graph && document.querySelector(".recall-tab-button"));
    result.frontend = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null);
    log("page loaded", result.frontend);

    await settingsChecks(page, result);
    log("settings checked");
    await templateChecks(page, result);
    log("templates checked");

    // Canvas mode: two images and a repeat, with the panel open.
    await page.click(".recall-tab-button");
    result.panel_before = await waitForPanel(page, (p) => p.cards.total.fields.entries.entries === "0", "an empty cache");
    const r = result.runs;
    r.canvas_miss = await runAndRead(page, "canvas", { load: prompt(opt["image-a"]) }, "canvas_miss");
    r.canvas_miss_other = await runAndRead(page, "canvas", { image: opt["image-b"] });
    r.canvas_hit = await runAndRead(page, "canvas", { image: opt["image-a2"] }, "canvas_hit");
    r.canvas_not_run = await runAndRead(page, "canvas", {});
    log("canvas runs", JSON.stringify(Object.values(r).map((x) => x.seen)));
    // what the server has counted by now; the panel and the icon must come to show that, not an earlier poll's
    const counted = (await pollServer("/recall/stats", (s) => s.totals.hits + s.totals.misses >= 3, "the three lookups")).totals;
    result.panel_after_runs = await waitForPanel(page, (p) => p.cards.disk && Number(p.cards.disk.fields.entries.entries) >= 2
      && p.cards.total.fields.hitRate.hits === String(counted.hits) && p.cards.total.fields.hitRate.misses === String(counted.misses),
      `both images on disk and ${counted.hits} hits, ${counted.misses} misses`);
    await screenshot(page, "panel");
    // refreshed shortly after each run's last report
    await page.waitForFunction((summary) => document.querySelector(".recall-tab-button")?.getAttribute("aria-label") === summary,
      result.panel_after_runs.summary, { timeout: 15000 }).catch(() => {});
    result.saving_badge = await page.evaluate(() => {
      const button = document.querySelector(".recall-tab-button");
      return { text: button?.querySelector(".recall-saving-badge")?.textContent ?? null, label: button?.getAttribute("aria-label") ?? null };
    });
    await setSetting(page, "Recall.Cache.Enabled", false);
    await pollServer("/recall/settings", (s) => s.enabled === false, "the cache switched off");
    r.canvas_off = await runAndRead(page, "canvas", { image: opt["image-c"] }, "canvas_off");
    await setSetting(page, "Recall.Cache.Enabled", true);
    await pollServer("/recall/settings", (s) => s.enabled === true, "the cache switched on");

    // Nodes 2.0 (Vue nodes), where the frontend has them (1.35; 1.27 has no such setting).
    result.vue_available = await page.evaluate(() => {
      const { app } = window.comfyAPI.app;
      // a setting the frontend registers (1.27 only knows the name)
      return Boolean(app.extensionManager.setting.settings?.["Comfy.VueNodes.Enabled"]);
    });
    if (result.vue_available) {
      await page.click(".recall-tab-button"); // close the panel: more canvas for the nodes
      await setSetting(page, "Comfy.VueNodes.Enabled", true);
      await page.waitForSelector(`.lg-node[data-node-id="${RECALL_NODE}"]`, { timeout: 60000 });
      await serverPost("/recall/clear", {});
      r.vue_miss = await runAndRead(page, "vue", { image: opt["image-a"] }, "vue_miss");
      r.vue_hit = await runAndRead(page, "vue", { image: opt["image-a2"] }, "vue_hit");
      r.vue_not_run = await runAndRead(page, "vue", {});
      await setSetting(page, "Recall.Cache.Enabled", false);
      await pollServer("/recall/settings", (s) => s.enabled === false, "the cache switched off");
      r.vue_off = await runAndRead(page, "vue", { image: opt["image-b"] }, "vue_off");
      await setSetting(page, "Recall.Cache.Enabled", true);
      await pollServer("/recall/settings", (s) => s.enabled === true, "the cache switched on");
      await setSetting(page, "Comfy.VueNodes.Enabled", false);
      await page.waitForSelector(".lg-node", { state: "detached", timeout: 60000 }).catch(() => {});
      await page.click(".recall-tab-button");
      log("vue runs", JSON.stringify([r.vue_miss.seen, r.vue_hit.seen, r.vue_off.seen]));
    }

    // A tier that fails: the cache folder becomes a file, as a broken mount would leave it.
    rmSync(opt["disk-dir"], { recursive: true, force: true });
    writeFileSync(opt["disk-dir"], "not a folder");
    r.disk_down = await runInPage(page, { image: opt["image-d"] });
    result.down_toasts = await toastsShown(page, "stopped working");
    result.panel_disk_down = await waitForPanel(page, (p) => p.cards.disk.health === "down", "the disk tier down");
    await screenshot(page, "disk_down");
    await dismissToasts(page);
    rmSync(opt["disk-dir"], { force: true });

    // Clear all: what was freed is said; lifetime counters stay, labelled as such.
    await page.click(".recall-panel button[data-clear-all]");
    await page.click(".p-dialog button:has-text('Confirm')");
    result.panel_after_clear = await waitForPanel(page, (p) => p.cards.total.fields.entries.entries === "0" && p.notice,
      "the cleared cache");
    await screenshot(page, "cleared");
    result.stats_after_clear = await serverGet("/recall/stats");
  } catch (error) {
    try {
      const pages = browser.contexts()[0]?.pages() ?? [];
      if (pages[0]) await screenshot(pages[0], "failure");
    } catch {
      // the browser itself is gone
    }
    log(`partial result: ${JSON.stringify(result).slice(0, 6000)}`);
    throw error;
  } finally {
    await browser.close();
  }
  result.screenshots = screenshots;
  writeFileSync(join(opt.out, `${opt.label}_result.json`), JSON.stringify(result, null, 2));
  console.log(JSON.stringify(result));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
