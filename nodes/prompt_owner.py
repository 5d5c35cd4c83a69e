"""Who queued each prompt, so that per-user cache entries follow the user and not a client id.

With --multi-user, ComfyUI knows the user of a request (its user manager reads the
comfy-user header and checks it against the users it has) but does not keep the user
with the prompt: POST /prompt stores only the client id, which any user can read from
/history and send again. So the pack records the user itself, through two public hooks
and without patching ComfyUI:

- an aiohttp middleware, added to PromptServer.instance.app while the pack loads (aiohttp
  freezes an application's middleware list only when the server starts, which ComfyUI does
  after loading every pack), keeps the request in a context variable while its handler runs;
- an on-prompt handler (PromptServer.add_on_prompt_handler), which POST /prompt calls in the
  same task before it queues the prompt, resolves that request's user and records it under
  the prompt id. Where the client sent no prompt id it sets one, as POST /prompt would have;
  a prompt id already recorded for someone else (or for anyone, when the user is unknown)
  is replaced by a new one (the answer to POST /prompt carries the id that is used), so no
  one can run under another user's prompt id.

The prompt worker sets PromptServer.instance.last_prompt_id before it runs a prompt; the
run's user is the one recorded for that id. A prompt with no recorded user (an unknown
comfy-user, a prompt queued some other way, a record evicted from the bounded table) is
its own namespace: it can reach no one's entries and no one can reach its.

The records are a PromptOwners table of the installed runtime (nodes/runtime.py state()).
"""
from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from collections import OrderedDict
from typing import Callable

_log = logging.getLogger("recall")

MAX_PROMPTS = 20_000      # records kept; an evicted one only isolates that prompt further
# the request being handled: set per task by the middleware, like any context variable
_request: contextvars.ContextVar = contextvars.ContextVar("recall_request", default=None)
# servers already hooked: a fact about the live server object, whatever runtime is installed
_installed_on: set = set()


def _middleware():
    from aiohttp import web

    @web.middleware
    async def recall_prompt_owner(request, handler):
        token = _request.set(request)
        try:
            return await handler(request)
        finally:
            _request.reset(token)
    return recall_prompt_owner


def install(server, user_of, owners: Callable[[], "PromptOwners"]) -> bool:
    """Hook POST /prompt of this PromptServer; user_of(request) -> user id, KeyError if unknown;
    owners() -> the table to record in (the installed runtime's).

    False (with a warning) when the server has already started: then every prompt is its own
    namespace, which isolates users but reuses no per-user entry across prompts.
    """
    if id(server) in _installed_on:
        return True
    try:
        server.app.middlewares.append(_middleware())
    except (RuntimeError, AttributeError) as exc:  # a frozen (started) application
        _log.warning("[Recall] multi-user: cannot learn who queues prompts (%s); each prompt keeps its own "
                     "text-conditioning cache. Restart ComfyUI so the pack loads before the server starts.", exc)
        return False
    server.add_on_prompt_handler(lambda json_data: owners().on_prompt(json_data, user_of))
    _installed_on.add(id(server))
    return True


class PromptOwners:
    """prompt id -> the user who queued it (None: unknown), the newest MAX_PROMPTS; one per runtime."""

    def __init__(self, runtime=None):  # made by Runtime.state(); needs nothing of the runtime
        self._lock = threading.RLock()
        self._owners: "OrderedDict[str, str | None]" = OrderedDict()

    def on_prompt(self, json_data, user_of):
        """Record the user of the request being handled under the prompt's id (see the module doc)."""
        request = _request.get()
        if request is None or not isinstance(json_data, dict) or "prompt" not in json_data:
            return json_data
        try:
            user = str(user_of(request))
        except KeyError:
            user = None
        has_id = "prompt_id" in json_data
        prompt_id = str(json_data["prompt_id"]) if has_id else str(uuid.uuid4())
        with self._lock:
            if has_id and prompt_id in self._owners and (user is None or self._owners[prompt_id] != user):
                new_id = str(uuid.uuid4())
                _log.info("[Recall] multi-user: prompt id %.64r belongs to another user's prompt; this prompt "
                          "runs as %s", prompt_id, new_id)
                prompt_id = new_id
            json_data["prompt_id"] = prompt_id
            self.record(prompt_id, user)
        return json_data

    def record(self, prompt_id: str, user: str | None) -> None:
        with self._lock:
            self._owners[prompt_id] = user
            self._owners.move_to_end(prompt_id)
            while len(self._owners) > MAX_PROMPTS:
                self._owners.popitem(last=False)

    def owner_of(self, prompt_id) -> str | None:
        """The user who queued prompt_id, or None when unknown."""
        if prompt_id is None:
            return None
        with self._lock:
            return self._owners.get(str(prompt_id))
