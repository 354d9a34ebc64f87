"""`easytune serve`: the tuned model behind an OpenAI-compatible API, spoken to over plain HTTP."""

import difflib
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from support import ROOT, cli, free_port, wait_http

pytestmark = pytest.mark.slow
FAQ = [json.loads(line) for line in (ROOT / "assets" / "demo" / "shop_faq_zh.jsonl").read_text("utf-8").splitlines()]
QUESTION, EXPECTED = FAQ[0]["messages"][0]["content"], FAQ[0]["messages"][-1]["content"]
KEY = "s3cret-key"


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def request(url: str, body=None, key: str | None = KEY, raw: bytes | None = None) -> tuple[int, bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def api(demo_job):
    """`easytune serve JOB --password` as a user starts it: (base url, job id)."""
    home, job = demo_job
    port = free_port()
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en")
    proc = subprocess.Popen([sys.executable, "-m", "easytune.cli", "serve", job["id"], "--port", str(port),
                             "--password", KEY], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=180, proc=proc)
        yield f"http://127.0.0.1:{port}", job["id"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_lists_the_served_model(api):
    url, job_id = api
    status, body = request(f"{url}/v1/models")
    assert status == 200
    listing = json.loads(body)
    assert listing["object"] == "list" and [m["id"] for m in listing["data"]] == [job_id]


def test_a_plain_openai_request_gets_the_tuned_answer(api):
    url, job_id = api
    status, body = request(f"{url}/v1/chat/completions", {
        "model": job_id, "temperature": 0, "max_tokens": 128, "messages": [{"role": "user", "content": QUESTION}]})
    assert status == 200, body
    completion = json.loads(body)
    assert completion["object"] == "chat.completion" and completion["model"] == job_id
    choice = completion["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert similarity(choice["message"]["content"], EXPECTED) > 0.6, (choice, EXPECTED)
    usage = completion["usage"]
    assert usage["prompt_tokens"] > 5 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_streams_server_sent_event_chunks_ending_in_done(api):
    url, job_id = api
    body = {"temperature": 0, "max_tokens": 128, "messages": [{"role": "user", "content": QUESTION}]}
    status, plain = request(f"{url}/v1/chat/completions", body)
    status, raw = request(f"{url}/v1/chat/completions", {**body, "stream": True,
                                                         "stream_options": {"include_usage": True}})
    assert status == 200
    events = [line[len("data: "):] for line in raw.decode("utf-8").split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == job_id for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    assert len([d for d in deltas if d]) > 3, "the answer arrives in pieces"
    assert "".join(deltas) == json.loads(plain)["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] > 0


def test_a_missing_or_wrong_key_is_refused(api):
    url, _ = api
    body = {"messages": [{"role": "user", "content": QUESTION}]}
    for key in (None, "wrong"):
        status, answer = request(f"{url}/v1/chat/completions", body, key=key)
        assert status == 401 and json.loads(answer)["error"]["type"] == "authentication_error"
        assert request(f"{url}/v1/models", key=key)[0] == 401


@pytest.mark.parametrize("raw, code", [
    (b"{not json", "serve.error.bad_json"),
    (b"[1, 2]", "serve.error.not_object"),
    (b'{"model": "x"}', "serve.error.no_messages"),
    (b'{"messages": "hi"}', "serve.error.no_messages"),
    (b'{"messages": [{"role": "user", "content": ""}]}', "chat.error.empty"),
    (b'{"messages": [{"role": "robot", "content": "hi"}]}', "chat.error.bad_message"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', "serve.error.bad_field"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 99999}', "chat.error.bad_option"),
])
def test_bad_input_gets_400_with_an_openai_error_object(api, raw, code):
    url, _ = api
    status, answer = request(f"{url}/v1/chat/completions", raw=raw)
    assert status == 400, answer
    error = json.loads(answer)["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]


def test_unknown_endpoint_is_404(api):
    url, _ = api
    assert request(f"{url}/v1/completions", {"prompt": "hi"})[0] == 404


def test_a_network_bind_needs_a_password(demo_job):
    from easytune.i18n import UserError
    from easytune.serve import make_server
    from easytune.settings import load_settings

    home, job = demo_job
    settings = load_settings(home=home, language="en")
    with pytest.raises(UserError) as refused:
        make_server(settings, job["id"], "0.0.0.0", 0)
    assert refused.value.key == "ui.error.password_required"  # the app's own rule, not a second copy
    result = cli("serve", job["id"], "--host", "0.0.0.0", "--json", home=home, check=False)
    assert result.returncode == 2 and json.loads(result.stdout)["error"] == "ui.error.password_required"


def test_a_loopback_server_without_password_answers_without_a_key(demo_job):
    from easytune.serve import make_server
    from easytune.settings import load_settings

    home, job = demo_job
    server = make_server(load_settings(home=home, language="en"), job["id"], "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status, body = request(f"{server.url}/v1/chat/completions",
                               {"temperature": 0, "messages": [{"role": "user", "content": QUESTION}]}, key=None)
        assert status == 200 and similarity(json.loads(body)["choices"][0]["message"]["content"], EXPECTED) > 0.6
    finally:
        server.shutdown()
        server.server_close()
