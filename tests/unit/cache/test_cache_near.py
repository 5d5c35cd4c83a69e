"""Near matching: perceptual hash, thumbnails, the candidate index and verified look-ups over a TieredStore."""
import math

import pytest
import torch

from recall_pack.cache.disk import DiskTier
from recall_pack.cache.memory import MemoryTier
from recall_pack.cache.near import NearMatcher, NearQuery, thumb_key
from recall_pack.cache.near_index import NearIndex
from recall_pack.cache.perceptual import dhash, hamming, psnr, thumbnail
from recall_pack.cache.store import TieredStore
from support.near_images import brighter, jpeg_round_trip, one_pixel_edit, photo

GROUP = "vae_encode|sd15|(1,256,256,3)"


def query(pixels, key, group=GROUP, min_db=45.0):
    return NearQuery(group, key, dhash(pixels), thumbnail(pixels), min_db)


@pytest.fixture
def tiers(tmp_path, clock):
    return MemoryTier("ram", 10**7, None, 600, clock=clock), DiskTier("disk", tmp_path / "c", 10**8, clock=clock)


@pytest.fixture
def store(tiers, clock):
    return TieredStore(list(tiers), clock=clock, background_writes=False)


@pytest.fixture
def matcher():
    return NearMatcher(NearIndex(None))


def stored(store, matcher, pixels, key, value, group=GROUP):
    store.put(key, value, compute_seconds=3.0)
    matcher.remember(store, query(pixels, key, group), namespace="shared")


# -- hash and thumbnails ---------------------------------------------------------------------

def test_a_jpeg_q95_round_trip_keeps_the_hash_close_and_the_thumbnail_within_45_db():
    png = photo(1)
    jpg = jpeg_round_trip(png, 95)
    assert not torch.equal(png, jpg)
    assert hamming(dhash(png), dhash(jpg)) <= 2
    assert psnr(thumbnail(png), thumbnail(jpg)) >= 45.0


def test_a_brightness_shift_has_the_same_hash_but_fails_verification():
    img = photo(2)
    other = brighter(img)
    assert dhash(img) == dhash(other)
    assert psnr(thumbnail(img), thumbnail(other)) < 25.0


def test_psnr_of_equal_thumbnails_is_infinite_and_of_other_shapes_minus_infinite():
    t = thumbnail(photo(3))
    assert psnr(t, t.clone()) == math.inf
    assert psnr(t, thumbnail(photo(3, (192, 256)))) == -math.inf


def test_thumbnail_keeps_the_aspect_and_at_most_64_pixels_a_side():
    assert thumbnail(photo(4, (128, 256))).shape == (1, 32, 64, 3)
    assert thumbnail(photo(4, (40, 48))).shape == (1, 40, 48, 3)


def test_psnr_takes_the_worst_frame_of_a_batch():
    a = torch.cat([photo(5), photo(6)])
    b = torch.cat([photo(5), brighter(photo(6))])
    assert psnr(thumbnail(a), thumbnail(b)) == pytest.approx(psnr(thumbnail(a[1:]), thumbnail(b[1:])))


# -- the index ------------------------------------------------------------------------------

def test_index_finds_every_hash_within_the_radius_and_none_beyond():
    index = NearIndex(None)
    base = 0x0123_4567_89AB_CDEF
    for bits in range(0, 10):
        index.add(GROUP, f"k{bits}", base ^ ((1 << bits) - 1 if bits else 0) << 3)
    found = dict(index.candidates(GROUP, base, 7))
    assert sorted(found.values()) == list(range(8))
    assert "k8" not in found and "k9" not in found


def test_index_spreads_the_radius_over_bands_by_pigeonhole():
    index = NearIndex(None)
    base = 0xFFFF_0000_FFFF_0000
    near = base ^ (0b11 << 0) ^ (0b11 << 16) ^ (0b11 << 32) ^ (1 << 48)  # 7 bits, no band intact
    index.add(GROUP, "near", near)
    assert index.candidates(GROUP, base, 7) == [("near", 7)]


