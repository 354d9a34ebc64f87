"""A GGUF export folder is something to chat with, as step ④ offers it: `easytune chat FOLDER` and `easytune serve
FOLDER` answer like the trained job (greedy), through llama.cpp itself where llama-cpp-python is installed and
through transformers' GGUF loader where it is not (its absence is simulated), and say which engine answered;
the LoRA adapter file alone cannot answer, and says what to do instead."""

import json
import sys
import threading
import urllib.request
from dataclasses import replace

import pytest
from test_export import job_answers, private_home, questions, settings_for

from easytune.export.formats import module_usable
from support import cli, cli_json

pytestmark = pytest.mark.slow
HAS_LLAMA_CPP = module_usable("llama_cpp")
needs_llama_cpp = pytest.mark.skipif(not HAS_LLAMA_CPP,
                                     reason="llama-cpp-python is not installed (pip install llama-cpp-python)")
LLAMA_CPP_HINT = "pip install llama-cpp-python"


@pytest.fixture(scope="module")
def exported(demo_job, tmp_path_factory):
    """(home, job id, {format: export result}); Q4_K_M only where llama.cpp's quantiser is installed."""
    from easytune.export import export_job

    demo_home, job = demo_job
    home = private_home(demo_home, tmp_path_factory.mktemp("export-chat") / "home")
    formats = ("gguf-q8_0", "gguf-f16", "gguf-lora") + (("gguf-q4_k_m",) if HAS_LLAMA_CPP else ())
    return home, job["id"], {fmt: export_job(settings_for(home), job["id"], fmt) for fmt in formats}


@pytest.fixture
def no_llama_cpp(monkeypatch):
    """This process sees no llama_cpp: find_spec answers None and an import fails, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)


def greedy_answers(settings, target, asked: list[str]) -> list[str]:
    """Streamed greedy answers through the app's chat, checked to grow into the whole answer."""
    from easytune import chat

    answers = []
    for question in asked:
        stream = chat.stream_answer(settings, target, question, temperature=0, max_new_tokens=64)
        steps = list(stream)
        assert steps and all(later.startswith(earlier) for earlier, later in zip(steps, steps[1:]))
        whole = chat.answer_together([chat.prepare_answer(settings, target, question, temperature=0,
                                                          max_new_tokens=64)])[0]
        assert steps[-1] == stream.text == whole.text and stream.finish_reason == whole.finish_reason
        assert stream.engine == whole.engine == chat.resolve_target(settings, target).engine
        answers.append(stream.text)
    return answers


def test_chat_with_a_gguf_export_folder_answers_like_the_job(exported):
    from easytune.export.gguf_chat import gguf_engine

    home, job_id, results = exported
    [question] = questions(3, 1)
    answered = cli_json("chat", results["gguf-q8_0"]["path"], "-q", question, home=home)
    assert answered["answer"] == job_answers(settings_for(home), job_id, [question])[0]
    assert answered["engine"] == gguf_engine()
    human = cli("chat", results["gguf-q8_0"]["path"], "-q", question, home=home, lang="zh")
    assert human.stdout.strip() == answered["answer"] and f"由 {gguf_engine()} 回答" in human.stderr


@needs_llama_cpp
def test_f16_answers_through_llama_cpp_exactly_as_through_transformers(exported):
    from easytune import chat
    from easytune.export.gguf_chat import LLAMA_CPP, TRANSFORMERS

    home, job_id, results = exported
    settings = settings_for(home)
    target = chat.resolve_target(settings, results["gguf-f16"]["path"])
    assert target.kind == "gguf" and target.engine == LLAMA_CPP
    assert type(chat.load_target(target)[0]).__name__ == "LlamaCppChatModel"
    asked = questions(3, 3)
    through_llama_cpp = greedy_answers(settings, target, asked)
    assert through_llama_cpp == greedy_answers(settings, replace(target, engine=TRANSFORMERS), asked)
    assert through_llama_cpp == job_answers(settings, job_id, asked)
    sampled = chat.stream_answer(settings, target, asked[0], temperature=0.9, top_p=0.8, max_new_tokens=5)
    assert list(sampled) and sampled.completion_tokens <= 5  # max_new_tokens holds when sampling too
    answered = cli_json("chat", results["gguf-f16"]["path"], "-q", asked[0], "--stream", home=home)
    assert answered["engine"] == LLAMA_CPP and answered["answer"] == through_llama_cpp[0]


