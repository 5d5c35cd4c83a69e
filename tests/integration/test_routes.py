"""The /recall/ routes on a live ComfyUI: input validation, no leaks, multi-user isolation.

Two servers of its own (clearing the cache must not disturb other suites' servers):
a single-user one, and one started with --multi-user whose disk cache is seeded with
entries of two users before start-up.
"""
import json
import re
import time
import uuid

import pytest
import requests

from recall_pack.bench.harness.comfy_client import ComfyClient, create_users, write_input_image
from recall_pack.bench.harness.comfy_server import start_server

GB = 2**30
PATH_LIKE = re.compile(r"(?<![\w.])/(?:tmp|root|home|work|var|usr|opt|mnt|Users)/|[A-Za-z]:\\\\")


@pytest.fixture(scope="module")
def server(comfyui, models, tmp_path_factory):
    srv = start_server(comfyui.path, comfyui.python, tmp_path_factory.mktemp("routes-single"),
                       {"sd15_vae": models["sd15_vae"]})
    yield srv
    srv.stop()


def post(srv, path, body=None, raw=None, headers=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body))
    return requests.post(srv.url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})},
                         timeout=30)


def get(srv, path, headers=None):
    return requests.get(srv.url + path, headers=headers or {}, timeout=30)


def assert_400(response, *words):
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert message.startswith("[Recall]"), message
    for word in words:
        assert word in message, message
    return message


