"""The model card (README.md) that travels with every export: where the model came from, how it was
trained and checked, and how to run it — in the user's language."""

from __future__ import annotations

import json
import re
import time
from importlib import metadata

from easytune.export.formats import FORMATS
from easytune.i18n import catalog, normalize_lang, t

LIBRARIES = ("easytune", "torch", "transformers", "peft", "safetensors", "optimum", "optimum-intel", "openvino",
             "openvino-tokenizers", "nncf", "gguf", "llama-cpp-python")


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


def summary_text(result: dict, lang: str) -> str:
    """An evaluation's summary as a sentence: text as stored, a message key rendered, else compact JSON."""
    summary = result.get("summary", result.get("headline"))
    if isinstance(summary, str):
        return summary
    if isinstance(summary, dict) and summary.get("key") in catalog(normalize_lang(lang)):
        try:
            return t(summary["key"], lang, **summary.get("params", {}))
        except (KeyError, IndexError):
            pass
    return json.dumps(summary if summary is not None else result, ensure_ascii=False)[:400]


def _last(series: list) -> str | None:
    return f"{series[-1][1]:.4f}" if series else None


def _gguf_snippet(path: str, file_name: str, name: str) -> str:
    return (f"```bash\ncd \"{path}\"\nollama create {name} -f Modelfile\nollama run {name}\n\n"
            f"# llama.cpp\nllama-cli -m {file_name} -cnv\n```")


def _run_snippet(fmt: str, path: str, base_path: str, question: str, job_id: str) -> str:
    question = json.dumps(question, ensure_ascii=False)
    writer = FORMATS[fmt].writer
    if writer == "merged":
        load = (f'tokenizer = AutoTokenizer.from_pretrained("{path}")\n'
                f'model = AutoModelForCausalLM.from_pretrained("{path}")')
        head = "from transformers import AutoModelForCausalLM, AutoTokenizer"
    elif writer == "adapter":
        load = (f'tokenizer = AutoTokenizer.from_pretrained("{path}")\n'
                f'model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{base_path}"), "{path}")')
        head = "from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer"
    else:
        load = (f'tokenizer = AutoTokenizer.from_pretrained("{path}")\n'
                f'model = OVModelForCausalLM.from_pretrained("{path}")  # OpenVINO on the CPU')
        head = "from optimum.intel import OVModelForCausalLM\nfrom transformers import AutoTokenizer"
    target = path if FORMATS[fmt].answers_alone else job_id  # an adapter is served on its base: the job
    return (f"```python\n{head}\n\n{load}\nmessages = [{{\"role\": \"user\", \"content\": {question}}}]\n"
            "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\",\n"
            "                                       return_dict=True)\n"
            "output = model.generate(**inputs, max_new_tokens=128)\n"
            "print(tokenizer.decode(output[0, inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True))\n```\n\n"
            f"```bash\neasytune serve {target}\n```")


