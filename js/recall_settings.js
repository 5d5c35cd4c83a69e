// recall.settings: the cache's runtime settings (on/off, tier caps, lifetimes) in ComfyUI's
// Settings dialog under "Recall". The server holds the real values: at start-up the dialog
// is synced to GET /recall/settings, and a change the user makes is sent with
// POST /recall/settings. A value that cannot be meant (negative, emptied, larger than the
// machine's memory or disk) or that the server refuses is put back, with a toast saying why.
// Only settings that apply are listed: no VRAM tier when ComfyUI runs on the CPU.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { getSettings, getStats, postSettings } from "./recall_client.js";
import { applicableSettings, settingChange, uiValuesFromServer } from "./recall_settings_model.js";

let server = null; // last settings the server confirmed; null until the first GET answers
let machine = {}; // {ram_bytes, disk_bytes, vram_bytes}: what a cap can mean here

async function systemStats() {
  // The extension list waits for this module; never hold the page up for long.
  const timeout = new Promise((resolve) => setTimeout(() => resolve(null), 3000));
  try {
    return await Promise.race([api.getSystemStats(), timeout]);
  } catch {
    return null;
  }
}

const system = await systemStats();
const devices = system?.devices ?? [];
// Unknown (no answer): list everything rather than hide a setting that applies.
const hasVram = system === null || devices.some((d) => d?.type && d.type !== "cpu");
const SPECS = applicableSettings({ hasVram });
if (system?.system?.ram_total) machine.ram_bytes = system.system.ram_total;

function toast(severity, summary, detail) {
  app.extensionManager?.toast?.add?.({ severity, summary, detail, life: 8000 });
}

function settingStore() {
  return app.extensionManager?.setting;
}

// Values the dialog is being put back to: the store calls onChange for them too, and they
// must not be sent back to the server (by then it may run with a newer value).
const putBack = new Map();

async function showServerValues() {
  const store = settingStore();
  if (!store) return;
  for (const { id, value } of uiValuesFromServer(server, SPECS)) {
    if (store.get(id) === value) continue;
    putBack.set(id, value);
    try {
      await store.set(id, value);
    } finally {
      putBack.delete(id);
    }
  }
}

async function readLimits() {
  try {
    const stats = await getStats();
    machine = { ...machine, ...(stats?.limits ?? {}) };
  } catch {
    // keep what system_stats said
  }
}

// Changes are applied one at a time, in the order they were made, so a slow answer to an
// older change never overrides a newer one; only the last queued change puts the dialog in
// line with the server, so a value still waiting its turn is not shown back to the old one.
let queue = Promise.resolve();
let waiting = 0;

function onDialogChange(spec, value) {
  if (putBack.has(spec.id) && putBack.get(spec.id) === value) return;
  waiting += 1;
  queue = queue
    .then(() => applyDialogChange(spec, value))
    .catch((error) => console.warn("[Recall] could not apply a setting:", error))
    .finally(() => {
      waiting -= 1;
    });
}

async function applyDialogChange(spec, value) {
  // The store calls onChange before it keeps the new value: let it finish first, so that
  // putting the server's value back afterwards sticks.
  await new Promise((resolve) => setTimeout(resolve, 0));
  if (spec.limit && !(spec.limit in machine)) await readLimits();
  const change = settingChange(spec, value, server, machine);
  if (change === null) return;
  try {
    if (change.error) throw new Error(change.error);
    server = await postSettings(change.changes);
  } catch (error) {
    toast("error", "Recall: setting not applied", error.message);
  }
  // Either way the dialog shows what the server now runs with.
  if (waiting === 1) await showServerValues();
}

async function loadFromServer() {
  try {
    server = await getSettings();
  } catch (error) {
    console.warn("[Recall] could not read /recall/settings:", error.message);
    return;
  }
  await showServerValues();
  void readLimits();
}

app.registerExtension({
  name: "recall.settings",
  settings: SPECS.map((spec) => ({
    id: spec.id,
    category: spec.category,
    name: spec.name,
    type: spec.type,
    defaultValue: spec.defaultValue,
    tooltip: spec.tooltip,
    attrs: spec.attrs,
    ...(spec.options ? { options: spec.options } : {}),
    sortOrder: spec.sortOrder,
    onChange: (value) => onDialogChange(spec, value),
  })),
  async setup() {
    await loadFromServer();
  },
});
