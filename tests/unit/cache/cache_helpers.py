"""Helpers shared by the cache-engine tests (imported by name: a second `conftest` module would clash)."""
import torch

from recall_pack.cache.tier import EntryMeta

LOCAL_TIERS = ["memory", "disk"]


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def meta(seconds: float = 1.0, label: str = "", pinned: bool = False, ttl=None) -> EntryMeta:
    return EntryMeta(seconds, 0.0, label, pinned, ttl)


def latent(seed: int, shape=(1, 4, 8, 8)) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"samples": torch.randn(shape, generator=g)}


class FakeRedisServer:
    """A fakeredis server and a factory handing out clients to it (one per call, like real pools)."""

    def __init__(self):
        import fakeredis  # a test extra; the Redis test modules skip without it before they get here
        self._fakeredis = fakeredis
        self.server = fakeredis.FakeServer()
        self.made = 0

    def factory(self, url, timeout_s, read_timeout_s=None):
        self.made += 1
        return self._fakeredis.FakeRedis(server=self.server)

    def client(self):
        return self._fakeredis.FakeRedis(server=self.server)
