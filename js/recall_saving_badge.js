// The whole saving, always in sight: a small badge on the Recall tab's sidebar icon ("3m":
// encoding time saved since ComfyUI started) and the full line in its tooltip
// ("Recall: 12 hits · 3 min 10 s saved since start-up").
//
// The frontend's own iconBadge is a function read inside a Vue computed, so it would only
// update on state Vue tracks; this badge is a DOM element of ours on the tab's button,
// refreshed after each run instead of polling.
import { api } from "../../scripts/api.js";
import { getStats } from "./recall_client.js";
import { savingSummary, shortSeconds } from "./recall_format.js";
import { debounce, latestOnly } from "./recall_state.js";

const STYLE = `
.recall-tab-button { position: relative; }
.recall-saving-badge { position: absolute; top: 2px; right: 2px; min-width: 1.1rem; padding: 0 4px; border-radius: 8px;
  font: 700 11px/16px system-ui, sans-serif; background: #1f7a3a; color: #fff; pointer-events: none; text-align: center; }
`;

let last = null;

function button() {
  return document.querySelector(".recall-tab-button");
}

export function showSaving(totals) {
  last = totals;
  const host = button();
  if (!host) return;
  if (!document.getElementById("recall-saving-style")) {
    const style = document.createElement("style");
    style.id = "recall-saving-style";
    style.textContent = STYLE;
    document.head.append(style);
  }
  let badge = host.querySelector(".recall-saving-badge");
  const text = shortSeconds(totals?.saved_seconds);
  if (!text) {
    badge?.remove();
  } else {
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "recall-saving-badge";
      host.append(badge);
    }
    if (badge.textContent !== text) badge.textContent = text;
  }
  const summary = savingSummary(totals);
  if (host.getAttribute("aria-label") !== summary) host.setAttribute("aria-label", summary);
  host.dataset.recallSaving = summary;
  if (badge) badge.title = summary;
}

// one fetch at a time, so an older answer never lands after a newer one
const refresh = latestOnly(async () => {
  try {
    const stats = await getStats();
    showSaving(stats?.totals ?? {});
  } catch {
    // the panel reports errors; the badge just keeps its last value
  }
});

/** Refresh after each Recall report and each finished run; put the badge back if the bar re-renders. */
export function watchSaving() {
  const soon = debounce(() => void refresh(), 500);
  api.addEventListener("recall.node", soon);
  api.addEventListener("execution_success", soon);
  api.addEventListener("reconnected", soon);
  new MutationObserver(() => {
    const host = button();
    if (host && last && !host.querySelector(".recall-saving-badge") && shortSeconds(last.saved_seconds)) showSaving(last);
  }).observe(document.body, { childList: true, subtree: true });
  void refresh();
}
