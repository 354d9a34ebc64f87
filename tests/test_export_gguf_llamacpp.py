"""GGUF exports read by llama.cpp itself (llama-cpp-python), the reader Ollama and LM Studio use: Q4_K_M made by
llama.cpp's own quantiser, and F16 checked by llama.cpp as well as by transformers. Skipped where
llama-cpp-python is not installed (it compiles llama.cpp from source, so it is not a dependency); the
refusal without it is tested in test_export_gguf_formats.py, which runs everywhere."""

from pathlib import Path

import pytest
from test_export import job_answers, private_home, questions, settings_for

from easytune.export.formats import module_usable

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not module_usable("llama_cpp"),
                                 reason="llama-cpp-python is not installed (pip install llama-cpp-python)")]
FORMATS = ("gguf-q4_k_m", "gguf-f16")
MAX_NEW_TOKENS = 64


@pytest.fixture(scope="module")
def exported(demo_job, tmp_path_factory):
    """(home, job id, {format: export result}) of the demo job, one private home."""
    from easytune.export import export_job

    demo_home, job = demo_job
    home = private_home(demo_home, tmp_path_factory.mktemp("export-llamacpp") / "home")
    results = {fmt: export_job(settings_for(home), job["id"], fmt, lang="zh" if fmt == "gguf-f16" else "en")
               for fmt in FORMATS}
    return home, job["id"], results


def llama_answers(model_file: Path, asked: list[str], lora_file: Path | None = None) -> list[str]:
    """Greedy answers from llama.cpp: the prompt rendered by the file's own chat template, as llama.cpp's chat
    does; tokens decoded by llama.cpp."""
    import gguf
    import llama_cpp
    import numpy as np
    from jinja2 import Template

    reader = gguf.GGUFReader(str(model_file))
    template = Template(reader.fields["tokenizer.chat_template"].contents())
    eos = reader.fields["tokenizer.ggml.eos_token_id"].contents()
    llm = llama_cpp.Llama(model_path=str(model_file), lora_path=str(lora_file) if lora_file else None, n_ctx=512,
                          logits_all=True, verbose=False)  # every position's logits kept in llm.scores
    answers = []
    for question in asked:
        text = template.render(messages=[{"role": "user", "content": question}], add_generation_prompt=True)
        llm.reset()
        llm.eval(llm.tokenize(text.encode(), add_bos=False, special=True))
        made = []
        for _ in range(MAX_NEW_TOKENS):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            if token == eos:
                break
            made.append(token)
            llm.eval([token])
        answers.append(llm.detokenize(made).decode("utf-8", errors="replace"))
    llm.close()
    return answers


def test_q4_k_m_is_llama_cpps_quantisation_and_answers_within_its_tolerance(exported):
    import gguf

    home, job_id, results = exported
    result = results["gguf-q4_k_m"]
    path = Path(result["path"]) / "model-q4_k_m.gguf"
    assert result["state"] == "READY" and result["verified"] and path.is_file()
    assert {p.name for p in path.parent.iterdir()} == {path.name, "Modelfile", "README.md", "easytune_export.json"}
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.file_type"].contents() == int(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    assert reader.fields["tokenizer.ggml.pre"].contents() == "smollm"
    kinds = {tensor.tensor_type.name for tensor in reader.tensors}
    # The built-in model is 128 wide, under Q4_K's blocks of 256: llama.cpp's own fallbacks fill in for it.
    assert kinds <= {"F32", "F16", "Q8_0", "Q5_0", "Q4_K", "Q6_K", "Q5_K"} and kinds & {"Q5_0", "Q4_K"}
    assert result["gguf"]["tensor_types"] == {k: sum(t.tensor_type.name == k for t in reader.tensors) for k in kinds}
    f16 = Path(results["gguf-f16"]["path"]) / "model-f16.gguf"
    assert path.stat().st_size < f16.stat().st_size
    assert result["verification"]["gguf"]["file_type_matches"]
    check = result["verification"]["llama_cpp"]
    # Stated tolerance: 80% next-token agreement, INT4's bar (on the built-in model the answers come out the same).
    assert check["passed"] and check["agreement"] >= check["threshold"] == 0.8
    assert all(row["same_prompt_tokens"] for row in check["prompts"]), "llama.cpp tokenizes as the original"
    asked = questions(3, 3)
    answers, expected = llama_answers(path, asked), job_answers(settings_for(home), job_id, asked)
    assert sum(a == b for a, b in zip(answers, expected)) >= 2, (answers, expected)


def test_f16_is_checked_by_llama_cpp_too_and_the_card_says_so(exported):
    home, job_id, results = exported
    result = results["gguf-f16"]
    check = result["verification"]["llama_cpp"]
    assert check["passed"] and check["identical"] == check["total"] == 3 and check["agreement"] == 1.0
    assert result["tokens_per_s"] == check["tokens_per_s"], "the exports list shows llama.cpp's speed"
    card = (Path(result["path"]) / "README.md").read_text(encoding="utf-8")
    assert "llama.cpp 本身读取" in card and "3/3" in card  # the card in Chinese, as asked
    asked = questions(6, 2)
    path = Path(result["path"]) / "model-f16.gguf"
    assert llama_answers(path, asked) == job_answers(settings_for(home), job_id, asked)
