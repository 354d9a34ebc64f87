"""Ask a model a question: the base model, or a job's result (its adapter on the base, or its model).

Loads lazily (the first question pays for importing torch) and keeps the last models in memory.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path

from easytune.i18n import UserError
from easytune.settings import Settings

_lock = threading.Lock()  # one generation at a time: 2 CPU cores gain nothing from more


@lru_cache(maxsize=2)
def load_model(model_path: str, adapter_path: str | None):
    """(model, tokenizer) in eval mode, fp32; an adapter is applied on top of its base. Cached."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_path or model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, use_safetensors=True, dtype=torch.float32)
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path)
    model.eval()
    return model, tokenizer


def job_model(settings: Settings, job_id: str) -> tuple[str, str | None]:
    """(base model folder, adapter folder or None) of a finished job."""
    from easytune.jobs import get_job

    job_dir = Path(get_job(settings, job_id)["job_dir"])
    if (job_dir / "model").is_dir():
        return str(job_dir / "model"), None
    if not (job_dir / "adapter").is_dir():
        raise UserError("chat.error.no_result", job=job_id)
    resolved = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    return resolved["model_path"], str(job_dir / "adapter")


def answer(model_path: str, adapter_path: str | None, question: str, *, system: str | None = None,
           max_new_tokens: int = 128, temperature: float = 0.0) -> str:
    import torch

    if not question.strip():
        raise UserError("chat.error.empty")
    model, tokenizer = load_model(model_path, adapter_path)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    with _lock, torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id, **sampling)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def ask_job(settings: Settings, job_id: str, question: str, **options) -> str:
    return answer(*job_model(settings, job_id), question, **options)


def ask_base(settings: Settings, model: str, question: str, **options) -> str:
    from easytune.models.registry import resolve_path

    return answer(resolve_path(settings, model), None, question, **options)
