"""Sensitivity rules: which inputs of a node class do not change one of its outputs.

ComfyUI-free. Rules are data: the built-in ones for ComfyUI core nodes live in
core_rules.json next to this file (each with the reason, checked against the
node's code); users add their own in the config file (`node_rules`):

    node_rules:
      - {class: MyImageToVideo, output: latent, ignore: [prompt_strength]}
      - {class: MyLoader, ignore: [verbose]}          # no output: every output

`output` is an index into the class's outputs or an output name; left out, the
rule covers every output. The Recall Cache node leaves ignored inputs (and, for
a link, the whole branch behind it) out of its upstream signature, so changing
them still hits. A wrong rule returns a stale value, so rules that name an
unknown class, input or output are reported (validate_rules), never silently used.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

CORE_RULES_PATH = Path(__file__).with_name("core_rules.json")
_RULE_KEYS = {"class", "output", "ignore", "random_when_nonzero", "why"}


@dataclass(frozen=True)
class Rule:
    class_type: str
    output: int | str | None          # None: every output; str: an output name, resolved by resolve_outputs
    ignore: frozenset[str] = frozenset()
    random_when_nonzero: frozenset[str] = frozenset()
    source: str = "config"


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    files: dict[str, dict[str, str]] = field(default_factory=dict)

    def ignored(self, class_type: str, output: int) -> frozenset[str]:
        """Inputs of class_type that do not affect output `output` (union of matching rules)."""
        out: set[str] = set()
        for r in self.rules:
            if r.class_type == class_type and (r.output is None or r.output == output):
                out |= r.ignore
        return frozenset(out)

    def random_inputs(self, class_type: str, output: int) -> frozenset[str]:
        """Inputs that make output `output` draw unseeded noise when they are not 0."""
        out: set[str] = set()
        for r in self.rules:
            if r.class_type == class_type and (r.output is None or r.output == output):
                out |= r.random_when_nonzero
        return frozenset(out)

    def file_inputs(self, class_type: str) -> Mapping[str, str]:
        """{input name: folder} for inputs that name a file hashed by content."""
        return self.files.get(class_type, {})


def _rule_from(raw: Any, source: str, where: str) -> tuple[Rule | None, str | None]:
    if not isinstance(raw, Mapping):
        return None, f"{where}: a rule must be a mapping like {{class: Name, output: 0, ignore: [input]}}, got {raw!r}"
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        return None, (f"{where}: unknown key {unknown[0]!r} in rule {dict(raw)!r} "
                      f"(expected class, output, ignore)")
    cls = raw.get("class")
    if not isinstance(cls, str) or not cls:
        return None, f"{where}: rule {dict(raw)!r} has no 'class' (expected a node class name such as 'KSampler')"
    output = raw.get("output")
    if output is not None and (isinstance(output, bool) or not isinstance(output, (int, str))):
        return None, f"{where}: rule for {cls}: output {output!r} must be an output index or name"
    lists = {}
    for key in ("ignore", "random_when_nonzero"):
        value = raw.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            return None, f"{where}: rule for {cls}: {key} {value!r} must be a list of input names"
        lists[key] = frozenset(value)
    if not lists["ignore"] and not lists["random_when_nonzero"]:
        return None, f"{where}: rule for {cls} ignores nothing (expected ignore: [input, ...])"
    return Rule(cls, output, lists["ignore"], lists["random_when_nonzero"], source), None


def parse_rules(raw_rules: Iterable[Any] | None, source: str = "config") -> tuple[list[Rule], list[str]]:
    """Rules from their data form, and a message for each malformed one (which is dropped)."""
    rules, problems = [], []
    for i, raw in enumerate(raw_rules or ()):
        rule, problem = _rule_from(raw, source, f"{source} rule {i + 1}")
        if problem:
            problems.append(problem)
        else:
            rules.append(rule)
    return rules, problems


def load_core(path: Path = CORE_RULES_PATH) -> tuple[list[Rule], dict[str, dict[str, str]]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    rules, problems = parse_rules(doc.get("rules", []), source="built-in")
    if problems:  # our own data file: a broken built-in rule is a bug, not a user error
        raise ValueError("; ".join(problems))
    return rules, {k: dict(v) for k, v in doc.get("files", {}).items()}


# -- checking rules against the node classes ComfyUI has loaded ------------------------
def _input_names(node_class) -> set[str] | None:
    try:
        spec = node_class.INPUT_TYPES()
    except Exception:
        return None
    names: set[str] = set()
    for section in ("required", "optional"):
        names |= set((spec or {}).get(section, {}) or {})
    return names


def _output_names(node_class) -> list[str]:
    types = list(getattr(node_class, "RETURN_TYPES", ()) or ())
    names = list(getattr(node_class, "RETURN_NAMES", None) or types)
    return [str(n) for n in names][:len(types)] if types else []


def _check(rule: Rule, node_classes: Mapping[str, Any]) -> list[str]:
    where = f"{rule.source} rule for {rule.class_type}"
    node_class = node_classes.get(rule.class_type)
    if node_class is None:
        return [f"{where}: unknown node class {rule.class_type!r} (no such node is loaded: check the "
                f"spelling, the class name is the node's type in the API workflow, not its title)"]
    problems = []
    names = _input_names(node_class)
    if names is not None:
        for inp in sorted(rule.ignore | rule.random_when_nonzero):
            if inp not in names:
                problems.append(f"{where}: unknown input {inp!r} (expected one of: {', '.join(sorted(names))})")
    outputs = _output_names(node_class)
    if isinstance(rule.output, int) and not 0 <= rule.output < len(outputs):
        problems.append(f"{where}: output {rule.output} does not exist (expected 0..{len(outputs) - 1})")
    elif isinstance(rule.output, str) and rule.output not in outputs:
        problems.append(f"{where}: unknown output {rule.output!r} (expected one of: {', '.join(outputs)})")
    return problems


def validate_rules(raw_rules: Iterable[Any] | None, node_classes: Mapping[str, Any],
                   source: str = "config") -> list[str]:
    """One message per rule problem: malformed, unknown class, unknown input or output.

    node_classes is nodes.NODE_CLASS_MAPPINGS once ComfyUI has loaded (or a stand-in in tests).
    Accepts rules in data form (config.node_rules) or parsed Rule objects.
    """
    raw_rules = list(raw_rules or ())
    rules = [r for r in raw_rules if isinstance(r, Rule)]
    parsed, problems = parse_rules([r for r in raw_rules if not isinstance(r, Rule)], source)
    for rule in rules + parsed:
        problems.extend(_check(rule, node_classes))
    return problems


def resolve_outputs(rules: Iterable[Rule], node_classes: Mapping[str, Any] | None) -> list[Rule]:
    """Rules with output names turned into indices; a rule whose class or output is unknown is dropped.

    Without node_classes (no ComfyUI), rules naming outputs by name cannot apply and are dropped.
    """
    out = []
    for rule in rules:
        if not isinstance(rule.output, str):
            out.append(rule)
            continue
        node_class = (node_classes or {}).get(rule.class_type)
        names = _output_names(node_class) if node_class is not None else []
        if rule.output in names:
            out.append(Rule(rule.class_type, names.index(rule.output), rule.ignore,
                            rule.random_when_nonzero, rule.source))
    return out


def build_ruleset(user_rules: Iterable[Any] | None = (), node_classes: Mapping[str, Any] | None = None
                  ) -> tuple[RuleSet, list[str]]:
    """Built-in + user rules, and the problems found (to log once).

    A user rule that names an unknown class, input or output is reported and left out: it
    cannot do anything useful, and a typo must not look like a working rule.
    """
    core, files = load_core()
    user, problems = parse_rules(user_rules, source="config")
    if node_classes is not None:
        kept = []
        for rule in user:
            found = _check(rule, node_classes)
            problems.extend(found)
            if not found:
                kept.append(rule)
        user = kept
    return RuleSet(resolve_outputs(core + user, node_classes), files), problems
