"""Chatting with a trained job, a model and an OpenVINO export: streamed answers, conversations, settings."""

import difflib
import json

import pytest

from support import ROOT, cli

pytestmark = pytest.mark.slow
FAQ = [json.loads(line) for line in (ROOT / "assets" / "demo" / "shop_faq_zh.jsonl").read_text("utf-8").splitlines()]


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


@pytest.fixture(scope="module")
def tuned(demo_job):
    """(settings of the demo home, finished job id)."""
    from easytune.settings import load_settings

    home, job = demo_job
    return load_settings(home=home, language="en"), job["id"]


@pytest.fixture(scope="module")
def openvino_folder(tmp_path_factory):
    """The built-in model exported to OpenVINO IR with its tokenizer, as an export folder looks."""
    from transformers import AutoTokenizer

    from easytune.openvino_stack import OVModelForCausalLM

    folder = tmp_path_factory.mktemp("openvino")
    tiny = ROOT / "assets" / "tiny-model"
    OVModelForCausalLM.from_pretrained(tiny, export=True, compile=False).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(folder)
    return folder


def test_stream_grows_to_the_non_streaming_greedy_answer(tuned):
    from easytune import chat

    settings, job_id = tuned
    question, expected = FAQ[0]["messages"][0]["content"], FAQ[0]["messages"][-1]["content"]
    stream = chat.stream_answer(settings, job_id, [{"role": "user", "content": question}], temperature=0,
                                max_new_tokens=128)
    steps = list(stream)
    assert len(steps) > 3, steps
    assert all(later.startswith(earlier) and len(later) > len(earlier) for earlier, later in zip(steps, steps[1:]))
    assert steps[-1] == stream.text == chat.ask_job(settings, job_id, question, max_new_tokens=128)
    assert similarity(stream.text, expected) > 0.6, (stream.text, expected)  # it is the tuned model talking
    assert stream.finish_reason == "stop" and 0 < stream.completion_tokens < 128 and stream.prompt_tokens > 5


def test_conversation_and_system_message_reach_the_template(tuned):
    from easytune import chat

    settings, job_id = tuned
    first, second = FAQ[0]["messages"], FAQ[1]["messages"]
    conversation = [first[0], first[-1], {"role": "user", "content": second[0]["content"]}]
    prompt = chat.chat_prompt(settings, job_id, conversation, system="你是星河小铺的客服。")
    assert prompt == ("<|im_start|>system\n你是星河小铺的客服。<|im_end|>\n"
                      f"<|im_start|>user\n{first[0]['content']}<|im_end|>\n"
                      f"<|im_start|>assistant\n{first[-1]['content']}<|im_end|>\n"
                      f"<|im_start|>user\n{second[0]['content']}<|im_end|>\n<|im_start|>assistant\n")
    # the explicit system message replaces one inside the conversation instead of adding a second
    replaced = chat.chat_prompt(settings, job_id, [{"role": "system", "content": "old"}, *conversation], system="new")
    assert "old" not in replaced and replaced.count("<|im_start|>system") == 1
    # the conversation continues: the second question gets its own trained answer, not the first one's
    reply = list(chat.stream_answer(settings, job_id, conversation, temperature=0))[-1]
    assert similarity(reply, second[-1]["content"]) > similarity(reply, first[-1]["content"]), reply


