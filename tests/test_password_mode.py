"""With a password, a stranger at the door learns nothing of the user's data, guessing is slowed to a crawl,
and a password too short to matter is refused before anything starts."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from support import ROOT, cli, cli_json, free_port, wait_http

PASSWORD = "correct horse battery"


def fetch(url: str, form: dict | None = None, cookie: str | None = None):
    """(status, headers, body) of a GET, or of a form POST when form is given; errors are answers too."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def login(url: str, password: str):
    return fetch(f"{url}/login", {"username": "anyone", "password": password})


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app on loopback with a password, in a home that already holds a dataset: (url, dataset)."""
    home = tmp_path_factory.mktemp("password-home")
    faq = home.parent / "private-faq.jsonl"
    row = {"messages": [{"role": "user", "content": "Where is the vault?"},
                        {"role": "assistant", "content": "Behind the third painting."}]}
    faq.write_text((json.dumps(row) + "\n") * 3, encoding="utf-8")
    dataset = cli_json("data", "add", str(faq), "--name", "vault-faq", home=home)["dataset"]
    port = free_port()
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en")
    proc = subprocess.Popen([sys.executable, "-m", "easytune.cli", "--port", str(port), "--password", PASSWORD],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/", proc=proc)
        yield url, dataset
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_stranger_sees_only_the_login_page(app):
    url, dataset = app
    status, _, page = fetch(f"{url}/")
    assert status == 200 and b'type="password"' in page
    assert len(page) < 10_000, len(page)  # not the app's 1 MB description of every menu
    for secret in (dataset["id"], dataset["name"], "vault"):
        assert secret.encode() not in page, secret
    for path in ("/openapi.json", "/config", "/info", "/gradio_api/info", "/gradio_api/openapi.json",
                 "/gradio_api/runs", "/gradio_api/app_id", "/theme.css", "/gradio_api/queue/status"):
        status, _, body = fetch(f"{url}{path}")
        assert status in (401, 403), (path, status)
        assert dataset["id"].encode() not in body, path


def test_guessing_is_slowed_and_the_right_password_still_gets_in(app):
    url, dataset = app
    answers = [login(url, f"guess-{n}") for n in range(20)]
    statuses = [status for status, _, _ in answers]
    assert statuses[:5] == [400] * 5, statuses  # a few typos cost nothing
    assert statuses.count(429) >= 13, statuses  # then the door stops even checking
    status, headers, body = answers[-1]
    assert "wait" in json.loads(body)["detail"], body
    assert login(url, PASSWORD)[0] == 429, "while locked out, not even the right password is checked"

    time.sleep(int(headers["Retry-After"]) + 0.2)
    status, headers, _ = login(url, PASSWORD)
    assert status == 200
    cookie = "; ".join(set_cookie.split(";")[0] for set_cookie in headers.get_all("set-cookie"))
    status, _, page = fetch(f"{url}/", cookie=cookie)
    assert status == 200 and dataset["id"].encode() in page, "logged in, the app itself is served"
    assert fetch(f"{url}/config", cookie=cookie)[0] == 200


@pytest.mark.parametrize("password", [" ", "short", "  seven  "])
def test_a_blank_or_short_password_is_refused_before_anything_starts(tmp_path, password):
    port = free_port()
    result = cli("ui", "--port", str(port), "--password", password, home=tmp_path / "home", check=False,
                 timeout=30)
    assert result.returncode == 2, result.stderr
    assert "at least 8 characters" in result.stderr
    zh = cli("ui", "--host", "0.0.0.0", "--password", password, home=tmp_path / "home", check=False, lang="zh")
    assert zh.returncode == 2 and "至少要有 8 个字符" in zh.stderr


def test_a_locked_out_address_waits_at_most_a_quarter_of_an_hour_and_others_not_at_all():
    from easytune.ui.login_gate import LoginThrottle

    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(1000):
        throttle.failed("10.0.0.9")
    assert throttle.wait_left("10.0.0.9") == 15 * 60
    assert throttle.wait_left("10.0.0.7") == 0
    now[0] += 15 * 60
    assert throttle.wait_left("10.0.0.9") == 0
