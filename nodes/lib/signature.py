"""The Recall Cache's key: a signature of the upstream subgraph, read from the prompt before it runs.

ComfyUI-free: the prompt is reached through get_node(node_id) -> {"class_type", "inputs", ...}
(DynamicPrompt.get_node, so nodes added by node expansion are seen too), and the facts
that need ComfyUI (what a node's IS_CHANGED / fingerprint_inputs returns, whether its
class is NOT_IDEMPOTENT, a file's content digest) come in as callables.

A node's part of the signature, for the output index that is consumed:
    class_type, output index,
    each input in name order except those the sensitivity rules ignore for that output:
        a link     -> the signature of the upstream (node, output) it comes from
        a file     -> the file's content digest (loaders, LoadImage), never its name
        a constant -> its value (canonical JSON)
    the node's IS_CHANGED / fingerprint_inputs result, when it has one.
Node ids and titles never enter it: the same graph built again, or pasted into
another workflow, has the same signature. Each part is also kept in a readable
form (SignaturePart) so that a miss can say which upstream node and parameter changed.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from ...digest import canonical, digest
from .sensitivity_rules import RuleSet

LABEL_KIND = "recall_cache"
_LABEL_VERSION = 1
_MAX_LABEL_PARTS = 64
_SHOW = 40
FINGERPRINT_PARAM = "(fingerprint)"


class SignatureError(ValueError):
    """The upstream graph cannot be read (a link to a missing node, a cycle)."""


@dataclass(frozen=True)
class NodeFacts:
    is_changed: Any = None        # IS_CHANGED / fingerprint_inputs result; None: the class has none
    not_idempotent: bool = False  # the class is marked NOT_IDEMPOTENT / not_idempotent


@dataclass
class SignaturePart:
    path: str                  # position upstream ("@" the node feeding the cache, "@/clip_vision" ...)
    node_id: str               # for messages only
    class_type: str
    title: str | None
    params: dict[str, str]     # input -> short form of what entered the signature


@dataclass
class Signature:
    key: str
    parts: list[SignaturePart] = field(default_factory=list)
    nondeterministic: list[str] = field(default_factory=list)   # reasons it must not be reused
    notes: list[str] = field(default_factory=list)              # e.g. randomized seeds left out

    def label(self) -> str:
        parts = [[p.path, p.class_type, p.node_id, p.title, p.params] for p in self.parts[:_MAX_LABEL_PARTS]]
        return json.dumps({"k": LABEL_KIND, "v": _LABEL_VERSION, "parts": parts},
                          sort_keys=True, separators=(",", ":"), default=str)


def is_link(value: Any) -> bool:
    """ComfyUI's definition: [node_id: str, output_index: int]."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], (int, float)) and not isinstance(value[1], bool))


