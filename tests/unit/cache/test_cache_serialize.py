"""The persistent byte format: exact round trips, refusal of unstorable values, no pickle."""
import math

import pytest
import torch

from recall_pack.cache.errors import CorruptEntry, UnstorableValue
from recall_pack.cache.serialize import dumps, flatten, loads, register_object_type, unflatten


class VisionOutput:
    """Stands in for comfy.clip_vision.Output: an object with tensor attributes."""


register_object_type("test.VisionOutput", VisionOutput)


def roundtrip(value):
    out, meta = loads(dumps(value, {"label": "x"}))
    assert meta == {"label": "x"}
    return out


def test_latent_dict_round_trips_exactly():
    value = {"samples": torch.randn(1, 4, 8, 8), "batch_index": [0, 1], "noise_mask": torch.rand(1, 1, 8, 8)}
    out = roundtrip(value)
    assert out.keys() == value.keys()
    assert torch.equal(out["samples"], value["samples"]) and out["batch_index"] == [0, 1]


def test_conditioning_list_round_trips_with_types_kept():
    cond = [[torch.randn(1, 77, 768), {"pooled_output": torch.randn(1, 1280), "strength": 0.75,
                                       "area": (64, 64, 0, 0), "set_area_to_bounds": False, "guidance": None}]]
    out = roundtrip(cond)
    assert isinstance(out, list) and isinstance(out[0], list)
    assert torch.equal(out[0][0], cond[0][0])
    extras = out[0][1]
    assert torch.equal(extras["pooled_output"], cond[0][1]["pooled_output"])
    assert extras["area"] == (64, 64, 0, 0) and isinstance(extras["area"], tuple)
    assert extras["strength"] == 0.75 and extras["set_area_to_bounds"] is False and extras["guidance"] is None


def test_registered_object_round_trips_as_its_class():
    o = VisionOutput()
    o.image_embeds, o.last_hidden_state, o.mm_projected = torch.randn(1, 1024), torch.randn(1, 257, 1024), None
    out = roundtrip(o)
    assert type(out) is VisionOutput
    assert torch.equal(out.image_embeds, o.image_embeds) and out.mm_projected is None


def test_bf16_non_contiguous_shared_and_special_floats_round_trip():
    base = torch.randn(4, 6).bfloat16()
    value = {"a": base, "a_t": base.t(), "again": base, "f": [math.inf, -0.0, 1e-300]}
    out = roundtrip(value)
    assert torch.equal(out["a"], base) and torch.equal(out["a_t"], base.t()) and torch.equal(out["again"], base)
    assert out["f"][0] == math.inf and math.copysign(1, out["f"][1]) == -1


@pytest.mark.parametrize("bad", [
    object(), {"fn": len}, [torch.randn(2).to_sparse()], {"c": torch.randn(2, dtype=torch.complex64)},
    {1.5: "float key"}, {"s": {1, 2}},
])
def test_unstorable_values_are_refused(bad):
    with pytest.raises(UnstorableValue):
        dumps(bad)


def test_self_referencing_value_is_refused():
    loop = []
    loop.append(loop)
    with pytest.raises(UnstorableValue):
        flatten(loop)


def test_flatten_unflatten_is_the_identity_on_structure():
    value = {"x": (1, "a", None, [torch.ones(2)])}
    tensors, structure = flatten(value)
    out = unflatten(tensors, structure)
    assert out["x"][:3] == (1, "a", None) and torch.equal(out["x"][3][0], torch.ones(2))


def test_truncated_blob_raises_corrupt_entry():
    blob = dumps({"samples": torch.randn(1, 4, 8, 8)})
    for cut in (0, 5, 20, len(blob) // 2, len(blob) - 1):
        with pytest.raises(CorruptEntry):
            loads(blob[:cut])


def test_flipped_tensor_byte_raises_corrupt_entry():
    blob = bytearray(dumps({"samples": torch.randn(1, 4, 8, 8)}))
    blob[-7] ^= 0x10
    with pytest.raises(CorruptEntry, match="checksum"):
        loads(bytes(blob))


def test_foreign_safetensors_and_newer_versions_are_refused():
    from safetensors.torch import save
    with pytest.raises(CorruptEntry, match="not a Recall"):
        loads(save({"weight": torch.randn(3)}))
    blob = dumps({"samples": torch.zeros(1)})
    newer = blob.replace(b'\\"version\\":1', b'\\"version\\":9')
    assert newer != blob
    with pytest.raises(CorruptEntry, match="version"):
        loads(newer)


def test_unregistered_object_type_on_load_is_corrupt_not_a_crash():
    class Other:
        pass
    register_object_type("test.Temporary", Other)
    o = Other()
    o.x = torch.ones(1)
    blob = dumps(o)
    register_object_type("test.Temporary", type("Replaced", (), {}))
    out, _ = loads(blob)  # the newest registration rebuilds it
    assert type(out).__name__ == "Replaced"
    blob2 = blob.replace(b"test.Temporary", b"test.Unknown!!")
    with pytest.raises(CorruptEntry):
        loads(blob2)
