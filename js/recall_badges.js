// recall.badges: after each run, every Recall node that ran shows what the cache did:
// "HIT RAM · saved 4.2 s", "MISS · pixels changed", "Recall off". Nodes that did not run
// (ComfyUI served them from its own cache, or they were not in the prompt) show nothing.
//
// Two ways of drawing nodes, one state:
// - the LiteGraph canvas draws node.badges above the title (the mechanism the frontend's own
//   node-id badges use); ours comes first, left-aligned, so a wide badge starts at the node's
//   left edge instead of hanging past it (1.35 right-aligns badges by default);
// - Vue nodes ("Nodes 2.0") get a DOM badge of their own (recall_vue_badges.js), because the
//   Vue header re-renders only on state Vue tracks and lays badges out beside the title.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { badgeForEvent } from "./recall_format.js";
import { badgeReducer, nodeForExecutionId } from "./recall_state.js";
import { showVueBadges, vueNodesEnabled } from "./recall_vue_badges.js";

// 14 px text on a 22 px pill: legible at 100 % zoom (the frontend's own badges use 12 px).
const BADGE_SIZE = { fontSize: 14, height: 22, padding: 7, cornerRadius: 6 };

let state = {};
const badgeOfNode = new WeakMap(); // node -> LGraphBadge | null (null: no badge now)
const badgedNodes = new Set(); // nodes that got a badge slot, to clear them on the next run
let emptyBadge = null;

function makeBadge(info) {
  const Badge = window.LGraphBadge;
  if (!Badge || !info) return null;
  return new Badge({ text: info.text, fgColor: info.fg, bgColor: info.bg, ...BADGE_SIZE });
}

function ensureSlot(node) {
  if (badgedNodes.has(node)) return;
  badgedNodes.add(node);
  if (!Array.isArray(node.badges)) node.badges = [];
  emptyBadge ??= makeBadge({ text: "", fg: "#fff", bg: "transparent" });
  // A function badge is re-read on every frame, so clearing needs no list surgery. In Vue
  // mode it stays empty: the Vue header would show it beside the title, and stale.
  node.badges.unshift(() => (vueNodesEnabled() ? emptyBadge : badgeOfNode.get(node) ?? emptyBadge));
  node.badgePosition = "top-left";
}

function redraw() {
  app.graph?.setDirtyCanvas?.(true, true);
}

function apply() {
  for (const node of badgedNodes) {
    badgeOfNode.set(node, null);
    if (!node.graph) badgedNodes.delete(node); // removed, or its workflow was closed
  }
  const vue = {};
  for (const [executionId, payload] of Object.entries(state)) {
    const node = nodeForExecutionId(app.graph, executionId);
    if (!node) continue;
    ensureSlot(node);
    const info = badgeForEvent(payload);
    badgeOfNode.set(node, makeBadge(info));
    if (info && !String(executionId).includes(":")) vue[String(node.id)] = info;
    // The tooltip-like text, for screen readers and for anyone reading node properties.
    node.recallStatus = info ? { ...payload, text: info.text, title: info.title } : null;
  }
  for (const node of badgedNodes) {
    if (!badgeOfNode.get(node)) node.recallStatus = null;
  }
  showVueBadges(vue);
  redraw();
}

function dispatch(action) {
  const next = badgeReducer(state, action);
  if (next !== state) {
    state = next;
    apply();
  }
}

// Wide enough for the title beside the frontend's own node-source badge, which would
// otherwise squeeze "VAE Encode (Recall)" to "VAE En…" in the Vue header.
const MIN_NODE_WIDTH = 320;

app.registerExtension({
  name: "recall.badges",
  nodeCreated(node) {
    const kind = String(node?.comfyClass ?? node?.type ?? "");
    if (kind.startsWith("Recall") && node.size?.length === 2) {
      node.size[0] = Math.max(node.size[0], MIN_NODE_WIDTH);
    }
  },
  setup() {
    if (!window.LGraphBadge) {
      console.warn("[Recall] this frontend has no LGraphBadge; hit/miss badges on the canvas are off");
    }
    api.addEventListener("execution_start", () => dispatch({ type: "execution_start" }));
    api.addEventListener("recall.node", (event) => dispatch({ type: "recall.node", payload: event.detail }));
  },
});
