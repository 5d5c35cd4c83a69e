"""Content keys and key building: stable under layout/device changes, sensitive to content."""
import subprocess
import sys
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recall_pack.cache.keys import build_key, content_key
from recall_pack.digest import canonical

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.uint8, torch.bool]


def tensors(draw, dtype):
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4))
    seed = draw(st.integers(0, 2**31 - 1))
    t = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 10
    return t.to(dtype)


@st.composite
def any_tensor(draw):
    return tensors(draw, draw(st.sampled_from(DTYPES)))


@settings(max_examples=60, deadline=None)
@given(any_tensor())
def test_key_is_the_same_for_equal_values_in_other_strides(t):
    if t.dim() < 2:
        t = t.unsqueeze(0)
    other = t.transpose(0, -1).contiguous().transpose(0, -1)  # same values, column-major strides
    assert torch.equal(other, t)
    assert content_key(other) == content_key(t)


def test_key_is_the_same_in_channels_last_layout():
    t = torch.randn(2, 3, 8, 8)
    assert content_key(t.to(memory_format=torch.channels_last)) == content_key(t)


@settings(max_examples=60, deadline=None)
@given(any_tensor())
def test_key_is_the_same_for_a_sliced_view(t):
    big = torch.cat([t, t], dim=0)
    assert content_key(big[: t.shape[0]]) == content_key(t)
    assert content_key(big[t.shape[0]:]) == content_key(t)


@settings(max_examples=60, deadline=None)
@given(any_tensor(), st.data())
def test_one_element_change_gives_a_different_key(t, data):
    flat = t.reshape(-1).clone()
    i = data.draw(st.integers(0, flat.numel() - 1))
    if t.dtype == torch.bool:
        flat[i] = ~flat[i]
    else:
        flat[i] = flat[i] + 1
    assert content_key(flat.reshape(t.shape)) != content_key(t)


def test_same_bytes_with_another_dtype_or_shape_differ():
    t = torch.arange(16, dtype=torch.float32)
    assert content_key(t) != content_key(t.view(torch.int32))
    assert content_key(t) != content_key(t.reshape(4, 4))


def test_zero_dim_empty_and_bf16_tensors_have_keys():
    assert content_key(torch.tensor(1.5)) != content_key(torch.tensor(2.5))
    assert content_key(torch.zeros(0, 3)) != content_key(torch.zeros(3, 0))
    b = torch.randn(8).bfloat16()
    assert content_key(b) == content_key(b.clone()) != content_key(b.half())


def test_grad_conj_and_neg_views_hash_their_values():
    t = torch.randn(4, requires_grad=True)
    assert content_key(t) == content_key(t.detach().clone())
    c = torch.randn(3, dtype=torch.complex64)
    assert content_key(c.conj()) == content_key(c.conj().resolve_conj())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_key_is_the_same_on_cuda():
    t = torch.randn(3, 8, 8)
    assert content_key(t.cuda()) == content_key(t)


def test_key_is_stable_across_processes():
    code = ("import torch, sys; sys.path.insert(0, 'tests'); import conftest; "
            "from recall_pack.cache.keys import content_key, build_key; "
            "print(content_key(torch.arange(10.)), build_key('k', contents=['a'], params={'x': 0.1, 'y': [1, 2]}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[3])).stdout.split()
    assert out == [content_key(torch.arange(10.)), build_key("k", contents=["a"], params={"x": 0.1, "y": [1, 2]})]


def test_build_key_ignores_param_order_but_not_values():
    a = build_key("vae_encode", contents=["c"], encoder="e", params={"tile": 512, "mode": "x"})
    assert a == build_key("vae_encode", contents=["c"], encoder="e", params={"mode": "x", "tile": 512})
    assert a != build_key("vae_encode", contents=["c"], encoder="e", params={"mode": "x", "tile": 256})
    assert a != build_key("vae_encode", contents=["c"], encoder="f", params={"mode": "x", "tile": 512})
    assert a != build_key("clip_vision", contents=["c"], encoder="e", params={"mode": "x", "tile": 512})


def test_build_key_separates_int_and_float_and_content_order():
    assert build_key("k", params={"s": 1}) != build_key("k", params={"s": 1.0})
    assert build_key("k", contents=["a", "b"]) != build_key("k", contents=["b", "a"])
    assert build_key("k", params={"s": 0.1 + 0.2}) != build_key("k", params={"s": 0.3})


json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
params = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), params, max_size=6))
def test_a_plain_dict_has_the_form_of_any_other_mapping_with_its_items(d):
    """str-keyed dicts take a shorter path; their keys (and so every stored entry) must not change."""
    assert canonical(d) == canonical(types.MappingProxyType(d))


def test_str_and_other_keys_stay_apart():
    assert canonical({"1": "x"}) != canonical({1: "x"})
    assert canonical({"a": 1, 2: "b"}) == canonical({2: "b", "a": 1})


def test_build_key_rejects_parameters_without_a_stable_form():
    with pytest.raises(TypeError, match="object"):
        build_key("k", params={"model": object()})


def test_large_non_contiguous_tensor_hashed_in_pieces_matches_its_contiguous_copy(monkeypatch):
    from recall_pack import digest
    monkeypatch.setattr(digest, "_PIECE_BYTES", 256)  # force pieces at every level on a small tensor
    image = torch.rand(3, 3, 20, 24).movedim(1, -1)  # VAE Decode's layout
    assert not image.is_contiguous()
    assert content_key(image) == content_key(image.contiguous())
    other = image.clone()
    other[2, 19, 23, 2] += 1
    assert content_key(other) != content_key(image)
