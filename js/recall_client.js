// The /recall/ routes, called through ComfyUI's api.fetchApi (which adds the /api prefix
// and, in multi-user mode, the Comfy-User header the server uses to pick the namespace).
import { api } from "../../scripts/api.js";

async function call(method, route, body) {
  const options = { method, cache: "no-store" };
  if (body !== undefined) {
    options.headers = { "Content-Type": "application/json" };
    options.body = JSON.stringify(body);
  }
  const response = await api.fetchApi(route, options);
  const text = await response.text();
  let data = null;
  let parseError = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (error) {
    parseError = error;
  }
  if (!response.ok) {
    throw new Error(data?.error || `${method} ${route} failed with HTTP ${response.status}`);
  }
  if (parseError || data === null) {
    // say so instead of handing the panel nothing: an empty dialog hides the fault
    throw new Error(`[Recall] ${method} ${route}: the answer is not valid JSON ` +
                    `(${parseError?.message || "empty body"}). See the ComfyUI log.`);
  }
  return data;
}

export const getStats = () => call("GET", "/recall/stats");
/** {} clears everything the user may clear; {tier} one tier; {namespace} one namespace. */
export const clearCache = (target = {}) => call("POST", "/recall/clear", target);
export const getSettings = () => call("GET", "/recall/settings");
export const postSettings = (changes) => call("POST", "/recall/settings", changes);
export const postSession = (clientId) => call("POST", "/recall/session", { client_id: clientId });
