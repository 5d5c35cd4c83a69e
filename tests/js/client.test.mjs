// /recall/ route calls (js/recall_client.js): an answer that is not JSON is an error, never silent.
// The module imports ComfyUI's ../../scripts/api.js: it is copied beside a stub of that file.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = mkdtempSync(join(tmpdir(), "recall-client-"));
mkdirSync(join(root, "scripts"));
mkdirSync(join(root, "extensions", "recall"), { recursive: true });
writeFileSync(join(root, "scripts", "api.js"),
  "export const api = { answer: null, fetchApi: async () => api.answer };\n");
copyFileSync(fileURLToPath(new URL("../../js/recall_client.js", import.meta.url)),
  join(root, "extensions", "recall", "recall_client.js"));
const { api } = await import(pathToFileURL(join(root, "scripts", "api.js")));
const client = await import(pathToFileURL(join(root, "extensions", "recall", "recall_client.js")));

const answer = (status, text) => ({ ok: status < 400, status, text: async () => text });

test("settings that are valid JSON are returned", async () => {
  api.answer = answer(200, '{"ttl_minutes": 30}');
  assert.deepEqual(await client.getSettings(), { ttl_minutes: 30 });
});

test("an answer that is not valid JSON is an error naming the route", async () => {
  api.answer = answer(200, '{"ttl_minutes": Infinity}');
  await assert.rejects(client.getSettings(), /\/recall\/settings: the answer is not valid JSON/);
  api.answer = answer(200, "");
  await assert.rejects(client.getSettings(), /not valid JSON/);
});

test("an error answer carries the server's message", async () => {
  api.answer = answer(400, '{"error": "[Recall] /recall/settings: ttl_minutes=inf is invalid"}');
  await assert.rejects(client.postSettings({ ttl_minutes: "inf" }), /ttl_minutes=inf is invalid/);
});