def test_index_keeps_groups_apart():
    index = NearIndex(None)
    index.add(GROUP, "k", 42)
    assert index.candidates("another group", 42, 7) == []


def test_index_persists_across_a_reopen(tmp_path):
    index = NearIndex(tmp_path / "near.sqlite")
    index.add(GROUP, "k", 2**63 + 5)
    index.close()
    again = NearIndex(tmp_path / "near.sqlite")
    assert again.candidates(GROUP, 2**63 + 5, 0) == [("k", 0)] and len(again) == 1


def test_a_damaged_index_file_starts_afresh(tmp_path):
    path = tmp_path / "near.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    index = NearIndex(path)
    assert len(index) == 0
    index.add(GROUP, "k", 1)
    assert index.candidates(GROUP, 1, 0) == [("k", 0)]


def test_index_drops_its_oldest_rows_past_max_rows():
    index = NearIndex(None, max_rows=10)
    for i in range(25):
        index.add(GROUP, f"k{i}", i)
    assert len(index) <= 10
    assert index.contains(GROUP, "k24") and not index.contains(GROUP, "k0")


# -- verified look-ups ------------------------------------------------------------------------

def test_a_jpeg_copy_finds_the_png_entry_and_gets_its_stored_value_bit_for_bit(store, matcher):
    png = photo(7)
    value = {"samples": torch.randn(1, 4, 16, 16)}
    stored(store, matcher, png, "png-key", value)
    found = matcher.find(store, query(jpeg_round_trip(png), "jpg-key"), namespace="shared")
    assert found is not None and found.key == "png-key" and found.db >= 45.0
    assert torch.equal(found.value["samples"], value["samples"])
    assert matcher.stats()["hits"] == 1


def test_an_impostor_with_the_same_hash_never_matches(store, matcher):
    img = photo(8)
    stored(store, matcher, img, "img-key", {"samples": torch.zeros(1)})
    impostor = brighter(img)
    assert dhash(impostor) == dhash(img)
    assert matcher.find(store, query(impostor, "impostor-key"), namespace="shared") is None
    assert matcher.stats()["rejected"] == 1


def test_a_one_pixel_edit_matches(store, matcher):
    img = photo(9)
    stored(store, matcher, img, "a", {"samples": torch.ones(1)})
    assert matcher.find(store, query(one_pixel_edit(img), "b"), namespace="shared").key == "a"


def test_another_group_never_matches(store, matcher):
    img = photo(10)
    stored(store, matcher, img, "a", {"samples": torch.ones(1)})
    assert matcher.find(store, query(img.clone(), "b", group="other encoder"), namespace="shared") is None


def test_the_querys_own_key_is_left_to_the_exact_lookup(store, matcher):
    img = photo(11)
    stored(store, matcher, img, "a", {"samples": torch.ones(1)})
    assert matcher.find(store, query(img, "a"), namespace="shared") is None


def test_a_stricter_tolerance_rejects_what_a_looser_one_accepts(store, matcher):
    png = photo(12)
    stored(store, matcher, png, "a", {"samples": torch.ones(1)})
    jpg = jpeg_round_trip(png, 75)
    db = psnr(thumbnail(png), thumbnail(jpg))
    assert matcher.find(store, query(jpg, "b", min_db=db + 1), namespace="shared") is None
    assert matcher.find(store, query(jpg, "b", min_db=db - 1), namespace="shared") is not None


@pytest.mark.parametrize("damage", ["values", "checksum", "foreign"])
def test_a_corrupted_thumbnail_is_a_miss(store, matcher, tiers, damage):
    img = photo(13)
    stored(store, matcher, img, "a", {"samples": torch.ones(1)})
    for tier in tiers:
        entry = tier.get("shared", thumb_key("a"))
        thumb = dict(entry.value)
        if damage == "values":
            thumb["thumb"] = thumb["thumb"].clone()
            thumb["thumb"][0, 0, 0, 0] += 0.25
        elif damage == "checksum":
            thumb["check"] = "0" * 16
        else:
            thumb = {"samples": torch.ones(1)}
        tier.put("shared", thumb_key("a"), thumb, meta=entry.meta)
    assert matcher.find(store, query(one_pixel_edit(img), "b"), namespace="shared") is None


