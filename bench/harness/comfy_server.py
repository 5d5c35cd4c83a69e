"""A real ComfyUI server for integration tests: isolated folder, the pack linked in, own log.

Each server gets a base directory (ComfyUI's --base-directory) holding
custom_nodes/, models/, input/, output/, temp/ and user/. The pack is
symlinked into custom_nodes/ under an unusual folder name, to prove the pack
does not depend on the folder it was cloned into. Model files are symlinked
into models/<folder>/. The server is stopped by its own process id, never by
name, and can be restarted on the same base directory (disk caches survive).
"""
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
PACK_FOLDER_NAME = "my recall copy"
STARTUP_TIMEOUT_S = 120.0


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the process that started it dies, so a pytest that is
    killed (a CI timeout) leaves no server behind. Runs in the child between fork and exec."""
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerStartError(RuntimeError):
    pass


@dataclass(eq=False)
class ComfyServer:
    """One ComfyUI process. Create with start_server(); stop() is idempotent."""
    comfyui_path: Path
    python: Path
    base_dir: Path
    extra_args: list = field(default_factory=list)
    extra_env: dict = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    starts: int = 0
    startup_s: float = 0.0  # seconds the last start took until /system_stats answered

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def user_dir(self) -> Path:
        return self.base_dir / "user"

    @property
    def pack_dir(self) -> Path:
        return self.base_dir / "custom_nodes" / PACK_FOLDER_NAME

    def log_text(self) -> str:
        """Everything this server printed, all starts included."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> "ComfyServer":
        if self.process is not None and self.process.poll() is None:
            return self
        self.port = free_port()
        self.starts += 1
        self.log_path = self.base_dir / "comfyui.log"
        cmd = [str(self.python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch", "--base-directory", str(self.base_dir),
               # The default database lives in the ComfyUI tree, shared by every server (and
               # missing its folder in a tree unpacked from a snapshot): give each server its own.
               "--database-url", f"sqlite:///{self.base_dir / 'user' / 'comfyui.db'}", *self.extra_args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in self.extra_env.items()}}
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(cmd)}\n")
            log.flush()
            # A new session, so a stray signal to the test's group never reaches it, and
            # stop() can signal exactly this process.
            self.process = subprocess.Popen(cmd, cwd=self.comfyui_path, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True,
                                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        began = time.monotonic()
        self._wait_ready(timeout_s)
        self.startup_s = time.monotonic() - began
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(f"ComfyUI exited with code {self.process.returncode} during start-up; "
                                       f"log {self.log_path}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/system_stats", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.stop()
        raise ServerStartError(f"ComfyUI did not answer within {timeout_s:.0f} s; "
                               f"log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)

    def restart(self, timeout_s: float = STARTUP_TIMEOUT_S) -> "ComfyServer":
        """Stop and start again on the same base directory: disk state survives, RAM does not."""
        self.stop()
        return self.start(timeout_s)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def prepare_base_dir(base_dir: Path, models: dict | None = None, pack_root: Path = REPO_ROOT) -> Path:
    """Lay out a ComfyUI base directory with the pack and the model files linked in.

    models maps name -> Path of a file inside <cache>/<folder>/<file>; the link
    goes to models/<folder>/<file>, so ComfyUI lists it under the same file name.
    """
    for sub in ("custom_nodes", "input", "output", "temp", "user", "models"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    link = base_dir / "custom_nodes" / PACK_FOLDER_NAME
    if not link.is_symlink():
        link.symlink_to(pack_root.resolve(), target_is_directory=True)
    for path in (models or {}).values():
        path = Path(path)
        target = base_dir / "models" / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_symlink():
            target.symlink_to(path.resolve())
    return base_dir


def start_server(comfyui_path: Path, python: Path, base_dir: Path, models: dict | None = None,
                 extra_args=(), extra_env: dict | None = None,
                 timeout_s: float = STARTUP_TIMEOUT_S) -> ComfyServer:
    prepare_base_dir(base_dir, models)
    server = ComfyServer(Path(comfyui_path), Path(python), Path(base_dir), list(extra_args), dict(extra_env or {}))
    return server.start(timeout_s)
