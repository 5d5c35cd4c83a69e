// recall.panel: the "Recall" sidebar tab. It says, for someone new to it, what the cache has
// saved since ComfyUI started, what it stores (each encoding counted once, with how many
// copies each tier keeps), what each tier is and whether it works, and how often each tier
// answered the lookups that reached it. Clear all / Clear per tier empty it (after a
// confirmation, then saying what was freed). While open it polls GET /recall/stats and also
// refreshes right after each "recall.node" event. The whole saving also stays on the tab's
// icon (recall_saving_badge.js), panel open or not.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { clearCache, getStats } from "./recall_client.js";
import { formatBytes, formatPercent, formatSeconds, nearSummary, savingSummary, summarizeNamespaces, summarizeStats }
  from "./recall_format.js";
import { debounce, latestOnly } from "./recall_state.js";
import { watchSaving } from "./recall_saving_badge.js";

const POLL_MS = 2000;

const STYLE = `
.recall-panel { padding: 0.75rem; font-size: 0.9rem; color: var(--fg-color); display: flex; flex-direction: column; gap: 0.6rem; }
.recall-panel h3 { margin: 0; font-size: 1.05rem; display: flex; gap: 0.5rem; align-items: baseline; }
.recall-panel h4 { margin: 0.4rem 0 0; font-size: 0.9rem; opacity: 0.8; }
.recall-panel .recall-state { font-size: 0.8rem; font-weight: normal; opacity: 0.75; }
.recall-panel .recall-card { border: 1px solid var(--border-color); border-radius: 6px; padding: 0.45rem 0.6rem; }
.recall-panel .recall-card.recall-total { background: var(--comfy-input-bg); }
.recall-panel .recall-card.recall-down { border-color: #d9534f; }
.recall-panel .recall-card-head { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: center;
  font-weight: 600; margin-bottom: 0.2rem; gap: 0.3rem 0.5rem; }
.recall-panel .recall-help { opacity: 0.7; font-size: 0.8rem; margin-bottom: 0.3rem; }
/* a narrow sidebar (1.27's) puts the value under its label instead of breaking "7.9 s" apart */
.recall-panel .recall-line { display: flex; flex-wrap: wrap; justify-content: space-between; gap: 0 0.6rem; }
.recall-panel .recall-line-label { opacity: 0.7; }
.recall-panel .recall-line-value { text-align: right; white-space: nowrap; margin-left: auto; }
.recall-panel .recall-big { font-size: 1.05rem; font-weight: 600; }
.recall-panel .recall-health { white-space: nowrap; font-size: 0.75rem; font-weight: 600; padding: 0.05rem 0.4rem; border-radius: 4px; }
.recall-panel .recall-health[data-health=up] { background: #1f7a3a; color: #fff; }
.recall-panel .recall-health[data-health=down] { background: #b3261e; color: #fff; }
.recall-panel button { white-space: nowrap; flex-shrink: 0; cursor: pointer; padding: 0.15rem 0.5rem; border-radius: 4px; font-size: 0.8rem;
  border: 1px solid var(--border-color); background: var(--comfy-input-bg); color: var(--input-text, var(--fg-color)); }
.recall-panel button:hover { filter: brightness(1.25); }
.recall-panel .recall-note { opacity: 0.75; font-size: 0.8rem; }
.recall-panel .recall-error { color: #e06c5a; font-size: 0.85rem; }
`;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

// One labelled line; data-field (+ data-*) lets the page test read what is shown.
function line(field, label, value, data = {}, title = "") {
  return el("div", { class: "recall-line", ...(title ? { title } : {}) }, el("span", { class: "recall-line-label" }, label),
    el("span", { class: "recall-line-value", dataset: { field, ...data } }, value));
}

function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

