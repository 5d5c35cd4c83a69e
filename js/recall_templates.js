// recall.templates: our example workflows' titles and one-line descriptions in the template
// browser. Both frontends (1.27 and 1.35) list a custom pack's templates by file name only
// (GET /workflow_templates answers names): the card's title is the name, its description the
// name with "-" and "_" made spaces. Each workflow carries its own title and description
// (extra.recall_template, written by tests/support/build_workflows.mjs); when the browser
// shows one of our cards, this puts them in the card's title and description.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

// The pack's folder name is the template module's name: /extensions/<folder>/recall_templates.js.
const MODULE = decodeURIComponent(new URL(import.meta.url).pathname.split("/").slice(-2, -1)[0] ?? "");

let names = null; // our template names, once the server said them
const meta = new Map(); // name -> {title, description} | null (none in the file)
const pending = new Map(); // name -> Promise

async function ourNames() {
  if (names === null) {
    try {
      const all = await api.getWorkflowTemplates();
      names = new Set(all?.[MODULE] ?? []);
    } catch {
      names = new Set();
    }
  }
  return names;
}

function metadataOf(name) {
  if (meta.has(name)) return Promise.resolve(meta.get(name));
  if (!pending.has(name)) {
    pending.set(name, api.fetchApi(`/workflow_templates/${encodeURIComponent(MODULE)}/${encodeURIComponent(name)}.json`)
      .then((r) => (r.ok ? r.json() : null))
      .then((workflow) => {
        const info = workflow?.extra?.recall_template;
        const ok = info && typeof info.title === "string" && typeof info.description === "string";
        meta.set(name, ok ? { title: info.title, description: info.description } : null);
        return meta.get(name);
      })
      .catch(() => null));
  }
  return pending.get(name);
}

function setText(element, text) {
  if (!element) return;
  if (element.textContent.trim() !== text) element.textContent = text;
  if (element.getAttribute("title") !== text) element.setAttribute("title", text);
}

async function dress(card, name) {
  const info = await metadataOf(name);
  if (!info || !card.isConnected) return;
  setText(card.querySelector("h3"), info.title);
  setText(card.querySelector("p"), info.description);
  card.dataset.recallTemplate = name;
}

async function scan() {
  const cards = document.querySelectorAll('[data-testid^="template-workflow-"]:not([data-recall-template])');
  if (cards.length === 0) return;
  const ours = await ourNames();
  for (const card of cards) {
    const name = card.dataset.testid.slice("template-workflow-".length);
    if (ours.has(name)) void dress(card, name);
  }
}

let queued = false;
function scanSoon() {
  if (queued) return;
  queued = true;
  requestAnimationFrame(() => {
    queued = false;
    void scan();
  });
}

app.registerExtension({
  name: "recall.templates",
  setup() {
    if (!MODULE) return;
    new MutationObserver((records) => {
      if (records.some((r) => r.addedNodes.length)) scanSoon();
    }).observe(document.body, { childList: true, subtree: true });
  },
});
