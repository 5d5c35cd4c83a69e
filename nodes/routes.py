"""HTTP routes under /recall/ for the frontend (js/): statistics, clearing, settings, sessions.

    GET  /recall/stats     per tier and namespace: entries, bytes, hits, misses, evictions, saved_seconds;
                           "near": {hits, rejected, stale, saved_seconds, indexed} of match: near;
                           totals (entries counted once, copies), tier health, the machine's sizes
    POST /recall/clear     {} everything | {"tier": "ram"} | {"namespace": "shared"} | both
    GET  /recall/settings  the settings that change at runtime (enable, caps, lifetimes)
    POST /recall/settings  {"ram_bytes": 8589934592, ...}: validated and applied at once
    POST /recall/session   {"client_id": "..."}: this browser tab's websocket client belongs to
                           the request's user (--multi-user), so its prompts use that namespace

Every input is checked: a malformed body (also one nested too deep, or holding NaN or
Infinity), an unknown tier or key, a negative or unbounded cap get a 400 with
{"error": message}; a body over 64 KiB gets a 413, however it arrives. No request
makes a handler fail with a 500. Answers carry counts and settings only, never cached values,
keys or file-system paths. With --multi-user, a user sees their own namespace and the
"shared" one (image encodings, shared by design), and clears only their own.
"""
import asyncio
import functools
import json
import logging
import re
import reprlib

from aiohttp import web

from ..cache.names import SHARED_NAMESPACE, TIER_ORDER
from . import runtime as runtime_module

_log = logging.getLogger("recall.routes")

# used with fullmatch: "$" would also accept a trailing newline
_CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,200}")
_PATH_RE = re.compile(r"(?:[A-Za-z]:)?[\\/](?:[^\s'\"\\/]+[\\/])+[^\s'\",)]*")
_MAX_BODY_BYTES = 64 * 1024
_MAX_CLIENTS = 4096             # client ids bound to users, all users together
_MAX_CLIENTS_PER_USER = 64      # a user's own oldest binding makes room for their next one
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlist = _short.maxtuple = _short.maxdict = 4
_short.maxlevel = 2
_strict_dumps = functools.partial(json.dumps, allow_nan=False)  # NaN/Infinity are not JSON
_COUNTERS = ("entries", "bytes", "hits", "misses", "evictions", "saved_seconds")


class RouteError(Exception):
    """An answer other than 200: status and a message for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def scrub(message: str) -> str:
    """Messages from the cache engine may name folders; answers never carry paths."""
    return _PATH_RE.sub("<path>", str(message))


def _answer(data, status: int = 200):
    return web.json_response(data, status=status, dumps=_strict_dumps)


def _fail(status: int, route: str, what: str) -> RouteError:
    return RouteError(status, f"[Recall] {route}: {what}")


def _too_large(route: str) -> RouteError:
    return _fail(413, route, f"the body is larger than {_MAX_BODY_BYTES} bytes (expected a small JSON object)")


async def read_body(request, route: str, limit: int = _MAX_BODY_BYTES) -> bytes:
    """The whole body, however many segments it arrives in; more than limit bytes is a 413."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(route)
    chunks, size = [], 0
    while True:
        # read() returns what has arrived so far: loop until the end of the body
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _too_large(route)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _show(value) -> str:
    """A value in a message, shortened: a body may hold 64 KiB or deeply nested lists."""
    return _short.repr(value)


async def _json_object(request, route: str, allow_empty: bool) -> dict:
    raw = await read_body(request, route)
    if not raw.strip():
        if allow_empty:
            return {}
        raise _fail(400, route, "the body is empty (expected a JSON object)")
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise _fail(400, route, "the body is nested too deeply (expected a flat JSON object such as "
                                "{\"tier\": \"ram\"})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(400, route, f"the body is not valid JSON ({exc.__class__.__name__}: {_short.repr(str(exc))}). "
                                "Send a JSON object such as {\"tier\": \"ram\"}.") from None
    if not isinstance(body, dict):
        raise _fail(400, route, f"the body must be a JSON object, got {type(body).__name__}")
    return body