function totalCard(summary, clearAll) {
  const t = summary.totals;
  const lookups = t.hits + t.misses;
  const copies = summary.tiers.filter((row) => row.entries > 0).map((row) => `${row.label} ${row.entries}`).join(", ");
  return el("div", { class: "recall-card recall-total", "data-tier": "total" },
    el("div", { class: "recall-card-head" }, el("span", {}, "Since ComfyUI started"), clearAll),
    line("saved", "Encoding time saved", formatSeconds(t.saved_seconds), {}, "Clearing the cache does not reset these counts"),
    line("hitRate", "Found in the cache", lookups ? `${formatPercent(t.hitRate)} (${t.hits} of ${plural(lookups, "lookup")})` : "no lookups yet",
      { hits: String(t.hits), misses: String(t.misses) }),
    el("div", { class: "recall-card-head", style: "margin-top:0.4rem" }, el("span", {}, "Stored now")),
    line("entries", "Encodings", plural(t.entries, "encoding"), { entries: String(t.entries), copies: String(t.copies) }),
    line("copies", "Copies", t.copies ? copies : "none", {}, "An encoding may be kept in several tiers at once"));
}

function tierCard(row, clearButton) {
  const asked = row.hits + row.misses;
  const health = row.down ? "down" : "up";
  return el("div", { class: `recall-card${row.down ? " recall-down" : ""}`, "data-tier": row.tier, "data-health": health },
    el("div", { class: "recall-card-head" },
      el("span", {}, row.label, " ", el("span", { class: "recall-health", dataset: { health } }, row.down ? "not working" : "working")),
      clearButton),
    el("div", { class: "recall-help" }, row.down
      ? "This tier failed and is skipped; Recall works with the others (the ComfyUI log says why)."
      : row.help),
    line("entries", "Holds", `${plural(row.entries, "copy", "copies")}, ${formatBytes(row.bytes)}`,
      { entries: String(row.entries), bytes: String(row.bytes) }, `${row.bytes} bytes`),
    line("hitRate", `Answered (of ${row.askedFor})`, asked ? `${formatPercent(row.hitRate)} (${row.hits} of ${asked})` : "not asked yet",
      { hits: String(row.hits), misses: String(row.misses) }),
    line("saved", "Time saved by its hits", formatSeconds(row.saved_seconds)));
}

class RecallPanel {
  constructor(root) {
    this.root = root;
    this.timer = null;
    this.error = "";
    this.notice = "";
    this.stats = null;
    // a refresh asked for while the poll's is in flight runs after it: the event's counts are newer
    this.refresh = latestOnly(() => this.fetchAndRender());
    this.refreshSoon = debounce(() => void this.refresh(), 250);
    this.onNodeEvent = () => this.refreshSoon();
  }

  mount() {
    this.root.replaceChildren(el("style", {}, STYLE), el("div", { class: "recall-panel" }, "Loading…"));
    api.addEventListener("recall.node", this.onNodeEvent);
    api.addEventListener("recall.backend", this.onNodeEvent);
    this.timer = setInterval(() => {
      if (!document.hidden) void this.refresh();
    }, POLL_MS);
    void this.refresh();
  }

  unmount() {
    clearInterval(this.timer);
    this.timer = null;
    api.removeEventListener("recall.node", this.onNodeEvent);
    api.removeEventListener("recall.backend", this.onNodeEvent);
  }

  async fetchAndRender() {
    try {
      this.stats = await getStats();
      this.error = "";
    } catch (error) {
      this.error = `Could not read the cache statistics: ${error.message}`;
    }
    if (this.timer !== null) this.render();
  }

  async clear(target, what) {
    const dialog = app.extensionManager?.dialog;
    const message = `Clear ${what} from the Recall cache? The next runs encode again.`;
    const ok = dialog?.confirm
      ? await dialog.confirm({ title: "Recall: clear the cache", message, type: "default" })
      : window.confirm(message);
    if (!ok) return;
    try {
      const before = this.stats ? summarizeStats(this.stats) : null;
      const freed = target.tier ? before?.tiers.find((r) => r.tier === target.tier)?.bytes
        : before?.tiers.reduce((n, r) => n + r.bytes, 0);
      const answer = await clearCache(target);
      const n = Number(answer?.cleared) || 0;
      this.notice = `Cleared ${plural(n, "copy", "copies")}${freed ? `, ${formatBytes(freed)} freed` : ""}.`;
      this.error = "";
    } catch (error) {
      this.error = `Clear failed: ${error.message}`;
    }
    await this.refresh();
  }

