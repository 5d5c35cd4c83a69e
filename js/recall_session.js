// recall.session: tells the server which user this browser tab's client id belongs to.
// In --multi-user mode the server learns the user from the Comfy-User header of this
// request (api.fetchApi adds it) and then files the prompts this client queues under that
// user's cache namespace. The client id changes when the websocket reconnects, so it is
// sent again whenever it differs from the last one sent.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { postSession } from "./recall_client.js";

let sentFor = null;

async function announce() {
  const clientId = api.clientId;
  if (!clientId || clientId === sentFor) return;
  sentFor = clientId;
  try {
    await postSession(clientId);
  } catch (error) {
    sentFor = null; // try again on the next status message
    console.warn("[Recall] could not register this tab's session:", error.message);
  }
}

app.registerExtension({
  name: "recall.session",
  setup() {
    api.addEventListener("status", () => void announce());
    api.addEventListener("reconnected", () => void announce());
    void announce();
  },
});
