"""Fixtures for tests against a live ComfyUI server with the pack linked in.

    comfyui              session  ComfyUIInstall(path, python, version); skips the test if none
    cache_mode                    ComfyUI command-line args of a cache mode: a test taking it runs once
                                  per mode the release under test has ([] = the default)
    cache_flag                    the same without the default: every --cache-* flag of the release
    models               session  {"sd15_vae" | "wan21_vae" | "clip_vision" | "sd15_checkpoint": Path};
                                  ComfyUI lists each under its Path.name (e.g. VAELoader's vae_name)
    comfy_server         session  the shared default ComfyServer (no extra args); do not restart it
    comfy_client         session  ComfyClient for comfy_server
    run_prompt           function run_prompt(prompt, server=None, timeout_s=300) -> PromptResult
    comfy_server_factory function start(extra_args=(), extra_env=None, base_dir=None, models=...)
                                  -> ComfyServer, stopped after the test; .restart() keeps base_dir
    input_image          function input_image(server=None, name="recall_input.png", width=64,
                                  height=64, seed=0) -> name for LoadImage (written into input/)

A failing test's report gets the tail of every server log it used.
"""
import pytest

from support import cache_modes
from recall_pack.bench.harness import comfy_env
from recall_pack.bench.harness.comfy_client import ComfyClient, write_input_image
from recall_pack.bench.harness.comfy_server import ComfyServer, start_server

pytestmark = pytest.mark.integration

_servers_by_test: dict = {}
_all_servers: list = []  # for the end-of-run summary


def pytest_report_header(config):
    install, why = comfy_env.find_comfyui(build=False)
    return f"comfyui: {install}" if install else f"comfyui: NOT AVAILABLE, integration suite skipped: {why}"


def pytest_generate_tests(metafunc):
    for name in ("cache_mode", "cache_flag"):
        if name in metafunc.fixturenames:
            install, _ = comfy_env.find_comfyui(build=False)
            modes = cache_modes.cache_modes(install.path if install else None)
            if name == "cache_flag":
                modes = [mode for mode in modes if mode] or [["--cache-none"]]  # no ComfyUI: skips anyway
            metafunc.parametrize(name, modes, ids=[cache_modes.mode_name(m) for m in modes])


@pytest.fixture(scope="session")
def comfyui():
    install, why = comfy_env.find_comfyui(build=True)
    if install is None:
        pytest.skip(f"ComfyUI integration tests skipped: {why}")
    return install


@pytest.fixture(scope="session")
def models(comfyui) -> dict:
    return comfy_env.ensure_models(comfyui)


@pytest.fixture(scope="session")
def comfy_server(comfyui, models, tmp_path_factory):
    server = start_server(comfyui.path, comfyui.python, tmp_path_factory.mktemp("comfy-default"), models)
    _all_servers.append(server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def comfy_client(comfy_server) -> ComfyClient:
    return ComfyClient(comfy_server.url)


@pytest.fixture
def run_prompt(request, comfy_server):
    used = _servers_by_test.setdefault(request.node.nodeid, [])
    used.append(comfy_server)

    def run(prompt: dict, server: ComfyServer | None = None, timeout_s: float = 300.0):
        target = server or comfy_server
        if target not in used:
            used.append(target)
        return ComfyClient(target.url).run_prompt(prompt, timeout_s=timeout_s)
    return run


@pytest.fixture
def comfy_server_factory(request, comfyui, models, tmp_path):
    started: list[ComfyServer] = []
    _servers_by_test.setdefault(request.node.nodeid, [])

    def start(extra_args=(), extra_env=None, base_dir=None, models=models) -> ComfyServer:
        base = base_dir or tmp_path / f"comfy-{len(started)}"
        server = start_server(comfyui.path, comfyui.python, base, models, extra_args, extra_env)
        started.append(server)
        _all_servers.append(server)
        _servers_by_test[request.node.nodeid].append(server)
        return server
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def input_image(comfy_server):
    def write(server: ComfyServer | None = None, name: str = "recall_input.png", width: int = 64,
              height: int = 64, seed: int = 0) -> str:
        return write_input_image((server or comfy_server).input_dir, name, width, height, seed)
    return write


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    servers = list(_servers_by_test.get(item.nodeid, []))
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, ComfyServer) and value not in servers:
            servers.append(value)
    if report.failed:
        for server in servers:
            report.sections.append((f"ComfyUI log {server.log_path} (tail)", server.log_tail(80)))
    if report.when == "teardown":
        _servers_by_test.pop(item.nodeid, None)


def pytest_terminal_summary(terminalreporter):
    if comfy_env.BUILD_LOG:
        terminalreporter.section("random-weight models built")
        for line in comfy_env.BUILD_LOG:
            terminalreporter.write_line(line)
    if not _all_servers:
        return
    terminalreporter.section("ComfyUI servers")
    for server in _all_servers:
        terminalreporter.write_line(f"{server.starts} start(s), last took {server.startup_s:.1f} s; "
                                    f"args {server.extra_args or '-'}; log {server.log_path}")
