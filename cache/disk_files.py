"""The disk tier's entry files: their names, and reading or removing them without leaving the folder.

Layout: <root>/v1/<first 2 hex>/<xxh3_128(namespace NUL key)>.safetensors, or
<id>.<n>.safetensors when something that is not an entry (a folder, a link, someone
else's file) holds the plain name. Only plain files with such a name, in a plain shard
folder, are the pack's own: a symlinked shard is never entered, a link is never
followed, and a well-formed safetensors file without Recall's metadata is someone
else's and is never removed or overwritten.
"""
import errno
import json
import os
import re
import stat
from pathlib import Path

import xxhash

LAYOUT = "v1"
SUFFIX = ".safetensors"
INDEX_NAME = "index.sqlite3"
MAX_ALT = 3
MAX_HEADER = 16 * 2**20
_NAME = re.compile(r"([0-9a-f]{32})(?:\.([1-9]))?\.safetensors")
_TMP = re.compile(r"\.([0-9a-f]{32})\.[0-9a-f]+\.tmp")
_SHARD = re.compile(r"[0-9a-f]{2}")
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class NotOurs(OSError):
    """Something that is not an entry file sits at an entry's path (a link, a folder, a FIFO)."""


def entry_id(namespace: str, key: str) -> str:
    return xxhash.xxh3_128(f"{namespace}\0{key}".encode("utf-8", "surrogatepass")).hexdigest()


def file_name(hexid: str, alt: int = 0) -> str:
    return f"{hexid}{SUFFIX}" if alt == 0 else f"{hexid}.{alt}{SUFFIX}"


def parse_name(name: str) -> tuple[str, int] | None:
    """(hex id, alt) for an entry file's name, None for any other name."""
    m = _NAME.fullmatch(name)
    return None if m is None else (m.group(1), int(m.group(2) or 0))


def is_temporary(name: str) -> bool:
    return _TMP.fullmatch(name) is not None


def shard_state(shard: Path) -> str:
    """'dir' (a plain folder), 'missing', or 'other' (a link, a file: never entered)."""
    try:
        st = os.lstat(shard)
    except FileNotFoundError:
        return "missing"
    return "dir" if stat.S_ISDIR(st.st_mode) else "other"


def _open_plain(path: Path) -> int:
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotOurs(errno.ELOOP, "a symbolic link, not an entry file", str(path)) from exc
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotOurs(errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL,
                      "not a plain file", str(path))
    return fd


def read_entry(path: Path, touch: bool = True) -> bytes:
    """The whole file; a plain file only (never through a link, never blocking on a FIFO).
    touch: mark it used (its mtime orders a rebuild of a lost index)."""
    fd = _open_plain(path)
    with open(fd, "rb", closefd=True) as fh:
        data = fh.read()
        if touch:
            try:
                os.utime(fh.fileno())
            except OSError:
                pass
    return data


def read_head(path: Path) -> tuple[bytes, int]:
    """(the first 8 bytes and the safetensors header, the file's size), for sweeps."""
    fd = _open_plain(path)
    with open(fd, "rb", closefd=True) as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(8)
        if len(head) == 8:
            n = int.from_bytes(head, "little")
            if 0 < n <= MAX_HEADER:
                head += fh.read(n)
    return head, size


def header_doc(data: bytes) -> dict | None:
    """The safetensors header as a dict, or None when the bytes are not a whole header."""
    if len(data) < 8:
        return None
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or n > MAX_HEADER or 8 + n > len(data):
        return None
    try:
        top = json.loads(data[8:8 + n])
    except ValueError:
        return None
    return top if isinstance(top, dict) else None


def is_foreign(data: bytes) -> bool:
    """A well-formed safetensors header without Recall's metadata: someone else's file, never removed."""
    top = header_doc(data)
    if top is None:
        return False  # not a whole safetensors file: a damaged (or half-written) entry of ours
    meta = top.get("__metadata__")
    return not (isinstance(meta, dict) and "recall" in meta)


def remove_own(path: Path) -> tuple[bool, str]:
    """Unlink an entry file (or a temporary one) if it is a plain file in a plain shard folder.
    (removed or already gone, why not)."""
    if shard_state(path.parent) != "dir":
        return False, "its folder is a link or not a folder"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True, ""
    except OSError as exc:
        return False, str(exc)
    if not stat.S_ISREG(st.st_mode):
        return False, "not a plain file"
    try:
        os.unlink(path)
    except FileNotFoundError:
        return True, ""
    except OSError as exc:
        return False, str(exc)
    return True, ""


def shards(base: Path):
    """The plain shard folders under <root>/v1 (links and other names are not entered)."""
    try:
        with os.scandir(base) as it:
            found = [Path(e.path) for e in it if _SHARD.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    return sorted(found)


def shard_files(shard: Path) -> list[tuple[str, float, int]]:
    """(name, mtime, size) of the plain files in one shard folder."""
    out = []
    try:
        with os.scandir(shard) as it:
            for e in it:
                try:
                    if e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        out.append((e.name, st.st_mtime, st.st_size))
                except OSError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        pass
    return out
