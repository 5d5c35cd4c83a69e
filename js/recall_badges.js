// recall.badges: after each run, every Recall node that ran shows what the cache did:
// "HIT RAM · saved 4.2 s", "MISS · pixels changed", "Recall off". Nodes that did not run
// (ComfyUI served them from its own cache, or they were not in the prompt) show nothing.
//
// Badges use the node badge list litegraph draws above the title (node.badges), the same
// mechanism the frontend's own node-id and node-source badges use.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { badgeForEvent } from "./recall_format.js";
import { badgeReducer, nodeForExecutionId } from "./recall_state.js";

let state = {};
const badgeOfNode = new WeakMap(); // node -> LGraphBadge | null (null: no badge now)
const badgedNodes = new Set(); // nodes that got a badge slot, to clear them on the next run

function makeBadge(info) {
  const Badge = window.LGraphBadge;
  if (!Badge || !info) return null;
  return new Badge({ text: info.text, fgColor: info.fg, bgColor: info.bg });
}

function ensureSlot(node) {
  if (badgedNodes.has(node)) return;
  badgedNodes.add(node);
  if (!Array.isArray(node.badges)) node.badges = [];
  // A function badge is re-read on every frame, so clearing needs no list surgery.
  const empty = makeBadge({ text: "", fg: "#fff", bg: "transparent" });
  node.badges.push(() => badgeOfNode.get(node) ?? empty);
}

function redraw() {
  app.graph?.setDirtyCanvas?.(true, true);
}

function apply() {
  for (const node of badgedNodes) {
    badgeOfNode.set(node, null);
    if (!node.graph) badgedNodes.delete(node); // removed, or its workflow was closed
  }
  for (const [executionId, payload] of Object.entries(state)) {
    const node = nodeForExecutionId(app.graph, executionId);
    if (!node) continue;
    ensureSlot(node);
    const info = badgeForEvent(payload);
    badgeOfNode.set(node, makeBadge(info));
    // The tooltip-like text, for screen readers and for anyone reading node properties.
    node.recallStatus = info ? { ...payload, text: info.text, title: info.title } : null;
  }
  for (const node of badgedNodes) {
    if (!badgeOfNode.get(node)) node.recallStatus = null;
  }
  redraw();
}

function dispatch(action) {
  const next = badgeReducer(state, action);
  if (next !== state) {
    state = next;
    apply();
  }
}

app.registerExtension({
  name: "recall.badges",
  setup() {
    if (!window.LGraphBadge) {
      console.warn("[Recall] this frontend has no LGraphBadge; hit/miss badges are off");
    }
    api.addEventListener("execution_start", () => dispatch({ type: "execution_start" }));
    api.addEventListener("recall.node", (event) => dispatch({ type: "recall.node", payload: event.detail }));
  },
});
