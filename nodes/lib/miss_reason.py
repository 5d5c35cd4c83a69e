"""Why did a cached encoding miss? Compare its label with the most recent entry of the same kind.

ComfyUI-free. A label is a small JSON document stored with each cache entry:
{"k": kind, "c": content digest prefix, "e": encoder digest prefix, "p": sensitive params}.
The store lists recent (key, label) pairs; the newest entry of the same kind is the
run the user most likely changed something in, so the difference names the reason
("image changed", "encoder changed", "width, height changed").
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence

_PREFIX = 12
_CONTENT_NOUN = {"text": "prompt", "text_tokens": "prompt"}  # what the content keys of a kind are; images by default


def make_label(kind: str, contents: Sequence[str], encoder: str, params: Mapping[str, Any] | None,
               hints: Mapping[str, Any] | None = None) -> str:
    """hints: inputs of the calling node that shaped the content (a Wan clip's length), not in the key."""
    digest = "+".join([c[:_PREFIX] for c in contents])
    doc = {"k": kind, "c": digest, "e": encoder[:_PREFIX], "p": dict(params or {})}
    if hints:
        doc["h"] = dict(hints)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


def _parse(label: str) -> dict | None:
    try:
        doc = json.loads(label)
    except (TypeError, ValueError):
        return None
    if not isinstance(doc, dict) or not {"k", "c", "e", "p"} <= doc.keys() or not isinstance(doc["p"], dict):
        return None
    return doc


def explain_miss(label: str, recent_labels: Iterable[str]) -> str:
    """A short reason for the user; recent_labels are newest first and exclude this entry."""
    current = _parse(label)
    if current is None:
        return "not cached yet"
    for other_label in recent_labels:
        other = _parse(other_label)
        if other is None or other["k"] != current["k"]:
            continue
        changed = []
        if other["e"] != current["e"]:
            changed.append("encoder changed (another model file or patches)")
        hints = _changed(current.get("h") or {}, other.get("h") or {})
        if other["c"] != current["c"]:
            # a changed hint (length, seed) is what changed the content: name it instead
            changed.append(", ".join(hints) + " changed" if hints else
                           f"{_CONTENT_NOUN.get(current['k'], 'image')} changed")
        params = _changed(current["p"], other["p"])
        if params:
            changed.append(", ".join(params) + " changed")
        return "; ".join(changed) if changed else "entry expired or was evicted"
    return "first run"


def _changed(a: dict, b: dict) -> list:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return []
    return sorted([k for k in a.keys() | b.keys() if a.get(k) != b.get(k)])
