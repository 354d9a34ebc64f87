"""GGUF exports of the shared demo job, F16 and Q8_0, read back as llama.cpp's users' tools read them:
the weights through transformers' GGUF loader, the tokenizer from the file's own metadata, the chat
layout from the Ollama Modelfile. Each test home is a private copy of the demo home's database."""

import json
import re
from pathlib import Path

import pytest
from test_export import greedy, job_answers, private_home, questions, settings_for

from support import ROOT

pytestmark = pytest.mark.slow
GGUF_FORMATS = ("gguf-f16", "gguf-q8_0")
TWO_TURNS = [{"role": "system", "content": "你是客服。"}, {"role": "user", "content": "几点开门？"},
             {"role": "assistant", "content": "早上 9 点。\n周末也是。"}, {"role": "user", "content": "Thanks!"}]


@pytest.fixture(scope="module")
def exported(demo_job, tmp_path_factory):
    """(home, job id, {format: export result}) — both GGUF types of the demo job, one private home."""
    from easytune.export import export_job

    demo_home, job = demo_job
    home = private_home(demo_home, tmp_path_factory.mktemp("export-gguf") / "home")
    settings = settings_for(home)
    seen: list[str] = []
    results = {fmt: export_job(settings, job["id"], fmt, lang="zh" if fmt == "gguf-q8_0" else "en",
                               progress=lambda fraction, key: seen.append(key)) for fmt in GGUF_FORMATS}
    assert seen.count("export.progress.done") == 2 and "export.progress.convert_gguf" in seen
    return home, job["id"], results


def gguf_path(result: dict) -> Path:
    return Path(result["path"]) / result["gguf"]["file"]