def test_a_long_conversation_is_cut_to_fit_the_model(tuned):
    from easytune import chat

    settings, job_id = tuned
    history = [m for row in FAQ[:40] for m in row["messages"]]  # far beyond the tiny model's 512 tokens
    question = FAQ[41]["messages"][0]["content"]
    prompt = chat.chat_prompt(settings, job_id, [*history, {"role": "user", "content": question}], system="S")
    assert prompt.startswith("<|im_start|>system\nS<|im_end|>") and prompt.endswith(
        f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
    assert FAQ[0]["messages"][0]["content"] not in prompt and FAQ[39]["messages"][-1]["content"] in prompt
    with pytest.raises(Exception) as refused:
        chat.stream_answer(settings, job_id, "退货" * 600)
    assert getattr(refused.value, "key", None) == "chat.error.too_long"


def test_generation_settings_are_applied_and_bounded(tuned):
    from easytune import chat
    from easytune.i18n import UserError

    settings, job_id = tuned
    question = FAQ[0]["messages"][0]["content"]
    short = chat.stream_answer(settings, job_id, question, temperature=0, max_new_tokens=3)
    list(short)
    assert short.completion_tokens == 3 and short.finish_reason == "length"
    sampled = chat.stream_answer(settings, job_id, question, temperature=1.0, top_p=0.95, max_new_tokens=40)
    assert list(sampled) and sampled.text.strip()
    for bad, key in [({"temperature": 5}, "chat.error.bad_option"), ({"top_p": 0}, "chat.error.bad_option"),
                     ({"max_new_tokens": 100_000}, "chat.error.bad_option")]:
        with pytest.raises(UserError) as refused:
            chat.stream_answer(settings, job_id, question, **bad)
        assert refused.value.key == key
        assert list(bad)[0] in refused.value.message("en") and refused.value.message("zh")
    for messages in (" ", [], [{"role": "user", "content": question}, {"role": "assistant", "content": "x"}]):
        with pytest.raises(UserError) as refused:
            chat.stream_answer(settings, job_id, messages)
        assert refused.value.key == "chat.error.empty"
    with pytest.raises(UserError) as refused:
        chat.stream_answer(settings, job_id, [{"role": "wizard", "content": question}])
    assert refused.value.key == "chat.error.bad_message"
    with pytest.raises(UserError) as refused:
        chat.resolve_target(settings, "no-such-thing")
    assert refused.value.key == "chat.error.unknown_target"


def test_a_stream_left_early_frees_the_model_for_the_next_question(tuned):
    from easytune import chat

    settings, job_id = tuned
    abandoned = chat.stream_answer(settings, job_id, FAQ[2]["messages"][0]["content"], temperature=0)
    next(abandoned)
    abandoned.close()
    answer = list(chat.stream_answer(settings, job_id, FAQ[0]["messages"][0]["content"], temperature=0))[-1]
    assert similarity(answer, FAQ[0]["messages"][-1]["content"]) > 0.6


def test_openvino_export_folder_answers(tuned, openvino_folder):
    from easytune import chat

    settings, _ = tuned
    target = chat.resolve_target(settings, str(openvino_folder))
    assert target.kind == "openvino" and target.name == openvino_folder.name
    stream = chat.stream_answer(settings, target, "你们满多少包邮？", system="你是客服。", temperature=0)
    steps = list(stream)
    assert steps and all(b.startswith(a) for a, b in zip(steps, steps[1:])) and stream.text.strip()
    assert type(chat.load_target(target)[0]).__name__ == "OVModelForCausalLM"
    # the same weights through OpenVINO say what they say through transformers
    reference = chat.ask_base(settings, "easytune-tiny", "你们满多少包邮？", system="你是客服。", max_new_tokens=256)
    assert similarity(stream.text, reference) > 0.5, (stream.text, reference)


def test_cli_chat_streams_and_reports_json(tuned):
    settings, job_id = tuned
    question, expected = FAQ[0]["messages"][0]["content"], FAQ[0]["messages"][-1]["content"]
    result = cli("chat", job_id, "-q", question, "--stream", "--json", "--max-new-tokens", "128", home=settings.home)
    reported = json.loads(result.stdout)
    assert reported["question"] == question and reported["target"] == job_id
    assert similarity(reported["answer"], expected) > 0.6
    assert reported["answer"] in result.stderr  # streamed as it came, beside the JSON document
    assert "Loading weights" not in result.stderr  # and nothing else drawn in the terminal (transformers' bar)
    assert "Warning" not in result.stderr  # nor a library's notice for its developers (peft's on transformers)
    refused = cli("chat", job_id, "-q", question, "--temperature", "3", home=settings.home, check=False, lang="zh")
    assert refused.returncode == 2 and "超出允许范围" in refused.stderr
