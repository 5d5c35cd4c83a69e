"""Preferred images (config `preferred_images`): entries whose source image is one of these files stay hot.

An entry names a regular file inside ComfyUI's input folder, as LoadImage names it
("avatar.png", "faces/a.png"). A name is resolved (links followed) before it is used:
one that leaves the input folder, does not exist, or is not a regular file (a folder,
a FIFO, a device) is refused by POST /recall/settings with a 400 naming the entry, and
skipped with a warning when it comes from the config file (or stops qualifying later).

Keys are content keys of the pixels as LoadImage decodes them, so a preferred picture is
recognised wherever it comes from (LoadImage, another loader, an upload under another
name). Files are decoded once, and again only when one changes (name, size, mtime). The
decode runs on its own thread: the prompt worker waits for it at most DECODE_WAIT_S,
once per change, and then goes on without it (a file that blocks its reader never holds
up a run).
"""
from __future__ import annotations

import logging
import os
import stat
import threading

from ..cache.config import check_image_name
from ..cache.errors import CacheConfigError
from ..cache.keys import content_key
from . import runtime

_log = logging.getLogger("recall")

DECODE_WAIT_S = 5.0


def _input_dir() -> str:
    import folder_paths
    return folder_paths.get_input_directory()


def resolve(name, input_dir: str | None = None):
    """(path, (size, mtime_ns)) of a preferred image, or (None, why it is refused)."""
    why = check_image_name(name)
    if why is not None:
        return None, why
    base = os.path.realpath(input_dir or _input_dir())
    path = os.path.realpath(os.path.join(base, name))
    if os.path.commonpath([base, path]) != base:
        return None, "resolves outside ComfyUI's input folder"
    try:
        st = os.stat(path)
    except OSError:
        return None, "does not exist in ComfyUI's input folder"
    if not stat.S_ISREG(st.st_mode):
        return None, "is not a regular file"
    if input_dir is None and not _loads_from(name, path):
        return None, "names a file in another folder (remove the ' [output]' or ' [temp]' suffix)"
    return path, (st.st_size, st.st_mtime_ns)


def _loads_from(name: str, path: str) -> bool:
    # LoadImage opens get_annotated_filepath(name): it must be the very file checked here
    import folder_paths
    return os.path.realpath(folder_paths.get_annotated_filepath(name)) == path


def validate(names) -> None:
    """CacheConfigError naming the first entry that is not a regular file in the input folder."""
    for name in names:
        _path, why = resolve(name)
        if _path is None:
            raise CacheConfigError(f"[Recall] settings: preferred_images entry {str(name)[:200]!r} {why} (expected "
                                   "the name of an image file in ComfyUI's input folder, as LoadImage lists it). "
                                   "Upload the image first, or remove the entry.")


def _signature(names, warned: set) -> tuple:
    out = []
    for name in names:
        path, detail = resolve(name)
        if path is None:
            if (name, detail) not in warned and len(warned) < 1024:
                warned.add((name, detail))
                _log.warning("[Recall] preferred image %.200r is skipped: it %s (expected an image file in "
                             "ComfyUI's input folder). Fix the name in the config.", name, detail)
            continue
        out.append((name, path, detail))
    return tuple(out)


def _decode(signature) -> frozenset:
    import nodes as comfy_nodes  # ComfyUI's nodes.py (our package is imported relatively)
    keys = set()
    for name, _path, _st in signature:
        try:
            image, _mask = comfy_nodes.LoadImage().load_image(name)
        except Exception as exc:
            _log.warning("[Recall] preferred image %r could not be decoded: %s", name, exc)
            continue
        keys.add(content_key(image))
        keys.update(content_key(image[i:i + 1]) for i in range(image.shape[0]))
    _log.info("[Recall] %d preferred image(s) will be kept in the hot tier", len(signature))
    return frozenset(keys)


class PreferredKeys:
    """The runtime's decoded preferred images: keys of the files as last decoded, and the decode running."""

    def __init__(self, runtime=None):  # made by Runtime.state(); the config is read at each call
        self.lock = threading.Lock()
        self.signature: tuple | None = None   # the files (name, path, stamp) the keys were decoded from
        self.keys: frozenset = frozenset()
        self.pending: _Decode | None = None
        self.warned: set = set()  # (name, why): each refusal is logged once, not on every encode


class _Decode(threading.Thread):
    def __init__(self, signature, state: PreferredKeys):
        super().__init__(name="recall-preferred-images", daemon=True)
        self.signature, self.state = signature, state
        self.keys: frozenset | None = None

    def run(self):
        state = self.state
        try:
            self.keys = _decode(self.signature)
        finally:
            with state.lock:
                if state.pending is self:  # a newer change may have replaced this decode
                    state.signature, state.keys, state.pending = self.signature, self.keys, None


def preferred_keys(rt=None) -> frozenset:
    """Content keys of the preferred files' pixels (what is known now; see the module doc).

    rt: the runtime whose config names the files (the installed one by default)."""
    try:
        rt = runtime.current() if rt is None else rt
        names = list(rt.config.preferred_images)
        if not names:
            return frozenset()
        state = rt.state(PreferredKeys)
        signature = _signature(names, state.warned)
    except Exception as exc:  # a broken config or folder must never fail an encode
        _log.debug("preferred images unavailable: %s", exc)
        return frozenset()
    with state.lock:
        if signature == state.signature:
            return state.keys
        pending = state.pending
        if pending is not None and pending.signature == signature:
            return state.keys  # already decoding (and already waited for once)
        pending = state.pending = _Decode(signature, state)
    pending.start()
    pending.join(DECODE_WAIT_S)
    if pending.is_alive():
        _log.warning("[Recall] preferred images are still being decoded after %.0f s; runs go on without them "
                     "until the decode finishes.", DECODE_WAIT_S)
    with state.lock:
        return state.keys
