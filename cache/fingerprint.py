"""Encoder identity: fingerprints of weights and of the patches applied on top.

A fingerprint hashes every tensor's name, dtype, shape and bytes, so a different
weight file or a changed patch strength gives a different key, and the same
weights give the same fingerprint after a restart. Hashing an SD VAE (~84M
parameters) costs tens of milliseconds, so FingerprintMemo computes it once per
live model object and patch state.
"""
import json
import threading
import weakref
from typing import Callable, Iterable, Mapping

import torch
import xxhash

from ..digest import update_with_tensor


def fingerprint_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    """Content fingerprint of a state dict: names, dtypes, shapes and bytes, in name order."""
    h = xxhash.xxh3_128()
    h.update(f"state_dict|{len(tensors)}|".encode())
    for name in sorted(tensors):
        h.update(name.encode("utf-8", "surrogatepass") + b"\0")
        update_with_tensor(h, tensors[name])
    return h.hexdigest()


def fingerprint_structure(tensors: Mapping[str, torch.Tensor]) -> str:
    """Names, dtypes and shapes of a state dict, without reading a byte of its data.

    Cheap enough for every lookup of a remembered identity: it tells a model loaded
    another way (another dtype, converted keys, another class) from the one remembered.
    """
    h = xxhash.xxh3_128()
    h.update(f"structure|{len(tensors)}|".encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def fingerprint_patches(patches: Iterable[tuple[str, float, str]]) -> str:
    """(source fingerprint, strength, target) triples -> one order-insensitive fingerprint."""
    items = sorted(json.dumps([str(src), repr(float(strength)), str(target)])
                   for src, strength, target in patches)
    h = xxhash.xxh3_128()
    h.update(("patches|" + "\n".join(items)).encode())
    return h.hexdigest()


class _Slot:
    __slots__ = ("lock", "values", "ref")

    def __init__(self, ref):
        self.lock = threading.Lock()
        self.values: dict = {}
        self.ref = ref


class FingerprintMemo:
    """Memoises a fingerprint per live object and token; compute runs once per (object, token)."""

    def __init__(self, max_tokens_per_object: int = 8):
        self._lock = threading.Lock()
        self._slots: dict[int, _Slot] = {}
        self._max_tokens = max_tokens_per_object

    def _slot(self, obj) -> _Slot | None:
        oid = id(obj)
        with self._lock:
            slot = self._slots.get(oid)
            if slot is not None and slot.ref() is obj:
                return slot
            try:
                # keyed by id() so unhashable objects work; the finalizer drops the slot
                # before the id can be reused by another object
                ref = weakref.ref(obj)
            except TypeError:
                return None
            slot = _Slot(ref)
            self._slots[oid] = slot
            weakref.finalize(obj, self._forget, oid, slot)
            return slot

    def _forget(self, oid: int, slot: _Slot) -> None:
        with self._lock:
            if self._slots.get(oid) is slot:
                del self._slots[oid]

    def get(self, obj, token, compute: Callable[[], str]) -> str:
        slot = self._slot(obj)
        if slot is None:  # not weak-referenceable: cannot memoise safely
            return compute()
        with slot.lock:  # per object: two threads fingerprinting one model compute once
            if token in slot.values:
                return slot.values[token]
            value = compute()
            if len(slot.values) >= self._max_tokens:
                slot.values.pop(next(iter(slot.values)))
            slot.values[token] = value
            return value

    def peek(self, obj, token) -> str | None:
        """The memoised value, or None; never computes."""
        oid = id(obj)
        with self._lock:
            slot = self._slots.get(oid)
            if slot is None or slot.ref() is not obj:
                return None
        with slot.lock:
            return slot.values.get(token)

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)
