"""A GGUF export handed to LM Studio (its models folder under a temporary HOME) and to Ollama (a fake `ollama`
program on PATH that records how it was called), only when asked, through the CLI the UI's buttons share.
The export rows are written here directly: what is handed over is the file, whatever model it holds."""

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from support import cli, cli_json

FAKE_OLLAMA = """#!{python}
import json, os, sys
record = {{"args": sys.argv[1:], "cwd": os.getcwd(), "host": os.environ.get("OLLAMA_HOST"),
          "modelfile": open("Modelfile").read() if os.path.exists("Modelfile") else None}}
with open({log!r}, "a") as f:
    f.write(json.dumps(record) + "\\n")
if os.environ.get("FAKE_OLLAMA_FAIL"):
    print("Error: could not connect to ollama app, is it running?", file=sys.stderr)
    sys.exit(1)
print("success")
"""


def add_export(home: Path, fmt: str = "gguf-q8_0", state: str = "READY") -> dict:
    """An export row and its folder, as export_job leaves them."""
    from easytune.settings import load_settings
    from easytune.store import open_db

    settings = load_settings(home=home, language="en")
    folder = settings.folder("exports") / "job-1" / fmt
    folder.mkdir(parents=True)
    name = "adapter-f32.gguf" if fmt == "gguf-lora" else f"model-{fmt.split('-')[1]}.gguf"
    (folder / name).write_bytes(b"GGUF" + os.urandom(4096))
    (folder / "Modelfile").write_text(f"FROM ./{name}\n")
    row = {"id": f"exp-{fmt}", "job_id": "job-1", "format": fmt, "path": str(folder), "state": state,
           "size_bytes": 4100, "verified": 1, "tokens_per_s": 10.0, "safety_confirmed": 0, "error": None,
           "created_at": time.time(), "finished_at": time.time()}
    open_db(settings.db_path)["exports"].insert(row)
    return {**row, "file": folder / name}


