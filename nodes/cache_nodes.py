"""Recall Cache: a node on any link that reuses the value when its upstream has not changed.

Its input is lazy. Before ComfyUI evaluates it, check_lazy_status reads the upstream
part of the prompt (DYNPROMPT, so expanded nodes count), builds the signature
(lib/signature.py: class types, widget values, file contents, IS_CHANGED results,
minus what the sensitivity rules call irrelevant) and looks it up. On a hit it asks
for nothing, so ComfyUI never schedules the upstream branch: no loader, no encode.
On a miss it asks for the input, and execute stores what arrives.

V3 nodes keep no instance state, so the hit found in check_lazy_status waits for
execute in a small table of the runtime's (_Plans) keyed by the node's id.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..cache.keys import build_key
from . import runtime, upstream_facts
from ._api import io
from .events import report_node
from .lib import sensitivity_rules
from .lib.signature import Signature, SignatureError, compute_signature, explain_signature_miss, randomized_inputs, upstream_ids

_log = logging.getLogger("recall")
NODE_TYPE = "RecallCache"
_KEY_KIND = "recall_cache"
_MAX_PENDING = 64
_clock = time.perf_counter


@dataclass
class _Pending:
    signature: Signature
    key: str | None            # None: not reusable (non-deterministic upstream, caching off)
    namespace: str
    by_reference: bool
    hit: Any = None            # store Hit on a hit
    started: float = 0.0       # when the upstream was requested (its compute time on a miss)
    reason: str | None = None  # why it missed / why caching is off
    run: Any = None            # weak reference to the run's DynamicPrompt (see _same_run)


class _Plans:
    """The runtime's lookups waiting for execute (node id -> _Pending) and its parsed node rules."""

    def __init__(self, rt):
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._rules_lock = threading.Lock()   # building rules takes a while: not under the plans' lock
        self._rules = (None, None)   # (the config they were built from, the ruleset)

    def remember(self, node_id: str, item: _Pending) -> None:
        with self._lock:
            self._pending[node_id] = item
            self._pending.move_to_end(node_id)
            while len(self._pending) > _MAX_PENDING:  # a prompt interrupted between the two calls
                self._pending.popitem(last=False)

    def peek(self, node_id: str, run) -> _Pending | None:
        with self._lock:
            item = self._pending.get(node_id)
            return item if _same_run(item, run) else None

    def take(self, node_id: str, run) -> _Pending | None:
        with self._lock:
            item = self._pending.pop(node_id, None)
            return item if _same_run(item, run) else None

    def ruleset(self, config):
        import nodes
        with self._rules_lock:
            built_from, rules = self._rules
            if built_from is not config:
                rules, problems = sensitivity_rules.build_ruleset(config.node_rules, nodes.NODE_CLASS_MAPPINGS)
                for problem in problems:
                    _log.warning("[Recall] config node_rules: %s (this rule is not used)", problem)
                self._rules = (config, rules)
            return rules


def _same_run(item: _Pending | None, run) -> bool:
    return item is not None and item.run is not None and item.run() is run


def _plans() -> _Plans:
    return runtime.current().state(_Plans)


def ruleset():
    """Built-in + config rules, checked against the loaded node classes; problems logged once per config."""
    rt = runtime.current()
    return rt.state(_Plans).ruleset(rt.config)


def schedule_rule_check() -> None:
    """Report bad config node_rules once every node pack has loaded (called by the start-up hook).

    The pack's get_node_list runs while custom nodes are still loading, so a rule for a
    pack that loads after this one would look unknown then; aiohttp's on_startup runs
    after all of them. Without a server (scripts), the check runs at once.
    """
    try:
        from server import PromptServer
        app = PromptServer.instance.app
    except Exception:
        ruleset()
        return

    async def check(_app):
        try:
            ruleset()
        except Exception:
            _log.exception("[Recall] checking config node_rules failed")
    app.on_startup.append(check)


def _register_value_types() -> None:
    # CLIP_VISION_OUTPUT is an object of tensors: registered so it can go to disk and Redis
    from ..cache.serialize import register_object_type
    try:
        import comfy.clip_vision
        register_object_type("comfy.clip_vision.Output", comfy.clip_vision.Output)
    except Exception:  # pragma: no cover - a ComfyUI without it
        pass


async def _plan(hidden, allow_nondeterministic: bool) -> _Pending | str:
    """Signature and lookup for this node's input; a string when it cannot be cached."""
    dynprompt = upstream_facts.dynamic_prompt(hidden.dynprompt, hidden.prompt)
    node_id = str(hidden.unique_id)
    link = dynprompt.get_node(node_id)["inputs"].get("value")
    if not isinstance(link, list) or len(link) != 2:
        return "the input is not linked"
    upstream_class = dynprompt.get_node(str(link[0]))["class_type"]
    io_type, is_list = upstream_facts.output_info(upstream_class, int(link[1]))
    if is_list:
        return f"{upstream_class} returns a list output, which is not cached"
    rt = runtime.current()
    store = rt.store
    if not store.enabled:
        return "caching is turned off"
    facts = await upstream_facts.gather_facts(dynprompt, upstream_ids(dynprompt.get_node, link))
    workflow = (hidden.extra_pnginfo or {}).get("workflow") if isinstance(hidden.extra_pnginfo, dict) else None
    sig = compute_signature(dynprompt.get_node, link, rules=ruleset(),
                            facts=lambda nid, node: facts[str(nid)], file_digest=upstream_facts.file_digest,
                            randomized=randomized_inputs(workflow, dynprompt.get_node),
                            allow_nondeterministic=allow_nondeterministic)
    item = _Pending(sig, build_key(_KEY_KIND, params={"signature": sig.key}), rt.namespace(),
                    io_type in upstream_facts.MODEL_TYPES)
    if sig.nondeterministic and not allow_nondeterministic:
        item.reason = ("upstream is non-deterministic (" + "; ".join(sig.nondeterministic[:2])
                       + "); turn on allow_nondeterministic to reuse it")
        return item
    to_device = None if item.by_reference else _intermediate_device()
    item.hit = store.get(item.key, namespace=item.namespace, to_device=to_device)
    return item


