// Pure state reducers of the Recall frontend (js/recall_state.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { backendReducer, badgeReducer, debounce, latestOnly, nodeForExecutionId } from "../../js/recall_state.js";

const hit = (id) => ({ type: "recall.node", payload: { node_id: id, status: "hit", tier: "ram", saved_s: 1 } });
const miss = (id) => ({ type: "recall.node", payload: { node_id: id, status: "miss", reason: "first run" } });

test("a recall.node event sets that node's badge and keeps the others", () => {
  let state = badgeReducer({}, miss("3"));
  state = badgeReducer(state, hit("7"));
  assert.deepEqual(Object.keys(state).sort(), ["3", "7"]);
  assert.equal(state["3"].status, "miss");
  assert.equal(state["7"].status, "hit");
});

test("execution_start clears every badge, so nodes that do not run show nothing", () => {
  const state = badgeReducer(badgeReducer({}, hit("3")), { type: "execution_start" });
  assert.deepEqual(state, {});
});

test("a second report of a node in the same run replaces the first", () => {
  const state = badgeReducer(badgeReducer({}, miss("3")), hit("3"));
  assert.equal(state["3"].status, "hit");
});

test("events without a node id and unrelated actions leave the state untouched", () => {
  const state = badgeReducer({}, hit("1"));
  assert.equal(badgeReducer(state, { type: "recall.node", payload: { status: "hit" } }), state);
  assert.equal(badgeReducer(state, { type: "executing" }), state);
});

test("a backend going down toasts once, however often it repeats", () => {
  let result = backendReducer({}, { backend: "redis", state: "down", message: "connection refused" });
  assert.equal(result.toast.severity, "warn");
  assert.match(result.toast.summary, /Redis cache stopped working/);
  assert.match(result.toast.detail, /keeps working with this machine's own cache/);
  assert.doesNotMatch(result.toast.detail, /connection refused/); // the server's words stay in its log
  result = backendReducer(result.state, { backend: "redis", state: "down", message: "again" });
  assert.equal(result.toast, null);
});

test("a backend coming back toasts only after it was down", () => {
  assert.equal(backendReducer({}, { backend: "disk", state: "up" }).toast, null);
  const down = backendReducer({}, { backend: "disk", state: "down", message: "disk full" }).state;
  const back = backendReducer(down, { backend: "disk", state: "up", message: "" });
  assert.equal(back.toast.severity, "info");
  assert.equal(back.state.disk, "up");
});

test("a disk failure toast says what Recall does, without the errno or the folder", () => {
  const { toast } = backendReducer({}, { backend: "disk", state: "down",
    message: "[Recall] disk tier: write failed: [Errno 20] Not a directory: '/home/me/ComfyUI/user/recall/cache/ab'" });
  assert.match(toast.summary, /disk cache stopped working/);
  assert.match(toast.detail, /keeps working from memory/);
  assert.doesNotMatch(`${toast.summary} ${toast.detail}`, /Errno|\/home|\[Recall\]/);
});

test("backends are tracked separately, and unknown states are ignored", () => {
  const redisDown = backendReducer({}, { backend: "redis", state: "down" }).state;
  assert.notEqual(backendReducer(redisDown, { backend: "disk", state: "down" }).toast, null);
  assert.deepEqual(backendReducer(redisDown, { backend: "redis", state: "sideways" }), { state: redisDown, toast: null });
});

function fakeGraph(nodes) {
  return { getNodeById: (id) => nodes[String(id)] ?? null };
}

test("nodeForExecutionId finds top-level nodes and walks into subgraphs", () => {
  const inner = { id: 4 };
  const outer = { id: 9, subgraph: fakeGraph({ 4: inner }) };
  const top = { id: 3 };
  const graph = fakeGraph({ 3: top, 9: outer });
  assert.equal(nodeForExecutionId(graph, "3"), top);
  assert.equal(nodeForExecutionId(graph, 3), top);
  assert.equal(nodeForExecutionId(graph, "9:4"), inner);
});

test("nodeForExecutionId returns null for nodes that are gone", () => {
  const graph = fakeGraph({ 3: { id: 3 } });
  assert.equal(nodeForExecutionId(graph, "5"), null);
  assert.equal(nodeForExecutionId(graph, "3:1"), null);
  assert.equal(nodeForExecutionId(null, "3"), null);
});

test("debounce runs once for a burst, with the last arguments", () => {
  const pending = [];
  const timers = {
    setTimeout: (fn) => { pending.push(fn); return pending.length; },
    clearTimeout: (handle) => { pending[handle - 1] = null; },
  };
  const calls = [];
  const run = debounce((x) => calls.push(x), 250, timers);
  run(1); run(2); run(3);
  for (const fn of pending) fn?.();
  assert.deepEqual(calls, [3]);
});

test("latestOnly runs one more time when asked while running, never two at once", async () => {
  let started = 0;
  let release = null;
  let running = 0;
  let most = 0;
  const refresh = latestOnly(async () => {
    running += 1;
    most = Math.max(most, running);
    started += 1;
    await new Promise((resolve) => { release = resolve; });
    running -= 1;
  });
  const first = refresh();
  const second = refresh();
  const third = refresh();
  assert.equal(started, 1);
  release();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(started, 2, "a call made while the first ran must run after it");
  release();
  await Promise.all([first, second, third]);
  assert.equal(started, 2, "calls made during one run coalesce into one rerun");
  assert.equal(most, 1);
  const later = refresh();
  assert.equal(started, 3, "a call after the runs end starts at once");
  release();
  await later;
});

test("latestOnly keeps working after a run throws", async () => {
  let calls = 0;
  const refresh = latestOnly(async () => {
    calls += 1;
    if (calls === 1) throw new Error("network down");
  });
  await assert.rejects(refresh(), /network down/);
  await refresh();
  assert.equal(calls, 2);
});