class RecallRoutes:
    """The handlers, with what they need from ComfyUI passed in (tests give their own)."""

    def __init__(self, runtime, user_of, multi_user: bool):
        self.runtime = runtime
        self.user_of = user_of          # request -> ComfyUI user id; KeyError for an unknown user
        self.multi_user = multi_user
        self._client_owner: dict[str, str] = {}            # client id -> user, never rebound
        self._clients_of: dict[str, dict[str, None]] = {}  # user -> their client ids, oldest first

    # -- who is asking ---------------------------------------------------------------------
    def _user(self, request, route: str) -> str | None:
        if not self.multi_user:
            return None
        try:
            return self.user_of(request)
        except KeyError:
            raise _fail(403, route, "unknown user (send the comfy-user header of a user that exists; "
                                    "ComfyUI runs with --multi-user)") from None

    def _visible(self, user: str | None, namespaces) -> list[str]:
        if user is None:
            return sorted(namespaces)
        return [SHARED_NAMESPACE, self.runtime.user_namespace(user)]

    # -- helpers -------------------------------------------------------------------------
    async def _run(self, fn, *args):
        # Tiers take locks and may touch the disk: keep that off ComfyUI's event loop.
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _tiers_in_use(self, stats: dict) -> list[str]:
        return list(stats.get("tiers", {}))

    @staticmethod
    def _all_namespaces(stats: dict) -> set:
        names = set(stats.get("namespaces", {}))
        for per_ns in stats.get("tiers", {}).values():
            names.update(per_ns)
        return names

    def _filtered_stats(self, stats: dict, user: str | None) -> dict:
        namespaces = self._visible(user, self._all_namespaces(stats))
        keep = set(namespaces)
        tiers = {tier: {ns: {k: c.get(k, 0) for k in _COUNTERS} for ns, c in per_ns.items() if ns in keep}
                 for tier, per_ns in stats.get("tiers", {}).items()}
        lookups = {ns: c for ns, c in stats.get("namespaces", {}).items() if ns in keep}
        if user is None and isinstance(stats.get("totals"), dict):
            totals = {k: stats["totals"].get(k, 0) for k in _COUNTERS}
        else:  # only what this user may see counts
            totals = {k: 0 for k in _COUNTERS}
            for per_ns in tiers.values():
                for c in per_ns.values():
                    for k in ("entries", "bytes", "evictions"):
                        totals[k] += c.get(k, 0)
            for c in lookups.values():
                for k in ("hits", "misses", "saved_seconds"):
                    totals[k] += c.get(k, 0)
        clearable = namespaces if user is None else [self.runtime.user_namespace(user)]
        # An entry kept in RAM and on disk is one entry with two copies: "entries" counts it
        # once, "copies" counts what the tiers hold.
        totals["copies"] = sum(c.get("entries", 0) for per_ns in tiers.values() for c in per_ns.values())
        totals["entries"] = self._optional(self.runtime, "distinct_entries", totals["entries"],
                                           None if user is None else namespaces)
        health = self._optional(self.runtime, "tier_health", {})
        return {
            "enabled": bool(stats.get("enabled", True)),
            "tiers": tiers,
            "totals": totals,
            # what the panel needs to explain itself: a failed tier, and the machine's sizes
            # (the settings refuse a cap larger than the memory or disk it is a cap of)
            "health": {tier: health.get(tier, "up") for tier in tiers},
            "limits": self._optional(self.runtime, "capacity_limits", {}),
            # match: near: lookups an exact miss turned into a verified near hit (shared image encodings;
            # those lookups are also counted as misses above, being exact misses)
            "near": self._optional(self.runtime, "near_stats", {}),
            "namespaces": {ns: {k: c.get(k, 0) for k in ("hits", "misses", "saved_seconds")}
                           for ns, c in lookups.items()},
            "scope": {"multi_user": self.multi_user, "namespaces": namespaces, "clearable": clearable},
        }

    @staticmethod
    def _optional(runtime, name: str, default, *args):
        # Accessors a test runtime may lack; a failure costs the detail, never the answer.
        fn = getattr(runtime, name, None)
        if fn is None:
            return default
        try:
            return fn(*args)
        except Exception:
            _log.debug("[Recall] stats: %s failed", name, exc_info=True)
            return default

    # -- handlers ------------------------------------------------------------------------
    async def get_stats(self, request):
        user = self._user(request, "/recall/stats")
        # the accessors walk tier indexes: off the event loop, like the stats themselves
        return _answer(await self._run(lambda: self._filtered_stats(self.runtime.stats(), user)))

    async def post_clear(self, request):
        route = "/recall/clear"
        user = self._user(request, route)
        body = await _json_object(request, route, allow_empty=True)
        unknown = sorted(set(body) - {"tier", "namespace"})
        if unknown:
            raise _fail(400, route, f"unknown field {_show(unknown[0])} (expected 'tier' and/or 'namespace', "
                                    "or an empty body to clear everything)")
        tier = body.get("tier")
        namespace = body.get("namespace")
        if tier is not None:
            in_use = self._tiers_in_use(await self._run(self.runtime.stats))
            if not isinstance(tier, str) or tier not in TIER_ORDER:
                raise _fail(400, route, f"unknown tier {_show(tier)} (expected one of: {', '.join(in_use)})")
            if tier not in in_use:
                raise _fail(400, route, f"tier {tier!r} is not in use on this server "
                                        f"(in use: {', '.join(in_use) or 'none'})")
        if namespace is not None and (not isinstance(namespace, str) or not _NAMESPACE_RE.fullmatch(namespace)):
            raise _fail(400, route, f"namespace must be a name such as 'shared' or 'default', got {_show(namespace)}")
        if user is not None:
            own = self.runtime.user_namespace(user)
            if namespace is None:
                namespace = own  # "everything" a user may clear is their own namespace
            elif namespace != own:
                raise _fail(403, route, f"namespace {_show(namespace)} is not yours (you may clear {own!r} only)")
        removed = await self._run(lambda: self.runtime.clear(namespace=namespace, tier=tier))
        _log.info("[Recall] cache cleared: %d entries (tier=%s, namespace=%s)", removed, tier or "all",
                  namespace or "all")
        return _answer({"cleared": int(removed), "tier": tier, "namespace": namespace})

    async def get_settings(self, request):
        self._user(request, "/recall/settings")
        return _answer(await self._run(self.runtime.settings_snapshot))

    async def post_settings(self, request):
        route = "/recall/settings"
        self._user(request, route)
        body = await _json_object(request, route, allow_empty=False)
        if not body:
            raise _fail(400, route, "no settings given (expected an object such as {\"ram_bytes\": \"8GB\"})")
        allowed = list(await self._run(self.runtime.settings_snapshot))
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise _fail(400, route, f"unknown setting {_show(unknown[0])} (expected one of: {', '.join(allowed)})")
        from ..cache.errors import CacheConfigError
        try:
            await self._run(self.runtime.update_settings, body)
        except CacheConfigError as exc:
            raise RouteError(400, scrub(exc)) from None
        _log.info("[Recall] settings changed from the UI: %s", ", ".join(f"{k}={_show(v)}" for k, v in body.items()))
        return _answer(await self._run(self.runtime.settings_snapshot))

    async def post_session(self, request):
        route = "/recall/session"
        user = self._user(request, route) or "default"
        body = await _json_object(request, route, allow_empty=False)
        client_id = body.get("client_id")
        if not isinstance(client_id, str) or not _CLIENT_ID_RE.fullmatch(client_id):
            raise _fail(400, route, f"client_id must be the websocket client id (1-128 letters, digits, '-', '_'), "
                                    f"got {_show(client_id)}")
        self._bind(route, client_id, user)
        namespace = self.runtime.user_namespace(user) if self.multi_user else "default"
        return _answer({"client_id": client_id, "namespace": namespace})

    def _bind(self, route: str, client_id: str, user: str) -> None:
        """Bind a client id to a user for good: never to another user, and only a user's own
        bindings make room for their new ones (a flood of ids evicts nobody else's)."""
        owner = self._client_owner.get(client_id)
        if owner == user:
            return
        if owner is not None:
            # A tab's prompts stay in the namespace of whoever opened it.
            raise _fail(409, route, "this client id belongs to another user (expected the id of your own "
                                    "websocket connection). Reload the page to get a new one.")
        mine = self._clients_of.setdefault(user, {})
        if len(mine) >= _MAX_CLIENTS_PER_USER:
            oldest = next(iter(mine))
            del mine[oldest]
            del self._client_owner[oldest]
        elif len(self._client_owner) >= _MAX_CLIENTS:
            if not mine:
                del self._clients_of[user]
            raise _fail(503, route, f"{_MAX_CLIENTS} client ids are registered on this server (expected fewer "
                                    "users at once). Restart ComfyUI to forget them.")
        mine[client_id] = None
        self._client_owner[client_id] = user


