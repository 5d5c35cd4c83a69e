// The runtime settings the Settings dialog shows (category "Recall"), and the pure
// conversions between the dialog's values and GET/POST /recall/settings. No DOM, no
// ComfyUI imports: tests/js/settings.test.mjs imports this file.
//
// The server is the source of truth (the caps apply to the whole server); the dialog
// mirrors it. Sizes travel as bytes and are shown in GB (1 GB = 1024^3 bytes).
// The number fields have no `min`: with one, the dialog's input drops a typed "-" and
// silently applies 3 for "-3"; refusing -3 in words is what the user needs.

export const GB = 1024 ** 3;

// sortOrder: the dialog lists higher first; tiers in the panel's order (RAM, VRAM, disk).
export const SETTINGS = [
  {
    key: "enabled", id: "Recall.Cache.Enabled", category: ["Recall", "Cache", "Enabled"],
    name: "Enable the Recall cache", type: "boolean", defaultValue: true, sortOrder: 100,
    tooltip: "Off: Recall nodes compute like the core nodes and store nothing (their badge says 'Recall off').",
  },
  {
    key: "ram_bytes", id: "Recall.Cache.RamGB", category: ["Recall", "Tiers", "RamGB"], unit: "GB", sortOrder: 30,
    name: "RAM tier: size cap (GB)", label: "The RAM cap", limit: "ram_bytes", limitName: "memory",
    type: "number", defaultValue: 4, attrs: { step: 0.5, maxFractionDigits: 2 },
    tooltip: "Encodings kept in this computer's memory. A hard cap: older entries are evicted first. 0 turns the tier off.",
  },
  {
    key: "vram_entries", id: "Recall.Cache.VramEntries", category: ["Recall", "Tiers", "VramEntries"], vram: true,
    name: "VRAM tier: most entries", label: "The VRAM entry count", sortOrder: 20,
    type: "number", defaultValue: 10, attrs: { step: 1 },
    tooltip: "How many encodings stay on the graphics card (0 turns the VRAM tier off).",
  },
  {
    key: "vram_bytes", id: "Recall.Cache.VramGB", category: ["Recall", "Tiers", "VramGB"], unit: "GB", vram: true,
    name: "VRAM tier: size cap (GB)", label: "The VRAM cap", limit: "vram_bytes", limitName: "graphics memory", sortOrder: 19,
    type: "number", defaultValue: 2, attrs: { step: 0.25, maxFractionDigits: 2 },
    tooltip: "A hard cap: older entries are evicted before a new one would pass it.",
  },
  {
    key: "disk_bytes", id: "Recall.Cache.DiskGB", category: ["Recall", "Tiers", "DiskGB"], unit: "GB", sortOrder: 10,
    name: "Disk tier: size cap (GB)", label: "The disk cap", limit: "disk_bytes", limitName: "disk",
    type: "number", defaultValue: 20, attrs: { step: 1, maxFractionDigits: 2 },
    tooltip: "The disk tier survives restarts; least recently used entries go first. 0 turns it off.",
  },
  {
    key: "ttl_minutes", id: "Recall.Cache.TtlMinutes", category: ["Recall", "Lifetime", "TtlMinutes"], sortOrder: 30,
    name: "Image encodings: keep in memory (minutes)", label: "How long image encodings stay in memory",
    type: "number", defaultValue: 30, attrs: { step: 5 },
  },
  {
    key: "text_ttl_minutes", id: "Recall.Cache.TextTtlMinutes", category: ["Recall", "Lifetime", "TextTtlMinutes"], sortOrder: 20,
    name: "Text conditioning: keep in memory (minutes)", label: "How long text conditioning stays in memory",
    type: "number", defaultValue: 10, attrs: { step: 5 },
  },
  {
    key: "disk_ttl_hours", id: "Recall.Cache.DiskTtlHours", category: ["Recall", "Lifetime", "DiskTtlHours"], sortOrder: 10,
    name: "Disk entries: keep (hours)", label: "How long disk entries are kept",
    type: "number", defaultValue: 168, attrs: { step: 24 },
  },
  {
    key: "match", id: "Recall.Match.Mode", category: ["Recall", "Match", "Mode"], sortOrder: 20,
    name: "Image look-up: exact or near", type: "combo", options: ["exact", "near"], defaultValue: "exact",
    tooltip: "exact: only the very same pixels reuse an encoding (bit for bit; the default). near: an image that is "
      + "nearly the same (a JPEG re-save, a pasted copy, a re-grabbed frame) reuses the stored encoding of the "
      + "other image, once a 64-pixel thumbnail of both agrees to the PSNR below. It trades exactness for hits: "
      + "the output is the other image's encoding. Same size, crop, encoder and settings are always required; "
      + "a node's own 'match' input overrides this.",
  },
  {
    key: "near_psnr_db", id: "Recall.Match.NearPsnr", category: ["Recall", "Match", "NearPsnr"], sortOrder: 10,
    name: "near: accept thumbnails that agree to PSNR ≥ (dB)", type: "combo", numeric: true,
    options: [40, 45, 50], defaultValue: 45,
    tooltip: "Higher is stricter. Measured on 64-pixel thumbnails, so a bigger image averages more away: a JPEG "
      + "re-save of a 512-pixel image measures about 58 dB at quality 95 and 50 dB at quality 75, of a 256-pixel "
      + "image 51 and 45 dB. A lower value gives more near hits, each the encoding of a slightly different image.",
  },
];