def encode_prompt(image: str, vae: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": vae}},
        "3": {"class_type": "RecallVAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["2", 0]}},
        "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "recall_routes"}},
    }


# -- single user: validation ---------------------------------------------------------------
def test_stats_lists_every_tier_in_use_with_its_counters(server):
    answer = get(server, "/recall/stats").json()
    assert {"ram", "disk"} <= set(answer["tiers"])
    assert set(answer["totals"]) >= {"entries", "bytes", "hits", "misses", "evictions", "saved_seconds"}
    assert answer["scope"]["multi_user"] is False


def test_routes_are_also_served_under_the_api_prefix(server):
    assert get(server, "/api/recall/stats").status_code == 200


def test_clear_with_an_unknown_tier_is_refused(server):
    assert_400(post(server, "/recall/clear", {"tier": "floppy"}), "unknown tier 'floppy'", "ram")


def test_clear_of_a_tier_that_is_not_in_use_is_refused(server):
    assert_400(post(server, "/recall/clear", {"tier": "redis"}), "not in use")


def test_clear_with_malformed_json_is_refused(server):
    assert_400(post(server, "/recall/clear", raw="{tier: ram"), "not valid JSON")


def test_clear_with_a_body_that_is_not_an_object_is_refused(server):
    assert_400(post(server, "/recall/clear", ["ram"]), "JSON object")


def test_clear_with_an_unknown_field_is_refused(server):
    assert_400(post(server, "/recall/clear", {"tiers": "ram"}), "unknown field 'tiers'")


def test_clear_with_a_malformed_namespace_is_refused(server):
    assert_400(post(server, "/recall/clear", {"namespace": "../etc"}), "namespace")
    assert_400(post(server, "/recall/clear", {"namespace": 7}), "namespace")


def test_a_negative_cap_is_refused_and_nothing_changes(server):
    before = get(server, "/recall/settings").json()
    assert_400(post(server, "/recall/settings", {"ram_bytes": -1}), "ram_bytes")
    assert_400(post(server, "/recall/settings", {"vram_entries": -3}), "vram_entries")
    assert get(server, "/recall/settings").json() == before


def test_settings_that_need_a_restart_or_do_not_exist_are_refused(server):
    assert_400(post(server, "/recall/settings", {"disk_dir": "/tmp/elsewhere"}), "unknown setting 'disk_dir'")
    assert_400(post(server, "/recall/settings", {"ram_gigabytes": 4}), "unknown setting")


def test_settings_with_a_malformed_or_empty_body_are_refused(server):
    assert_400(post(server, "/recall/settings", raw="ram_bytes=4GB"), "not valid JSON")
    assert_400(post(server, "/recall/settings", raw=""), "empty")
    assert_400(post(server, "/recall/settings", {}), "no settings")


def test_a_valid_setting_is_applied_and_read_back(server):
    original = get(server, "/recall/settings").json()
    try:
        answer = post(server, "/recall/settings", {"ram_bytes": "3GB", "ttl_minutes": 12})
        assert answer.status_code == 200, answer.text
        assert answer.json()["ram_bytes"] == 3 * GB
        assert get(server, "/recall/settings").json()["ttl_minutes"] == 12
    finally:
        post(server, "/recall/settings", {"ram_bytes": original["ram_bytes"], "ttl_minutes": original["ttl_minutes"]})


def test_session_needs_a_well_formed_client_id(server):
    assert_400(post(server, "/recall/session", {"client_id": "../../x"}), "client_id")
    assert_400(post(server, "/recall/session", {}), "client_id")
    ok = post(server, "/recall/session", {"client_id": uuid.uuid4().hex})
    assert ok.status_code == 200, ok.text


# -- single user: real entries -----------------------------------------------------------------
def test_a_run_shows_in_the_stats_and_clearing_empties_them(server, models):
    image = write_input_image(server.input_dir, "routes_clear.png", 32, 32, seed=11)
    result = ComfyClient(server.url).run_prompt(encode_prompt(image, models["sd15_vae"].name), timeout_s=240)
    assert result.ok, result.errors
    assert get(server, "/recall/stats").json()["totals"]["entries"] >= 1
    cleared = post(server, "/recall/clear", {"tier": "ram"})
    assert cleared.status_code == 200 and cleared.json()["cleared"] >= 1
    assert all(c["entries"] == 0 for c in get(server, "/recall/stats").json()["tiers"]["ram"].values())
    post(server, "/recall/clear", {})
    assert get(server, "/recall/stats").json()["totals"]["entries"] == 0


def test_no_answer_contains_a_path_or_a_cache_key(server, models):
    image = write_input_image(server.input_dir, "routes_leak.png", 32, 32, seed=12)
    result = ComfyClient(server.url).run_prompt(encode_prompt(image, models["sd15_vae"].name), timeout_s=240)
    assert result.ok, result.errors
    keys = [e["key"] for e in result.events("recall.node") if e.get("key")]
    assert keys, "the Recall node reported no key"
    answers = [
        get(server, "/recall/stats"), get(server, "/recall/settings"),
        post(server, "/recall/clear", {"tier": "floppy"}), post(server, "/recall/clear", raw="{"),
        post(server, "/recall/settings", {"ram_bytes": -1}), post(server, "/recall/settings", {"disk_dir": "/x"}),
        post(server, "/recall/session", {"client_id": "a/b"}),
    ]
    for answer in answers:
        text = answer.text
        assert str(server.base_dir) not in text, text
        assert not PATH_LIKE.search(text), text
        assert ".safetensors" not in text, text
        for key in keys:
            assert key not in text, text


# -- multi-user ---------------------------------------------------------------------------------
def _seed_disk_cache(cache_dir, namespaces: dict) -> None:
    """Entries straight into the disk tier's folder, as a previous server run would leave them."""
    import torch
    from recall_pack.cache.disk import DiskTier
    from recall_pack.cache.tier import EntryMeta
    tier = DiskTier("disk", cache_dir, max_bytes=GB)
    for namespace, count in namespaces.items():
        for i in range(count):
            meta = EntryMeta(compute_seconds=1.0, created=time.time(), label=f"seed {i}")
            assert tier.put(namespace, f"seed-{namespace}-{i}", torch.full((1, 4, 8, 8), float(i)), meta=meta)


@pytest.fixture(scope="module")
def multi(comfyui, tmp_path_factory):
    srv = start_server(comfyui.path, comfyui.python, tmp_path_factory.mktemp("routes-multi"), {},
                       extra_args=["--multi-user"])
    try:
        users = create_users(srv.url, ("alice", "bob"))
        srv.stop()
        _seed_disk_cache(srv.user_dir / "recall" / "cache",
                         {"shared": 1, f"user:{users['alice']}": 2, f"user:{users['bob']}": 3})
        srv.start()
        yield srv, users
    finally:
        srv.stop()


def as_user(user):
    return {"comfy-user": user}


def namespaces_seen(answer: dict) -> set:
    return {ns for per_ns in answer["tiers"].values() for ns in per_ns} | set(answer["namespaces"])


def test_multi_user_requests_without_a_known_user_are_refused(multi):
    srv, _ = multi
    assert get(srv, "/recall/stats").status_code == 403
    assert get(srv, "/recall/stats", as_user("mallory")).status_code == 403
    assert post(srv, "/recall/clear", {}, headers=as_user("mallory")).status_code == 403


def test_a_user_sees_their_namespace_and_the_shared_one_only(multi):
    srv, users = multi
    answer = get(srv, "/recall/stats", as_user(users["alice"])).json()
    assert namespaces_seen(answer) <= {"shared", f"user:{users['alice']}"}
    assert answer["tiers"]["disk"][f"user:{users['alice']}"]["entries"] == 2
    assert answer["totals"]["entries"] == 3  # alice's 2 + 1 shared; bob's 3 are not counted
    assert answer["scope"]["clearable"] == [f"user:{users['alice']}"]


def test_a_user_cannot_clear_another_users_namespace_or_the_shared_one(multi):
    srv, users = multi
    for namespace in (f"user:{users['bob']}", "shared"):
        answer = post(srv, "/recall/clear", {"namespace": namespace}, headers=as_user(users["alice"]))
        assert answer.status_code == 403, answer.text
        assert "not yours" in answer.json()["error"]
    bob = get(srv, "/recall/stats", as_user(users["bob"])).json()
    assert bob["tiers"]["disk"][f"user:{users['bob']}"]["entries"] == 3


def test_clear_all_by_a_user_clears_only_their_own_entries(multi):
    srv, users = multi
    answer = post(srv, "/recall/clear", {}, headers=as_user(users["bob"]))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"cleared": 3, "tier": None, "namespace": f"user:{users['bob']}"}
    alice = get(srv, "/recall/stats", as_user(users["alice"])).json()
    assert alice["tiers"]["disk"][f"user:{users['alice']}"]["entries"] == 2
    assert alice["tiers"]["disk"]["shared"]["entries"] == 1