def _guarded(handler):
    async def run(request):
        try:
            return await handler(request)
        except RouteError as exc:
            return _answer({"error": str(exc)}, status=exc.status)
        except Exception:
            _log.exception("[Recall] %s %s failed", request.method, request.path)
            return _answer({"error": f"[Recall] {request.path}: internal error; see the ComfyUI log"},
                                     status=500)
    return run


def _comfy_user_of(request) -> str:
    from server import PromptServer
    return PromptServer.instance.user_manager.get_request_user_id(request)


def _comfy_multi_user() -> bool:
    from comfy.cli_args import args
    return bool(getattr(args, "multi_user", False))


_registered_on: set = set()   # route tables already given our routes: once per server, whatever the runtime


def register(routes, *, runtime=None, user_of=None, multi_user=None) -> RecallRoutes | None:
    """Add the /recall/ routes to a RouteTableDef (PromptServer.instance.routes at start-up).

    A second call for the same table does nothing: aiohttp refuses a route added twice.
    """
    if id(routes) in _registered_on:
        return None
    _registered_on.add(id(routes))
    if runtime is None:
        runtime = runtime_module.current()
    handlers = RecallRoutes(runtime, user_of or _comfy_user_of,
                            _comfy_multi_user() if multi_user is None else multi_user)
    routes.get("/recall/stats")(_guarded(handlers.get_stats))
    routes.post("/recall/clear")(_guarded(handlers.post_clear))
    routes.get("/recall/settings")(_guarded(handlers.get_settings))
    routes.post("/recall/settings")(_guarded(handlers.post_settings))
    routes.post("/recall/session")(_guarded(handlers.post_session))
    return handlers
