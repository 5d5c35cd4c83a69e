"""--multi-user on a live ComfyUI: one user never reads another's per-user entries.

Two users (alice, bob) over real HTTP and websocket. The per-user (L2) cache is exercised
with Recall Cache on a cheap upstream (EmptyLatentImage), with ComfyUI's own cache off
(--cache-none) so that every prompt reaches Recall. What a user relies on: their repeat
hits; the other user's identical prompt misses, however it is queued (with the victim's
client id, without a session, after a flood of session registrations).
"""
import uuid

import pytest
import requests

from recall_pack.bench.harness.comfy_client import ComfyClient, create_users
from recall_pack.bench.harness.comfy_server import start_server


@pytest.fixture(scope="module")
def multi(comfyui, tmp_path_factory):
    srv = start_server(comfyui.path, comfyui.python, tmp_path_factory.mktemp("multi-user"), {},
                       extra_args=["--multi-user", "--cache-none"])
    try:
        users = create_users(srv.url, ("alice", "bob"))
        yield srv, users
    finally:
        srv.stop()


def graph(width: int) -> dict:
    """A prompt whose Recall Cache entry is unique to this test (its own latent size)."""
    return {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": 64, "batch_size": 1}},
        "2": {"class_type": "RecallCache", "inputs": {"value": ["1", 0], "allow_nondeterministic": False}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }


def status(srv, prompt, user=None, client_id=None) -> str:
    headers = {"comfy-user": user} if user else {}
    result = ComfyClient(srv.url).run_prompt(prompt, timeout_s=120, headers=headers, client_id=client_id)
    assert result.ok, result.errors
    events = result.node_events("2")
    assert len(events) == 1, result.recall_events
    return events[0]["status"]


def session(srv, user, client_id):
    return requests.post(srv.url + "/recall/session", json={"client_id": client_id},
                         headers={"comfy-user": user}, timeout=30)


def test_a_prompt_queued_with_another_users_client_id_reads_only_its_own_user(multi):
    srv, users = multi
    bob_tab = uuid.uuid4().hex
    assert session(srv, users["bob"], bob_tab).status_code == 200
    prompt = graph(72)
    assert status(srv, prompt, users["bob"], bob_tab) == "miss"
    assert status(srv, prompt, users["bob"], bob_tab) == "hit"    # bob's repeat is served
    assert status(srv, prompt, users["alice"], bob_tab) == "miss"  # alice with bob's id: not bob's entry
    assert status(srv, prompt, users["alice"], bob_tab) == "hit"   # ... but her own


def test_api_clients_without_a_session_each_get_their_own_namespace(multi):
    srv, users = multi
    prompt = graph(80)
    assert status(srv, prompt, users["bob"]) == "miss"
    assert status(srv, prompt, users["alice"]) == "miss"
    assert status(srv, prompt, users["alice"]) == "hit"
    assert status(srv, prompt, users["bob"]) == "hit"


def test_unknown_users_reach_no_one_and_no_one_reaches_them(multi):
    srv, users = multi
    prompt = graph(88)
    assert status(srv, prompt, users["alice"]) == "miss"
    assert status(srv, prompt, "mallory") == "miss"   # not a user: a namespace of its own prompt
    assert status(srv, prompt, None) == "miss"        # no comfy-user header at all
    assert status(srv, prompt, None) == "miss"


def test_a_prompt_id_of_another_user_is_not_reused(multi):
    srv, users = multi
    prompt = graph(96)
    prompt_id = str(uuid.uuid4())
    first = requests.post(srv.url + "/prompt", json={"prompt": prompt, "prompt_id": prompt_id},
                          headers={"comfy-user": users["bob"]}, timeout=30)
    assert first.status_code == 200 and first.json()["prompt_id"] == prompt_id, first.text
    second = requests.post(srv.url + "/prompt", json={"prompt": prompt, "prompt_id": prompt_id},
                           headers={"comfy-user": users["alice"]}, timeout=30)
    assert second.status_code == 200, second.text
    assert second.json()["prompt_id"] != prompt_id


def test_a_flood_of_sessions_evicts_nobody_elses_binding(multi):
    srv, users = multi
    bob_tab = uuid.uuid4().hex
    assert session(srv, users["bob"], bob_tab).status_code == 200
    with requests.Session() as http:
        for _ in range(4100):  # more than the whole table held before
            answer = http.post(srv.url + "/recall/session", json={"client_id": uuid.uuid4().hex},
                               headers={"comfy-user": users["alice"]}, timeout=30)
            assert answer.status_code == 200, answer.text
    assert session(srv, users["alice"], bob_tab).status_code == 409   # still bob's
    assert session(srv, users["bob"], bob_tab).status_code == 200
    prompt = graph(104)
    assert status(srv, prompt, users["bob"], bob_tab) == "miss"
    assert status(srv, prompt, users["alice"], bob_tab) == "miss"