def test_a_client_id_stays_with_the_user_who_registered_it(multi):
    srv, users = multi
    client_id = uuid.uuid4().hex
    first = post(srv, "/recall/session", {"client_id": client_id}, headers=as_user(users["alice"]))
    assert first.status_code == 200, first.text
    assert first.json()["namespace"] == f"user:{users['alice']}"
    assert post(srv, "/recall/session", {"client_id": client_id}, headers=as_user(users["alice"])).status_code == 200
    taken = post(srv, "/recall/session", {"client_id": client_id}, headers=as_user(users["bob"]))
    assert taken.status_code == 409, taken.text


# -- hostile bodies: a table over every route and field; never a 500, never broken JSON ------------
def strict_json(response):
    """The answer parsed as a browser parses it: NaN and Infinity are not JSON."""
    def refuse(name):
        raise AssertionError(f"{name} in an answer: {response.text[:200]}")
    return json.loads(response.text, parse_constant=refuse)


NESTED = "[" * 5000 + "]" * 5000
HOSTILE_VALUES = {
    "nested": "[" * 900 + "]" * 900, "deeper": NESTED, "1e309": "1e309", "-1e309": "-1e309",
    "Infinity": "Infinity", "NaN": "NaN", "400 digits": "1" * 400, "5000 digits": "1" * 5000,
    "400 digit GB": json.dumps("9" * 400 + "GB"), "newline": json.dumps("abc\n"), "nul": json.dumps("a\u0000b"),
    "60 KB string": json.dumps("x" * 60_000), "object": '{"a": {"b": [1, 2]}}', "negative": "-1",
    "true": "true", "null": "null",
}
FIELDS = [("/recall/clear", "tier"), ("/recall/clear", "namespace"), ("/recall/session", "client_id")] + [
    ("/recall/settings", key) for key in ("enabled", "vram_entries", "vram_bytes", "ram_bytes", "disk_bytes",
                                          "ttl_minutes", "text_ttl_minutes", "disk_ttl_hours", "preferred_images")]


@pytest.fixture(scope="module")
def settings_before(server):
    before = get(server, "/recall/settings").json()
    yield before
    post(server, "/recall/settings", before)


@pytest.mark.parametrize("route,field", FIELDS, ids=lambda v: str(v))
def test_no_field_value_breaks_a_route_or_the_settings(server, settings_before, route, field):
    for prefix in ("", "/api"):
        for what, value in HOSTILE_VALUES.items():
            raw = '{"%s": %s}' % (field, value)
            answer = post(server, prefix + route, raw=raw)
            assert answer.status_code in (200, 400, 413), (what, answer.status_code, answer.text[:300])
            body = strict_json(answer)
            if answer.status_code != 200:
                assert body["error"].startswith("[Recall]") and len(answer.text) < 2000, (what, answer.text[:300])
            settings = get(server, "/recall/settings")
            assert settings.status_code == 200
            strict_json(settings)
    post(server, "/recall/settings", settings_before)


@pytest.mark.parametrize("route", ["/recall/clear", "/recall/settings", "/recall/session"])
@pytest.mark.parametrize("raw", [NESTED, "{" * 3000, '{"a":' * 3000, "Infinity", "[NaN]", "\x00"])
def test_a_malformed_body_is_a_400(server, route, raw):
    assert_400(post(server, route, raw=raw))