export const SETTING_BY_KEY = Object.fromEntries(SETTINGS.map((s) => [s.key, s]));
export const SETTING_BY_ID = Object.fromEntries(SETTINGS.map((s) => [s.id, s]));

/** The settings that mean something on this server: no VRAM tier without an accelerator (--cpu). */
export function applicableSettings({ hasVram = true } = {}) {
  return SETTINGS.filter((spec) => hasVram || !spec.vram);
}

function round2(x) {
  return Math.round(x * 100) / 100;
}

/** Server value -> the value the dialog shows. */
export function toUi(spec, serverValue) {
  if (spec.type === "boolean") return Boolean(serverValue);
  if (spec.type === "combo") return spec.numeric ? Number(serverValue) : String(serverValue);
  const n = Number(serverValue);
  return spec.unit === "GB" ? round2(n / GB) : n;
}

/** Dialog value -> the value POST /recall/settings takes. */
export function toServer(spec, uiValue) {
  if (spec.type === "boolean") return Boolean(uiValue);
  if (spec.type === "combo") return spec.numeric ? Number(uiValue) : String(uiValue);
  const n = Number(uiValue);
  return spec.unit === "GB" ? Math.round(n * GB) : n;
}

function shown(spec, uiValue) {
  const n = Number(uiValue).toLocaleString("en-US", { maximumFractionDigits: 2 });
  return spec.unit ? `${n} ${spec.unit}` : n;
}

/**
 * Why a typed value cannot be meant, in words, or null when it can.
 * limits: {ram_bytes, disk_bytes, vram_bytes} of this machine (GET /recall/stats "limits").
 */
export function refusal(spec, uiValue, serverSnapshot, limits = {}) {
  if (spec.type !== "number") return null;
  const label = spec.label ?? spec.name;
  const keep = spec.key in (serverSnapshot ?? {}) ? ` It stays at ${shown(spec, toUi(spec, serverSnapshot[spec.key]))}.` : "";
  const zero = spec.unit === "GB" || spec.key === "vram_entries" ? " (0 turns the tier off)" : "";
  const n = Number(uiValue);
  if (uiValue === null || uiValue === undefined || String(uiValue).trim() === "" || !Number.isFinite(n)) {
    return `${label} is empty. Type a number${zero}.${keep}`;
  }
  if (n < 0) return `${label} cannot be negative (you typed ${shown(spec, n)}). Type 0 or more${zero}.${keep}`;
  if (spec.key === "vram_entries" && !Number.isInteger(n)) {
    return `${label} must be a whole number (you typed ${n}).${keep}`;
  }
  const limit = spec.limit ? Number(limits?.[spec.limit]) : NaN;
  if (Number.isFinite(limit) && limit > 0 && toServer(spec, n) > limit) {
    const most = shown(spec, Math.floor((limit / GB) * 100) / 100);
    return `${label} of ${shown(spec, n)} is more than this machine's ${spec.limitName} (${most}). Type at most ${most}.${keep}`;
  }
  return null;
}

/**
 * What to POST when the dialog's value of one setting changed, or why not.
 * -> {changes: {key: value}} | {error: message} | null (nothing to send: no server state
 *    yet, a setting the server does not report, or the server already has this value;
 *    the last case is what keeps the start-up sync from posting values back).
 */
export function settingChange(spec, uiValue, serverSnapshot, limits = {}) {
  if (!spec || !serverSnapshot || !(spec.key in serverSnapshot)) return null;
  const error = refusal(spec, uiValue, serverSnapshot, limits);
  if (error) return { error };
  if (toUi(spec, serverSnapshot[spec.key]) === toUi(spec, toServer(spec, uiValue))) return null;
  return { changes: { [spec.key]: toServer(spec, uiValue) } };
}

/** [{id, value}] to put into the dialog so that it shows what the server runs with. */
export function uiValuesFromServer(serverSnapshot, specs = SETTINGS) {
  return specs.filter((spec) => serverSnapshot && spec.key in serverSnapshot)
    .map((spec) => ({ id: spec.id, value: toUi(spec, serverSnapshot[spec.key]) }));
}
