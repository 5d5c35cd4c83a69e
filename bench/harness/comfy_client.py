"""A client for a live ComfyUI: queue an API-format prompt, follow it on the websocket.

run_prompt() opens a websocket with a fresh client_id, posts the prompt with
that client_id, and reads messages until the prompt ends (execution_success,
execution_error or execution_interrupted). Events the pack sends (type
"recall.*") carry no prompt id; they go to the client that queued the prompt,
and one client_id per prompt makes them this prompt's.
"""
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
import websocket

FINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


class PromptRejected(RuntimeError):
    """/prompt refused the workflow (validation failed); .body holds ComfyUI's answer."""

    def __init__(self, status: int, body):
        super().__init__(f"/prompt answered {status}: {json.dumps(body)[:2000]}")
        self.status = status
        self.body = body


@dataclass
class PromptResult:
    prompt_id: str
    status: str                     # "success" | "error" | "interrupted"
    executed: list = field(default_factory=list)   # node ids that ran, in order
    cached: list = field(default_factory=list)     # node ids ComfyUI served from its cache
    recall_events: list = field(default_factory=list)  # [(event type, payload)] for "recall.*"
    errors: list = field(default_factory=list)     # execution_error payloads
    messages: list = field(default_factory=list)   # every JSON message, for debugging
    wall_s: float = 0.0             # post to final event
    outputs: dict = field(default_factory=dict)    # /history outputs: node id -> ui dict

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def events(self, event_type: str = "recall.node") -> list:
        """Payloads of one recall event type, in arrival order."""
        return [payload for kind, payload in self.recall_events if kind == event_type]

    def node_events(self, node_id) -> list:
        return [p for p in self.events("recall.node") if p.get("node_id") == str(node_id)]


class ComfyClient:
    def __init__(self, base_url: str, timeout_s: float = 300.0):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/ws"

    def get(self, path: str, **kw):
        response = requests.get(self.base_url + path, timeout=kw.pop("timeout", 30), **kw)
        response.raise_for_status()
        return response.json()

    def object_info(self) -> dict:
        return self.get("/object_info")

    def history(self, prompt_id: str) -> dict:
        return self.get(f"/history/{prompt_id}").get(prompt_id, {})

    def upload_image(self, path: Path, name: str | None = None, overwrite: bool = True) -> str:
        """POST /upload/image; returns the name LoadImage takes."""
        path = Path(path)
        with open(path, "rb") as fh:
            response = requests.post(self.base_url + "/upload/image",
                                     files={"image": (name or path.name, fh, "image/png")},
                                     data={"overwrite": "true" if overwrite else "false", "type": "input"},
                                     timeout=30)
        response.raise_for_status()
        body = response.json()
        return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else body["name"]

    def run_prompt(self, prompt: dict, timeout_s: float | None = None, history_wait_s: float = 5.0,
                   headers: dict | None = None, client_id: str | None = None) -> PromptResult:
        """Queue prompt and block until it finishes. Raises PromptRejected on validation errors.

        headers go with POST /prompt (e.g. comfy-user); client_id defaults to a fresh one."""
        timeout_s = timeout_s or self.timeout_s
        client_id = client_id or uuid.uuid4().hex
        ws = websocket.create_connection(f"{self.ws_url}?clientId={client_id}", timeout=timeout_s)
        try:
            start = time.perf_counter()
            response = requests.post(self.base_url + "/prompt", headers=headers or {},
                                     json={"prompt": prompt, "client_id": client_id}, timeout=30)
            if response.status_code != 200:
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
                raise PromptRejected(response.status_code, body)
            prompt_id = response.json()["prompt_id"]
            result = self._follow(ws, prompt_id, start, timeout_s)
        finally:
            ws.close()
        if result.status == "success":
            result.outputs = self._wait_history(prompt_id, history_wait_s)
        return result

    def _follow(self, ws, prompt_id: str, start: float, timeout_s: float) -> PromptResult:
        result = PromptResult(prompt_id=prompt_id, status="")
        deadline = start + timeout_s
        while True:
            ws.settimeout(max(0.1, deadline - time.perf_counter()))
            try:
                raw = ws.recv()
            except websocket.WebSocketTimeoutException:
                raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout_s:.0f} s; "
                                   f"executed so far: {result.executed}") from None
            if isinstance(raw, bytes):  # binary preview frames
                continue
            message = json.loads(raw)
            kind, data = message.get("type"), message.get("data") or {}
            result.messages.append(message)
            if kind.startswith("recall."):
                result.recall_events.append((kind, data))
                continue
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if kind == "executing" and data.get("node") is not None:
                if data["node"] not in result.executed:
                    result.executed.append(data["node"])
            elif kind == "execution_cached":
                result.cached.extend(data.get("nodes", []))
            elif kind == "execution_error":
                result.errors.append(data)
            if kind in FINAL_EVENTS and data.get("prompt_id") == prompt_id:
                result.status = kind.removeprefix("execution_")
                result.wall_s = time.perf_counter() - start
                return result

    def _wait_history(self, prompt_id: str, wait_s: float) -> dict:
        # execution_success is sent before /history/<id> is written: poll briefly.
        deadline = time.monotonic() + wait_s
        while True:
            entry = self.history(prompt_id)
            if entry or time.monotonic() > deadline:
                return entry.get("outputs", {})
            time.sleep(0.05)


def write_input_image(input_dir: Path, name: str, width: int = 64, height: int = 64, seed: int = 0) -> str:
    """Write a deterministic RGB PNG straight into ComfyUI's input folder; returns its name."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Path(input_dir).mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(Path(input_dir) / name)
    return name


def create_users(url: str, names) -> dict:
    """{name: user id} of users made through a --multi-user server's POST /users."""
    users = {}
    for name in names:
        answer = requests.post(url + "/users", json={"username": name}, timeout=30)
        assert answer.status_code == 200, answer.text
        users[name] = answer.json()
    return users
