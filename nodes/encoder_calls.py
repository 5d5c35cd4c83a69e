"""One encoder call, looked up first: the path every wrapped encode goes through.

A call is described by the encoder object, the original (unwrapped) method and the
arguments it was called with. Its key is the exact content of every tensor argument
(nested ones too, as in tokens that carry images), the encoder's identity
(nodes/identity.py: weights, dtype, patches) and the call's other arguments by value.
The store, tiers, namespaces and miss explanations are encode_cache's.

Who is told: a Recall drop-in node collects the parts of its core node's calls
(`collecting`) and reports them once under its own name. Any other node (core or
another pack's) that calls a wrapped encoder is reported under its own class type and
id, found from ComfyUI's executing context; its several calls add up to one badge.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
from collections import OrderedDict
from typing import Any, Callable

import torch

from ..cache.keys import content_key
from ..cache.names import SHARED_NAMESPACE
from . import encode_cache, near_match, preferred_images, runtime
from .lib.tensor_tree import tree_digest

_log = logging.getLogger("recall.encode")

TEXT_KINDS = frozenset({"text", "text_tokens"})   # conditioning: per user, text TTL
_PLAIN = (type(None), bool, int, float, str)
_MAX_PLAIN_LEAVES = 16

_local = threading.local()   # the collector of the node running on this thread
_signature = functools.lru_cache(maxsize=256)(inspect.signature)   # per encoder method: it never changes
_MAX_NODES = 64


class Uncacheable(Exception):
    """This call cannot be keyed or stored; it runs uncached (the reason goes in the badge)."""


@contextlib.contextmanager
def collecting(sources: tuple = (), hints: dict | None = None, match: str | None = None):
    """Collect the Parts of the wrapped calls made inside, instead of reporting each one.

    sources: the node's input images; when one is a preferred image (nodes/preferred_images.py),
    the calls' entries stay hot, also when core resized or cropped it before encoding.
    hints: node inputs that shaped the pixels, for the miss explanation only (not the key).
    match: the node's `match` choice (nodes/near_match.py OPTIONS); None or "default" defers.
    """
    outer = getattr(_local, "collector", None)
    # "pinned": whether a source is preferred, found once per node run when a call first asks
    collector = _local.collector = {"parts": [], "sources": sources, "pinned": None, "hints": hints, "match": match}
    try:
        yield collector["parts"]
    finally:
        _local.collector = outer


def call(kind: str, encoder, method: Callable, args: tuple, kwargs: dict, *,
         identity: Callable[[Any], str], ignore: tuple = (), unpack: Callable | None = None,
         pack: Callable | None = None, uncacheable: str | None = None, views: dict | None = None):
    """method(encoder, *args, **kwargs), answered from the cache when the same call was made before.

    method is the unwrapped function (the class attribute before wrapping). ignore names
    arguments that cannot change the result (a progress-bar switch). pack/unpack turn the
    result into a storable tree and back (CLIP vision's Output object). uncacheable: a
    reason to run this call uncached (hooked CLIP). views: argument name -> fn(encoder, value)
    giving what the encoder actually consumes of that argument, keyed instead of the value
    (VAE: the pixels after its own crop to whole latent cells and its channel count).
    """
    run = lambda: method(encoder, *args, **kwargs)
    if encode_cache.inside_compute():  # a wrapped call inside another one's compute: the outer is keyed
        return run()
    compute = run if pack is None else (lambda: pack(run()))
    collector = getattr(_local, "collector", None)
    part = _part(kind, encoder, method, args, kwargs, identity, ignore, compute, uncacheable, views or {}, collector)
    if unpack is not None:
        part.value = unpack(part.value)
    if collector is not None:
        collector["parts"].append(part)   # the Recall node reports them all once
    else:
        _tell_executing_node(kind, method, part)
    return part.value


def _part(kind, encoder, method, args, kwargs, identity, ignore, compute, uncacheable, views,
          collector) -> encode_cache.Part:
    if uncacheable:
        return encode_cache.uncached(compute, uncacheable)
    try:
        encoder_id = identity(encoder)
    except (TypeError, ValueError) as exc:
        _log.warning("[Recall] cannot fingerprint %s, encoding it uncached: %s", type(encoder).__name__, exc)
        return encode_cache.uncached(compute, f"encoder has no stable identity: {exc}")
    rt = runtime.current()   # read once for the whole call
    try:
        contents, params, tensors = describe(method, encoder, args, kwargs, ignore, views)
        if kind == "vae_encode_tiled" and getattr(encoder, "latent_dim", 2) != 3:
            # only video VAEs tile in time: the temporal settings cannot change an image VAE's result
            params = {k: v for k, v in params.items() if k not in ("tile_t", "overlap_t")}
        config = rt.config
        if kind in TEXT_KINDS:   # conditioning: per user, with the text TTL; image encodings are shared
            namespace, ttl = rt.namespace(), config.text_ttl_minutes * 60
        else:
            namespace, ttl = SHARED_NAMESPACE, None
    except Uncacheable as exc:
        return encode_cache.uncached(compute, str(exc))
    except Exception as exc:  # runtime broken: behave like the cache being off
        return encode_cache.uncached(compute, f"cache unavailable: {exc}")
    hints, match = (None, None) if collector is None else (collector["hints"], collector["match"])
    near = near_match.query(kind, encoder, method, args, kwargs, views, contents, encoder_id, params, namespace,
                            match, config=config)
    store, off = rt.store_or_reason()
    if store is None:
        return encode_cache.uncached(compute, off)
    return encode_cache.cached(store, kind, contents=contents, encoder=encoder_id, params=params, compute=compute,
                               namespace=namespace, pinned=lambda: _pinned(rt, collector, tensors), ttl_seconds=ttl,
                               hints=hints, near=near)


def describe(method: Callable, encoder, args: tuple, kwargs: dict, ignore: tuple = (), views: dict | None = None):
    """(contents, params, tensors) of a call: tensors and tensor trees by content, the rest by value."""
    try:
        bound = _signature(method).bind(encoder, *args, **kwargs)
    except TypeError as exc:
        raise Uncacheable(f"unexpected arguments: {exc}") from None
    bound.apply_defaults()
    contents, params, tensors = [], {}, []
    for i, (name, value) in enumerate(bound.arguments.items()):
        if i == 0 or name in ignore:  # self
            continue
        if views and name in views:
            value = views[name](encoder, value)
        if isinstance(value, torch.Tensor):
            contents.append(content_key(value))
            tensors.append(value)
        elif _is_plain(value):
            params[name] = value
        else:
            try:
                contents.append(tree_digest(value))
            except (TypeError, ValueError) as exc:
                raise Uncacheable(f"argument {name!r} has no stable form: {exc}") from None
    return contents, params, tensors


def _is_plain(value) -> bool:
    """A small plain value (a flag, a tile size, an options dict): keyed and explained by value.

    Anything bigger (tokens are lists of hundreds of (id, weight) pairs) is keyed by digest,
    which keeps the entry's label short and names it as content in a miss explanation."""
    budget = [_MAX_PLAIN_LEAVES]

    def plain(v, depth: int) -> bool:
        budget[0] -= 1
        if budget[0] < 0 or depth > 3:
            return False
        if isinstance(v, float):
            return v == v and v not in (float("inf"), float("-inf"))
        if isinstance(v, _PLAIN):
            return True
        if isinstance(v, (list, tuple)):
            return all(plain(x, depth + 1) for x in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x, depth + 1) for k, x in v.items())
        return False
    return plain(value, 0)