def _intermediate_device():
    try:
        import comfy.model_management as mm
        return mm.intermediate_device()
    except Exception:
        return None


def _put_result(item: _Pending, value) -> str:
    """Put a computed value; returns the reason to show for the miss. A model output is kept by
    reference; for anything else the store decides (by reference when it cannot copy the value)."""
    store = runtime.current().store
    labels = [label for key, label in store.recent_keys(item.namespace, 64) if key != item.key]
    reason = explain_signature_miss(item.signature, labels)
    compute_s = max(0.0, _clock() - item.started) if item.started else 0.0
    by_reference = store.put(item.key, value, namespace=item.namespace, compute_seconds=compute_s,
                             label=item.signature.label(), by_reference=True if item.by_reference else None)
    return reason + (" (kept in RAM by reference: a model object)" if by_reference else "")


class RecallCache(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RecallCache",
            display_name="Recall Cache",
            category="Recall",
            description=("Put on any link. Before the upstream branch runs, it reads the upstream nodes' "
                         "settings, files and fingerprints; if the same upstream was computed before "
                         "(this session, after a restart from disk, or on another worker), it returns "
                         "that value and the upstream branch does not run at all."),
            inputs=[
                io.AnyType.Input("value", lazy=True,
                                 tooltip="Any value. Evaluated only when it is not cached."),
                io.Boolean.Input("allow_nondeterministic", default=False,
                                 tooltip=("Reuse even when the upstream has a seed on 'randomize' (the "
                                          "seed is then ignored) or a node that is not idempotent.")),
            ],
            outputs=[io.AnyType.Output(display_name="value", tooltip="The input value, cached.")],
            hidden=[io.Hidden.prompt, io.Hidden.dynprompt, io.Hidden.unique_id, io.Hidden.extra_pnginfo],
        )

    @classmethod
    async def check_lazy_status(cls, value=None, allow_nondeterministic=False):
        node_id, run = str(cls.hidden.unique_id), _run_token(cls.hidden)
        plans = _plans()
        if plans.peek(node_id, run) is not None:
            return []  # called again after the upstream ran: the value is there now
        item = await _safe_plan(cls.hidden, bool(allow_nondeterministic), node_id)
        item.run = _weak(run)
        plans.remember(node_id, item)
        if value is not None or item.hit is not None:
            # a hit, or ComfyUI already holds the upstream's output: nothing to evaluate
            return []
        item.started = _clock()
        return ["value"]

    @classmethod
    def execute(cls, value=None, allow_nondeterministic=False) -> io.NodeOutput:
        node_id = str(cls.hidden.unique_id)
        item = _plans().take(node_id, _run_token(cls.hidden))
        if item is None:  # not planned (cannot happen with a lazy input; stay a pass-through)
            report_node(node_id, NODE_TYPE, "off", reason="no lookup was made for this run")
            return io.NodeOutput(value)
        if item.hit is not None:
            hit = item.hit
            note = f"; {item.signature.notes[0]}" if item.signature.notes else ""
            report_node(node_id, NODE_TYPE, "hit", tier=hit.tier, saved_s=hit.saved_seconds,
                        reason="upstream unchanged" + note, key=item.key)
            return io.NodeOutput(hit.value if value is None else value)
        compute_s = _clock() - item.started if item.started else 0.0
        if item.key is None:
            report_node(node_id, NODE_TYPE, "off", compute_s=compute_s, reason=item.reason)
            return io.NodeOutput(value)
        try:
            reason = _put_result(item, value)
        except Exception as exc:  # storing failed: the value is still right
            _log.exception("[Recall] Recall Cache #%s: could not store the value", node_id)
            reason = f"not stored: {exc}"
        # a non-deterministic upstream is stored too (turning allow_nondeterministic on reuses it),
        # but the reason shown is why it was not reused
        report_node(node_id, NODE_TYPE, "miss", compute_s=compute_s, reason=item.reason or reason, key=item.key)
        return io.NodeOutput(value)


def _run_token(hidden):
    # one DynamicPrompt object per queued prompt: tells this run's plan from one left by an
    # interrupted run (held weakly: a finished run's object may be collected and its id reused)
    return hidden.dynprompt if hidden.dynprompt is not None else hidden.prompt


def _weak(obj):
    try:
        return weakref.ref(obj)
    except TypeError:  # a plain dict PROMPT (no DYNPROMPT): strong reference, dropped with the entry
        return lambda: obj


async def _safe_plan(hidden, allow_nondeterministic: bool, node_id: str) -> _Pending:
    _register_value_types()
    try:
        item = await _plan(hidden, allow_nondeterministic)
    except SignatureError as exc:
        item = f"cannot read the upstream graph: {exc}"
    except Exception as exc:  # the cache must never break a workflow: just compute
        _log.exception("[Recall] Recall Cache #%s: lookup failed; computing the input", node_id)
        item = f"lookup failed: {exc}"
    if isinstance(item, str):
        return _Pending(Signature(""), None, "", False, reason=item)
    return item


NODES = [RecallCache]