def test_a_thumbnail_damaged_on_disk_is_a_miss(tmp_path, clock, matcher):
    disk = DiskTier("disk", tmp_path / "d", 10**8, clock=clock)
    store = TieredStore([disk], clock=clock, background_writes=False)
    img = photo(14)
    stored(store, matcher, img, "a", {"samples": torch.ones(1)})
    path = disk.path_for("shared", thumb_key("a"))
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the tensor bytes: the entry's own checksum no longer holds
    path.write_bytes(bytes(data))
    assert matcher.find(store, query(one_pixel_edit(img), "b"), namespace="shared") is None


def test_an_evicted_encoding_is_a_miss_and_leaves_the_index(store, matcher):
    img = photo(15)
    stored(store, matcher, img, "a", {"samples": torch.ones(1)})
    store.delete("a")
    assert matcher.find(store, query(one_pixel_edit(img), "b"), namespace="shared") is None
    assert not matcher.index.contains(GROUP, "a")


def test_thumbnails_count_in_the_caps(clock, matcher):
    ram = MemoryTier("ram", 200_000, None, 600, clock=clock)
    store = TieredStore([ram], clock=clock, background_writes=False)
    for i in range(30):
        img = photo(100 + i, (64, 64))
        stored(store, matcher, img, f"k{i}", {"samples": torch.randn(1, 4, 16, 16)})
        entries, nbytes = ram.usage()["shared"]
        assert nbytes <= 200_000
    keys = set(ram.keys("shared"))
    assert any(k == thumb_key(f"k{i}") for i in range(30) for k in keys)
    thumb_bytes = thumbnail(photo(1, (64, 64))).numel() * 2
    assert nbytes >= len([k for k in keys if not k.startswith("k")]) * thumb_bytes


def test_candidate_reads_are_not_counted_as_lookups(store, matcher):
    img = photo(16)
    stored(store, matcher, img, "a", {"samples": torch.ones(1)})
    before = store.stats()["totals"]
    matcher.find(store, query(one_pixel_edit(img), "b"), namespace="shared")
    after = store.stats()["totals"]
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])


# -- settings ---------------------------------------------------------------------------------

def test_match_defaults_to_exact_and_takes_near_from_the_environment():
    from recall_pack.cache.config import load_config
    assert load_config(None, env={}).match == "exact"
    config = load_config(None, env={"RECALL_MATCH": "near", "RECALL_NEAR_PSNR_DB": "50"})
    assert (config.match, config.near_psnr_db) == ("near", 50.0)


@pytest.mark.parametrize("key, value", [("match", "fuzzy"), ("near_psnr_db", 12), ("near_psnr_db", "inf")])
def test_bad_match_settings_name_the_value(key, value):
    from recall_pack.cache.config import CacheConfig
    from recall_pack.cache.errors import CacheConfigError
    with pytest.raises(CacheConfigError, match=key):
        CacheConfig().replace({key: value})


def test_index_add_many_counts_new_rows_only():
    index = NearIndex(None)
    index.add(GROUP, "a", 1)
    index.add_many([(GROUP, "a", 1), (GROUP, "b", 2), (GROUP, "c", 3)])
    assert len(index) == 3 and index.candidates(GROUP, 2, 1) == [("b", 0), ("c", 1)]


@pytest.mark.parametrize("value", [True, None, "1" * 400, float("nan"), float("inf"), -1, [45], {"db": 45}, "abc\n"])
@pytest.mark.parametrize("key", ["match", "near_psnr_db"])
def test_hostile_match_settings_are_config_errors(key, value):
    from recall_pack.cache.config import CacheConfig
    from recall_pack.cache.errors import CacheConfigError
    with pytest.raises(CacheConfigError):
        CacheConfig().replace({key: value})
