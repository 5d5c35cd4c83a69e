// Settings dialog <-> /recall/settings conversions (js/recall_settings_model.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  GB, SETTINGS, SETTING_BY_KEY, applicableSettings, settingChange, toServer, toUi, uiValuesFromServer,
} from "../../js/recall_settings_model.js";

const SERVER = {
  enabled: true, vram_entries: 10, vram_bytes: 2 * GB, ram_bytes: 4 * GB, disk_bytes: 20 * GB,
  ttl_minutes: 30, text_ttl_minutes: 10, disk_ttl_hours: 168,
};

test("every setting lives in the Recall category with a unique id", () => {
  assert.equal(new Set(SETTINGS.map((s) => s.id)).size, SETTINGS.length);
  for (const spec of SETTINGS) {
    assert.equal(spec.category[0], "Recall");
    assert.match(spec.id, /^Recall\./);
  }
});

test("sizes are shown in GB and sent back in bytes", () => {
  const ram = SETTING_BY_KEY.ram_bytes;
  assert.equal(toUi(ram, 4 * GB), 4);
  assert.equal(toUi(ram, 1.5 * GB), 1.5);
  assert.equal(toServer(ram, 0.5), GB / 2);
});

test("changing a cap posts only that key, in server units", () => {
  assert.deepEqual(settingChange(SETTING_BY_KEY.ram_bytes, 8, SERVER), { changes: { ram_bytes: 8 * GB } });
  assert.deepEqual(settingChange(SETTING_BY_KEY.enabled, false, SERVER), { changes: { enabled: false } });
  assert.deepEqual(settingChange(SETTING_BY_KEY.ttl_minutes, 5, SERVER), { changes: { ttl_minutes: 5 } });
});

test("the value the server already has is not posted back (start-up sync stays quiet)", () => {
  for (const { id, value } of uiValuesFromServer(SERVER)) {
    const spec = SETTINGS.find((s) => s.id === id);
    assert.equal(settingChange(spec, value, SERVER), null, id);
  }
});

test("nothing is posted before the server's settings are known", () => {
  assert.equal(settingChange(SETTING_BY_KEY.ram_bytes, 8, null), null);
  assert.equal(settingChange(SETTING_BY_KEY.ram_bytes, 8, { enabled: true }), null);
});

test("a negative value is refused in words, naming what was typed and what stays", () => {
  const { error } = settingChange(SETTING_BY_KEY.ram_bytes, -3, SERVER);
  assert.equal(error, "The RAM cap cannot be negative (you typed -3 GB). Type 0 or more (0 turns the tier off). It stays at 4 GB.");
});

test("an emptied field is refused without showing the user a null", () => {
  for (const empty of [null, "", undefined]) {
    const { error } = settingChange(SETTING_BY_KEY.ttl_minutes, empty, SERVER);
    assert.equal(error, "How long image encodings stay in memory is empty. Type a number. It stays at 30.");
  }
});

test("a cap larger than the machine's memory or disk is refused, naming the most it can be", () => {
  const limits = { ram_bytes: 31.3 * GB, disk_bytes: 500 * GB };
  const { error } = settingChange(SETTING_BY_KEY.ram_bytes, 99999999, SERVER, limits);
  assert.equal(error, "The RAM cap of 99,999,999 GB is more than this machine's memory (31.3 GB). Type at most 31.3 GB. It stays at 4 GB.");
  assert.match(settingChange(SETTING_BY_KEY.disk_bytes, 501, SERVER, limits).error, /more than this machine's disk \(500 GB\)/);
  assert.deepEqual(settingChange(SETTING_BY_KEY.disk_bytes, 500, SERVER, limits), { changes: { disk_bytes: 500 * GB } });
});

test("a fractional VRAM entry count is refused", () => {
  assert.match(settingChange(SETTING_BY_KEY.vram_entries, 2.5, SERVER).error, /whole number \(you typed 2.5\)/);
});

test("number fields have no minimum, so a typed minus sign reaches the check instead of vanishing", () => {
  for (const spec of SETTINGS.filter((s) => s.type === "number")) assert.equal(spec.attrs?.min, undefined, spec.id);
});

test("without an accelerator the VRAM settings are not listed", () => {
  const keys = applicableSettings({ hasVram: false }).map((s) => s.key);
  assert.ok(!keys.includes("vram_bytes") && !keys.includes("vram_entries"), keys);
  assert.ok(applicableSettings({ hasVram: true }).some((s) => s.key === "vram_bytes"));
});

test("the tier caps are listed RAM, VRAM, disk, as in the panel", () => {
  const tiers = SETTINGS.filter((s) => s.category[1] === "Tiers").sort((a, b) => b.sortOrder - a.sortOrder);
  assert.deepEqual(tiers.map((s) => s.key), ["ram_bytes", "vram_entries", "vram_bytes", "disk_bytes"]);
});

test("uiValuesFromServer skips keys the server does not report", () => {
  const values = uiValuesFromServer({ enabled: false, ram_bytes: GB });
  assert.deepEqual(values, [{ id: "Recall.Cache.Enabled", value: false }, { id: "Recall.Cache.RamGB", value: 1 }]);
});

test("the match settings travel as the server's words and numbers", () => {
  const mode = SETTING_BY_KEY.match;
  const psnr = SETTING_BY_KEY.near_psnr_db;
  assert.deepEqual(mode.options, ["exact", "near"]);
  assert.deepEqual(psnr.options, [40, 45, 50]);
  assert.deepEqual(settingChange(mode, "near", { match: "exact" }), { changes: { match: "near" } });
  assert.equal(settingChange(mode, "exact", { match: "exact" }), null);
  assert.deepEqual(settingChange(psnr, 50, { near_psnr_db: 45.0 }), { changes: { near_psnr_db: 50 } });
  assert.match(mode.tooltip, /other image's encoding/);
});
