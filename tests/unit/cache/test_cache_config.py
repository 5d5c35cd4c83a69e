"""Config: defaults, YAML, env overrides, and errors that name the key and the allowed values."""
import pytest

from recall_pack.cache.config import CacheConfig, build_store, describe, load_config, parse_size
from recall_pack.cache.errors import CacheConfigError


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_need_nothing(tmp_path):
    config = load_config(tmp_path / "missing.yaml", env={})
    assert config == CacheConfig()
    assert config.ram_bytes == 4 * 2**30 and config.vram_entries == 10 and config.backend == "local"


def test_the_briefs_example_file_loads(tmp_path):
    path = write(tmp_path, """cache:
  enabled: true
  backend: redis
  redis_url: redis://127.0.0.1:6379/0
  vram_entries: 10
  ram_bytes: 4GB
  disk_bytes: 20GB
  ttl_minutes: 30
  preferred_images: [avatar.png, logo.webp]
""")
    config = load_config(path, env={})
    assert config.backend == "redis" and config.disk_bytes == 20 * 2**30
    assert config.preferred_images == ("avatar.png", "logo.webp")


def test_env_overrides_the_file(tmp_path):
    path = write(tmp_path, "cache:\n  ram_bytes: 4GB\n")
    config = load_config(path, env={"RECALL_RAM_BYTES": "8GB", "RECALL_BACKEND": "redis",
                                    "RECALL_PREFERRED_IMAGES": "a.png, b.png", "RECALL_ENABLED": "false",
                                    "RECALL_SOMETHING_ELSE": "ignored"})
    assert config.ram_bytes == 8 * 2**30 and config.backend == "redis" and config.enabled is False
    assert config.preferred_images == ("a.png", "b.png")


@pytest.mark.parametrize("text", ["512MB", "512 mb", "0.5GiB", 536870912, "536870912"])
def test_sizes_accept_units_and_bytes(text):
    assert parse_size("ram_bytes", text) == 512 * 2**20


@pytest.mark.parametrize("key, value, allowed", [
    ("ram_bytes", "lots", "512MB"),
    ("ram_bytes", -1, "512MB"),
    ("backend", "memcached", "local or redis"),
    ("ttl_minutes", "soon", "number >= 0"),
    ("vram_entries", 2.5, "whole number"),
    ("enabled", "maybe", "true or false"),
    ("redis_url", "http://x", "redis://"),
    ("preferred_images", "a.png", "list"),
])
def test_bad_values_name_the_key_the_value_and_what_is_allowed(tmp_path, key, value, allowed):
    path = write(tmp_path, f"cache:\n  {key}: {value!r}\n" if isinstance(value, str) else f"cache:\n  {key}: {value}\n")
    with pytest.raises(CacheConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert key in message and str(value) in message and allowed in message and str(path) in message


def test_unknown_key_lists_the_known_keys(tmp_path):
    with pytest.raises(CacheConfigError, match=r"unknown key 'ram_byte'.*ram_bytes"):
        load_config(write(tmp_path, "cache:\n  ram_byte: 1GB\n"), env={})


def test_bad_env_value_names_the_variable(tmp_path):
    with pytest.raises(CacheConfigError, match="RECALL_DISK_BYTES"):
        load_config(None, env={"RECALL_DISK_BYTES": "big"})


@pytest.mark.parametrize("text", ["cache: [1, 2]\n", "- just a list\n", "cache:\n  ram_bytes: [\n"])
def test_malformed_files_raise_config_errors(tmp_path, text):
    with pytest.raises(CacheConfigError):
        load_config(write(tmp_path, text), env={})


def test_replace_validates_like_the_file():
    config = CacheConfig().replace({"ram_bytes": "1GB"})
    assert config.ram_bytes == 2**30
    with pytest.raises(CacheConfigError, match="ram_bytes"):
        config.replace({"ram_bytes": "x"})


def test_build_store_tiers_follow_the_config(tmp_path):
    store = build_store(CacheConfig(), disk_dir=tmp_path, hot_device="cpu")
    assert [t.name for t in store.tiers] == ["vram", "ram", "disk"]
    assert [t.name for t in build_store(CacheConfig(disk_bytes=0), disk_dir=tmp_path).tiers] == ["ram"]
    assert not any(tmp_path.iterdir())  # building touches no disk


def test_describe_is_one_line_from_the_config():
    assert describe(CacheConfig(), disk_dir="/u/recall/cache") == "ram 4GB, disk 20GB at /u/recall/cache"
    assert "off" in describe(CacheConfig(enabled=False))


# -- values a request or a careless file may hold: always a CacheConfigError, never another error ------
HUGE_SIZES = [float("inf"), float("-inf"), float("nan"), 1e309, 10**400, 2**61, "9" * 400 + "GB",
              "1e309", "Infinity", "NaN", "1" * 31 + "B"]


@pytest.mark.parametrize("value", HUGE_SIZES, ids=repr)
@pytest.mark.parametrize("key", ["ram_bytes", "vram_bytes", "disk_bytes", "redis_max_value_bytes"])
def test_a_size_beyond_the_limit_or_not_finite_is_a_config_error(key, value):
    with pytest.raises(CacheConfigError, match=key):
        CacheConfig().replace({key: value})


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e309, 10**400, 10**9 + 1, "Infinity", "inf",
                                   "nan", "9" * 400], ids=repr)
@pytest.mark.parametrize("key", ["ttl_minutes", "text_ttl_minutes", "disk_ttl_hours", "vram_entries",
                                 "redis_timeout_ms"])
def test_a_number_beyond_the_limit_or_not_finite_is_a_config_error(key, value):
    with pytest.raises(CacheConfigError, match=key):
        CacheConfig().replace({key: value})


def test_every_accepted_setting_serializes_as_strict_json():
    import json
    config = CacheConfig().replace({"ttl_minutes": 10**9, "ram_bytes": 2**60, "disk_ttl_hours": "1e9"})
    json.dumps(config.as_dict(), allow_nan=False)


def test_a_size_with_a_trailing_newline_is_still_a_size_but_junk_after_it_is_not():
    assert parse_size("ram_bytes", "4GB\n") == 4 * 2**30
    with pytest.raises(CacheConfigError):
        parse_size("ram_bytes", "4GB\nx")


def test_an_error_shows_a_huge_value_shortened():
    nested = []
    for _ in range(500):
        nested = [nested]
    with pytest.raises(CacheConfigError) as info:
        CacheConfig().replace({"preferred_images": nested})
    assert len(str(info.value)) < 600
    with pytest.raises(CacheConfigError) as info:
        CacheConfig().replace({"ram_bytes": "x" * 100_000})
    assert len(str(info.value)) < 600


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/../../x.png", "a\x00b.png", "C:\\x.png",
                                  "\\\\server\\share\\x.png", "a\nb.png", "", 7, None, ["a.png"]], ids=repr)
def test_a_preferred_image_outside_the_input_folder_by_its_form_is_refused(name):
    with pytest.raises(CacheConfigError, match="preferred_images"):
        CacheConfig().replace({"preferred_images": [name]})


def test_a_preferred_image_in_a_subfolder_is_a_name():
    assert CacheConfig().replace({"preferred_images": ["faces/a.png", "b..c.png"]}).preferred_images == (
        "faces/a.png", "b..c.png")
