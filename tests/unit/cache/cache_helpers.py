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