@pytest.mark.parametrize("value", ["abc\n", "abc\r\n", "a b", "x" * 129])
def test_a_client_id_is_matched_whole(server, value):
    assert_400(post(server, "/recall/session", {"client_id": value}), "client_id")


def test_a_namespace_with_a_trailing_newline_is_refused(server):
    assert_400(post(server, "/recall/clear", {"namespace": "shared\n"}), "namespace")


def _raw_post(srv, path, head_extra: str, parts: list[bytes], wait_between_s: float = 0.5) -> tuple[int, bytes]:
    """POST with a raw socket, the body in separate TCP segments; (status, what came back between)."""
    import socket
    host, port = srv.url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{head_extra}\r\n"
        sock.sendall(head.encode() + parts[0])
        early = b""
        for part in parts[1:]:
            # the server must wait for the rest of the body: nothing may come back before it is sent
            sock.settimeout(wait_between_s)
            try:
                early += sock.recv(65536)
            except socket.timeout:
                pass
            sock.settimeout(30)
            sock.sendall(part)
        answer = early
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        return int(answer.split(b" ", 2)[1]), early
    finally:
        sock.close()


def test_a_body_split_over_two_segments_is_read_whole(server, settings_before):
    body = json.dumps({"ttl_minutes": 17}).encode()
    status, early = _raw_post(server, "/recall/settings", f"Content-Length: {len(body)}\r\nConnection: close\r\n",
                              [body[:7], body[7:]])
    assert early == b"" and status == 200
    assert get(server, "/recall/settings").json()["ttl_minutes"] == 17
    post(server, "/recall/settings", settings_before)


def test_a_chunked_body_split_over_segments_is_read_whole(server):
    body = json.dumps({"client_id": uuid.uuid4().hex}).encode()
    chunk = lambda b: f"{len(b):x}\r\n".encode() + b + b"\r\n"
    status, early = _raw_post(server, "/recall/session", "Transfer-Encoding: chunked\r\nConnection: close\r\n",
                              [chunk(body[:5]), chunk(body[5:]) + b"0\r\n\r\n"])
    assert early == b"" and status == 200


@pytest.mark.parametrize("how", ["content-length", "chunked", "declared small"])
def test_a_body_over_the_limit_is_413_however_it_arrives(server, how):
    big = json.dumps({"tier": "x" * (64 * 1024)}).encode()
    if how == "content-length":
        status, _ = _raw_post(server, "/recall/clear", f"Content-Length: {len(big)}\r\nConnection: close\r\n",
                              [big[:1000], big[1000:]], wait_between_s=0.05)
    elif how == "chunked":
        chunk = lambda b: f"{len(b):x}\r\n".encode() + b + b"\r\n"
        status, _ = _raw_post(server, "/recall/clear", "Transfer-Encoding: chunked\r\nConnection: close\r\n",
                              [chunk(big[:1000]), chunk(big[1000:]) + b"0\r\n\r\n"], wait_between_s=0.05)
    else:
        status = requests.post(server.url + "/recall/clear", data=big, timeout=30).status_code
    assert status == 413


# -- preferred images: only regular files inside the input folder ---------------------------------------
def test_preferred_images_outside_the_input_folder_or_not_files_are_refused_by_name(server, settings_before):
    import os
    input_dir = server.input_dir
    write_input_image(input_dir, "preferred_ok.png", 16, 16, seed=1)
    fifo = input_dir / "preferred_fifo.png"
    if not fifo.exists():
        os.mkfifo(fifo)
    link = input_dir / "preferred_link.png"
    if not link.is_symlink():
        link.symlink_to("/etc/hostname")
    (input_dir / "preferred_folder.png").mkdir(exist_ok=True)
    for name in ["../../etc/passwd", "/etc/passwd", "a\u0000b.png", "preferred_fifo.png", "preferred_link.png",
                 "preferred_folder.png", "missing.png", "preferred_ok.png [output]"]:
        message = assert_400(post(server, "/recall/settings", {"preferred_images": ["preferred_ok.png", name]}),
                             "preferred_images")
        # the entry is named; path-like names show as <path> (answers never carry paths)
        assert name[:20] in message or repr(name)[1:-1][:20] in message or "<path>" in message, (name, message)
        assert get(server, "/recall/settings").json()["preferred_images"] == settings_before["preferred_images"]
    ok = post(server, "/recall/settings", {"preferred_images": ["preferred_ok.png"]})
    assert ok.status_code == 200 and ok.json()["preferred_images"] == ["preferred_ok.png"]
    post(server, "/recall/settings", settings_before)
