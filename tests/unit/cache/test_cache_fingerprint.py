"""Encoder fingerprints: weights and patches, memoised per live object and token."""
import gc

import torch

from recall_pack.cache.fingerprint import FingerprintMemo, fingerprint_patches, fingerprint_tensors


def state(seed):
    g = torch.Generator().manual_seed(seed)
    return {"conv.weight": torch.randn(4, 3, 3, 3, generator=g), "conv.bias": torch.randn(4, generator=g)}


def test_same_weights_same_fingerprint_in_any_order():
    a = state(0)
    assert fingerprint_tensors(a) == fingerprint_tensors(dict(reversed(list(a.items()))))


def test_other_weights_or_names_give_another_fingerprint():
    a = state(0)
    changed = {k: v.clone() for k, v in a.items()}
    changed["conv.bias"][0] += 1e-3
    renamed = {"x." + k: v for k, v in a.items()}
    assert len({fingerprint_tensors(a), fingerprint_tensors(changed), fingerprint_tensors(renamed),
                fingerprint_tensors(state(1))}) == 4


def test_patch_strength_changes_the_fingerprint_and_order_does_not():
    p = [("lora1", 1.0, "unet"), ("lora2", 0.5, "clip")]
    assert fingerprint_patches(p) == fingerprint_patches(list(reversed(p)))
    assert fingerprint_patches(p) != fingerprint_patches([("lora1", 0.9, "unet"), ("lora2", 0.5, "clip")])
    assert fingerprint_patches([]) != fingerprint_patches(p)


class Model:
    pass


def test_memo_computes_once_per_object_and_token():
    memo, calls = FingerprintMemo(), []
    m = Model()

    def compute():
        calls.append(1)
        return f"fp{len(calls)}"

    assert memo.get(m, "t1", compute) == "fp1"
    assert memo.get(m, "t1", compute) == "fp1"
    assert memo.get(m, "t2", compute) == "fp2"  # patched: the token changed
    assert len(calls) == 2


def test_memo_forgets_collected_objects():
    memo = FingerprintMemo()
    m = Model()
    memo.get(m, 0, lambda: "x")
    assert len(memo) == 1
    del m
    gc.collect()
    assert len(memo) == 0
    fresh = Model()  # may reuse the id: must not inherit the old fingerprint
    assert memo.get(fresh, 0, lambda: "y") == "y"
