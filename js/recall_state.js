// Pure state reducers for the Recall frontend (no DOM, no ComfyUI imports; tested by
// tests/js/state.test.mjs). The extensions feed them websocket events and draw the result.

/**
 * Badges of the current run: {executionId: "recall.node" payload}.
 * execution_start empties it, so a node that did not run this time shows nothing;
 * a node reporting twice in one run (several encodings) keeps its last report.
 */
export function badgeReducer(state, action) {
  switch (action?.type) {
    case "execution_start":
      return {};
    case "recall.node": {
      const id = action.payload?.node_id;
      if (id === undefined || id === null || id === "") return state;
      return { ...state, [String(id)]: action.payload };
    }
    default:
      return state;
  }
}

// What a failed tier means for the user, in words. The server's message (an errno, a
// folder, a host) stays in the server log, where the person who can fix it looks.
const BACKEND_WORDS = {
  disk: {
    name: "disk cache",
    down: "Recall could not read or write its cache folder. It keeps working from memory, but new "
      + "encodings are not kept across a restart until the disk works again. The ComfyUI log says which folder and why.",
    up: "Encodings are stored on disk again.",
  },
  redis: {
    name: "shared Redis cache",
    down: "Recall cannot reach the Redis server. It keeps working with this machine's own cache; "
      + "encodings are not shared with other workers until Redis is back. The ComfyUI log has the details.",
    up: "Encodings are shared with the other workers again.",
  },
};

function backendWords(backend) {
  return BACKEND_WORDS[backend] ?? {
    name: `${backend} cache`,
    down: `Recall stopped using its ${backend} cache and keeps working with the others. The ComfyUI log has the details.`,
    up: `The ${backend} cache is in use again.`,
  };
}

/**
 * Backend health for toasts: {backend: "up" | "down"}. Returns the new state and the
 * toast to show, or null: one toast when a backend goes down, one when it comes back
 * after being down; repeats of the same state are silent (a flapping Redis says it once).
 */
export function backendReducer(state, payload) {
  const backend = String(payload?.backend ?? "cache");
  const next = payload?.state === "up" ? "up" : payload?.state === "down" ? "down" : null;
  if (next === null) return { state, toast: null };
  const previous = state[backend];
  const newState = { ...state, [backend]: next };
  const words = backendWords(backend);
  if (next === "down" && previous !== "down") {
    return {
      state: newState,
      toast: { severity: "warn", summary: `Recall: the ${words.name} stopped working`, detail: words.down, life: 10000 },
    };
  }
  if (next === "up" && previous === "down") {
    return {
      state: newState,
      toast: { severity: "info", summary: `Recall: the ${words.name} works again`, detail: words.up, life: 5000 },
    };
  }
  return { state: newState, toast: null };
}

/**
 * The graph node an execution id names. Top-level nodes have their own id ("12");
 * nodes inside subgraphs are "outer:inner" paths. Returns null when the node is gone
 * (the user deleted it, or loaded another workflow while the prompt ran).
 */
export function nodeForExecutionId(graph, executionId) {
  if (!graph || executionId === undefined || executionId === null) return null;
  const path = String(executionId).split(":");
  let current = graph;
  let node = null;
  for (let i = 0; i < path.length; i++) {
    const id = path[i];
    node = current?.getNodeById?.(id) ?? current?.getNodeById?.(Number(id)) ?? null;
    if (!node) return null;
    if (i < path.length - 1) current = node.subgraph ?? null;
  }
  return node;
}

/** Coalesces bursts (several recall.node events in one run) into one call after `delayMs`. */
export function debounce(fn, delayMs, timers = globalThis) {
  let handle = null;
  return (...args) => {
    if (handle !== null) timers.clearTimeout(handle);
    handle = timers.setTimeout(() => {
      handle = null;
      fn(...args);
    }, delayMs);
  };
}

/**
 * Runs an async `fn` one call at a time. A call made while one is in flight is not dropped:
 * one more run follows the current one, so what it fetches is never older than the request.
 */
export function latestOnly(fn) {
  let running = null;
  let again = false;
  const run = async () => {
    try {
      do {
        again = false;
        await fn();
      } while (again);
    } finally {
      running = null;
    }
  };
  return () => {
    if (running) {
      again = true;
      return running;
    }
    running = run();
    return running;
  };
}
