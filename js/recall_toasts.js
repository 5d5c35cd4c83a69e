// recall.toasts: a toast when a cache backend degrades (Redis unreachable, disk full) and
// one when it comes back. Recall keeps running on the other tiers meanwhile; the toast is
// so the user knows why repeats got slower.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { backendReducer } from "./recall_state.js";

let health = {};

function showToast(toast) {
  const toasts = app.extensionManager?.toast;
  if (toasts?.add) {
    toasts.add(toast);
  } else {
    console.warn(`[Recall] ${toast.summary}: ${toast.detail}`);
  }
}

app.registerExtension({
  name: "recall.toasts",
  setup() {
    api.addEventListener("recall.backend", (event) => {
      const { state, toast } = backendReducer(health, event.detail);
      health = state;
      if (toast) showToast(toast);
    });
  },
});
