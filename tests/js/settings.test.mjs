// Settings dialog <-> /recall/settings conversions (js/recall_settings_model.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { GB, SETTINGS, SETTING_BY_KEY, settingChange, toServer, toUi, uiValuesFromServer } from "../../js/recall_settings_model.js";

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

test("negative, empty and fractional-entry values are refused before posting", () => {
  assert.match(settingChange(SETTING_BY_KEY.ram_bytes, -1, SERVER).error, />= 0/);
  assert.match(settingChange(SETTING_BY_KEY.ttl_minutes, null, SERVER).error, />= 0/);
  assert.match(settingChange(SETTING_BY_KEY.vram_entries, 2.5, SERVER).error, /whole number/);
});

test("uiValuesFromServer skips keys the server does not report", () => {
  const values = uiValuesFromServer({ enabled: false, ram_bytes: GB });
  assert.deepEqual(values, [{ id: "Recall.Cache.Enabled", value: false }, { id: "Recall.Cache.RamGB", value: 1 }]);
});