def read_back(path: Path):
    """(model, tokenizer) from the file alone: transformers' loader, EasyTune's GGUF tokenizer reader."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    from easytune.models.gguf_tokenizer import build_tokenizer, read_spec

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return model, build_tokenizer(read_spec(gguf.GGUFReader(str(path))), str(path))


@pytest.mark.parametrize("fmt", GGUF_FORMATS)
def test_gguf_export_reads_back_and_answers_like_the_trained_model(exported, fmt):
    home, job_id, results = exported
    result = results[fmt]
    path = gguf_path(result)
    assert result["state"] == "READY" and result["verified"] and path.is_file()
    assert {p.name for p in path.parent.iterdir()} == {path.name, "Modelfile", "README.md", "easytune_export.json"}
    assert not list(path.parent.parent.glob(".*partial*")), "the staging folder is gone"
    types = result["gguf"]["tensor_types"]
    assert types["F32"] == 9  # 4 blocks × 2 norms + the output norm, kept in F32 as llama.cpp does
    assert ("Q8_0" in types) == (fmt == "gguf-q8_0")
    model, tokenizer = read_back(path)
    asked = questions(3, 3)
    answers = [greedy(model, tokenizer, q) for q in asked]
    check = result["verification"]
    if fmt == "gguf-f16":
        assert answers == job_answers(settings_for(home), job_id, asked)
        assert check["identical"] == check["total"] == 3 and check["agreement"] == 1.0
    else:  # stated tolerance: 95% next-token agreement (on the tiny model every answer comes out the same)
        assert check["agreement"] >= check["threshold"] == 0.95
        assert check["identical"] == 3
    assert check["gguf"]["chat_template_matches"]
    assert all(p["same_prompt_tokens"] for p in check["prompts"])


def test_gguf_file_carries_llama_cpp_metadata_and_names(exported):
    import gguf

    reader = gguf.GGUFReader(str(gguf_path(exported[2]["gguf-f16"])))
    value = lambda key: reader.fields[key].contents()
    config = json.loads((ROOT / "assets" / "tiny-model" / "config.json").read_text())
    assert value("general.architecture") == "llama"
    assert (value("llama.block_count"), value("llama.embedding_length"), value("llama.feed_forward_length"),
            value("llama.attention.head_count"), value("llama.attention.head_count_kv"), value("llama.context_length"),
            value("llama.vocab_size")) == (4, 128, 344, 4, 2, 512, config["vocab_size"])
    assert value("tokenizer.ggml.model") == "gpt2" and value("tokenizer.ggml.pre") == "smollm"  # digits one by one
    assert value("tokenizer.ggml.eos_token_id") == 2 and value("tokenizer.ggml.add_bos_token") is False
    assert "<|im_start|>" in value("tokenizer.chat_template")
    names = {tensor.name for tensor in reader.tensors}
    assert {"token_embd.weight", "output_norm.weight", "blk.3.attn_q.weight", "blk.0.ffn_down.weight"} <= names
    assert "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd


def test_gguf_tokenizer_and_chat_template_render_the_original_prompt_ids(exported):
    from transformers import AutoTokenizer

    _, _, results = exported
    original = AutoTokenizer.from_pretrained(ROOT / "assets" / "tiny-model")
    _, tokenizer = read_back(gguf_path(results["gguf-q8_0"]))
    for messages in (TWO_TURNS, [{"role": "user", "content": questions(0, 1)[0]}]):
        text = original.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == text
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == original(text, add_special_tokens=False)[
            "input_ids"]
    assert tokenizer.decode(original("营业时间 9:00-18:00")["input_ids"]) == "营业时间 9:00-18:00"


def render_go_template(template: str, messages: list[dict]) -> str:
    """The Go-template subset the Modelfile uses: one `range .Messages` with `.Role` and `.Content`."""
    head, body, tail = re.fullmatch(r"(.*?)\{\{-? ?range \.Messages ?-?\}\}(.*?)\{\{-? ?end ?-?\}\}(.*)", template,
                                    re.S).groups()
    fill = lambda m: body.replace("{{ .Role }}", m["role"]).replace("{{ .Content }}", m["content"])
    return head + "".join(fill(m) for m in messages) + tail


def test_modelfile_template_renders_what_the_chat_template_renders(exported):
    from transformers import AutoTokenizer

    home, _, results = exported
    folder = Path(results["gguf-f16"]["path"])
    text = (folder / "Modelfile").read_text()
    assert text.startswith("FROM ./model-f16.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "<|im_start|>"' in text
    template = re.search(r'TEMPLATE """(.*?)"""', text, re.S).group(1)
    original = AutoTokenizer.from_pretrained(ROOT / "assets" / "tiny-model")
    for messages in (TWO_TURNS, TWO_TURNS[1:]):
        assert render_go_template(template, messages) == original.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False)
    card = (folder / "README.md").read_text()
    assert "ollama create" in card and "-f Modelfile" in card and "model-f16.gguf" in card
    assert "无法转换" not in (Path(results["gguf-q8_0"]["path"]) / "README.md").read_text()  # translated


def test_a_template_that_is_not_chatml_gets_no_template_and_the_card_says_so(tmp_path):
    from easytune.export import gguf
    from easytune.models.sources import load_tokenizer

    tokenizer = load_tokenizer(ROOT / "assets" / "tiny-model")
    tokenizer.chat_template = "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    assert gguf.ollama_template(tokenizer) is None
    text = gguf.modelfile("model-f16.gguf", None, gguf._stops(tokenizer, None))
    assert "TEMPLATE" not in text and 'PARAMETER stop "<|im_end|>"' in text


def test_unsupported_architecture_is_refused_before_anything_is_written(demo_job, tmp_path, monkeypatch):
    import shutil

    import easytune.chat
    from easytune.export import export_job, list_exports
    from easytune.i18n import UserError, t

    demo_home, job = demo_job
    settings = settings_for(private_home(demo_home, tmp_path / "home"))
    other = tmp_path / "gpt2-like"
    shutil.copytree(ROOT / "assets" / "tiny-model", other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "architectures": ["GPT2LMHeadModel"]}))
    monkeypatch.setattr(easytune.chat, "job_model", lambda settings, job_id: (str(other), None))
    target = tmp_path / "out"
    with pytest.raises(UserError) as refused:
        export_job(settings, job["id"], "gguf-q8_0", out_dir=target)
    assert refused.value.key == "export.error.gguf_architecture"
    for lang in ("en", "zh"):
        message = t(refused.value.key, lang, **refused.value.params)
        assert "GPT2LMHeadModel" in message and "LlamaForCausalLM, Qwen2ForCausalLM" in message
    assert not target.exists() and not list(tmp_path.glob(".out*")) and list_exports(settings) == []


def test_real_model_exported_as_f16_answers_like_its_folder(real_model, tmp_path):
    """SmolLM2-135M-Instruct (the suite's real model, a float32 folder) written as F16 GGUF and read back:
    the same greedy answers, and `smollm` picked as its pre-tokenizer (digits one by one)."""
    import torch
    from transformers import AutoModelForCausalLM

    from easytune.export.gguf import write_gguf
    from easytune.models.sources import load_tokenizer

    details = write_gguf(real_model["folder"], tmp_path / "gguf", "gguf-f16")["gguf"]
    assert details["pre_tokenizer"] == "smollm" and details["ollama_template"] and not details["notes"]
    model, tokenizer = read_back(tmp_path / "gguf" / details["file"])
    original = AutoModelForCausalLM.from_pretrained(real_model["folder"], dtype=torch.float32).eval()
    original_tokenizer = load_tokenizer(real_model["folder"])
    asked = ["What is the capital of France?", "Name three primary colors.", "What is 12 + 30?"]
    assert [greedy(model, tokenizer, q) for q in asked] == [greedy(original, original_tokenizer, q) for q in asked]


def test_real_model_exported_as_q8_0_picks_the_same_next_tokens(real_model, tmp_path):
    """The real model in Q8_0 (8-bit blocks of 32 weights, one scale each) read back: along the folder's own
    greedy answers, the file predicts the same next token at least 95 % of the time, as its check requires."""
    import torch
    from transformers import AutoModelForCausalLM

    from easytune.export.gguf import write_gguf
    from easytune.models.sources import load_tokenizer

    details = write_gguf(real_model["folder"], tmp_path / "gguf", "gguf-q8_0")["gguf"]
    model, _ = read_back(tmp_path / "gguf" / details["file"])
    original = AutoModelForCausalLM.from_pretrained(real_model["folder"], dtype=torch.float32).eval()
    tokenizer = load_tokenizer(real_model["folder"])
    same = total = 0
    for q in ["What is the capital of France?", "Name three primary colors.", "Why is the sky blue?"]:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            ids = original.generate(prompt, max_new_tokens=24, do_sample=False)
            picked = [m(ids).logits[0, prompt.shape[1] - 1:-1].argmax(-1) for m in (original, model)]
        same += int((picked[0] == picked[1]).sum())
        total += picked[0].numel()
    assert total >= 30 and same / total >= 0.95, (same, total)
    assert (tmp_path / "gguf" / details["file"]).stat().st_size < 0.6 * 2 * 134_515_008  # well under F16
