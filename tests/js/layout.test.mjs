// What the browser loads from js/: ComfyUI imports every .js file under it as an extension,
// from /extensions/<pack folder>/, so imports must be relative siblings or the frontend's
// own shims, and each registered extension is named recall.<feature>.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const JS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "js");
const FRONTEND_SHIMS = new Set(["../../scripts/app.js", "../../scripts/api.js"]);

function jsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? jsFiles(join(dir, entry.name)).map((f) => join(entry.name, f))
      : entry.name.endsWith(".js") ? [entry.name] : []);
}

function importsOf(source) {
  return [...source.matchAll(/^\s*import\s[^;]*?from\s+["']([^"']+)["']/gm)].map((m) => m[1]);
}

test("js/ holds only flat browser modules (no tests, no subfolders that shift ../../scripts)", () => {
  const files = jsFiles(JS_DIR);
  assert.ok(files.length > 0);
  for (const file of files) {
    assert.ok(!file.includes("/"), `${file}: keep js/ flat so '../../scripts/' resolves`);
    assert.doesNotMatch(file, /test|spec/i, `${file}: test code must live in tests/js`);
  }
});

test("every import is a sibling that exists or the frontend's app/api shim", () => {
  for (const file of jsFiles(JS_DIR)) {
    for (const spec of importsOf(readFileSync(join(JS_DIR, file), "utf8"))) {
      if (FRONTEND_SHIMS.has(spec)) continue;
      assert.match(spec, /^\.\/[\w-]+\.js$/, `${file} imports ${spec}`);
      assert.ok(existsSync(join(JS_DIR, spec)), `${file} imports missing ${spec}`);
    }
  }
});

test("pure helper modules import nothing from the frontend (node can load them)", () => {
  for (const file of ["recall_format.js", "recall_state.js", "recall_settings_model.js"]) {
    assert.deepEqual(importsOf(readFileSync(join(JS_DIR, file), "utf8")), [], file);
  }
});

test("extensions are named recall.<feature>, one per file, no duplicates", () => {
  const names = [];
  for (const file of jsFiles(JS_DIR)) {
    const found = [...readFileSync(join(JS_DIR, file), "utf8").matchAll(/registerExtension\(\{\s*name:\s*"([^"]+)"/g)]
      .map((m) => m[1]);
    assert.ok(found.length <= 1, `${file} registers ${found.length} extensions`);
    names.push(...found);
  }
  assert.ok(names.length >= 4);
  for (const name of names) assert.match(name, /^recall\.[a-z]+$/);
  assert.equal(new Set(names).size, names.length);
});
