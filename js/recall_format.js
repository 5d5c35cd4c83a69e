// Pure formatting helpers for the Recall frontend: no DOM, no ComfyUI imports,
// so node's test runner imports this file as it is (tests/js/format.test.mjs).

// Display order and names of the cache tiers the server reports.
export const TIER_ORDER = ["vram", "ram", "disk", "redis"];
export const TIER_LABELS = { vram: "VRAM", ram: "RAM", disk: "Disk", redis: "Redis" };

const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB"];

/** 1536 -> "1.5 KB" (binary units: 1 KB = 1024 B, as file managers show memory). */
export function formatBytes(bytes) {
  let value = Number(bytes);
  if (!Number.isFinite(value) || value <= 0) return "0 B";
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  return `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

/** Seconds for people: "0.42 s", "4.2 s", "3 min 12 s", "1 h 05 min". */
export function formatSeconds(seconds) {
  const s = Number(seconds);
  if (!Number.isFinite(s) || s <= 0) return "0 s";
  if (s < 1) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) {
    const whole = Math.round(s);
    return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
  }
  const minutes = Math.round(s / 60);
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

/** hits / (hits + misses), or null when nothing was looked up yet (shown as "–", not 0 %). */
export function hitRate(hits, misses) {
  const h = Number(hits) || 0;
  const m = Number(misses) || 0;
  return h + m > 0 ? h / (h + m) : null;
}

export function formatPercent(rate) {
  return rate === null || rate === undefined || !Number.isFinite(rate) ? "–" : `${Math.round(rate * 100)} %`;
}

// One line per tier, for someone who has never heard of cache tiers.
export const TIER_HELP = {
  vram: "On the graphics card: the fastest, holds the few most recent encodings.",
  ram: "In this computer's memory: fast, emptied when ComfyUI restarts.",
  disk: "On disk: slower than memory, but kept across restarts.",
  redis: "A Redis server shared with other ComfyUI machines.",
};

/** Seconds in a few characters, for the sidebar icon's badge: "<1s", "12s", "3m", "1.2h" ("" for none). */
export function shortSeconds(seconds) {
  const s = Number(seconds);
  if (!Number.isFinite(s) || s <= 0) return "";
  if (s < 0.5) return "<1s";  // a hit on a fast machine still saved something: say so
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  return `${(s / 3600).toFixed(s < 36000 ? 1 : 0)}h`;
}

/** The whole saving in one line: "Recall: 12 hits · 3 min 10 s saved since start-up". */
export function savingSummary(totals) {
  const hits = Number(totals?.hits) || 0;
  return `Recall: ${hits} ${hits === 1 ? "hit" : "hits"} · ${formatSeconds(totals?.saved_seconds)} saved since start-up`;
}

/**
 * The near-match line of the panel (match: near), or "" when no near lookup was made:
 * "Near matches: 3 hits (other images' encodings) · 4.1 s saved · 1 rejected by verification".
 */
export function nearSummary(near) {
  const hits = Number(near?.hits) || 0;
  const rejected = Number(near?.rejected) || 0;
  if (hits === 0 && rejected === 0) return "";
  return `Near matches: ${hits} ${hits === 1 ? "hit" : "hits"} (other images' encodings) · `
    + `${formatSeconds(near?.saved_seconds)} saved · ${rejected} rejected by verification`;
}

export function tierLabel(tier) {
  return TIER_LABELS[tier] ?? String(tier ?? "?");
}

const COUNTERS = ["entries", "bytes", "hits", "misses", "evictions", "saved_seconds"];

function emptyCounters() {
  return Object.fromEntries(COUNTERS.map((name) => [name, 0]));
}

function addCounters(into, from) {
  for (const name of COUNTERS) into[name] += Number(from?.[name]) || 0;
  return into;
}

function tierRank(tier) {
  const i = TIER_ORDER.indexOf(tier);
  return i === -1 ? TIER_ORDER.length : i;
}

/**
 * GET /recall/stats answer -> rows the panel shows.
 * In: {tiers: {tier: {namespace: {entries, bytes, hits, misses, evictions, saved_seconds}}}, totals?}
 * Out: {tiers: [{tier, label, ...counters, hitRate, namespaces: [{namespace, ...counters}]}], totals}
 * Tiers come in hot -> cold order; totals are the server's when it sends them (a lookup
 * that misses in RAM and hits on disk is one lookup, which only the server can count).
 */
export function summarizeStats(stats) {
  const health = stats?.health ?? {};
  const ordered = Object.entries(stats?.tiers ?? {})
    .sort(([a], [b]) => tierRank(a) - tierRank(b) || String(a).localeCompare(String(b)));
  const tiers = ordered.map(([tier, byNamespace], index) => {
    const namespaces = Object.entries(byNamespace ?? {})
      .map(([namespace, counters]) => ({ namespace, ...addCounters(emptyCounters(), counters) }))
      .sort((a, b) => a.namespace.localeCompare(b.namespace));
    const sum = namespaces.reduce((acc, ns) => addCounters(acc, ns), emptyCounters());
    // A lookup asks the tiers in order and stops at the first that has it: a colder
    // tier's hit rate is of the lookups every warmer tier missed, not of all lookups.
    const warmer = ordered.slice(0, index).map(([name]) => tierLabel(name));
    const askedFor = warmer.length === 0 ? "every lookup" : `lookups ${warmer.join(" and ")} missed`;
    return {
      tier, label: tierLabel(tier), ...sum, hitRate: hitRate(sum.hits, sum.misses), namespaces,
      down: health[tier] === "down", help: TIER_HELP[tier] ?? "", askedFor,
    };
  });
  const server = stats?.totals && typeof stats.totals === "object" ? stats.totals : null;
  const totals = server
    ? addCounters(emptyCounters(), server)
    : tiers.reduce((acc, row) => addCounters(acc, row), emptyCounters());
  const copies = Number(server?.copies ?? tiers.reduce((n, row) => n + row.entries, 0)) || 0;
  return { tiers, totals: { ...totals, copies, hitRate: hitRate(totals.hits, totals.misses) } };
}

/**
 * Per-namespace rows, largest first: entries and bytes summed across tiers; hits, misses
 * and time saved from the server's per-namespace lookup counts when it sends them (a
 * lookup that misses in RAM and hits on disk is one hit, not a miss and a hit).
 */
export function summarizeNamespaces(summary, lookups = null) {
  const byName = new Map();
  const row = (name) => {
    if (!byName.has(name)) byName.set(name, { namespace: name, ...emptyCounters() });
    return byName.get(name);
  };
  for (const tier of summary?.tiers ?? []) {
    for (const ns of tier.namespaces) addCounters(row(ns.namespace), ns);
  }
  if (lookups && typeof lookups === "object") {
    for (const [name, counts] of Object.entries(lookups)) {
      const target = row(name);
      for (const key of ["hits", "misses", "saved_seconds"]) target[key] = Number(counts?.[key]) || 0;
    }
  }
  return [...byName.values()]
    .map((r) => ({ ...r, hitRate: hitRate(r.hits, r.misses) }))
    .sort((a, b) => b.bytes - a.bytes || a.namespace.localeCompare(b.namespace));
}

function shorten(text, max) {
  const s = String(text ?? "").trim();
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** A hit that reused a near-identical image's encoding (match: near): the event carries its PSNR. */
export function isNearHit(event) {
  return event?.status === "hit" && typeof event?.near_db === "number" && Number.isFinite(event.near_db);
}

/** 52.4 -> "52 dB"; the server sends 1e9 for equal thumbnails -> "identical". */
export function nearWords(db) {
  return db >= 1e9 ? "identical" : `${Math.round(db)} dB`;
}

export const BADGE_COLORS = {
  hit: { fg: "#ffffff", bg: "#1f7a3a" },
  miss: { fg: "#1a1a1a", bg: "#e0a526" },
  off: { fg: "#ffffff", bg: "#5c5c5c" },
  error: { fg: "#ffffff", bg: "#b3261e" },
};

/**
 * A "recall.node" event payload -> what the node's badge says, or null for no badge.
 * HIT names the tier and the time saved; MISS says why; "off" and "error" say so.
 */
export function badgeForEvent(event, maxReason = 36) {
  if (!event || typeof event !== "object") return null;
  const colors = BADGE_COLORS[event.status];
  if (!colors) return null;
  let text;
  let title;
  if (event.status === "hit" && isNearHit(event)) {
    const db = nearWords(event.near_db);
    text = `HIT ${tierLabel(event.tier)} · near, ${db} · saved ${formatSeconds(event.saved_s)}`;
    title = `Recall: near match (match: near). This is the stored encoding of another, near-identical image `
      + `(their thumbnails agree to ${db === "identical" ? "the last bit" : db}), not of this exact image; `
      + `served from the ${tierLabel(event.tier)} cache, ${formatSeconds(event.saved_s)} of encoding saved`;
  } else if (event.status === "hit") {
    text = `HIT ${tierLabel(event.tier)} · saved ${formatSeconds(event.saved_s)}`;
    title = `Recall: served from the ${tierLabel(event.tier)} cache, ${formatSeconds(event.saved_s)} of encoding saved`;
  } else if (event.status === "miss") {
    const reason = event.reason ? shorten(event.reason, maxReason) : "not in the cache";
    text = `MISS · ${reason}`;
    title = `Recall: computed in ${formatSeconds(event.compute_s)} (${event.reason || "not in the cache"}); stored for next time`;
  } else if (event.status === "off") {
    // The server's reason names its config file; the user switches it in the dialog.
    text = "Recall off";
    title = "Recall: caching is switched off (Settings → Recall → Enable the Recall cache); the node computed as usual";
  } else {
    text = `ERROR · ${shorten(event.reason || "cache error", maxReason)}`;
    title = `Recall: ${event.reason || "cache error"}; the node computed without the cache`;
  }
  return { text, title, ...colors };
}