  render() {
    const panel = el("div", { class: "recall-panel" });
    const stats = this.stats;
    const enabled = stats?.enabled !== false;
    panel.append(el("h3", {}, "Recall cache", el("span", { class: "recall-state", dataset: { enabled: String(enabled) } },
      enabled ? "on" : "off (Settings → Recall)")));
    if (this.error) panel.append(el("div", { class: "recall-error", role: "alert" }, this.error));
    if (stats) {
      const summary = summarizeStats(stats);
      panel.append(el("div", { class: "recall-big", "data-field": "summary" }, savingSummary(summary.totals)));
      const scope = stats.scope ?? {};
      const clearAll = el("button", { dataset: { clearAll: "" },
        title: scope.multi_user ? "Clear your entries in every tier" : "Clear every tier",
        onclick: () => this.clear({}, scope.multi_user ? "your entries" : "everything") }, "Clear all");
      panel.append(totalCard(summary, clearAll));
      const near = nearSummary(stats.near);
      if (near) panel.append(el("div", { class: "recall-note", "data-field": "near" }, near));
      if (this.notice) panel.append(el("div", { class: "recall-note", "data-field": "notice", role: "status" }, this.notice));
      panel.append(el("h4", {}, "Where encodings are kept (looked up in this order)"));
      if (summary.tiers.length === 0) panel.append(el("div", { class: "recall-note" }, "No cache tier is in use."));
      for (const row of summary.tiers) {
        const button = el("button", { dataset: { clearTier: row.tier }, title: `Clear the ${row.label} tier`,
          onclick: () => this.clear({ tier: row.tier }, `the ${row.label} tier`) }, "Clear");
        panel.append(tierCard(row, button));
      }
      // Per-user rows mean something only when several people share the server.
      if (scope.multi_user) panel.append(el("h4", {}, "Per user"), ...this.userCards(summary, stats));
    }
    this.root.querySelector(".recall-panel")?.replaceWith(panel);
  }

  userCards(summary, stats) {
    const rows = summarizeNamespaces(summary, stats.namespaces);
    const clearable = new Set(stats.scope?.clearable ?? []);
    return rows.map((row) => {
      const name = row.namespace === "shared" ? "Image encodings (shared by every user)" : row.namespace.replace(/^user:/, "");
      const button = clearable.has(row.namespace)
        ? el("button", { dataset: { clearNamespace: row.namespace }, onclick: () => this.clear({ namespace: row.namespace }, "your entries") }, "Clear")
        : "";
      return el("div", { class: "recall-card", "data-namespace": row.namespace },
        el("div", { class: "recall-card-head" }, el("span", {}, name), button),
        line("entries", "Copies", `${row.entries}, ${formatBytes(row.bytes)}`),
        line("saved", "Time saved", formatSeconds(row.saved_seconds)));
    });
  }
}

app.registerExtension({
  name: "recall.panel",
  setup() {
    let panel = null;
    const tab = {
      id: "recall",
      icon: "pi pi-database",
      title: "Recall",
      tooltip: "Recall cache: what it saved, what it stores, clearing",
      type: "custom",
      render(container) {
        panel?.unmount();
        panel = new RecallPanel(container);
        panel.mount();
      },
      destroy() {
        panel?.unmount();
        panel = null;
      },
    };
    const manager = app.extensionManager;
    if (manager?.registerSidebarTab) {
      manager.registerSidebarTab(tab);
      watchSaving();
    } else {
      console.warn("[Recall] this frontend has no sidebar tabs; the Recall panel is off");
    }
  },
});