def environment(tmp_path: Path, with_ollama: bool = False, **extra) -> dict:
    """A HOME of its own and a PATH holding only Python's folder (and the fake ollama when asked)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if with_ollama:
        program = bin_dir / "ollama"
        program.write_text(FAKE_OLLAMA.format(python=sys.executable, log=str(tmp_path / "ollama.log")))
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return {"HOME": str(tmp_path / "user"), "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}", **extra}


def test_lmstudio_gets_a_hard_link_in_its_models_folder(tmp_path):
    home = tmp_path / "home"
    export = add_export(home)
    models = tmp_path / "user" / ".lmstudio" / "models"
    models.mkdir(parents=True)
    env = environment(tmp_path)
    done = cli_json("exports", "add-to", export["id"], "--app", "lmstudio", home=home, env=env)
    target = models / "easytune" / "easytune-job-1-gguf-q8_0" / "model-q8_0.gguf"
    assert done == {"app": "lmstudio", "path": str(target), "linked": True, "already": False}
    assert os.path.samefile(target, export["file"]), "a link on the same disk: no second copy"
    assert not list(target.parent.glob(".*")), "no partial file left"
    again = cli("exports", "add-to", export["id"], "--app", "lmstudio", home=home, env=env)
    assert "Already in LM Studio's models folder" in again.stdout
    named = cli_json("exports", "add-to", export["id"], "--app", "lmstudio", "--name", "my-model", home=home, env=env)
    assert named["path"] == str(models / "easytune" / "my-model" / "model-q8_0.gguf")


def test_lmstudio_on_another_disk_gets_a_checked_copy(tmp_path, monkeypatch):
    from easytune.export.apps import add_to_lmstudio
    from easytune.settings import load_settings

    home = tmp_path / "home"
    export = add_export(home)
    (tmp_path / "user" / ".cache" / "lm-studio" / "models").mkdir(parents=True)  # LM Studio's older folder
    monkeypatch.setenv("HOME", str(tmp_path / "user"))

    def cross_device(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    done = add_to_lmstudio(load_settings(home=home, language="en"), export["id"])
    assert not done["linked"] and Path(done["path"]).read_bytes() == export["file"].read_bytes()
    assert ".cache/lm-studio/models/easytune/" in done["path"]


def test_lmstudio_absent_is_a_clear_message_in_both_languages(tmp_path):
    home = tmp_path / "home"
    export = add_export(home)
    env = environment(tmp_path)
    for lang, words in (("en", "LM Studio's models folder was not found"), ("zh", "未找到 LM Studio 的模型文件夹")):
        done = cli("exports", "add-to", export["id"], "--app", "lmstudio", home=home, env=env, lang=lang, check=False)
        assert done.returncode == 2 and words in done.stderr and ".lmstudio" in done.stderr, done.stderr
    assert not (tmp_path / "user").exists(), "nothing created for an app that is not there"


def test_ollama_create_runs_in_the_export_folder_on_loopback_only(tmp_path):
    home = tmp_path / "home"
    export = add_export(home)
    # A server elsewhere in the user's environment is not where the file goes.
    env = environment(tmp_path, with_ollama=True, OLLAMA_HOST="http://models.example.com:11434")
    done = cli_json("exports", "add-to", export["id"], "--app", "ollama", home=home, env=env)
    assert done["name"] == "easytune-job-1-gguf-q8_0" and done["run"] == "ollama run easytune-job-1-gguf-q8_0"
    [call] = [json.loads(line) for line in (tmp_path / "ollama.log").read_text().splitlines()]
    assert call["args"] == ["create", "easytune-job-1-gguf-q8_0", "-f", "Modelfile"]
    assert Path(call["cwd"]) == Path(export["path"]) and call["modelfile"] == "FROM ./model-q8_0.gguf\n"
    assert call["host"] == "127.0.0.1:11434"
    local = environment(tmp_path, with_ollama=True, OLLAMA_HOST="127.0.0.1:11500")  # the user's own local port
    cli_json("exports", "add-to", export["id"], "--app", "ollama", "--name", "faq", home=home, env=local)
    last = json.loads((tmp_path / "ollama.log").read_text().splitlines()[-1])
    assert last["host"] == "127.0.0.1:11500" and last["args"][1] == "faq"


def test_ollama_failing_or_absent_is_a_clear_message(tmp_path):
    home = tmp_path / "home"
    export = add_export(home)
    failing = environment(tmp_path, with_ollama=True, FAKE_OLLAMA_FAIL="1")
    done = cli("exports", "add-to", export["id"], "--app", "ollama", home=home, env=failing, check=False)
    assert done.returncode == 2 and "could not connect to ollama app" in done.stderr
    assert "Is the Ollama app" in done.stderr
    (tmp_path / "bin" / "ollama").unlink()
    for lang, words in (("en", "`ollama` program is not on this machine's PATH"), ("zh", "找不到 `ollama` 程序")):
        done = cli("exports", "add-to", export["id"], "--app", "ollama", home=home, env=environment(tmp_path),
                   lang=lang, check=False)
        assert done.returncode == 2 and words in done.stderr, done.stderr


def test_only_a_ready_gguf_model_export_can_be_added(tmp_path):
    home = tmp_path / "home"
    lora, failed = add_export(home, "gguf-lora"), add_export(home, "gguf-f16", state="FAILED")
    (tmp_path / "user" / ".lmstudio" / "models").mkdir(parents=True)
    env = environment(tmp_path)
    refused = cli("exports", "add-to", lora["id"], "--app", "lmstudio", home=home, env=env, check=False)
    assert refused.returncode == 2 and "Only a GGUF model export" in refused.stderr
    refused = cli("exports", "add-to", failed["id"], "--app", "lmstudio", home=home, env=env, check=False)
    assert refused.returncode == 2 and "is not ready" in refused.stderr
    missing = cli("exports", "add-to", "nope", "--app", "ollama", home=home, env=env, check=False)
    assert missing.returncode == 2 and "No export with id nope" in missing.stderr
    bare = cli("exports", "add-to", lora["id"], home=home, env=env, check=False)
    assert bare.returncode == 2 and "--app lmstudio" in bare.stderr


@pytest.mark.parametrize("value, expected", [
    ("", "127.0.0.1:11434"), ("0.0.0.0:11434", "127.0.0.1:11434"), ("http://10.0.0.5:11434", "127.0.0.1:11434"),
    ("localhost:11434", "localhost:11434"), ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("[::1]:11434", "[::1]:11434"), ("ollama.internal", "127.0.0.1:11434")])
def test_ollama_host_stays_on_this_machine(monkeypatch, value, expected):
    from easytune.export.apps import loopback_ollama_host

    monkeypatch.setenv("OLLAMA_HOST", value)
    assert loopback_ollama_host() == expected
