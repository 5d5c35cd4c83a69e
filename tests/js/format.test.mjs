// Pure formatting helpers of the Recall frontend (js/recall_format.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  badgeForEvent, formatBytes, formatPercent, formatSeconds, hitRate, savingSummary, shortSeconds, summarizeNamespaces,
  summarizeStats,
} from "../../js/recall_format.js";

test("formatBytes uses binary units and never shows negative or NaN sizes", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(-5), "0 B");
  assert.equal(formatBytes("junk"), "0 B");
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1536), "1.5 KB");
  assert.equal(formatBytes(4 * 1024 ** 3), "4.0 GB");
  assert.equal(formatBytes(300 * 1024 ** 2), "300 MB");
});

test("formatSeconds switches to minutes and hours for long savings", () => {
  assert.equal(formatSeconds(0), "0 s");
  assert.equal(formatSeconds(0.42), "0.42 s");
  assert.equal(formatSeconds(4.25), "4.3 s");
  assert.equal(formatSeconds(192), "3 min 12 s");
  assert.equal(formatSeconds(3900), "1 h 05 min");
});

test("hit rate is unknown, not zero, before any lookup", () => {
  assert.equal(hitRate(0, 0), null);
  assert.equal(formatPercent(hitRate(0, 0)), "–");
  assert.equal(hitRate(4, 1), 0.8);
  assert.equal(formatPercent(0.8), "80 %");
});

const STATS = {
  tiers: {
    disk: { shared: { entries: 2, bytes: 2048, hits: 1, misses: 3, evictions: 0, saved_seconds: 4 } },
    ram: {
      shared: { entries: 3, bytes: 3000, hits: 4, misses: 1, evictions: 1, saved_seconds: 10 },
      "user:alice": { entries: 1, bytes: 100, hits: 0, misses: 1, evictions: 0, saved_seconds: 0 },
    },
    vram: {},
  },
};

test("summarizeStats orders tiers hot to cold and sums each tier's namespaces", () => {
  const summary = summarizeStats(STATS);
  assert.deepEqual(summary.tiers.map((t) => t.tier), ["vram", "ram", "disk"]);
  const ram = summary.tiers[1];
  assert.equal(ram.label, "RAM");
  assert.equal(ram.entries, 4);
  assert.equal(ram.bytes, 3100);
  assert.equal(ram.hitRate, 4 / 6);
  assert.deepEqual(ram.namespaces.map((n) => n.namespace), ["shared", "user:alice"]);
  assert.equal(summary.tiers[0].entries, 0);
  assert.equal(summary.tiers[0].hitRate, null);
});

test("summarizeStats sums totals itself when the server sends none", () => {
  const { totals } = summarizeStats(STATS);
  assert.equal(totals.entries, 6);
  assert.equal(totals.bytes, 5148);
  assert.equal(totals.saved_seconds, 14);
});

test("summarizeStats prefers the server's totals (one lookup across tiers counts once)", () => {
  const { totals } = summarizeStats({ ...STATS, totals: { entries: 6, bytes: 5148, hits: 5, misses: 1, saved_seconds: 14 } });
  assert.equal(totals.hits, 5);
  assert.equal(totals.misses, 1);
  assert.equal(totals.hitRate, 5 / 6);
});

test("summarizeStats of an empty or missing answer has no tiers and zero totals", () => {
  for (const answer of [null, {}, { tiers: {} }]) {
    const summary = summarizeStats(answer);
    assert.deepEqual(summary.tiers, []);
    assert.equal(summary.totals.entries, 0);
    assert.equal(summary.totals.hitRate, null);
  }
});

test("summarizeNamespaces adds a namespace's entries across tiers, largest first", () => {
  const rows = summarizeNamespaces(summarizeStats(STATS));
  assert.deepEqual(rows.map((r) => [r.namespace, r.entries, r.bytes]), [["shared", 5, 5048], ["user:alice", 1, 100]]);
});

test("summarizeNamespaces takes hit counts from the server's per-namespace lookups", () => {
  const lookups = { shared: { hits: 4, misses: 1, saved_seconds: 14 }, "user:bob": { hits: 0, misses: 2, saved_seconds: 0 } };
  const rows = summarizeNamespaces(summarizeStats(STATS), lookups);
  const shared = rows.find((r) => r.namespace === "shared");
  assert.equal(shared.hitRate, 0.8);
  assert.equal(shared.entries, 5);
  // a namespace that only looked things up (nothing stored) still gets a row
  assert.equal(rows.find((r) => r.namespace === "user:bob").misses, 2);
});

