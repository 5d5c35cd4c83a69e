// The Recall badge on nodes drawn as Vue components ("Nodes 2.0", setting Comfy.VueNodes.Enabled).
//
// A Vue node re-renders only on state Vue tracks, and its header lays node.badges out beside
// the title (squeezing it): a badge that changes after each run would be stale there. So in
// this mode the badge is a DOM element of our own, placed above the node's root element
// ([data-node-id], the element the frontend positions on the canvas), left-aligned with the
// node's left edge. Vue leaves children it did not create alone; when it mounts a node
// element again (workflow switched, mode toggled) an observer puts the badge back.
import { app } from "../../scripts/app.js";

const CLASS = "recall-node-badge";
const STYLE = `
.${CLASS} { position: absolute; left: 0; bottom: 100%; margin-bottom: 6px; z-index: 1;
  font: 600 14px/1.2 system-ui, sans-serif; padding: 3px 8px; border-radius: 6px; white-space: nowrap;
  pointer-events: auto; box-shadow: 0 1px 2px rgba(0, 0, 0, 0.35); }
`;

let wanted = new Map(); // node id (string) -> {text, title, fg, bg}
let observer = null;
let scheduled = false;

export function vueNodesEnabled() {
  try {
    return app.extensionManager?.setting?.get?.("Comfy.VueNodes.Enabled") === true;
  } catch {
    return false;
  }
}

function ensureStyle() {
  if (document.getElementById("recall-node-badge-style")) return;
  const style = document.createElement("style");
  style.id = "recall-node-badge-style";
  style.textContent = STYLE;
  document.head.append(style);
}

function nodeElement(id) {
  return document.querySelector(`.lg-node[data-node-id="${CSS.escape(id)}"]`);
}

// Writes only what differs, so the observer's own mutations settle at once.
function sync() {
  scheduled = false;
  for (const badge of document.querySelectorAll(`.${CLASS}`)) {
    const id = badge.parentElement?.dataset?.nodeId;
    if (!wanted.has(id)) badge.remove();
  }
  for (const [id, info] of wanted) {
    const host = nodeElement(id);
    if (!host) continue;
    let badge = host.querySelector(`:scope > .${CLASS}`);
    if (!badge) {
      badge = document.createElement("div");
      badge.className = CLASS;
      host.append(badge);
    }
    if (badge.textContent !== info.text) badge.textContent = info.text;
    if (badge.title !== info.title) badge.title = info.title;
    if (badge.style.color !== info.fg) badge.style.color = info.fg;
    if (badge.style.backgroundColor !== info.bg) badge.style.backgroundColor = info.bg;
  }
}

function scheduleSync() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(sync);
}

function watchMounts() {
  if (observer) return;
  observer = new MutationObserver((records) => {
    // Only element additions/removals can lose or bring back a node element.
    if (records.some((r) => r.addedNodes.length || r.removedNodes.length)) scheduleSync();
  });
  observer.observe(document.body, { childList: true, subtree: true });
}

/** Shows these badges ({nodeId: info}) on Vue nodes; an empty map removes them all. */
export function showVueBadges(badges) {
  wanted = new Map(Object.entries(badges).map(([id, info]) => [String(id), info]));
  if (wanted.size > 0) {
    ensureStyle();
    watchMounts();
  } else if (observer) {
    observer.disconnect();
    observer = null;
  }
  sync();
}
