"""Redis is imported and connected at start-up, in the background, so the first lookup pays neither."""
import logging

import pytest

pytest.importorskip("redis")
fakeredis = pytest.importorskip("fakeredis")

from cache_helpers import FakeRedisServer, latent, meta  # noqa: E402
from recall_pack.cache.memory import MemoryTier  # noqa: E402
from recall_pack.cache.redis_tier import RedisTier  # noqa: E402
from recall_pack.cache.store import TieredStore  # noqa: E402
from recall_pack.nodes import startup  # noqa: E402


@pytest.fixture
def fake():
    return FakeRedisServer()


@pytest.fixture
def tier(fake, clock):
    t = RedisTier("redis://fake/0", client_factory=fake.factory, clock=clock)
    yield t
    t.close()


def test_without_warm_up_the_first_lookup_connects(tier, fake):
    assert fake.made == 0
    tier.get("ns", "k")
    assert fake.made == 1


def test_warm_up_connects_so_the_first_lookup_does_not(tier, fake):
    other = RedisTier("redis://fake/0", client_factory=fake.factory)
    other.put("ns", "k", latent(1), meta=meta())  # another worker wrote the entry
    other.close()
    made = fake.made
    assert tier.warm_up() is True and fake.made == made + 1
    assert tier.get("ns", "k") is not None
    assert fake.made == made + 1  # the lookup used the connection made at start-up


def test_warm_up_with_redis_down_warns_once_and_does_not_raise(tier, fake, caplog):
    fake.server.connected = False
    with caplog.at_level(logging.WARNING, "recall.cache"):
        assert tier.warm_up() is False
        assert tier.get("ns", "k") is None  # the breaker is open: no second timeout, no second warning
    assert tier.is_down and caplog.text.count("failed to") == 1


def test_startup_warm_up_builds_the_store_and_warms_its_redis_tier_off_the_caller(tier, fake):
    built = []

    def get_store():
        built.append(1)
        return TieredStore([MemoryTier("ram", 10**6), tier], background_writes=False)
    thread = startup.warm_up_cache(get_store)
    thread.join(timeout=30)
    assert not thread.is_alive() and thread.daemon
    assert built == [1] and fake.made == 1


def test_startup_warm_up_failure_is_a_warning_not_an_error(caplog):
    def broken():
        raise RuntimeError("disk folder not writable")
    with caplog.at_level(logging.WARNING, "recall"):
        thread = startup.warm_up_cache(broken)
        thread.join(timeout=30)
    assert "cache warm-up failed (disk folder not writable)" in caplog.text


@pytest.mark.parametrize("backend, enabled, started", [("redis", True, True), ("local", True, False),
                                                        ("redis", False, False)])
def test_warm_up_starts_only_for_an_enabled_redis_backend(monkeypatch, backend, enabled, started):
    from types import SimpleNamespace
    calls = []
    monkeypatch.setattr(startup, "warm_up_cache", lambda get_store: calls.append(get_store))
    startup._start_warm_up(SimpleNamespace(backend=backend, enabled=enabled))
    assert bool(calls) == started
