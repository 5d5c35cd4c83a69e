// recall.panel: a "Recall" sidebar tab with the cache's statistics per tier (entries, size,
// hit rate, time saved) and per namespace, and buttons to clear everything, one tier or one
// namespace. While the tab is open it polls GET /recall/stats and also refreshes right
// after each "recall.node" event, so the counters move as a run hits or misses.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { clearCache, getStats } from "./recall_client.js";
import { formatBytes, formatPercent, formatSeconds, summarizeNamespaces, summarizeStats } from "./recall_format.js";
import { debounce } from "./recall_state.js";

const POLL_MS = 2000;

const STYLE = `
.recall-panel { padding: 0.75rem; font-size: 0.85rem; color: var(--fg-color); display: flex; flex-direction: column; gap: 0.6rem; }
.recall-panel h3 { margin: 0; font-size: 1rem; display: flex; gap: 0.5rem; align-items: baseline; }
.recall-panel h4 { margin: 0.4rem 0 0; font-size: 0.85rem; opacity: 0.8; }
.recall-panel .recall-state { font-size: 0.75rem; font-weight: normal; opacity: 0.75; }
.recall-panel .recall-card { border: 1px solid var(--border-color); border-radius: 6px; padding: 0.4rem 0.55rem; }
.recall-panel .recall-card.recall-total { background: var(--comfy-input-bg); }
.recall-panel .recall-card-head { display: flex; justify-content: space-between; align-items: center; font-weight: 600;
  margin-bottom: 0.25rem; gap: 0.5rem; overflow-wrap: anywhere; }
.recall-panel .recall-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(5.5rem, 1fr)); gap: 0.15rem 0.6rem; }
.recall-panel .recall-stat { display: flex; justify-content: space-between; gap: 0.4rem; }
.recall-panel .recall-stat-label { opacity: 0.65; }
.recall-panel button { cursor: pointer; padding: 0.15rem 0.5rem; border-radius: 4px; font-size: 0.8rem;
  border: 1px solid var(--border-color); background: var(--comfy-input-bg); color: var(--input-text, var(--fg-color)); }
.recall-panel button:hover { filter: brightness(1.25); }
.recall-panel .recall-note { opacity: 0.7; font-size: 0.75rem; }
.recall-panel .recall-error { color: #e06c5a; font-size: 0.8rem; }
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

function stat(field, label, value, title, data = {}) {
  return el("div", { class: "recall-stat", title }, el("span", { class: "recall-stat-label" }, label),
    el("span", { dataset: { field, ...data } }, value));
}

// One box per tier / namespace: a narrow sidebar wraps the grid instead of cutting columns off.
function card(title, row, button, extra = {}) {
  return el("div", { class: "recall-card", ...extra },
    el("div", { class: "recall-card-head" }, el("span", {}, title), button ?? ""),
    el("div", { class: "recall-grid" },
      stat("entries", "Entries", row.entries),
      stat("bytes", "Size", formatBytes(row.bytes), `${row.bytes} bytes`),
      stat("hitRate", "Hit rate", formatPercent(row.hitRate), `${row.hits} hits, ${row.misses} misses since start-up`,
        { hits: String(row.hits), misses: String(row.misses) }),
      stat("saved", "Saved", formatSeconds(row.saved_seconds), "encoding time saved by hits since start-up")));
}

class RecallPanel {
  constructor(root) {
    this.root = root;
    this.timer = null;
    this.busy = false;
    this.error = "";
    this.stats = null;
    this.refreshSoon = debounce(() => void this.refresh(), 250);
    this.onNodeEvent = () => this.refreshSoon();
  }

  mount() {
    this.root.replaceChildren(el("style", {}, STYLE), el("div", { class: "recall-panel" }, "Loading…"));
    api.addEventListener("recall.node", this.onNodeEvent);
    this.timer = setInterval(() => {
      if (!document.hidden) void this.refresh();
    }, POLL_MS);
    void this.refresh();
  }

  unmount() {
    clearInterval(this.timer);
    this.timer = null;
    api.removeEventListener("recall.node", this.onNodeEvent);
  }

  async refresh() {
    if (this.busy) return;
    this.busy = true;
    try {
      this.stats = await getStats();
      this.error = "";
    } catch (error) {
      this.error = `Could not read the cache statistics: ${error.message}`;
    } finally {
      this.busy = false;
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
      await clearCache(target);
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
      panel.append(...this.tierCards(summary, stats), el("h4", {}, "Namespaces"), ...this.namespaceCards(summary, stats));
    }
    this.root.querySelector(".recall-panel")?.replaceWith(panel);
  }

  tierCards(summary, stats) {
    const scope = stats.scope ?? {};
    const clearAll = el("button", { dataset: { clearAll: "" },
      title: scope.multi_user ? "Clear your entries in every tier" : "Clear every tier",
      onclick: () => this.clear({}, scope.multi_user ? "your entries" : "everything") }, "Clear all");
    const cards = [card("All tiers", summary.totals, clearAll, { class: "recall-card recall-total", "data-tier": "total" })];
    if (summary.tiers.length === 0) cards.push(el("div", { class: "recall-note" }, "No cache tier is in use."));
    for (const row of summary.tiers) {
      const button = el("button", { dataset: { clearTier: row.tier }, title: `Clear the ${row.label} tier`,
        onclick: () => this.clear({ tier: row.tier }, `the ${row.label} tier`) }, "Clear");
      cards.push(card(row.label, row, button, { "data-tier": row.tier }));
    }
    return cards;
  }

  namespaceCards(summary, stats) {
    const rows = summarizeNamespaces(summary, stats.namespaces);
    const clearable = new Set(stats.scope?.clearable ?? rows.map((r) => r.namespace));
    if (rows.length === 0) return [el("div", { class: "recall-note" }, "The cache is empty.")];
    return rows.map((row) => {
      const button = clearable.has(row.namespace)
        ? el("button", { dataset: { clearNamespace: row.namespace }, title: `Clear namespace ${row.namespace}`,
          onclick: () => this.clear({ namespace: row.namespace }, `namespace "${row.namespace}"`) }, "Clear")
        : el("span", { class: "recall-note", title: "shared by every user of this server" }, "shared");
      return card(row.namespace, row, button, { "data-namespace": row.namespace });
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
      tooltip: "Recall cache: statistics and clearing",
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
    if (manager?.registerSidebarTab) manager.registerSidebarTab(tab);
    else console.warn("[Recall] this frontend has no sidebar tabs; the Recall panel is off");
  },
});
