// The example workflows as template cards: each carries the title and one-line description
// js/recall_templates.js puts on its card (both frontends otherwise show the file name), a
// view that opens readable, and a Read me written as paragraphs.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "workflows");
const WORKFLOWS = readdirSync(DIR).filter((f) => f.endsWith(".json"))
  .map((f) => [f, JSON.parse(readFileSync(join(DIR, f), "utf8"))]);

test("there are example workflows", () => assert.ok(WORKFLOWS.length >= 5));

for (const [file, graph] of WORKFLOWS) {
  test(`${file}: a title that fits the card's one line and a description that fits its two`, () => {
    const meta = graph.extra?.recall_template;
    assert.ok(meta, "extra.recall_template is missing");
    assert.ok(meta.title.length >= 8 && meta.title.length <= 32, meta.title);
    assert.ok(meta.description.length >= 20 && meta.description.length <= 72, meta.description);
    assert.doesNotMatch(`${meta.title}${meta.description}`, /\n/);
    assert.notEqual(meta.title, file.replace(/\.json$/, ""));
  });

  test(`${file}: opens at a zoom where the canvas still draws text`, () => {
    // LiteGraph drops text below about 0.6 (its low-quality threshold)
    assert.ok(graph.extra?.ds?.scale >= 0.6 && graph.extra.ds.scale <= 1, JSON.stringify(graph.extra?.ds));
  });

  test(`${file}: the Read me is paragraphs, not hard-wrapped lines`, () => {
    const [text] = graph.nodes.find((n) => n.type === "Note").widgets_values;
    const paragraphs = text.split("\n\n");
    assert.ok(paragraphs.length >= 2, text);
    for (const p of paragraphs) assert.doesNotMatch(p, /\n/, `a line break inside a paragraph: ${p}`);
  });
}
