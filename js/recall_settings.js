// recall.settings: the cache's runtime settings (on/off, tier caps, lifetimes) in ComfyUI's
// Settings dialog under "Recall". The server holds the real values: at start-up the dialog
// is synced to GET /recall/settings, and a change the user makes is sent with
// POST /recall/settings. A value the server refuses is put back, with a toast saying why.
import { app } from "../../scripts/app.js";
import { getSettings, postSettings } from "./recall_client.js";
import { SETTINGS, settingChange, uiValuesFromServer } from "./recall_settings_model.js";

let server = null; // last settings the server confirmed; null until the first GET answers

function toast(severity, summary, detail) {
  app.extensionManager?.toast?.add?.({ severity, summary, detail, life: 8000 });
}

function settingStore() {
  return app.extensionManager?.setting;
}

async function showServerValues() {
  const store = settingStore();
  if (!store) return;
  for (const { id, value } of uiValuesFromServer(server)) {
    // Each set fires onChange with the server's own value, which settingChange ignores.
    if (store.get(id) !== value) await store.set(id, value);
  }
}

async function onDialogChange(spec, value) {
  const change = settingChange(spec, value, server);
  if (change === null) return;
  // The store calls onChange before it keeps the new value: let it finish first, so that
  // putting the server's value back afterwards sticks.
  await new Promise((resolve) => setTimeout(resolve, 0));
  try {
    if (change.error) throw new Error(change.error);
    server = await postSettings(change.changes);
  } catch (error) {
    toast("error", "Recall: setting not applied", error.message);
  }
  // Either way the dialog shows what the server now runs with.
  await showServerValues();
}

async function loadFromServer() {
  try {
    server = await getSettings();
  } catch (error) {
    console.warn("[Recall] could not read /recall/settings:", error.message);
    return;
  }
  await showServerValues();
}

app.registerExtension({
  name: "recall.settings",
  settings: SETTINGS.map((spec) => ({
    id: spec.id,
    category: spec.category,
    name: spec.name,
    type: spec.type,
    defaultValue: spec.defaultValue,
    tooltip: spec.tooltip,
    attrs: spec.attrs,
    onChange: (value) => void onDialogChange(spec, value),
  })),
  async setup() {
    await loadFromServer();
  },
});