@needs_llama_cpp
def test_q4_k_m_answers_through_llama_cpp(exported):
    from easytune import chat
    from easytune.export.gguf_chat import LLAMA_CPP

    home, job_id, results = exported
    settings = settings_for(home)
    folder = results["gguf-q4_k_m"]["path"]
    assert chat.resolve_target(settings, folder).engine == LLAMA_CPP
    asked = questions(3, 3)
    answers, expected = greedy_answers(settings, folder, asked), job_answers(settings, job_id, asked)
    # Stated tolerance, as the export check's: 4 bits may flip a close call (on the built-in model they agree)
    assert sum(a == b for a, b in zip(answers, expected)) >= 2, (answers, expected)
    answered = cli_json("chat", folder, "-q", asked[0], "--system", "你是客服。", home=home)
    assert answered["engine"] == LLAMA_CPP and answered["answer"]


@needs_llama_cpp
def test_serve_answers_from_a_gguf_export_through_llama_cpp(exported):
    from easytune.export.gguf_chat import LLAMA_CPP
    from easytune.serve import make_server

    home, job_id, results = exported
    [question] = questions(3, 1)
    server = make_server(settings_for(home), results["gguf-f16"]["path"], "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(f"{server.url}/v1/models", timeout=60) as response:
            [card] = json.loads(response.read())["data"]
        assert card["engine"] == LLAMA_CPP and card["id"] == server.target.name
        body = {"temperature": 0, "max_tokens": 64, "messages": [{"role": "user", "content": question}]}
        request = urllib.request.Request(f"{server.url}/v1/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            completion = json.loads(response.read())
    finally:
        server.shutdown()
        server.server_close()
    assert completion["engine"] == LLAMA_CPP and completion["choices"][0]["finish_reason"] == "stop"
    assert completion["choices"][0]["message"]["content"] == job_answers(settings_for(home), job_id, [question])[0]


def test_without_llama_cpp_transformers_answers_a_gguf_export(exported, no_llama_cpp):
    from easytune import chat
    from easytune.export.gguf_chat import TRANSFORMERS

    home, job_id, results = exported
    settings = settings_for(home)
    target = chat.resolve_target(settings, results["gguf-f16"]["path"])
    assert target.engine == TRANSFORMERS and type(chat.load_target(target)[0]).__name__ == "LlamaForCausalLM"
    asked = questions(3, 2)
    assert greedy_answers(settings, target, asked) == job_answers(settings, job_id, asked)
    if "gguf-q4_k_m" in results:  # transformers' loader reads the built-in model's Q4_K_M weights: it answers
        assert chat.resolve_target(settings, results["gguf-q4_k_m"]["path"]).engine == TRANSFORMERS
        assert greedy_answers(settings, results["gguf-q4_k_m"]["path"], asked[:1])[0]


def test_without_llama_cpp_a_gguf_transformers_cannot_read_names_what_to_install(exported, no_llama_cpp,
                                                                                   monkeypatch):
    """transformers' GGUF loader refuses weight types and architectures it does not know (as it would a
    llama.cpp quantisation newer than it): the message names llama.cpp, which reads them."""
    from transformers import AutoModelForCausalLM

    from easytune import chat
    from easytune.export.gguf_chat import load_gguf_export
    from easytune.i18n import UserError

    def refuses(*args, **kwargs):
        raise ValueError("GGUF model with architecture newarch is not supported yet.")

    home, _, results = exported
    load_gguf_export.cache_clear()  # an earlier test may have loaded the file already
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuses)
    folder = results.get("gguf-q4_k_m", results["gguf-q8_0"])["path"]
    with pytest.raises(UserError) as refused:
        chat.stream_answer(settings_for(home), folder, "hi")
    assert refused.value.key == "chat.error.gguf_needs_llama_cpp"
    for lang, words in (("en", "cannot be read by transformers' GGUF loader"), ("zh", "GGUF 加载器读不了")):
        message = refused.value.message(lang)
        assert words in message and LLAMA_CPP_HINT in message and "newarch" in message, message


def test_a_gguf_lora_adapter_alone_is_a_clear_message(exported):
    home, _, results = exported
    for lang, words in (("en", "LoRA adapter in llama.cpp's format"), ("zh", "llama.cpp 格式的 LoRA 适配器")):
        done = cli("chat", results["gguf-lora"]["path"], "-q", "hi", home=home, lang=lang, check=False)
        assert done.returncode == 2 and words in done.stderr, done.stderr
