"""A GGUF export folder is something to chat with, as step ④ offers it: `easytune chat FOLDER` answers like the
trained job (greedy); the LoRA adapter file alone cannot answer, and says what to do instead."""

import pytest
from test_export import job_answers, private_home, questions, settings_for

from support import cli, cli_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(demo_job, tmp_path_factory):
    from easytune.export import export_job

    demo_home, job = demo_job
    home = private_home(demo_home, tmp_path_factory.mktemp("export-chat") / "home")
    return home, job["id"], {fmt: export_job(settings_for(home), job["id"], fmt) for fmt in ("gguf-q8_0", "gguf-lora")}


def test_chat_with_a_gguf_export_folder_answers_like_the_job(exported):
    home, job_id, results = exported
    [question] = questions(3, 1)
    answered = cli_json("chat", results["gguf-q8_0"]["path"], "-q", question, home=home)
    assert answered["answer"] == job_answers(settings_for(home), job_id, [question])[0]


def test_a_gguf_lora_adapter_alone_is_a_clear_message(exported):
    home, _, results = exported
    for lang, words in (("en", "LoRA adapter in llama.cpp's format"), ("zh", "llama.cpp 格式的 LoRA 适配器")):
        done = cli("chat", results["gguf-lora"]["path"], "-q", "hi", home=home, lang=lang, check=False)
        assert done.returncode == 2 and words in done.stderr, done.stderr
