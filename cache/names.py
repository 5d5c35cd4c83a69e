"""The names of the shared namespace and of the tiers, used by the engine, the nodes and the routes.

A tier's name is how the panel, the routes ({"tier": "ram"}) and the hit events refer to it;
a namespace separates users (with --multi-user) from what every user shares.
"""

SHARED_NAMESPACE = "shared"   # image encodings: the same for every user of the server

VRAM = "vram"
RAM = "ram"
DISK = "disk"
REDIS = "redis"
TIER_ORDER = (VRAM, RAM, DISK, REDIS)   # fastest first: the order a lookup walks them
