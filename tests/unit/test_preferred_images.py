"""Preferred images: only regular files inside the input folder; the decode never holds up a run."""
import os
import sys
import threading
import time
import types

import pytest
import torch

from recall_pack.nodes import preferred_images as pi  # noqa: E402
from support.recall_runtime import use_runtime  # noqa: E402


@pytest.fixture
def input_dir(tmp_path, monkeypatch):
    folder = tmp_path / "input"
    folder.mkdir()
    (folder / "ok.png").write_bytes(b"png")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.png").write_bytes(b"png")
    (tmp_path / "secret.png").write_bytes(b"outside")
    (folder / "link.png").symlink_to(tmp_path / "secret.png")
    (folder / "dirlink").symlink_to(tmp_path)
    os.mkfifo(folder / "fifo.png")
    fp = types.ModuleType("folder_paths")
    fp.get_input_directory = lambda: str(folder)
    fp.get_annotated_filepath = lambda name: str(folder / name)
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    yield folder


@pytest.mark.parametrize("name", ["ok.png", "sub/b.png"])
def test_a_regular_file_inside_the_input_folder_is_accepted(input_dir, name):
    path, _ = pi.resolve(name)
    assert path == os.path.realpath(input_dir / name)
    pi.validate([name])


@pytest.mark.parametrize("name,why", [
    ("link.png", "outside"), ("dirlink/secret.png", "outside"), ("../secret.png", ".."),
    (None, "not a file name"), ("/etc/passwd", "absolute"), ("a\x00b.png", "control"),
    ("fifo.png", "not a regular file"), ("sub", "not a regular file"), ("missing.png", "does not exist"),
])
def test_anything_else_is_refused_naming_the_entry(input_dir, name, why):
    path, reason = pi.resolve(name)
    assert path is None and why in reason
    with pytest.raises(pi.CacheConfigError, match="preferred_images entry"):
        pi.validate(["ok.png", name])


def test_a_decode_that_blocks_holds_up_the_run_at_most_the_wait(input_dir, monkeypatch):
    from recall_pack.nodes import runtime
    release = threading.Event()
    image = torch.zeros(1, 2, 2, 3)

    def slow_decode(signature):
        release.wait(30)  # a reader stuck on a file (a FIFO swapped in after the check)
        return frozenset({pi.content_key(image)})
    monkeypatch.setattr(pi, "_decode", slow_decode)
    monkeypatch.setattr(pi, "DECODE_WAIT_S", 0.2)
    with use_runtime(runtime.Runtime(types.SimpleNamespace(preferred_images=("ok.png",)))) as rt:
        start = time.perf_counter()
        key = pi.content_key(image)
        assert key not in pi.preferred_keys(rt)      # the run goes on without the keys
        assert key not in pi.preferred_keys(rt)      # and does not wait a second time
        assert time.perf_counter() - start < 2.0
        decoding = rt.state(pi.PreferredKeys).pending
        release.set()
        decoding.join(10)
        assert key in pi.preferred_keys(rt)          # the decode finished on its own thread
