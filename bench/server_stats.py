"""What the benchmark measures beyond the harness client: per-node times and the server's peak RSS.

TimedClient is the harness's ComfyClient with the websocket wrapped so each message gets its
arrival time; node_seconds[node] = time from that node's "executing" message to the run's next
message of that kind (or its end). Peak RSS is Linux's VmHWM of the server process, reset before
each run by writing "5" to /proc/<pid>/clear_refs.
"""
import re
import time
from pathlib import Path

from .harness.comfy_client import ComfyClient


class _TimedSocket:
    def __init__(self, ws):
        self.ws, self.log = ws, []

    def settimeout(self, value):
        self.ws.settimeout(value)

    def recv(self):
        raw = self.ws.recv()
        if not isinstance(raw, bytes):
            self.log.append((time.perf_counter(), raw))
        return raw


class TimedClient(ComfyClient):
    def _follow(self, ws, prompt_id, start, timeout_s):
        timed = _TimedSocket(ws)
        result = super()._follow(timed, prompt_id, start, timeout_s)
        result.node_seconds = node_seconds(result.messages, [t for t, _ in timed.log], prompt_id)
        return result


def node_seconds(messages: list, times: list, prompt_id: str) -> dict:
    """{node id: seconds} from the executing / final messages of one prompt."""
    out, current, since = {}, None, None
    for message, at in zip(messages, times):
        data = message.get("data") or {}
        if data.get("prompt_id") != prompt_id:
            continue
        if message.get("type") in ("executing", "execution_success", "execution_error"):
            if current is not None:
                out[current] = out.get(current, 0.0) + at - since
            current, since = (data.get("node"), at) if message["type"] == "executing" else (None, None)
    return out


def pid_for_url(url: str):
    """The pid listening on the URL's port (local servers only), else None."""
    match = re.search(r":(\d+)", url.split("//", 1)[-1])
    if not match:
        return None
    port = int(match.group(1))
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if (target := str(fd.readlink())).startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def reset_peak_rss(pid) -> None:
    if pid is None:
        return
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass  # not ours or not Linux: the peak then covers the server's whole life


def peak_rss_mb(pid):
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None
