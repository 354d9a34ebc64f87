"""A model's own Python code runs only where the user allowed it for that model. Every way in — chat,
training, the inspector — passes the same gate: refused with a clear message (never a
terminal prompt, never a traceback) unless `models add --trust-remote-code` recorded the choice."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support import ROOT, cli, cli_json, write_plan

pytestmark = pytest.mark.slow

CODE = '''
import os, pathlib
pathlib.Path(os.environ["EVIL_MARKER"]).write_text("{name} ran")
{body}
'''
CONFIG_BODY = '''
from transformers import LlamaConfig
class EvilConfig(LlamaConfig):
    model_type = "evilmodel"
'''
MODEL_BODY = '''
from transformers import LlamaForCausalLM
from .configuration_evil import EvilConfig
class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
'''


@pytest.fixture
def custom_code_model(tmp_path):
    """The built-in model's weights and tokenizer, under a config that names code shipped in the folder."""
    folder = tmp_path / "custom-code-model"
    folder.mkdir()
    tiny = ROOT / "assets" / "tiny-model"
    for item in tiny.iterdir():
        if item.is_file() and item.name != "README.md":
            (folder / item.name).write_bytes(item.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evilmodel", architectures=["EvilModel"],
                  auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                            "AutoModelForCausalLM": "modeling_evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_evil.py").write_text(CODE.format(name="configuration", body=CONFIG_BODY))
    (folder / "modeling_evil.py").write_text(CODE.format(name="modeling", body=MODEL_BODY))
    marker = tmp_path / "evil-ran"
    return folder, marker


def test_custom_code_is_refused_everywhere_unless_allowed(custom_code_model, home, tmp_path):
    folder, marker = custom_code_model
    env = {"EVIL_MARKER": str(marker)}

    chat = subprocess.run([sys.executable, "-m", "easytune.cli", "chat", str(folder), "-q", "hello"],
                          input="y\n", capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**__import__("os").environ, "EASYTUNE_HOME": str(home), "EASYTUNE_LANG": "en", **env})
    assert chat.returncode != 0 and "Traceback" not in chat.stderr and "[y/N]" not in chat.stdout + chat.stderr
    assert "needs its own Python code" in chat.stderr, chat.stderr
    info = cli("models", "info", str(folder), home=home, env=env, check=False)
    assert info.returncode != 0 and "needs its own Python code" in info.stderr

    added = cli_json("models", "add", str(folder), "--name", "custom", home=home, env=env)
    assert added["model"]["trust_remote_code"] == 0 and added["model"]["health"] == "broken"
    plan = write_plan(tmp_path / "plan.yaml", model="custom", max_steps=2)
    trained = cli("train", "--config", str(plan), home=home, env=env, check=False)
    assert trained.returncode != 0 and "Traceback" not in trained.stderr
    assert not marker.exists(), "the folder's code ran although it was never allowed"

    # allowed for this model, and recorded: the same commands now load it with its code
    cli("models", "rm", "custom", home=home)
    allowed = cli_json("models", "add", str(folder), "--name", "custom", "--trust-remote-code", home=home, env=env)
    assert allowed["model"]["trust_remote_code"] == 1
    answer = cli_json("chat", "custom", "-q", "hello", "--max-new-tokens", "4", home=home, env=env)
    assert "answer" in answer and marker.exists()
