"""`easytune serve` under load: a crowd of clients, clients that stall, and answers generated together."""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from support import ROOT, free_port, wait_http

pytestmark = pytest.mark.slow
QUESTIONS = ["怎么退货？", "What can you do?", "Hello!", "运费怎么算？多久能到？", "Tell me about the moon.",
             "How do I change my delivery address after I have paid for the order?"]


def post(port: int, question: str, max_tokens: int = 32, timeout: float = 120) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of one greedy chat completion; a reset raises."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/v1/chat/completions", json.dumps({
            "messages": [{"role": "user", "content": question}], "temperature": 0, "max_tokens": max_tokens}),
            {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def health(port: int) -> dict:
    return json.loads(wait_http(f"http://127.0.0.1:{port}/health", timeout=10))


def wait_for(port: int, **expected) -> None:
    deadline = time.monotonic() + 30
    while any(health(port)[key] != value for key, value in expected.items()):
        assert time.monotonic() < deadline, (expected, health(port))
        time.sleep(0.05)


@pytest.fixture(scope="module")
def tiny_api(tmp_path_factory):
    """`easytune serve easytune-tiny --queue 16` as a user starts it: its port."""
    port = free_port()
    env = dict(os.environ, EASYTUNE_HOME=str(tmp_path_factory.mktemp("serve-home")), EASYTUNE_LANG="en")
    proc = subprocess.Popen([sys.executable, "-m", "easytune.cli", "serve", "easytune-tiny", "--port", str(port),
                             "--queue", "16"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=180, proc=proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def held_server(tmp_path):
    """An in-process server on the tiny model, and a way to hold its generation back: while the caller holds
    the model (chat's lock), the request being generated waits and the others queue up behind it."""
    from easytune import chat
    from easytune.serve import make_server
    from easytune.settings import load_settings

    servers = []

    def start(queue: int):
        server = make_server(load_settings(home=tmp_path / "home", language="en"), "easytune-tiny", "127.0.0.1", 0,
                             queue=queue)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start, chat._lock
    for server in servers:
        server.shutdown()
        server.server_close()


def test_fifty_clients_at_once_are_answered_or_told_when_to_retry(tiny_api):
    start = threading.Barrier(50)

    def client(index: int):
        start.wait()
        return post(tiny_api, QUESTIONS[index % len(QUESTIONS)])

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(client, range(50)))  # a reset connection would raise here
    statuses = [status for status, _, _ in replies]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 16, statuses
    for status, headers, body in replies:
        if status == 503:
            assert int(headers["Retry-After"]) >= 1 and body["error"]["code"] == "serve.error.busy", body
        else:
            assert body["choices"][0]["message"]["content"], body


def test_clients_that_stall_are_dropped_and_hold_up_nobody(tiny_api):
    from easytune.serve import REQUEST_SECONDS

    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    half_body = socket.create_connection(("127.0.0.1", tiny_api))
    half_body.sendall(head + body[:len(body) // 2])
    dribble = socket.create_connection(("127.0.0.1", tiny_api))  # the head, one byte a second
    stalled_at = time.monotonic()

    def send_slowly():
        try:
            for byte in head:
                dribble.send(bytes([byte]))
                time.sleep(1)
        except OSError:
            pass  # dropped, as it should be

    threading.Thread(target=send_slowly, daemon=True).start()
    assert post(tiny_api, QUESTIONS[0], timeout=60)[0] == 200, "others are answered meanwhile"
    half_body.settimeout(REQUEST_SECONDS + 20)  # room for a busy machine; without a deadline it would never end
    reply = read_until_closed(half_body).decode()
    assert reply.startswith("HTTP/1.1 408"), reply
    assert json.loads(reply.split("\r\n\r\n", 1)[1])["error"]["code"] == "serve.error.too_slow"
    dribble.settimeout(20)
    try:
        assert dribble.recv(4096) == b"", "the connection is closed"
    except ConnectionResetError:
        pass  # closed too, seen after the next byte it sent
    assert REQUEST_SECONDS - 1 < time.monotonic() - stalled_at < REQUEST_SECONDS + 20
    half_body.close()
    dribble.close()


def test_requests_that_wait_together_are_generated_together_with_the_same_greedy_answers(held_server):
    start, model = held_server
    port = start(queue=16)
    questions = [(q, 8 + 6 * i) for i, q in enumerate(QUESTIONS[:4])]  # prompts and answer limits of several lengths
    alone = [post(port, q, max_tokens) for q, max_tokens in questions]
    assert health(port)["largest_batch"] == 1
    with ThreadPoolExecutor(len(questions) + 1) as pool:
        with model:
            first = pool.submit(post, port, "Hello!")
            wait_for(port, generating=1)
            together = [pool.submit(post, port, q, max_tokens) for q, max_tokens in questions]
            wait_for(port, waiting=len(questions))
        assert first.result()[0] == 200
        together = [future.result() for future in together]
    assert health(port)["largest_batch"] == len(questions)
    for (_, _, one), (status, _, batched) in zip(alone, together):
        assert status == 200
        assert batched["choices"][0]["message"] == one["choices"][0]["message"]
        assert batched["choices"][0]["finish_reason"] == one["choices"][0]["finish_reason"]
        assert batched["usage"] == one["usage"]
    assert {r["choices"][0]["finish_reason"] for _, _, r in alone} == {"stop", "length"}, "both ends are compared"


def test_a_full_queue_refuses_at_once_with_retry_after(held_server):
    start, model = held_server
    port = start(queue=1)
    with ThreadPoolExecutor(2) as pool:
        with model:
            generating = pool.submit(post, port, QUESTIONS[0])
            wait_for(port, generating=1)
            waiting = pool.submit(post, port, QUESTIONS[1])
            wait_for(port, waiting=1)
            asked = time.monotonic()
            status, headers, body = post(port, QUESTIONS[2])
            assert status == 503 and time.monotonic() - asked < 2
            assert int(headers["Retry-After"]) >= 1
            assert body["error"]["code"] == "serve.error.busy" and "Try again" in body["error"]["message"]
        assert generating.result()[0] == 200 and waiting.result()[0] == 200