def _pinned(rt, collector, tensors) -> bool:
    """Whether the call's entry stays hot: the node's source image or a tensor it encodes is preferred."""
    try:
        keys = preferred_images.preferred_keys(rt)
        if not keys:
            return False
        if collector is not None:
            if collector["pinned"] is None:
                collector["pinned"] = any(t is not None and content_key(t) in keys for t in collector["sources"])
            if collector["pinned"]:
                return True
        return any(content_key(t) in keys for t in tensors)
    except Exception:  # preferred images are a courtesy; never fail a call over them
        return False


# --- who made the call ------------------------------------------------------------------

def _tell_executing_node(kind: str, method: Callable, part: encode_cache.Part) -> None:
    """Report a call made by a node that is not Recall's, under that node's class type and id."""
    node_id, node_type, prompt_id = executing_node()
    name = node_type or f"{getattr(method, '__qualname__', kind)}"
    if node_id is None:
        encode_cache.report(name, None, [part])
        return
    parts = runtime.current().state(NodeParts).add((prompt_id, node_id), part)
    # every call of the node re-reports all of them: the badge ends showing the node's whole run
    encode_cache.report(name, node_id, parts)


class NodeParts:
    """The runtime's Parts of the wrapped calls of nodes that are not Recall's, for one badge per node."""

    def __init__(self, runtime=None):  # made by Runtime.state(); needs nothing of the runtime
        self._lock = threading.Lock()
        self._parts: OrderedDict = OrderedDict()   # (prompt_id, node_id) -> [Part], the newest _MAX_NODES

    def add(self, node: tuple, part: encode_cache.Part) -> list:
        """Add one call's Part to the node's; returns all of them so far."""
        with self._lock:
            parts = self._parts.setdefault(node, [])
            self._parts.move_to_end(node)
            parts.append(part)
            while len(self._parts) > _MAX_NODES:
                self._parts.popitem(last=False)
            return list(parts)


def executing_node() -> tuple[str | None, str | None, str | None]:
    """(node id, class type, prompt id) of the node ComfyUI is executing; Nones outside a prompt.

    ComfyUI sets an executing context (comfy_execution.utils, 0.3.64 and later) around each
    node's function; the class type comes from the running prompt in the server's queue.
    """
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        return None, None, None
    context = get_executing_context()
    if context is None:
        return None, None, None
    return str(context.node_id), _class_type(context.prompt_id, context.node_id), context.prompt_id


def _class_type(prompt_id, node_id) -> str | None:
    try:
        from server import PromptServer
        running = list(PromptServer.instance.prompt_queue.currently_running.values())
    except Exception:  # no server (scripts, tests) or another queue shape
        return None
    for item in running:
        try:
            if item[1] == prompt_id:
                node = item[2].get(str(node_id))
                return node.get("class_type") if isinstance(node, dict) else None
        except (IndexError, TypeError, AttributeError):
            continue
    return None