def model_card(*, lang: str, fmt: str, path: str, job: dict, resolved: dict, plan_yaml: str, metrics: dict,
               quality: dict | None, safety: dict | None, safety_confirmed: bool, verification: dict,
               details: dict) -> str:
    lang = normalize_lang(lang)
    T = lambda key, **params: t(f"export.card.{key}", lang, **params)
    base_path = resolved["model_path"]
    lines = [f"# {T('title', name=job['name'], format=fmt)}", "",
             T("intro", job=job["id"], when=_when(job.get("finished_at")), description=T(f"format.{fmt}")), ""]

    lines += [f"## {T('base_title')}", "", T("base", name=job["model"], path=base_path), ""]
    lines += [f"## {T('dataset_title')}", "", T("dataset", name=resolved.get("dataset"),
                                                  rows=resolved.get("dataset_rows"),
                                                  sha256=resolved.get("dataset_sha256")), ""]
    lines += [f"## {T('plan_title')}", "", "```yaml", plan_yaml.strip(), "```", ""]

    cf, cf_pct = metrics.get("cf_score", []), metrics.get("cf_pct", [])
    none = T("metric.none")
    cf_text = T("metric.cf_value", nats=f"{cf[-1][1]:+.4f}", pct=f"{cf_pct[-1][1]:+.1f}") if cf and cf_pct else none
    lines += [f"## {T('metrics_title')}", "", "| | |", "|---|---|",
              f"| {T('metric.train_loss')} | {_last(metrics.get('loss', [])) or none} |",
              f"| {T('metric.val_loss')} | {_last(metrics.get('val_loss', [])) or none} |",
              f"| {T('metric.cf')} | {cf_text} |", ""]

    lines += [f"## {T('quality_title')}", ""]
    if quality:
        verdict = quality["result"].get("verdict", "-")
        lines += [T("quality", verdict=verdict, passed=T("yes" if quality["passed"] else "no"),
                    when=_when(quality["created_at"]), summary=summary_text(quality["result"], lang)), ""]
        if safety_confirmed and verdict == "harmful":
            lines += [f"> ⚠ {T('harmful_confirmed', when=_when(time.time()))}", ""]
    else:
        lines += [T("not_evaluated"), ""]
    lines += [f"## {T('safety_title')}", ""]
    if safety:
        status = T("safety_passed" if safety["passed"] else "safety_flagged")
        lines += [T("safety", status=status, when=_when(safety["created_at"]),
                    summary=summary_text(safety["result"], lang)), ""]
        if safety_confirmed and not safety["passed"]:
            lines += [f"> ⚠ {T('safety_confirmed', when=_when(time.time()))}", ""]
    else:
        lines += [T("not_evaluated"), ""]

    v = verification
    lines += [f"## {T('verify_title')}", "",
              T("verify", total=v["total"], identical=v["identical"], agreement=f"{v['agreement'] * 100:.1f}",
                threshold=f"{v['threshold'] * 100:.0f}", tps=v["tokens_per_s"],
                ref_tps=v["reference_tokens_per_s"]), ""]
    if "openvino" in v:
        lines += [T("openvino_note", precision=v["openvino"]["inference_precision"],
                    tokenizer=T("yes" if v["openvino"]["tokenizer_matches"] else "no")), ""]
    if details.get("quantization"):
        lines += [T("quantization", settings=json.dumps(details["quantization"])), ""]
    lines += [f"| {T('verify_question')} | {T('verify_reference')} | {T('verify_answer')} | {T('verify_same')} |",
              "|---|---|---|---|"]
    cell = lambda text: text.replace("|", "\\|").replace("\n", " ")
    lines += [f"| {cell(r['question'])} | {cell(r['reference'])} | {cell(r['answer'])} | "
              f"{T('yes') if r['identical'] else T('no')} ({r['agreement'] * 100:.0f}%) |" for r in v["prompts"]]
    lines += ["", f"## {T('run_title')}", ""]
    question = v["prompts"][0]["question"] if v["prompts"] else "Hello"
    if "llama_cpp" in v:
        lc = v["llama_cpp"]
        lines += [T("llama_cpp_check", version=lc["version"], total=lc["total"], identical=lc["identical"],
                    agreement=f"{lc['agreement'] * 100:.1f}", tps=lc["tokens_per_s"],
                    tokens=T("yes" if all(r["same_prompt_tokens"] for r in lc["prompts"]) else "no")), ""]
    if "gguf" in details:
        lines += _gguf_lines(T, details["gguf"], v.get("gguf", {}), path, job["id"])
    elif "gguf_lora" in details:
        lines += _gguf_lora_lines(T, details["gguf_lora"], v.get("gguf_lora", {}), path, job["model"])
    else:
        lines += [_run_snippet(fmt, path, base_path, question, job["id"]), ""]

    trained = resolved.get("versions", {})
    lines += [f"## {T('versions_title')}", "", f"| | {T('versions_export')} | {T('versions_training')} |",
              "|---|---|---|"]
    lines += [f"| {name} | {version} | {trained.get(name, '')} |" for name, version in library_versions().items()]
    return "\n".join(lines) + "\n"


def _gguf_lines(T, gguf: dict, checked: dict, path: str, job_id: str) -> list[str]:
    """How to run a GGUF export with Ollama or llama.cpp, and what the file holds."""
    name = re.sub(r"[^a-z0-9._-]+", "-", f"easytune-{job_id}".lower()).strip("-")
    types = ", ".join(f"{kind} × {count}" for kind, count in sorted(gguf["tensor_types"].items()))
    lines = [T("gguf_file", file=gguf["file"], type=gguf["type"], architecture=gguf["architecture"], types=types,
               pre=gguf["pre_tokenizer"]), ""]
    if checked:
        transformers_tokenizer = checked.get("transformers_tokenizer_matches")
        lines += [T("gguf_check", template=T("yes" if checked.get("chat_template_matches") else "no"),
                    transformers=T("yes" if transformers_tokenizer else "no" if transformers_tokenizer is False
                                   else "gguf_unreadable")), ""]
    lines += [T("gguf_ollama" if gguf["ollama_template"] else "gguf_no_template"), "",
              _gguf_snippet(path, gguf["file"], name), ""]
    return lines


def _gguf_lora_lines(T, adapter: dict, checked: dict, path: str, base: str) -> list[str]:
    """What the adapter file holds, how it was checked, and how llama.cpp and Ollama apply it on its base."""
    lines = [T("gguf_lora_file", file=adapter["file"], architecture=adapter["architecture"], rank=adapter["rank"],
               alpha=f"{adapter['alpha']:g}", weights=adapter["weights"]), ""]
    if checked:
        lines += [T("gguf_lora_check", error=f"{checked['max_weight_error']:.1e}",
                    metadata=T("yes" if checked["metadata_ok"] else "no")), ""]
    lines += [T("gguf_lora_run", base=base), "",
              f"```bash\ncd \"{path}\"\nllama-cli -m BASE-f16.gguf --lora {adapter['file']} -cnv\n\n"
              f"# Ollama: a Modelfile with\n#   FROM /path/to/BASE-f16.gguf\n#   ADAPTER ./{adapter['file']}\n```", ""]
    return lines
