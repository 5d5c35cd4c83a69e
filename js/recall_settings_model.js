// The runtime settings the Settings dialog shows (category "Recall"), and the pure
// conversions between the dialog's values and GET/POST /recall/settings. No DOM, no
// ComfyUI imports: tests/js/settings.test.mjs imports this file.
//
// The server is the source of truth (the caps apply to the whole server); the dialog
// mirrors it. Sizes travel as bytes and are shown in GB (1 GB = 1024^3 bytes).

export const GB = 1024 ** 3;

export const SETTINGS = [
  {
    key: "enabled", id: "Recall.Cache.Enabled", category: ["Recall", "Cache", "Enabled"],
    name: "Enable the Recall cache", type: "boolean", defaultValue: true,
    tooltip: "Off: Recall nodes compute like the core nodes and store nothing (their badge says 'Recall off').",
  },
  {
    key: "vram_entries", id: "Recall.Cache.VramEntries", category: ["Recall", "Tiers", "VramEntries"],
    name: "VRAM tier: most entries", type: "number", defaultValue: 10, attrs: { min: 0, step: 1 },
    tooltip: "How many encodings stay on the accelerator (0 turns the VRAM tier off).",
  },
  {
    key: "vram_bytes", id: "Recall.Cache.VramGB", category: ["Recall", "Tiers", "VramGB"], unit: "GB",
    name: "VRAM tier: size cap (GB)", type: "number", defaultValue: 2, attrs: { min: 0, step: 0.25, maxFractionDigits: 2 },
    tooltip: "A hard cap: older entries are evicted before a new one would pass it.",
  },
  {
    key: "ram_bytes", id: "Recall.Cache.RamGB", category: ["Recall", "Tiers", "RamGB"], unit: "GB",
    name: "RAM tier: size cap (GB)", type: "number", defaultValue: 4, attrs: { min: 0, step: 0.5, maxFractionDigits: 2 },
    tooltip: "A hard cap: older entries are evicted before a new one would pass it.",
  },
  {
    key: "disk_bytes", id: "Recall.Cache.DiskGB", category: ["Recall", "Tiers", "DiskGB"], unit: "GB",
    name: "Disk tier: size cap (GB)", type: "number", defaultValue: 20, attrs: { min: 0, step: 1, maxFractionDigits: 2 },
    tooltip: "The disk tier survives restarts; least recently used entries go first.",
  },
  {
    key: "ttl_minutes", id: "Recall.Cache.TtlMinutes", category: ["Recall", "Lifetime", "TtlMinutes"],
    name: "Image encodings: keep in memory (minutes)", type: "number", defaultValue: 30, attrs: { min: 0, step: 5 },
  },
  {
    key: "text_ttl_minutes", id: "Recall.Cache.TextTtlMinutes", category: ["Recall", "Lifetime", "TextTtlMinutes"],
    name: "Text conditioning: keep in memory (minutes)", type: "number", defaultValue: 10, attrs: { min: 0, step: 5 },
  },
  {
    key: "disk_ttl_hours", id: "Recall.Cache.DiskTtlHours", category: ["Recall", "Lifetime", "DiskTtlHours"],
    name: "Disk entries: keep (hours)", type: "number", defaultValue: 168, attrs: { min: 0, step: 24 },
  },
];

export const SETTING_BY_KEY = Object.fromEntries(SETTINGS.map((s) => [s.key, s]));
export const SETTING_BY_ID = Object.fromEntries(SETTINGS.map((s) => [s.id, s]));

function round2(x) {
  return Math.round(x * 100) / 100;
}

/** Server value -> the value the dialog shows. */
export function toUi(spec, serverValue) {
  if (spec.type === "boolean") return Boolean(serverValue);
  const n = Number(serverValue);
  return spec.unit === "GB" ? round2(n / GB) : n;
}

/** Dialog value -> the value POST /recall/settings takes. */
export function toServer(spec, uiValue) {
  if (spec.type === "boolean") return Boolean(uiValue);
  const n = Number(uiValue);
  return spec.unit === "GB" ? Math.round(n * GB) : n;
}

/**
 * What to POST when the dialog's value of one setting changed, or why not.
 * -> {changes: {key: value}} | {error: message} | null (nothing to send: no server state
 *    yet, a setting the server does not report, or the server already has this value;
 *    the last case is what keeps the start-up sync from posting values back).
 */
export function settingChange(spec, uiValue, serverSnapshot) {
  if (!spec || !serverSnapshot || !(spec.key in serverSnapshot)) return null;
  if (spec.type === "number") {
    const n = Number(uiValue);
    if (uiValue === null || uiValue === "" || !Number.isFinite(n) || n < 0) {
      return { error: `${spec.name} must be a number >= 0, got ${JSON.stringify(uiValue)}` };
    }
    if (spec.key === "vram_entries" && !Number.isInteger(n)) {
      return { error: `${spec.name} must be a whole number, got ${n}` };
    }
  }
  if (toUi(spec, serverSnapshot[spec.key]) === toUi(spec, toServer(spec, uiValue))) return null;
  return { changes: { [spec.key]: toServer(spec, uiValue) } };
}

/** [{id, value}] to put into the dialog so that it shows what the server runs with. */
export function uiValuesFromServer(serverSnapshot) {
  return SETTINGS.filter((spec) => serverSnapshot && spec.key in serverSnapshot)
    .map((spec) => ({ id: spec.id, value: toUi(spec, serverSnapshot[spec.key]) }));
}