def _text(value: Any) -> str:
    """Readable JSON of a value (what a miss message shows); objects without JSON form by repr."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=lambda o: {"__repr__": repr(o)})


def _stable(value: Any) -> Any:
    """value itself when the digest has a stable form for it, else its readable text."""
    try:
        canonical(value)
    except TypeError:
        return _text(value)
    return value


def _show(value: Any) -> str:
    text = _text(value)
    if len(text) <= _SHOW:
        return text
    return f"{text[:24]}…#{digest(text)[:8]}"


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (list, tuple)):
        return any(_has_nan(v) for v in value)
    return False


def _name(class_type: str, node_id: str, title: str | None) -> str:
    return f"{title or class_type} #{node_id}"


def upstream_ids(get_node: Callable[[str], Mapping], link: list) -> list[str]:
    """Every node reachable upstream of link, rules not applied (to fetch their facts first)."""
    seen, order, stack = set(), [], [str(link[0])]
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        order.append(node_id)
        try:
            node = get_node(node_id)
        except Exception as exc:
            raise SignatureError(f"upstream node {node_id!r} is not in the prompt") from exc
        for value in (node.get("inputs") or {}).values():
            if is_link(value):
                stack.append(str(value[0]))
    return order


def compute_signature(get_node: Callable[[str], Mapping], link: list, *, rules: RuleSet,
                      facts: Callable[[str, Mapping], NodeFacts] = lambda node_id, node: NodeFacts(),
                      file_digest: Callable[[str, str], str | None] | None = None,
                      randomized: Mapping[str, Iterable[str]] | None = None,
                      allow_nondeterministic: bool = False) -> Signature:
    """The signature of the value that arrives through link = [upstream node id, output index].

    randomized: {node id: input names whose control_after_generate is "randomize"} ("*": the
    node has a randomized widget that could not be matched to an input). Without
    allow_nondeterministic such a node makes the signature non-reusable; with it, the
    randomized inputs are left out (any earlier result is acceptable).
    """
    randomized = {str(k): set(v) for k, v in (randomized or {}).items()}
    sig = Signature(key="")
    memo: dict[tuple[str, int], str] = {}
    visiting: set[tuple[str, int]] = set()

    def visit(node_id: str, output: int, path: str) -> str:
        slot = (node_id, output)
        if slot in memo:
            return memo[slot]
        if slot in visiting:
            raise SignatureError(f"the upstream graph has a cycle through node {node_id!r}")
        visiting.add(slot)
        try:
            node = get_node(node_id)
        except Exception as exc:
            raise SignatureError(f"upstream node {node_id!r} is not in the prompt") from exc
        class_type = str(node.get("class_type"))
        title = (node.get("_meta") or {}).get("title")
        who = _name(class_type, node_id, title)
        inputs = node.get("inputs") or {}
        ignored = rules.ignored(class_type, output)
        files = rules.file_inputs(class_type)
        random_names = randomized.get(node_id, set())
        entries, params = [], {}
        for name in sorted(inputs):
            if name in ignored:
                continue
            value = inputs[name]
            if is_link(value):
                entries.append([name, "link", visit(str(value[0]), int(value[1]), f"{path}/{name}")])
                continue
            if name in random_names:
                if allow_nondeterministic:
                    sig.notes.append(f"{who}: {name} is on randomize, left out")
                    continue
                sig.nondeterministic.append(f"{who}: {name} is on randomize")
            if name in files and isinstance(value, str) and file_digest is not None:
                content = file_digest(files[name], value)
                if content:
                    entries.append([name, "file", content])
                    params[name] = f"file {content[:12]}"
                    continue
            entries.append([name, "value", _stable(value)])
            params[name] = _show(value)
        if "*" in random_names and not allow_nondeterministic:
            sig.nondeterministic.append(f"{who}: a widget is on randomize")
        for name in sorted(rules.random_inputs(class_type, output) - ignored):
            value = inputs.get(name)
            if is_link(value) or (isinstance(value, (int, float)) and value != 0):
                sig.nondeterministic.append(f"{who}: {name} != 0 adds unseeded noise")
        node_facts = facts(node_id, node)
        if node_facts.not_idempotent:
            sig.nondeterministic.append(f"{who}: the node is marked not idempotent")
        changed = node_facts.is_changed
        if changed is not None and changed is not False:
            if _has_nan(changed):
                sig.nondeterministic.append(f"{who}: the node reports a change on every run")
            entries.append([FINGERPRINT_PARAM, "changed", _text(changed)])
            params[FINGERPRINT_PARAM] = _show(changed)
        node_key = digest(["node", class_type, output, entries])
        sig.parts.append(SignaturePart(path, str(node_id), class_type, title, params))
        visiting.discard(slot)
        memo[slot] = node_key
        return node_key

    if not is_link(link):
        raise SignatureError(f"the cached input is not a link (got {link!r})")
    try:
        root = visit(str(link[0]), int(link[1]), "@")
    except RecursionError:
        raise SignatureError("the upstream graph is too deep to read") from None
    sig.key = digest(["recall_cache", 2, root])
    sig.parts.reverse()  # the node feeding the cache first, then upstream
    return sig


# -- why did it miss --------------------------------------------------------------------
def _parse_label(label: str) -> dict[str, tuple] | None:
    try:
        doc = json.loads(label)
    except (TypeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("k") != LABEL_KIND or not isinstance(doc.get("parts"), list):
        return None
    out = {}
    for item in doc["parts"]:
        if isinstance(item, list) and len(item) == 5 and isinstance(item[4], dict):
            out[item[0]] = tuple(item[1:])
    return out


def _differences(current: Signature, other: dict[str, tuple]) -> list[str]:
    diffs = []
    for part in current.parts[:_MAX_LABEL_PARTS]:
        who = _name(part.class_type, part.node_id, part.title)
        known = other.get(part.path)
        if known is None:
            diffs.append(f"{who} is new upstream")
            continue
        old_class, _old_id, _old_title, old_params = known
        if old_class != part.class_type:
            diffs.append(f"{who} replaced a {old_class}")
            continue
        for name in sorted(part.params.keys() | old_params.keys()):
            new, old = part.params.get(name), old_params.get(name)
            if new == old:
                continue
            if name == FINGERPRINT_PARAM:
                diffs.append(f"{who}: its file or external state changed (fingerprint)")
            elif (new or "").startswith("file ") or (old or "").startswith("file "):
                diffs.append(f"{who}: {name} is another file (content differs)")
            elif new is None or old is None:
                diffs.append(f"{who}: {name} is now {'linked' if new is None else new}")
            else:
                diffs.append(f"{who}: {name} {old} -> {new}")
    paths = {p.path for p in current.parts}
    for path, (old_class, *_rest) in other.items():
        # report only the root of a branch that went away, not every node in it
        if path not in paths and path.rsplit("/", 1)[0] in paths:
            diffs.append(f"a {old_class} is no longer upstream")
    return diffs


def explain_signature_miss(current: Signature, recent_labels: Iterable[str]) -> str:
    """Compare with the nearest cached signature (fewest differences) and name what changed."""
    best: list[str] | None = None
    for label in recent_labels:
        other = _parse_label(label)
        if other is None:
            continue
        diffs = _differences(current, other)
        if best is None or len(diffs) < len(best):
            best = diffs
        if not best:
            break
    if best is None:
        return "first run: nothing cached for this upstream yet"
    if not best:
        return "same upstream as an entry that expired or was evicted"
    more = f" (+{len(best) - 3} more)" if len(best) > 3 else ""
    return "; ".join(best[:3]) + more


# -- control_after_generate from the UI workflow -----------------------------------------
def _workflow_nodes(workflow: Mapping) -> Iterable[tuple[str, Mapping]]:
    """(API node id, UI node) for the top level and for nodes inside subgraph instances.

    The frontend names a node inside a subgraph instance "<instance id>:<inner id>" in
    the API prompt; definitions live in workflow["definitions"]["subgraphs"].
    """
    subgraphs = {}
    for sg in ((workflow.get("definitions") or {}).get("subgraphs") or []):
        if isinstance(sg, Mapping) and "id" in sg:
            subgraphs[sg["id"]] = sg.get("nodes") or []

    def walk(nodes, prefix, depth):
        for node in nodes or []:
            if not isinstance(node, Mapping) or "id" not in node:
                continue
            api_id = f"{prefix}{node['id']}"
            yield api_id, node
            inner = subgraphs.get(node.get("type"))
            if inner is not None and depth < 16:
                yield from walk(inner, f"{api_id}:", depth + 1)

    yield from walk(workflow.get("nodes"), "", 0)


def randomized_inputs(workflow: Mapping | None, get_node: Callable[[str], Mapping]) -> dict[str, set[str]]:
    """{API node id: input names} of seed widgets whose control_after_generate is "randomize".

    The API prompt carries only the seed's value; the UI workflow (extra_pnginfo["workflow"])
    stores the control as the widget value right after it: widgets_values [..., 123, "randomize", ...].
    The input is the one in the prompt with that value (a name with "seed" wins a tie); "*" when
    no input matches. Prompts queued without a workflow (API clients) carry no such information.
    """
    found: dict[str, set[str]] = {}
    if not isinstance(workflow, Mapping):
        return found
    for api_id, node in _workflow_nodes(workflow):
        values = node.get("widgets_values")
        if isinstance(values, Mapping):
            values = list(values.values())
        if not isinstance(values, list):
            continue
        seeds = [values[i - 1] for i in range(1, len(values))
                 if values[i] == "randomize" and isinstance(values[i - 1], (int, float))
                 and not isinstance(values[i - 1], bool)]
        if not seeds:
            continue
        try:
            inputs = get_node(api_id).get("inputs") or {}
        except Exception:
            continue  # not in this prompt (muted, or not upstream of an output)
        names: set[str] = set()
        for seed in seeds:
            match = [k for k, v in inputs.items() if not isinstance(v, bool) and not is_link(v) and v == seed]
            seedy = [k for k in match if "seed" in k.lower()]
            names |= set(seedy or match) or {"*"}
        found[api_id] = names
    return found