test("a hit badge names the tier and the time saved", () => {
  const badge = badgeForEvent({ node_id: "3", status: "hit", tier: "ram", saved_s: 4.2, compute_s: 0 });
  assert.equal(badge.text, "HIT RAM · saved 4.2 s");
  assert.match(badge.title, /RAM cache/);
  assert.equal(badge.bg, "#1f7a3a");
});

test("a miss badge says why, shortened to fit the node", () => {
  const badge = badgeForEvent({ status: "miss", reason: "first run", compute_s: 3.1 });
  assert.equal(badge.text, "MISS · first run");
  const long = badgeForEvent({ status: "miss", reason: "x".repeat(80) }, 20);
  assert.equal(long.text, `MISS · ${"x".repeat(19)}…`);
  assert.match(long.title, new RegExp("x".repeat(80)));
  assert.equal(badgeForEvent({ status: "miss" }).text, "MISS · not in the cache");
});

test("off and error reports get their own badges; unknown statuses get none", () => {
  assert.equal(badgeForEvent({ status: "off" }).text, "Recall off");
  assert.equal(badgeForEvent({ status: "error", reason: "disk full" }).text, "ERROR · disk full");
  assert.equal(badgeForEvent({ status: "weird" }), null);
  assert.equal(badgeForEvent(null), null);
});

test("each tier's hit rate says which lookups it is of: a colder tier is asked only when warmer ones missed", () => {
  const { tiers } = summarizeStats(STATS);
  assert.deepEqual(tiers.map((t) => t.askedFor), ["every lookup", "lookups VRAM missed", "lookups VRAM and RAM missed"]);
  assert.ok(tiers.every((t) => t.help.length > 10), "every tier is explained in a line");
});

test("an entry kept in RAM and on disk counts once; the copies are counted apart", () => {
  const { totals } = summarizeStats({ ...STATS, totals: { entries: 3, copies: 6, hits: 1, misses: 2, saved_seconds: 4 } });
  assert.equal(totals.entries, 3);
  assert.equal(totals.copies, 6);
});

test("a tier the server reports down is marked down", () => {
  const { tiers } = summarizeStats({ ...STATS, health: { disk: "down", ram: "up" } });
  assert.deepEqual(tiers.map((t) => [t.tier, t.down]), [["vram", false], ["ram", false], ["disk", true]]);
});

test("the saving fits a sidebar badge and reads as one line in the tooltip", () => {
  assert.equal(shortSeconds(0), "");
  assert.equal(shortSeconds(0.27), "<1s");
  assert.equal(shortSeconds(12.4), "12s");
  assert.equal(shortSeconds(190), "3m");
  assert.equal(shortSeconds(4320), "1.2h");
  assert.equal(savingSummary({ hits: 12, saved_seconds: 190 }), "Recall: 12 hits · 3 min 10 s saved since start-up");
  assert.equal(savingSummary({ hits: 1, saved_seconds: 2 }), "Recall: 1 hit · 2.0 s saved since start-up");
});

test("an off badge points at the dialog switch, not at a config file", () => {
  const badge = badgeForEvent({ status: "off", reason: "disabled in the Recall config" });
  assert.match(badge.title, /Settings → Recall/);
  assert.doesNotMatch(badge.title, /config/);
});

test("a near hit is said as near, with its PSNR, on the badge and in its title", () => {
  const badge = badgeForEvent({ status: "hit", tier: "ram", saved_s: 4.2, near_db: 52.4 });
  assert.equal(badge.text, "HIT RAM · near, 52 dB · saved 4.2 s");
  assert.match(badge.title, /another, near-identical image/);
  assert.equal(badgeForEvent({ status: "hit", tier: "disk", saved_s: 1, near_db: 1e9 }).text,
    "HIT Disk · near, identical · saved 1.0 s");
});

test("an exact hit (near_db null) reads as before", () => {
  assert.equal(badgeForEvent({ status: "hit", tier: "ram", saved_s: 4.2, near_db: null }).text,
    "HIT RAM · saved 4.2 s");
});

test("near hits are counted apart in the panel, and say nothing when there were none", async () => {
  const { nearSummary } = await import("../../js/recall_format.js");
  assert.equal(nearSummary({ hits: 0, rejected: 0 }), "");
  assert.equal(nearSummary(undefined), "");
  assert.equal(nearSummary({ hits: 3, rejected: 1, saved_seconds: 4.1 }),
    "Near matches: 3 hits (other images' encodings) · 4.1 s saved · 1 rejected by verification");
});
