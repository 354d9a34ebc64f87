"""Nothing leaves this machine unless the user asked for a download: the commands run under the network
guard (tests/netguard), which records every connection beyond this machine and every name lookup."""

import ast
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from support import ROOT, cli, cli_json, free_port, wait_http

GUARD = ROOT / "tests" / "netguard"
QUESTION = json.loads((ROOT / "assets" / "demo" / "shop_faq_zh.jsonl").read_text("utf-8").splitlines()[0])[
    "messages"][0]["content"]


def guarded_env(log: Path, user_home: Path) -> dict:
    """The guard loaded into every Python process started with this environment (PYTHONPATH), findings
    going to `log`; HOME is a fresh user's, without the consent files earlier tools may have left in ~."""
    user_home.mkdir(parents=True, exist_ok=True)
    return {"PYTHONPATH": os.pathsep.join([str(GUARD), os.environ.get("PYTHONPATH", "")]),
            "EASYTUNE_GUARD_LOG": str(log), "HOME": str(user_home)}


def network_findings(log: Path) -> list[str]:
    """Connections and name lookups the guard recorded (imports of the training stack are expected here)."""
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return [line for line in lines if not line.startswith("import ")]


def test_the_guard_records_name_lookups_with_the_program_that_made_them(tmp_path):
    script = tmp_path / "lookups.py"
    script.write_text("import socket\n"
                      "for lookup in (socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex):\n"
                      "    for host in ('example.com', 'localhost', '127.0.0.1', '192.0.2.7'):\n"
                      "        try:\n"
                      "            lookup(host, 80) if lookup is socket.getaddrinfo else lookup(host)\n"
                      "        except OSError:\n"
                      "            pass\n", encoding="utf-8")
    log = tmp_path / "guard.log"
    env = dict(os.environ, **guarded_env(log, tmp_path / "user"))
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=60)
    # a name is looked up (and refused); this machine's names and numeric addresses need no name server
    assert network_findings(log) == ["resolve example.com by lookups.py"] * 3


def openvino_stack_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module)
    return [name for name in names if name.split(".")[0] in {"openvino", "openvino_tokenizers", "openvino_telemetry",
                                                             "nncf"} or (name + ".").startswith("optimum.intel.")]


def test_every_import_of_the_openvino_stack_goes_through_the_module_that_declines_its_usage_reports():
    owner = ROOT / "easytune" / "openvino_stack.py"
    elsewhere = {str(path.relative_to(ROOT)): openvino_stack_imports(path)
                 for path in sorted((ROOT / "easytune").rglob("*.py")) if path != owner}
    assert {path: names for path, names in elsewhere.items() if names} == {}
    assert openvino_stack_imports(owner)  # the owner itself is seen, so the check above can find imports


@pytest.mark.slow
def test_exporting_chatting_with_serving_and_evaluating_an_openvino_model_stay_on_this_machine(demo_job, tmp_path):
    home, job = demo_job
    user_home = tmp_path / "user"
    logs = {command: tmp_path / f"{command}.log" for command in ("export", "chat", "serve", "eval")}
    folder = tmp_path / "openvino"
    exported = cli_json("export", job["id"], "--format", "openvino-int8", "--out", str(folder), home=home,
                        env=guarded_env(logs["export"], user_home))
    assert exported["state"] == "READY", exported

    answer = cli_json("chat", str(folder), "-q", QUESTION, "--max-new-tokens", "16", home=home,
                      env=guarded_env(logs["chat"], user_home))
    assert answer["answer"].strip(), answer

    port = free_port()
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en", **guarded_env(logs["serve"], user_home))
    server = subprocess.Popen([sys.executable, "-m", "easytune.cli", "serve", str(folder), "--port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=180, proc=server)
        body = json.dumps({"max_tokens": 16, "messages": [{"role": "user", "content": QUESTION}]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            assert json.loads(response.read())["choices"][0]["message"]["content"].strip()
    finally:
        server.terminate()
        server.wait(timeout=30)

    # eval takes a job, not an export: the job the export came from
    evaluated = cli("eval", job["id"], "--limit", "1", "--json", home=home, env=guarded_env(logs["eval"], user_home))
    assert json.loads(evaluated.stdout)["job_id"] == job["id"]

    assert {command: network_findings(log) for command, log in logs.items()} == {command: [] for command in logs}
    assert not (user_home / "intel").exists()  # OpenVINO's usage-report consent and client id files
